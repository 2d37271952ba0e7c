"""Surface normal metrics over every pixel with a ground-truth normal (a non-zero vector), in
degrees, as the MTL literature reports them (ASTMT ``eval_normals``): the angle between the
normalised prediction and the ground truth,

- ``mean_angle``, ``median_angle``, ``rmse_angle`` (lower is better);
- ``within_11_25``, ``within_22_5``, ``within_30``: percent of pixels within that angle (higher is better).

The angle is 2 atan2(|p - g|, |p + g|) (equal to arccos(p . g) for unit vectors, exact near 0);
a zero prediction counts as 90 degrees. The median comes from a histogram of 0.01-degree bins
(memory stays bounded over the split; exact to 0.005 degrees).
"""
from __future__ import annotations

import math

import numpy as np

from ..dense.decode import unit_or_zero

METRIC_NAMES = ("mean_angle", "median_angle", "rmse_angle", "within_11_25", "within_22_5", "within_30")
LOWER_IS_BETTER = frozenset({"mean_angle", "median_angle", "rmse_angle"})
THRESHOLDS = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}
BIN = 0.01   # degrees per histogram bin of the median


def angles(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Angles (degrees) between the normalised ``pred`` and ``gt`` vectors at the valid pixels."""
    valid = np.abs(gt).sum(axis=-1) > 0
    p = unit_or_zero(pred[valid].astype(np.float64))
    g = unit_or_zero(gt[valid].astype(np.float64))
    zero = np.abs(p).sum(axis=-1) == 0
    theta = np.degrees(2.0 * np.arctan2(np.linalg.norm(p - g, axis=-1), np.linalg.norm(p + g, axis=-1)))
    theta[zero] = 90.0
    return theta


class NormalsMetric:
    """Accumulates angle sums, threshold counts and a histogram image by image."""

    def __init__(self) -> None:
        self.n = 0
        self.total = self.squares = 0.0
        self.within = {k: 0 for k in THRESHOLDS}
        self.hist = np.zeros(int(round(180.0 / BIN)) + 1, np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        if pred.shape != gt.shape:
            raise ValueError(f"normals prediction {pred.shape} and ground truth {gt.shape} differ")
        theta = angles(pred, gt)
        self.n += int(theta.size)
        self.total += float(theta.sum())
        self.squares += float((theta ** 2).sum())
        for k, limit in THRESHOLDS.items():
            self.within[k] += int((theta < limit).sum())
        self.hist += np.bincount(np.clip(np.round(theta / BIN).astype(np.int64), 0, len(self.hist) - 1),
                                 minlength=len(self.hist))

    def median(self) -> float:
        cum = np.cumsum(self.hist)
        return float(np.searchsorted(cum, (self.n + 1) / 2.0)) * BIN

    def summary(self) -> dict[str, float]:
        if self.n == 0:
            return {name: float("nan") for name in METRIC_NAMES}
        out = {"mean_angle": self.total / self.n, "median_angle": self.median(),
               "rmse_angle": math.sqrt(self.squares / self.n)}
        out.update({k: 100.0 * v / self.n for k, v in self.within.items()})
        return out
