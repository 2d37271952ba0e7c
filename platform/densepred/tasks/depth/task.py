"""``DepthTask``: monocular depth in metres from a dense layout (NYUD-v2 ``depth/*.npy``): L1 or
log-L1 loss on measured pixels, RMSE / abs-rel / δ<1.25 / log-RMSE over the validation split at
full resolution, colour-map pictures with a scale bar, ``.npy`` predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ...errors import ConfigError, DataError
from ...registry import TASKS
from ..dense.base_task import DenseTask
from ..dense.targets import DenseTarget
from .loss import DepthLoss  # noqa: F401  (registers the loss)
from .metric import LOWER_IS_BETTER, METRIC_NAMES, DepthMetric
from .visualize import depth_picture, depth_range


@TASKS.register_module()
class DepthTask(DenseTask):
    """Depth regression head ``depth`` (one map); see the module docstring."""

    kind = "depth"
    default_head = "depth"
    out_channels = 1
    default_loss = {"type": "DepthLoss", "mode": "l1"}
    primary_metric = "rmse"
    greater_is_better = False
    metric_names = METRIC_NAMES
    lower_is_better = LOWER_IS_BETTER
    task_keys = DenseTask.task_keys + ("rescale_with_zoom",)
    pred_folder, pred_suffix = "depth", ".npy"

    def make_target(self, spec: Any, section: Mapping[str, Any]) -> DenseTarget:
        """``task.rescale_with_zoom: true`` divides depth by the random zoom (the MTL survey's NYUD
        augmentation: a zoomed-in object looks closer); false keeps the measured metres."""
        value = section.get("rescale_with_zoom", False)
        if not isinstance(value, bool):
            raise ConfigError(f"{self._where('task.rescale_with_zoom')}: task.rescale_with_zoom must be true or "
                              f"false, got {value!r}")
        return DenseTarget(spec.name, spec, rescale_depth=value)

    def activate(self, out: torch.Tensor) -> torch.Tensor:
        return out.clamp(min=0.0)

    def new_metric(self) -> DepthMetric:
        return DepthMetric()

    def visualize(self, image: np.ndarray, array: np.ndarray) -> np.ndarray:
        return depth_picture(array)

    def visualize_pair(self, image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both in the ground truth's metres scale, so that colours compare."""
        scale = depth_range(gt)
        return depth_picture(gt, scale), depth_picture(pred, scale)

    def write_prediction(self, path: Path, pred: np.ndarray) -> None:
        np.save(path, pred.astype(np.float32))

    def read_prediction(self, path: Path) -> np.ndarray:
        try:
            pred = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable .npy depth map ({e})") from None
        if pred.ndim != 2:
            raise DataError(f"{path}: a depth prediction is an (H, W) array of metres, got shape {pred.shape}")
        return pred.astype(np.float32)

    def metric_notes(self) -> list[str]:
        return ["(pixel-wise over the measured pixels of the split; rmse and log_rmse in metres / log metres)"]
