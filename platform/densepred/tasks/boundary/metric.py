"""Boundary F-measure at the optimal dataset scale (ODS): one threshold for the whole split, the one
with the best F = 2PR / (P + R) over ``thresholds`` evenly spaced in (0, 1) (99: 0.01..0.99, the
seism parameters of the MTL papers).

Matching: a predicted boundary pixel is correct when a ground-truth boundary pixel lies within the
tolerance (a disk of radius ``tolerance`` x image diagonal, in pixels: seism's maxDist, 0.011 for
NYUD-v2 and 0.0075 for PASCAL-Context as the MTL papers set it); a ground-truth pixel is recalled
when a predicted one lies within it. This is a distance match, not seism/BSDS's one-to-one
(bipartite) assignment, and predictions are not thinned first: thick predicted boundaries are not
penalised, so the figure is close to but not the same as published odsF. Pixels stored as 255
(padding, void) are not scored.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..dense.targets import BOUNDARY_IGNORE

METRIC_NAMES = ("odsF", "ods_precision", "ods_recall", "ods_threshold")


def disk(radius: float) -> np.ndarray:
    r = max(0, int(math.floor(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def counts_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For every threshold t_k, how many ``values`` are >= t_k."""
    above = np.searchsorted(thresholds, values.astype(np.float64), side="right")   # thresholds <= value
    per = np.bincount(above, minlength=len(thresholds) + 1)
    return np.cumsum(per[::-1])[::-1][1:]


class BoundaryF:
    """Accumulates, per threshold, the predicted and matched pixels on both sides over the split."""

    def __init__(self, tolerance: float, thresholds: int = 99):
        self.tolerance = float(tolerance)
        self.thresholds = np.arange(1, thresholds + 1, dtype=np.float64) / (thresholds + 1)
        k = len(self.thresholds)
        self.pred = np.zeros(k, np.int64)       # predicted boundary pixels
        self.pred_hit = np.zeros(k, np.int64)   # ... within the tolerance of the ground truth
        self.gt_hit = np.zeros(k, np.int64)     # ground-truth pixels with a prediction within the tolerance
        self.gt = 0

    def radius(self, shape: tuple[int, ...]) -> float:
        return self.tolerance * math.hypot(shape[0], shape[1])

    def update(self, prob: np.ndarray, gt: np.ndarray) -> None:
        """``prob``: (H, W) boundary probabilities; ``gt``: (H, W) 0/1 with 255 not scored."""
        if prob.shape != gt.shape:
            raise ValueError(f"boundary prediction {prob.shape} and ground truth {gt.shape} differ")
        scored = gt != BOUNDARY_IGNORE
        g = ((gt == 1) & scored).astype(np.uint8)
        kernel = disk(self.radius(gt.shape))
        near_gt = cv2.dilate(g, kernel) > 0
        p = np.where(scored, prob, 0.0).astype(np.float32)
        best_near = cv2.dilate(p, kernel)
        self.pred += counts_at_least(p[scored], self.thresholds)
        self.pred_hit += counts_at_least(p[scored & near_gt], self.thresholds)
        self.gt_hit += counts_at_least(best_near[g > 0], self.thresholds)
        self.gt += int(g.sum())

    def summary(self) -> dict[str, float]:
        if self.gt == 0:
            return {name: float("nan") for name in METRIC_NAMES}
        precision = np.where(self.pred > 0, self.pred_hit / np.maximum(self.pred, 1), 1.0)
        recall = self.gt_hit / self.gt
        f = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        k = int(np.argmax(f))
        return {"odsF": float(f[k]), "ods_precision": float(precision[k]), "ods_recall": float(recall[k]),
                "ods_threshold": float(self.thresholds[k])}
