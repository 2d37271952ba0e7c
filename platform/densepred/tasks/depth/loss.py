"""Depth losses on the head output upsampled (bilinear) to the target size, over pixels with a
measurement (target > 0): L1 in metres (the MTL survey's NYUD recipe) or L1 of the logarithms."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...registry import LOSSES

MODES = ("l1", "log_l1")


@LOSSES.register_module()
class DepthLoss(nn.Module):
    """``mode: l1`` |pred - depth| or ``log_l1`` |log pred - log depth| (pred clamped to ``min_depth``),
    averaged over the measured pixels of the batch."""

    ARG_RANGES = {"mode": {"choices": MODES}, "min_depth": {"gt": 0}}

    def __init__(self, mode: str = "l1", min_depth: float = 1e-3, align_corners: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"task.loss.mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.min_depth, self.align_corners = mode, float(min_depth), bool(align_corners)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = F.interpolate(pred.float(), size=target.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        valid = target > 0
        if not bool(valid.any()):
            return pred.sum() * 0.0   # keeps the graph (and DDP) intact on a batch without depth
        p, t = pred[valid], target[valid].float()
        if self.mode == "log_l1":
            return (torch.log(p.clamp(min=self.min_depth)) - torch.log(t)).abs().mean()
        return (p - t).abs().mean()
