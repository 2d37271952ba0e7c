"""The Task interface: what the engine needs from a task, and nothing about Ray or training loops."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn
from torch.utils.data import Dataset


class Task:
    """A task bundles its datasets, loss, inference and evaluation around a ``DensePredictor``.

    Subclasses register in ``TASKS`` and are built from the ``task`` section of a config, with the
    whole config passed as ``cfg``.
    """

    #: name of the metric used to pick the best checkpoint, and whether larger is better
    primary_metric: str = "score"
    greater_is_better: bool = True
    #: every metric the task's evaluation reports (sweeps may optimise any of them)
    metric_names: tuple[str, ...] = ()

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = cfg

    def validate(self) -> None:
        """Parse the config sections the task owns; raise ConfigError on mistakes."""

    def build_model(self) -> nn.Module:
        from ..model import build_model

        return build_model(self.cfg)

    def task_section(self, allowed: tuple[str, ...] = ("type", "loss")) -> dict:
        """The ``task`` mapping of the config, with unknown keys rejected."""
        from ..errors import ConfigError

        section = dict(self.cfg.get("task") or {})
        unknown = set(section) - set(allowed)
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)} in 'task' for {type(self).__name__}; "
                              f"allowed: {', '.join(allowed)}")
        return section

    def preflight(self) -> None:
        """Cheap checks on the driver before any worker starts (e.g. the data root exists)."""
        from ..errors import DataError

        root = self.cfg.get("data_root")
        if root and not Path(root).is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root (--set data_root=...) "
                            "or make the demo sets with `platform data demo`")

    def cost_input_size(self) -> tuple[int, int]:
        """``(H, W)`` of one network input, the size at which a model's cost (GFLOPs, latency) is
        measured (see ``densepred.cost``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define cost_input_size()")

    def build_dataset(self, split: str) -> Dataset:
        """``split`` is ``train`` (augmented) or ``val``."""
        raise NotImplementedError

    def collate(self, samples: list[dict]) -> dict:
        return torch.utils.data.default_collate(samples)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None) -> dict[str, float]:
        """Run inference on the validation split and compute the task's metrics."""
        raise NotImplementedError


def build_task(cfg: Mapping[str, Any]) -> Task:
    """Build the task named in ``cfg['task']['type']``."""
    from ..errors import ConfigError
    from ..registry import TASKS, lookup
    from . import pose, segmentation  # noqa: F401  (registers tasks)

    section = cfg.get("task") or {}
    if "type" not in section:
        raise ConfigError(f"{getattr(cfg, 'source', 'config')}: no task.type set (e.g. task: {{type: PoseTask}})")
    task = lookup(TASKS, section["type"], "task.type")(cfg)
    task.validate()
    return task
