"""Depth metrics over every measured pixel of the split (pixel-wise, as the MTL survey evaluates
NYUD-v2; ground truth 0 = no measurement):

- ``rmse``: sqrt(mean (pred - gt)^2), metres (lower is better);
- ``abs_rel``: mean |pred - gt| / gt (lower is better);
- ``delta1``: share of pixels with max(pred / gt, gt / pred) < 1.25 (higher is better);
- ``log_rmse``: sqrt(mean (log pred - log gt)^2) (lower is better).

Predictions below ``min_depth`` (1 mm) count as ``min_depth``.
"""
from __future__ import annotations

import math

import numpy as np

METRIC_NAMES = ("rmse", "abs_rel", "delta1", "log_rmse")
LOWER_IS_BETTER = frozenset({"rmse", "abs_rel", "log_rmse"})


class DepthMetric:
    """Accumulates the sums of the metrics image by image (bounded memory)."""

    def __init__(self, min_depth: float = 1e-3):
        self.min_depth = float(min_depth)
        self.n = 0
        self.sq = self.abs_rel = self.log_sq = 0.0
        self.delta1 = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        valid = gt > 0
        if pred.shape != gt.shape:
            raise ValueError(f"depth prediction {pred.shape} and ground truth {gt.shape} differ")
        p = np.maximum(pred[valid].astype(np.float64), self.min_depth)
        t = gt[valid].astype(np.float64)
        self.n += int(t.size)
        self.sq += float(((p - t) ** 2).sum())
        self.abs_rel += float((np.abs(p - t) / t).sum())
        self.log_sq += float(((np.log(p) - np.log(t)) ** 2).sum())
        self.delta1 += int((np.maximum(p / t, t / p) < 1.25).sum())

    def summary(self) -> dict[str, float]:
        if self.n == 0:
            return {name: float("nan") for name in METRIC_NAMES}
        return {"rmse": math.sqrt(self.sq / self.n), "abs_rel": self.abs_rel / self.n,
                "delta1": self.delta1 / self.n, "log_rmse": math.sqrt(self.log_sq / self.n)}
