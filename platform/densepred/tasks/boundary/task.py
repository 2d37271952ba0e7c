"""``BoundaryTask``: semantic boundaries from a dense layout (NYUD-v2 ``edge/``, PASCAL-Context
boundaries of its label maps): one logit map, class-balanced BCE, ODS F-measure with a pixel
tolerance over the validation split at full resolution, overlay pictures, probability PNGs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...config import setting
from ...registry import TASKS
from ..dense.base_task import DenseTask
from ..dense.settings import DenseEval
from .loss import BoundaryBCE  # noqa: F401  (registers the loss)
from .metric import METRIC_NAMES, BoundaryF
from .visualize import boundary_overlay, read_probability_png, write_probability_png

#: seism's / BSDS's default maxDist, for a layout that names none
DEFAULT_TOLERANCE = 0.0075


@dataclass
class BoundaryEval(DenseEval):
    """``evaluation`` of a boundary task: the matching tolerance (a fraction of the image diagonal;
    null: the layout's) and the number of thresholds of the ODS search."""

    tolerance: Optional[float] = setting(None, gt=0, le=0.5)
    thresholds: int = setting(99, ge=1, le=1000)


@TASKS.register_module()
class BoundaryTask(DenseTask):
    """Boundary head ``boundary`` (one logit map); see the module docstring."""

    kind = "boundary"
    default_head = "boundary"
    out_channels = 1
    default_loss = {"type": "BoundaryBCE", "pos_weight": 0.95}
    primary_metric = "odsF"
    greater_is_better = True
    metric_names = METRIC_NAMES
    eval_section = BoundaryEval
    pred_folder, pred_suffix = "boundary", ".png"

    @property
    def tolerance(self) -> float:
        return float(self.eval_cfg.tolerance or self.layout.boundary_tolerance or DEFAULT_TOLERANCE)

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    def new_metric(self) -> BoundaryF:
        return BoundaryF(self.tolerance, self.eval_cfg.thresholds)

    def visualize(self, image: np.ndarray, array: np.ndarray) -> np.ndarray:
        return boundary_overlay(image, array)

    def write_prediction(self, path: Path, pred: np.ndarray) -> None:
        write_probability_png(path, pred)

    def read_prediction(self, path: Path) -> np.ndarray:
        return read_probability_png(path)

    def metric_notes(self) -> list[str]:
        return [f"(ODS over {self.eval_cfg.thresholds} thresholds; a boundary pixel matches within "
                f"{self.tolerance:g} x the image diagonal, by distance, not seism's one-to-one matching)"]
