"""Boundary loss: class-balanced binary cross-entropy on logits upsampled (bilinear) to the target
size (HED's, as the MTL survey's ``BalancedCrossEntropyLoss``): boundary pixels weighted by
``pos_weight``, the others by 1 - ``pos_weight``; ``pos_weight: null`` weighs by the batch's share
of non-boundary pixels (HED). Padding (255) is not scored."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import LOSSES
from ..dense.targets import BOUNDARY_IGNORE


@LOSSES.register_module()
class BoundaryBCE(nn.Module):
    """(w Σ_boundary bce + (1 - w) Σ_other bce) / scored pixels."""

    ARG_RANGES = {"pos_weight": {"gt": 0, "le": 1}}

    def __init__(self, pos_weight: Optional[float] = 0.95, align_corners: bool = False):
        super().__init__()
        self.pos_weight = pos_weight
        self.align_corners = bool(align_corners)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.reshape(target.shape[0], 1, *target.shape[-2:])
        logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear",
                               align_corners=self.align_corners)
        scored = target != BOUNDARY_IGNORE
        if not bool(scored.any()):
            return logits.sum() * 0.0
        positive = (target == 1) & scored
        bce = F.binary_cross_entropy_with_logits(logits, positive.float(), reduction="none")
        n = scored.sum()
        w = self.pos_weight if self.pos_weight is not None else (scored & ~positive).sum() / n
        total = w * bce[positive].sum() + (1.0 - w) * bce[scored & ~positive].sum()
        return total / n
