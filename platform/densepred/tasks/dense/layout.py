"""Multi-target dataset layouts as data: ``configs/datasets/layouts/<name>.yaml`` says where a
benchmark keeps its images, split files and every dense target (segmentation, depth, normals,
boundaries, ...) and how each is stored. ``data.format: <name>`` selects one; the readers in
``decode.py`` turn the stored files into arrays.

A layout file::

    dataset: NYUD-v2                         # display name
    source: where the layout comes from
    images: {folder: images, suffix: .jpg}
    splits: {train: gt_sets/train.txt, val: gt_sets/val.txt}   # text files of stems, relative to data_root
    targets:
      <name>: {kind: label|depth|normals|boundary, folder: <folder or list>, suffixes: [.png, ...], ...}
    defaults: {segmentation: <target>, depth: <target>, normals: <target>, boundary: <target>}
    boundary_tolerance: 0.011                # boundary matching distance, a fraction of the image diagonal

Per target, besides kind/folder/suffixes (the first folder and suffix holding ``<stem><suffix>`` wins):
``offset`` (label: stored value = class id + offset, smaller values are void), ``void`` (stored label
values that are ignored), ``class_info`` (label: the class list's name in ``layouts/classes/``),
``threshold`` (label: two classes, value / 255 > threshold), ``empty_is_void`` (label: a map of
class 0 only is ignored entirely), ``parts_mat`` (label from Pascal-Part ``.mat`` files:
``person_class`` and part name -> class ``groups``), ``mat_key`` (boundary from the label map
stored under this key of a ``.mat`` file), ``valid_where`` (normals: kept only where the label map
``key`` of ``folder/<stem><suffix>`` holds one of ``labels``).
"""
from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from ...errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[4]
LAYOUT_DIR = PROJECT_ROOT / "configs" / "datasets" / "layouts"
CLASS_DIR = LAYOUT_DIR / "classes"

#: the file suffixes each target kind can be read from (see decode.py)
READABLE = {"label": (".png", ".mat"), "depth": (".npy",), "normals": (".npy", ".png"),
            "boundary": (".npy", ".png", ".mat")}
#: the task kinds a layout's ``defaults`` may name
TASK_KINDS = ("segmentation", "depth", "normals", "boundary")
TOP_KEYS = ("dataset", "source", "images", "splits", "targets", "defaults", "boundary_tolerance")
TARGET_KEYS = ("kind", "folder", "suffixes", "offset", "void", "class_info", "threshold", "empty_is_void",
               "parts_mat", "mat_key", "valid_where")


@dataclass(frozen=True)
class TargetSpec:
    """How one dense target of a layout is stored (see the module docstring)."""

    name: str
    kind: str
    folders: tuple[str, ...]
    suffixes: tuple[str, ...]
    offset: int = 0
    void: tuple[int, ...] = (255,)
    class_info: Optional[str] = None
    threshold: Optional[float] = None
    empty_is_void: bool = False
    parts_mat: Optional[Mapping[str, Any]] = None
    mat_key: Optional[str] = None
    valid_where: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class DenseLayout:
    """A validated layout file."""

    name: str
    dataset: str
    source: str
    image_folder: str
    image_suffix: str
    splits: Mapping[str, str]
    targets: Mapping[str, TargetSpec]
    defaults: Mapping[str, str] = field(default_factory=dict)
    boundary_tolerance: Optional[float] = None
    path: str = ""

    def default_target(self, task_kind: str) -> Optional[str]:
        return self.defaults.get(task_kind)

    def class_info_path(self, target: str) -> Optional[Path]:
        """The shipped class list of a label target, if the layout names one."""
        name = self.targets[target].class_info
        return CLASS_DIR / f"{name}.yaml" if name else None


def layout_names() -> tuple[str, ...]:
    """The shipped layouts (``data.format`` values besides the segmentation task's own)."""
    return tuple(sorted(p.stem for p in LAYOUT_DIR.glob("*.yaml")))


def load_layout(name: str) -> DenseLayout:
    """The shipped layout ``name``; ConfigError naming the file and key for a malformed one."""
    path = LAYOUT_DIR / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(str(name), layout_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"data.format: no dense layout named {name!r}{hint}; shipped: {', '.join(layout_names())}")
    return _load_cached(str(path))


@functools.lru_cache(maxsize=16)
def _load_cached(path: str) -> DenseLayout:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: cannot read the layout file ({' '.join(str(e).split())})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{p}: a layout file is a mapping with images, splits and targets")
    return parse_layout(raw, p.stem, str(p))


def _need(raw: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be a {kind.__name__}, got {value!r}")
    return value


def parse_layout(raw: Mapping[str, Any], name: str, where: str) -> DenseLayout:
    """Validate a layout mapping (``where`` names its file in errors)."""
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(TOP_KEYS)}")
    images = _need(raw, "images", where, dict)
    splits = _need(raw, "splits", where, dict)
    for split in ("train", "val"):
        if not isinstance(splits.get(split), str):
            raise ConfigError(f"{where}: splits.{split} must be the split file (relative to data_root)")
    targets = {n: _target(n, t, where) for n, t in _need(raw, "targets", where, dict).items()}
    defaults = dict(raw.get("defaults") or {})
    for kind, target in defaults.items():
        if kind not in TASK_KINDS or target not in targets:
            raise ConfigError(f"{where}: defaults.{kind}: {target!r} must map one of {', '.join(TASK_KINDS)} "
                              f"to a target ({', '.join(targets)})")
    tol = raw.get("boundary_tolerance")
    if tol is not None and not (isinstance(tol, (int, float)) and 0 < tol < 1):
        raise ConfigError(f"{where}: boundary_tolerance must be a fraction of the image diagonal in (0, 1), got {tol!r}")
    return DenseLayout(name, str(raw.get("dataset") or name), str(raw.get("source") or ""),
                       str(_need(images, "folder", f"{where}: images", str)),
                       str(_need(images, "suffix", f"{where}: images", str)),
                       {k: str(v) for k, v in splits.items()}, targets, defaults, tol, where)


def _target(name: str, raw: Any, where: str) -> TargetSpec:
    at = f"{where}: targets.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{at} must be a mapping with kind, folder and suffixes")
    unknown = sorted(set(raw) - set(TARGET_KEYS))
    if unknown:
        raise ConfigError(f"{at}: unknown key(s) {unknown}; allowed: {', '.join(TARGET_KEYS)}")
    kind = raw.get("kind")
    if kind not in READABLE:
        raise ConfigError(f"{at}.kind must be one of {', '.join(READABLE)}, got {kind!r}")
    folder = raw.get("folder")
    folders = (folder,) if isinstance(folder, str) else tuple(folder or ())
    suffixes = tuple(raw.get("suffixes") or ())
    if not folders or not all(isinstance(f, str) for f in folders):
        raise ConfigError(f"{at}.folder must be a folder (relative to data_root) or a list of them")
    bad = [s for s in suffixes if s not in READABLE[kind]]
    if not suffixes or bad:
        raise ConfigError(f"{at}.suffixes: a {kind} target is read from {', '.join(READABLE[kind])} files, got "
                          f"{list(suffixes)}")
    if ".mat" in suffixes and kind == "label" and not isinstance(raw.get("parts_mat"), Mapping):
        raise ConfigError(f"{at}: .mat label files need parts_mat (person_class, groups)")
    if ".mat" in suffixes and kind == "boundary" and not raw.get("mat_key"):
        raise ConfigError(f"{at}: .mat boundary files need mat_key (the label map's key)")
    return TargetSpec(name, kind, folders, suffixes, int(raw.get("offset") or 0),
                      tuple(int(v) for v in raw.get("void", (255,))), raw.get("class_info"), raw.get("threshold"),
                      bool(raw.get("empty_is_void", False)), raw.get("parts_mat"), raw.get("mat_key"),
                      raw.get("valid_where"))
