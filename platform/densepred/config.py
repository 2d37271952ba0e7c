"""Load task and model YAML configs (mmengine ``Config`` with ``_base_`` inheritance), apply
``--set a.b.c=value`` overrides and validate them.

Validation is driven by data the code already has: the top-level key table below and the
constructor signatures of registered components. Errors name the key and the file that set it.
"""
from __future__ import annotations

import difflib
import inspect
import os
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import yaml
from mmengine.config import Config, ConfigDict

from .errors import ConfigError

# Top-level keys a config may carry: key -> (accepted python types, what it is).
# Sections that hold component dicts are validated further by ``validate_component``.
TOP_LEVEL_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "model": ((dict,), "backbone, optional neck and named heads"),
    "task": ((dict,), "task type and its settings"),
    "data_root": ((str, type(None)), "dataset root folder"),
    "work_dir": ((str,), "where checkpoints, logs and results go (also Ray's storage path)"),
    "bbox_file": ((str, type(None)), "person detections for pose validation (null: ground-truth boxes)"),
    "run_name": ((str, type(None)), "name of the run inside work_dir"),
    "seed": ((int,), "random seed"),
    "data": ((dict,), "datasets, transforms and loaders"),
    "train": ((dict,), "training loop settings"),
    "optimizer": ((dict,), "optimizer settings"),
    "scheduler": ((dict,), "learning-rate schedule"),
    "evaluation": ((dict,), "evaluation settings"),
    "inference": ((dict,), "prediction settings"),
    "ray": ((dict,), "Ray Train scaling and failure settings"),
    "tracking": ((dict,), "experiment tracking: {mlflow: true, tracking_uri, experiment}"),
}


# Paths and names that an empty string would silently turn into a default or the working directory.
EMPTY_NOT_ALLOWED = {
    "data_root": "the dataset root folder (e.g. --set data_root=data/coco)",
    "work_dir": "the folder for run folders (e.g. --set work_dir=work_dirs)",
    "bbox_file": "a person detections file, or null to use ground-truth boxes",
    "run_name": "a name (e.g. --set run_name=my_run), or null for the default",
}


def register_top_level_key(name: str, types_: tuple[type, ...], doc: str) -> None:
    """Let a task add its own top-level keys to the schema."""
    TOP_LEVEL_KEYS[name] = (types_, doc)


# --------------------------------------------------------------------------- loading

def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a .yaml file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a YAML text file (binary content); give a task or "
                          "model .yaml file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML: {_yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping, got {type(data).__name__}")
    return data


def _one_line(text: Any) -> str:
    """``text`` with its lines joined: errors are printed on one line."""
    return " ".join(str(text).split())


def _yaml_problem(e: BaseException) -> str:
    """The short, one-line description of a YAML error (PyYAML's own message spans lines)."""
    return _one_line(getattr(e, "problem", None) or e)


def config_chain(path: str | os.PathLike) -> list[tuple[Path, dict]]:
    """The file and its ``_base_`` ancestors as ``(path, raw mapping)``, most basic first."""
    path = Path(path).resolve()
    out: list[tuple[Path, dict]] = []
    seen: set[Path] = set()

    def visit(p: Path, stack: tuple[Path, ...]) -> None:
        if p in stack:
            raise ConfigError(f"{p}: _base_ inheritance loops back to itself")
        raw = _read_yaml(p)
        bases = raw.get("_base_", [])
        if isinstance(bases, str):
            bases = [bases]
        for b in bases:
            bp = (p.parent / b).resolve()
            if not bp.is_file():
                raise ConfigError(f"{p}: _base_ file '{b}' not found (looked for {bp})")
            visit(bp, stack + (p,))
        if p not in seen:
            seen.add(p)
            out.append((p, raw))

    visit(path, ())
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b.c=value`` -> ("a.b.c", value parsed as YAML: numbers, bools, null, lists, dicts)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=10")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: the key is empty")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({_yaml_problem(e)}{at}); "
                          "check its brackets and quotes") from None
    return key, value


def _set_path(cfg: dict, key: str, value: Any) -> None:
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node[int(part)] if isinstance(node, list) else node.get(part)
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if not isinstance(nxt, (dict, list)):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[:i + 1])}' is a value, not a section")
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise ConfigError(f"--set {key}: {last!r} is not a valid index") from None
    else:
        node[last] = value


class LoadedConfig(dict):
    """A plain dict of the merged config that remembers where it came from."""

    source: Optional[Path] = None
    chain: list[tuple[Path, dict]] = []
    overrides: dict[str, Any] = {}

    def where(self, key_path: str) -> str:
        """Which file (or ``--set``) set ``key_path``; used in error messages."""
        if key_path in self.overrides or any(key_path.startswith(k + ".") for k in self.overrides):
            return "--set"
        for p, raw in reversed(self.chain):
            node: Any = raw
            ok = True
            for part in key_path.split("."):
                if isinstance(node, Mapping) and part in node:
                    node = node[part]
                else:
                    ok = False
                    break
            if ok:
                return _display(p)
        return _display(self.source) if self.source else "config"


def _display(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def _to_plain(x: Any) -> Any:
    if isinstance(x, (ConfigDict, dict)):
        return {k: _to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_plain(v) for v in x]
    return x


def load_config(path: str | os.PathLike, overrides: Iterable[str] | Mapping[str, Any] = (),
                validate: bool = True, base_dir: str | os.PathLike | None = None) -> LoadedConfig:
    """Load a YAML config with its ``_base_`` chain, apply overrides, validate, return a dict.

    Path values (``PATH_KEYS``) come back absolute, resolved against ``base_dir`` (default: the
    working directory of the command), so that Ray workers and Tune trials, which run in other
    working directories, read the same files the user meant."""
    base = Path(base_dir or Path.cwd()).expanduser()
    chain = config_chain(path)
    try:
        merged = Config.fromfile(str(Path(path).resolve()))
    except ConfigError:
        raise
    except Exception as e:  # mmengine raises assorted types for bad files
        raise ConfigError(f"{path}: cannot load config: {_one_line(e)}") from None
    cfg = LoadedConfig(_to_plain(merged.to_dict()))
    cfg.pop("_base_", None)
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    else:
        pairs = [parse_override(o) for o in overrides]
    for key, value in pairs:
        _set_path(cfg, key, value)
    cfg.source = Path(path).resolve()
    cfg.chain = chain
    cfg.overrides = dict(pairs)
    expand_members(cfg, base)
    resolve_paths(cfg, base)
    if validate:
        validate_config(cfg)
    return cfg


#: config keys that hold a file or folder path; relative values are relative to the working
#: directory of the command (``_base_`` files and member ``config:`` files are relative to the file
#: that names them; annotation and detection files are relative to ``data_root``)
PATH_KEYS = ("work_dir", "data_root", "train.load_from", "ray.storage")


def _absolute(value: Any, base: Path) -> Any:
    """``value`` as an absolute path string under ``base``; other values (None, non-strings, empty
    strings and URIs, which the checks refuse with their own message) unchanged."""
    if not isinstance(value, str) or not value.strip() or "://" in value:
        return value
    # normpath, not resolve(): a symlinked data folder keeps the name the user gave (on a cluster
    # the link may point elsewhere on another node)
    return os.path.normpath(os.path.join(base, Path(value).expanduser()))


#: keys that name shipped metadata (``coco``, ``cityscapes``) or, ending in .yaml/.yml, a file
INFO_FILE_KEYS = ("data.keypoint_info", "data.class_info")


def _resolve_key(cfg: Any, key: str, base: Path, yaml_only: bool = False) -> None:
    *parents, last = key.split(".")
    node: Any = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and last in node:
        value = node[last]
        if not yaml_only or (isinstance(value, str) and value.endswith((".yaml", ".yml"))):
            node[last] = _absolute(value, base)


def resolve_paths(cfg: dict, base: Path) -> dict:
    """Make every ``PATH_KEYS`` value of ``cfg`` absolute, and the ``INFO_FILE_KEYS`` that name
    YAML files (of the config and of its multi-task members), in place."""
    for key in PATH_KEYS:
        _resolve_key(cfg, key, base)
    members = (cfg.get("task") or {}).get("members") if isinstance(cfg.get("task"), dict) else None
    for node in [cfg] + (list(members.values()) if isinstance(members, dict) else []):
        for key in INFO_FILE_KEYS:
            _resolve_key(node, key, base, yaml_only=True)
    return cfg


# --------------------------------------------------------------------------- multi-task members

#: what a member of a multi-task config may hold: an ordinary task's own sections. The model,
#: optimizer, schedule, training and Ray settings are the run's (the multi-task file's).
MEMBER_KEYS = ("config", "task", "data", "evaluation", "inference", "data_root", "bbox_file")


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _deep_merge(base: dict, top: Mapping[str, Any]) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def _member_file(cfg: LoadedConfig, name: str, ref: Any, base: Path) -> Path:
    key = f"task.members.{name}.config"
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f"{cfg.where(key)}: {key} must be the path of a task YAML, got {ref!r}")
    p = Path(ref).expanduser()
    candidates = [p] if p.is_absolute() else [cfg.source.parent / p, base / p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    raise ConfigError(f"{cfg.where(key)}: {key}: task file {ref!r} not found (looked in "
                      f"{', '.join(str(c.parent) for c in candidates)})")


def expand_members(cfg: LoadedConfig, base: Path) -> None:
    """Inline the member tasks of a multi-task config (``task.members.<name>``): a member's
    ``config: other_task.yaml`` is loaded (with its own ``_base_`` chain) and the member's other
    keys are merged over it. The run folder's config.yaml then holds every member in full, and
    workers need no file but the data."""
    members = (cfg.get("task") or {}).get("members") if isinstance(cfg.get("task"), Mapping) else None
    if not isinstance(members, Mapping):
        return
    for name, spec in list(members.items()):
        where = cfg.where(f"task.members.{name}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: task.members.{name} must be a mapping (e.g. {{config: pose_demo.yaml}}), "
                              f"got {spec!r}")
        unknown = sorted(set(spec) - set(MEMBER_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} in task.members.{name}; allowed: "
                              f"{', '.join(MEMBER_KEYS)} (model, optimizer and train settings are the run's)")
        merged: dict = {}
        if spec.get("config") is not None:
            path = _member_file(cfg, name, spec["config"], base)
            sub = load_config(path, base_dir=base)
            merged = {k: sub[k] for k in MEMBER_KEYS if k in sub}
            merged["config"] = str(path)
        merged = _deep_merge(merged, {k: v for k, v in spec.items() if k != "config"})
        if "data_root" in merged:
            merged["data_root"] = _absolute(merged["data_root"], base)
        members[name] = merged


# --------------------------------------------------------------------------- validation

def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_ok(value: Any, hint: Any) -> bool:
    """A small structural type check for the hints used in component constructors."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        if args and args[-1] is not Ellipsis and origin is tuple and len(args) != len(value):
            return False
        inner = args[0] if args else Any
        return all(_type_ok(v, inner) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _hint_name(hint: Any) -> str:
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(_hint_name(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if typing.get_args(hint):
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", str(hint))


def validate_component(cfg: LoadedConfig, key_path: str, comp: Any, registry: Any,
                       provided: Iterable[str] = ()) -> None:
    """Check a ``{type: Name, ...}`` mapping against the registered class's constructor."""
    from .registry import lookup

    where = cfg.where(key_path)
    if not isinstance(comp, Mapping) or "type" not in comp:
        raise ConfigError(f"{where}: {key_path} must be a mapping with a 'type' key")
    cls = lookup(registry, comp["type"], f"{where}: {key_path}.type")
    sig = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if n != "self"}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for k, v in comp.items():
        if k == "type":
            continue
        if k not in params:
            if takes_kwargs:
                continue
            raise ConfigError(f"{cfg.where(f'{key_path}.{k}')}: unknown key '{key_path}.{k}' for "
                              f"{comp['type']}{_suggest(k, params)}; allowed: {', '.join(params)}")
        hint = hints.get(k, Any)
        if not _type_ok(v, hint):
            raise ConfigError(f"{cfg.where(f'{key_path}.{k}')}: {key_path}.{k} must be "
                              f"{_hint_name(hint)}, got {type(v).__name__} {v!r}")
        problem = _range_problem(v, getattr(cls, "ARG_RANGES", {}).get(k, {}))
        if problem:
            raise ConfigError(f"{cfg.where(f'{key_path}.{k}')}: {key_path}.{k} {problem}, got {v!r} ({comp['type']})")
    missing = [n for n, p in params.items() if p.default is p.empty
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
               and n not in comp and n not in provided]
    if missing:
        raise ConfigError(f"{where}: {key_path} ({comp['type']}) is missing required key(s): "
                          f"{', '.join(missing)}")


def validate_model_section(cfg: LoadedConfig, model: Any, key: str = "model") -> None:
    from . import backbones, heads  # noqa: F401  (importing registers the components)
    from .registry import BACKBONES, HEADS, NECKS

    where = cfg.where(key)
    if not isinstance(model, Mapping):
        raise ConfigError(f"{where}: '{key}' must be a mapping with backbone and heads")
    allowed = {"backbone", "neck", "heads", "init"}
    for k in model:
        if k not in allowed:
            raise ConfigError(f"{cfg.where(f'{key}.{k}')}: unknown key '{key}.{k}'"
                              f"{_suggest(k, allowed)}; allowed: {', '.join(sorted(allowed))}")
    _check_init(cfg, key, model.get("init"))
    if "backbone" not in model:
        raise ConfigError(f"{where}: '{key}.backbone' is missing")
    validate_component(cfg, f"{key}.backbone", model["backbone"], BACKBONES)
    if model.get("neck") is not None:
        validate_component(cfg, f"{key}.neck", model["neck"], NECKS, provided=("in_channels",))
    head_cfgs = model.get("heads")
    if not isinstance(head_cfgs, Mapping) or not head_cfgs:
        raise ConfigError(f"{cfg.where(f'{key}.heads')}: '{key}.heads' must map head names to "
                          f"head configs, e.g. heads: {{pose: {{type: HeatmapHead}}}}")
    for name, head in head_cfgs.items():
        validate_component(cfg, f"{key}.heads.{name}", head, HEADS, provided=("in_channels",))


def _check_init(cfg: LoadedConfig, key: str, scheme: Any) -> None:
    from .model import INITS

    if scheme is not None and scheme not in INITS:
        raise ConfigError(f"{cfg.where(f'{key}.init')}: {key}.init must be one of "
                          f"{', '.join(INITS)} ({'; '.join(f'{k}: {v}' for k, v in INITS.items())}), got {scheme!r}")


def validate_config(cfg: LoadedConfig) -> None:
    """Validate top-level keys and the model section; raise ConfigError naming key and file."""
    for k, v in cfg.items():
        if k not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{cfg.where(k)}: unknown top-level key '{k}'"
                              f"{_suggest(k, TOP_LEVEL_KEYS)}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
        types_, _ = TOP_LEVEL_KEYS[k]
        if not isinstance(v, types_):
            names = "/".join("null" if t is type(None) else t.__name__ for t in types_)
            raise ConfigError(f"{cfg.where(k)}: '{k}' must be {names}, got {type(v).__name__} {v!r}")
        if isinstance(v, str) and not v.strip() and k in EMPTY_NOT_ALLOWED:
            raise ConfigError(f"{cfg.where(k)}: {k} is empty; give {EMPTY_NOT_ALLOWED[k]}")
    if "model" in cfg:
        validate_model_section(cfg, cfg["model"])


def setting(default: Any = None, *, ge: Optional[float] = None, gt: Optional[float] = None,
            le: Optional[float] = None, choices: Optional[Iterable[Any]] = None,
            factory: Optional[Any] = None, hint: str = "") -> Any:
    """A dataclass field with the range ``parse_section`` enforces: ``ge``/``gt``/``le`` bounds
    (applied to each element of a list), or ``choices``. ``None`` values are not checked (they
    mean "off" or "default"). ``hint`` is appended to the error (what the value means)."""
    import dataclasses

    meta = {"ge": ge, "gt": gt, "le": le, "choices": tuple(choices) if choices is not None else None,
            "hint": hint}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _range_problem(value: Any, meta: Mapping[str, Any]) -> Optional[str]:
    """Why ``value`` is outside the range in ``meta``, or None."""
    if value is None:
        return None
    if meta.get("choices") is not None and value not in meta["choices"]:
        return f"must be one of {', '.join(map(str, meta['choices']))}"
    for v in (value if isinstance(value, (list, tuple)) else [value]):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if v != v:
            return "must be a number, not NaN"
        if meta.get("ge") is not None and v < meta["ge"]:
            return f"must be >= {meta['ge']}"
        if meta.get("gt") is not None and v <= meta["gt"]:
            return f"must be > {meta['gt']}"
        if meta.get("le") is not None and v > meta["le"]:
            return f"must be <= {meta['le']}"
    return None


def parse_section(cfg: Mapping[str, Any], key: str, cls: type) -> Any:
    """Build the dataclass ``cls`` from ``cfg[key]`` (``key`` may be dotted: ``data.augment``);
    unknown keys and wrong types name the key and the file that set it."""
    import dataclasses

    raw: Any = cfg
    for part in key.split("."):
        raw = raw.get(part) if isinstance(raw, Mapping) else None
    raw = raw or {}
    where = cfg.where if isinstance(cfg, LoadedConfig) else (lambda _k: "config")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where(key)}: '{key}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for k, v in raw.items():
        if k not in fields:
            raise ConfigError(f"{where(f'{key}.{k}')}: unknown key '{key}.{k}'{_suggest(k, fields)}; "
                              f"allowed: {', '.join(fields)}")
        if not _type_ok(v, hints.get(k, Any)):
            raise ConfigError(f"{where(f'{key}.{k}')}: {key}.{k} must be {_hint_name(hints[k])}, "
                              f"got {type(v).__name__} {v!r}")
    for k, v in raw.items():
        problem = _range_problem(v, fields[k].metadata)
        if problem:
            hint = fields[k].metadata.get("hint")
            raise ConfigError(f"{where(f'{key}.{k}')}: {key}.{k} {problem}, got {v!r}"
                              + (f" ({hint})" if hint else ""))
    return cls(**raw)
