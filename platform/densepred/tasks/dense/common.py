"""What dense tasks and the segmentation task's dense formats share about a config: which layout
target a task reads, what makes two tasks read the same training samples, and the model section
their head lives in."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ...errors import ConfigError
from .augment import geometry_key
from .layout import DenseLayout, TargetSpec


def resolve_target(layout: DenseLayout, name: Optional[str], task_kind: str, target_kind: str,
                   where: Callable[[str], str]) -> TargetSpec:
    """The layout target a task reads: ``data.target``, else the layout's default for ``task_kind``;
    it must be of ``target_kind``."""
    key = "data.target"
    chosen = name or layout.default_target(task_kind)
    if chosen is None:
        raise ConfigError(f"{where(key)}: the {layout.name} layout has no default {task_kind} target; set {key} "
                          f"to one of {', '.join(layout.targets)}")
    spec = layout.targets.get(chosen)
    if spec is None:
        raise ConfigError(f"{where(key)}: {key} {chosen!r} is not a target of the {layout.name} layout; "
                          f"its targets: {', '.join(layout.targets)}")
    if spec.kind != target_kind:
        fits = [n for n, t in layout.targets.items() if t.kind == target_kind]
        raise ConfigError(f"{where(key)}: {key} {chosen!r} is a {spec.kind} target, but this task reads {target_kind} "
                          f"targets ({', '.join(fits) or 'none in this layout'})")
    return spec


def dense_input_key(fmt: str, data_root: str, train_split: Optional[str], augment: Any, seed: int) -> tuple:
    """Equal for tasks that read the same training samples of a dense layout (same files, split,
    crops and seed), whatever target each reads: one dataset can then feed them all."""
    return ("dense", fmt, str(Path(data_root).resolve()), train_split, geometry_key(augment), int(seed))


def model_section(cfg: Mapping[str, Any]) -> tuple[Optional[Mapping[str, Any]], Callable[[str], str]]:
    """The model a task's head lives in: the config's own, or the multi-task run's for a member,
    with the ``where`` of the file that holds it."""
    if isinstance(cfg.get("model"), Mapping):
        return cfg["model"], getattr(cfg, "where", lambda _k: "config")
    parent = getattr(cfg, "parent", None)
    if isinstance(parent, Mapping) and isinstance(parent.get("model"), Mapping):
        return parent["model"], getattr(parent, "where", lambda _k: "config")
    return None, getattr(cfg, "where", lambda _k: "config")


def check_head_value(cfg: Mapping[str, Any], head: str, key: str, expected: int, meaning: str) -> None:
    """``model.heads.<head>.<key>`` is null (it follows the task) or ``expected``."""
    model, where = model_section(cfg)
    section = ((model or {}).get("heads") or {}).get(head)
    if not isinstance(section, Mapping):
        return
    given, path = section.get(key), f"model.heads.{head}.{key}"
    if given is not None and given != expected:
        raise ConfigError(f"{where(path)}: {path} is {given} but {meaning} needs {expected}; set it to null "
                          f"(it then follows the task) or to {expected}")
