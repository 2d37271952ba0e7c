"""Checks on the driver before any Ray worker starts.

Everything a worker would otherwise find only after Ray started it (and then retried it) is tried
here first on throw-away objects: the task and its datasets' files, the optimizer and schedule,
the model and the initial weights. Each failure is one ``PlatformError`` line naming the key, the
file that set it and what to do.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, ConfigError
from ..tasks.base import Task, build_task
from .optim import build_optimizer, build_scheduler


def _where(cfg: Mapping[str, Any], key: str) -> str:
    return cfg.where(key) if hasattr(cfg, "where") else "config"


def check_optimization(cfg: Mapping[str, Any]) -> None:
    """Build the optimizer and the schedule on one dummy parameter: unknown types, unknown or
    ill-typed arguments and impossible values (lr <= 0) fail here, not in every worker."""
    optim_cfg = dict(cfg.get("optimizer") or {"type": "Adam", "lr": 1e-3})
    lr = optim_cfg.get("lr", 1e-3)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"{_where(cfg, 'optimizer.lr')}: optimizer.lr must be a number > 0, got {lr!r}")
    try:
        optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], optim_cfg)
    except ConfigError as e:
        raise ConfigError(f"{_where(cfg, _culprit(cfg, 'optimizer', e))}: {e}") from None
    try:
        build_scheduler(optimizer, cfg.get("scheduler") or {}, 100)
    except ConfigError as e:
        raise ConfigError(f"{_where(cfg, _culprit(cfg, 'scheduler', e))}: {e}") from None


def _culprit(cfg: Mapping[str, Any], section: str, e: ConfigError) -> str:
    """The key an optimizer/schedule error is about, so that the message names the file or --set
    that set it: ``type`` when the message says so, else the first key of the section that the
    message quotes (e.g. torch's "unexpected keyword argument 'momentun'"), else the section."""
    text = str(e)
    if text.startswith(f"{section}.type "):
        return f"{section}.type"
    named = re.match(rf"{section}\.(\w+):", text)  # the argument checks name their key first
    if named:
        return f"{section}.{named.group(1)}"
    keys = cfg.get(section) or {}
    named = [k for k in re.findall(r"'(\w+)'", text) if k in keys]
    return f"{section}.{named[0]}" if named else section


def check_initial_weights(task: Task, path: str) -> str:
    """``train.load_from`` is a readable checkpoint of which at least some tensors fit the model and
    whose backbone tensors have this model's shapes (heads may differ: they are trained anew);
    returns the load summary."""
    model = task.build_model()
    try:
        report = task.load_initial_weights(model, path)
    except CheckpointError as e:
        raise CheckpointError(f"train.load_from: {e}") from None
    if report.loaded == 0:
        raise CheckpointError(f"train.load_from: no tensor of {path} fits this model ({report.summary()}); "
                              "check that the checkpoint is of this architecture")
    other = [(k, a, b) for k, a, b in report.mismatched if k.startswith("backbone.")]
    if other:
        k, a, b = other[0]
        raise CheckpointError(f"train.load_from: {path} is a checkpoint of another backbone: {len(other)} tensors "
                              f"have other shapes (e.g. {k} checkpoint {list(a)} vs model {list(b)}); check "
                              "model.backbone (arch, width, stages) against the checkpoint, or use one of this "
                              "architecture")
    return report.summary()


def check_task_config(cfg: Mapping[str, Any], build_model: bool = True) -> Task:
    """The task, its optimizer and schedule and (optionally) its model build from ``cfg``; no
    file is looked at. Returns the task."""
    task = build_task(cfg)
    check_optimization(cfg)
    if build_model:
        task.build_model()  # the architecture builds (sizes, presets) before workers try
    return task


def preflight(cfg: Mapping[str, Any], load_from: str | None) -> Task:
    """Every check that does not need Ray; returns the built task."""
    task = check_task_config(cfg, build_model=not load_from)
    task.preflight()
    if load_from:
        check_initial_weights(task, load_from)
    return task
