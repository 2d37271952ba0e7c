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
    for k, v in extra.items():
        args.setdefault(k, v)
    return cls(**args)
