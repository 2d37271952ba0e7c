"""``NormalsTask``: surface normals from a dense layout (NYUD-v2 ``normals/``, PASCAL-Context
``normals_distill/``): unit vectors predicted by a 3-channel head (normalised), L1 or cosine loss,
angular-error metrics over the validation split at full resolution, RGB pictures and PNG files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...registry import TASKS
from ..dense.base_task import DenseTask
from .loss import NormalsLoss  # noqa: F401  (registers the loss)
from .metric import LOWER_IS_BETTER, METRIC_NAMES, NormalsMetric
from .visualize import normals_rgb, read_normals_png, write_normals_png


@TASKS.register_module()
class NormalsTask(DenseTask):
    """Normals head ``normals`` (three maps: x, y, z); see the module docstring."""

    kind = "normals"
    default_head = "normals"
    out_channels = 3
    default_loss = {"type": "NormalsLoss", "mode": "l1"}
    primary_metric = "mean_angle"
    greater_is_better = False
    metric_names = METRIC_NAMES
    lower_is_better = LOWER_IS_BETTER
    pred_folder, pred_suffix = "normals", ".png"

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        return F.normalize(out, dim=1, eps=1e-12)

    def unflip(self, out: torch.Tensor) -> torch.Tensor:
        """Mirrored back, and the x component negated (a mirror turns right-facing into left-facing)."""
        back = out.flip(3).clone()
        back[:, 0] = -back[:, 0]
        return back

    def to_prediction(self, out: torch.Tensor) -> np.ndarray:
        return F.normalize(out, dim=1, eps=1e-12)[0].float().cpu().numpy().transpose(1, 2, 0)

    def new_metric(self) -> NormalsMetric:
        return NormalsMetric()

    def visualize(self, image: np.ndarray, array: np.ndarray) -> np.ndarray:
        return normals_rgb(array)

    def write_prediction(self, path: Path, pred: np.ndarray) -> None:
        write_normals_png(path, pred)

    def read_prediction(self, path: Path) -> np.ndarray:
        return read_normals_png(path)

    def metric_notes(self) -> list[str]:
        return ["(angles in degrees over the pixels with a ground-truth normal; within_*: percent of them)"]
