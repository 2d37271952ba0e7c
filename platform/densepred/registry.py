"""Component registries. Every buildable part is registered here by name and built from
``{type: Name, **kwargs}`` dicts found in YAML configs."""
from __future__ import annotations

from typing import Any, Mapping

from mmengine.registry import Registry

from .errors import ConfigError

BACKBONES = Registry("backbone", scope="densepred")
NECKS = Registry("neck", scope="densepred")
HEADS = Registry("head", scope="densepred")
LOSSES = Registry("loss", scope="densepred")
DATASETS = Registry("dataset", scope="densepred")
TRANSFORMS = Registry("transform", scope="densepred")
CODECS = Registry("codec", scope="densepred")
METRICS = Registry("metric", scope="densepred")
TASKS = Registry("task", scope="densepred")
BALANCERS = Registry("balancer", scope="densepred")  # multi-task loss balancing
#: registries whose components ``build`` checks against their constructors (types, ``ARG_RANGES``)
CHECKED = ("loss", "balancer")

ALL_REGISTRIES = {
    r.name: r for r in (BACKBONES, NECKS, HEADS, LOSSES, DATASETS, TRANSFORMS, CODECS, METRICS, TASKS,
                        BALANCERS)
}


def registered_names(registry: Registry) -> list[str]:
    return sorted(registry.module_dict)


def lookup(registry: Registry, type_name: str, where: str = "") -> type:
    """Return the class registered as ``type_name`` or raise a ConfigError listing the choices."""
    cls = registry.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        at = f"{where}: " if where else ""
        raise ConfigError(
            f"{at}unknown {registry.name} type {type_name!r}; registered "
            f"{registry.name}{'es' if registry.name.endswith('s') else 's'}: "
            f"{', '.join(registered_names(registry)) or '(none)'}"
        )
    return cls


def build(registry: Registry, cfg: Mapping[str, Any], where: str = "", **extra: Any) -> Any:
    """Build a component from ``{type: Name, ...}``; ``extra`` fills arguments the config omits."""
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ConfigError(f"{where or registry.name}: expected a mapping with a 'type' key, got {cfg!r}")
    args = dict(cfg)
    cls = lookup(registry, args.pop("type"), where)
    if registry.name in CHECKED:  # model parts are checked when the model section is validated
        check_arguments(cls, args, where or registry.name)
    for k, v in extra.items():
        args.setdefault(k, v)
    return cls(**args)


def check_arguments(cls: type, args: Mapping[str, Any], where: str) -> None:
    """Each argument is one the constructor takes, of its annotated type and in the range the class
    states in ``ARG_RANGES`` (``{name: {ge|gt|le|choices: ...}}``): one line naming the key."""
    import inspect
    import typing

    from .config import _hint_name, _range_problem, _suggest, _type_ok

    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    for k, v in args.items():
        if k not in params:
            raise ConfigError(f"{where}.{k}: {cls.__name__} has no argument {k!r}{_suggest(k, params)}; it takes: "
                              f"{', '.join(params)}")
        if not _type_ok(v, hints.get(k, Any)):
            raise ConfigError(f"{where}.{k}: must be {_hint_name(hints[k])}, got {v!r} ({cls.__name__})")
        problem = _range_problem(v, getattr(cls, "ARG_RANGES", {}).get(k, {}))
        if problem:
            raise ConfigError(f"{where}.{k}: {problem}, got {v!r} ({cls.__name__})")
