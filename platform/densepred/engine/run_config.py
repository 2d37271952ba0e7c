"""The config a run was started with (``config.yaml`` in the run folder) and what a re-run may change.

Re-running a run name continues it. If the config differs, the differing keys are printed; only
the keys below may change silently, anything else needs ``--resume --allow-changes``, and a
different task or model is never continued (its checkpoints cannot load).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from ..atomicfile import write_text_atomic
from ..config import flatten
from ..errors import ConfigError

CONFIG_FILE = "config.yaml"

# Keys (or key prefixes) that change how long or how verbosely a run goes, not what it learns.
SAFE_TO_CHANGE = ("train.epochs", "train.iters", "train.max_iters", "train.log_interval",
                  "train.keep_checkpoints", "train.checkpoint_interval", "evaluation.interval",
                  "data.loader_workers", "data.val_batch_size", "ray", "work_dir", "run_name", "tracking")
# Keys that define what the checkpoints are: never changed within one run.
FIXED = ("task.type", "model")


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every key that differs; a missing key reads as None."""
    a, b = flatten(old), flatten(new)
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def describe(diff: list[tuple[str, Any, Any]], limit: int = 4) -> str:
    shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff[:limit])
    return shown + (f"; and {len(diff) - limit} more" if len(diff) > limit else "")


def read_run_config(run_dir: Path) -> dict | None:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def check_rerun(run_dir: Path, cfg: Mapping[str, Any], resume: bool, allow_changes: bool) -> list[tuple[str, Any, Any]]:
    """Compare ``cfg`` with the config the run in ``run_dir`` was started with; returns the changes
    that are accepted, raises ConfigError for those that are not."""
    old = read_run_config(run_dir)
    if old is None:
        return []
    diff = config_diff(old, cfg)
    fixed = sorted((d for d in diff if _under(d[0], FIXED)), key=lambda d: d[0] != "task.type")  # task first
    name = cfg.get("run_name")
    if fixed:
        raise ConfigError(f"run '{name}' in {run_dir} is a run of another task or model ({describe(fixed, 2)}); "
                          "its checkpoints cannot continue this config: use --set run_name=NEW")
    unsafe = [d for d in diff if not _under(d[0], SAFE_TO_CHANGE)]
    if unsafe and not (resume and allow_changes):
        raise ConfigError(f"run '{name}' in {run_dir} was started with another config ({describe(unsafe)}); "
                          "to continue it with these changes add --resume --allow-changes, to start a new "
                          "run use --set run_name=NEW")
    return diff


def write_run_config(run_dir: Path, cfg: Mapping[str, Any]) -> None:
    """Save the resolved config the run uses now (it is what the next re-run is compared with)."""
    write_text_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(dict(cfg), sort_keys=False))


def backbone_label(cfg: Mapping[str, Any]) -> str:
    """A short name of a config's backbone: ``HRNet w32``, ``HRNet w16``, ``ResNet 50``, ``StackedHourglass 2``."""
    bb = ((cfg.get("model") or {}).get("backbone") or {}) if isinstance(cfg, Mapping) else {}
    if not isinstance(bb, Mapping) or not bb.get("type"):
        return "?"
    size = bb.get("arch") or (f"w{bb['width']}" if bb.get("width") else None) or bb.get("depth") \
        or bb.get("nstack")
    return f"{bb['type']} {size}" if size is not None else str(bb["type"])
