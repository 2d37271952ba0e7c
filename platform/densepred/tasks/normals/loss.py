"""Surface normal losses on the head output upsampled (bilinear) to the target size and normalised
to unit length, over pixels with a normal (non-zero target): per-component L1 (the MTL survey's
``NormalsLoss(normalize=True, norm=1)``) or cosine (1 - cos of the angle)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...registry import LOSSES

MODES = ("l1", "cosine")


@LOSSES.register_module()
class NormalsLoss(nn.Module):
    """``mode: l1``: mean |n_pred - n| over the components of valid pixels; ``cosine``: mean of
    1 - n_pred . n over valid pixels."""

    ARG_RANGES = {"mode": {"choices": MODES}}

    def __init__(self, mode: str = "l1", align_corners: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"task.loss.mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.align_corners = mode, bool(align_corners)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = F.interpolate(pred.float(), size=target.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        pred = F.normalize(pred, dim=1, eps=1e-12)
        valid = target.abs().sum(dim=1) > 0            # (N, H, W)
        if not bool(valid.any()):
            return pred.sum() * 0.0
        p, t = pred.permute(0, 2, 3, 1)[valid], target.float().permute(0, 2, 3, 1)[valid]   # (P, 3)
        if self.mode == "cosine":
            return (1.0 - (p * t).sum(dim=1)).mean()
        return (p - t).abs().mean()
