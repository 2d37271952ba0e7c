"""Person mask IoU of top-down crops, on the mask grid (heatmap resolution)."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ...registry import METRICS

METRIC_NAMES = ("mIoU", "pixel_IoU")


@METRICS.register_module()
class PersonMaskIoU:
    """Accumulates per-person IoU of ``probability > thr`` against ``target > thr``.

    ``mIoU`` is the mean per-person IoU (a person whose prediction and target are both empty scores
    1); ``pixel_IoU`` is the summed intersection over the summed union of all persons. Persons with
    weight 0 (no ground-truth mask, faulty sample) are skipped.
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        self.ious: list[float] = []
        self.intersection = 0
        self.union = 0

    def process(self, probs: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Add a batch: ``probs`` and ``target`` ``(N, 1, h, w)`` or ``(N, h, w)``, ``weight (N,)``;
        returns each person's IoU (NaN where skipped)."""
        n = len(probs)
        pred = np.asarray(probs).reshape(n, -1) > self.threshold
        gt = np.asarray(target).reshape(n, -1) > self.threshold
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {np.shape(probs)} and target {np.shape(target)} differ in shape")
        inter = (pred & gt).sum(1)
        union = (pred | gt).sum(1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        used = np.asarray(weight).reshape(n) > 0
        self.ious += iou[used].tolist()
        self.intersection += int(inter[used].sum())
        self.union += int(union[used].sum())
        return np.where(used, iou, np.nan)

    def compute(self) -> dict[str, float]:
        """``mIoU``, ``pixel_IoU`` (NaN without any scored person) and ``persons`` scored."""
        if not self.ious:
            return {"mIoU": math.nan, "pixel_IoU": math.nan, "persons": 0.0}
        pixel = self.intersection / self.union if self.union else 1.0
        return {"mIoU": float(np.mean(self.ious)), "pixel_IoU": float(pixel), "persons": float(len(self.ious))}


def format_table(stats: Mapping[str, float], title: str = "Person mask evaluation") -> str:
    """A short text table of the mask metrics."""
    lines = [title, f"{'metric':12s} {'value':>8s}", "-" * 21]
    for name in METRIC_NAMES:
        v = stats.get(name, math.nan)
        lines.append(f"{name:12s} {v:8.4f}")
    for name in ("persons", "faults"):
        if name in stats:
            lines.append(f"{name:12s} {int(stats[name]):8d}")
    return "\n".join(lines)
