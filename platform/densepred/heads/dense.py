"""Dense regression head (depth, surface normals, boundary logits): the HRNetV2 head of the
multi-task literature (Vandenhende et al.'s ``HighResolutionHead``): concatenate all branches at 1/4
resolution, 1x1 conv + BN + ReLU, 1x1 conv to ``out_channels``."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..backbones.hrnet import sequential_on_branches
from ..errors import ConfigError
from ..registry import HEADS


@HEADS.register_module()
class DenseHead(nn.Module):
    """``last_layer``: 1x1 conv + BN + ReLU + 1x1 conv to ``out_channels`` maps ``(N, C, H/4, W/4)``
    (1 for depth, 3 for normals, 1 for boundary logits). Raw outputs: the task activates them and
    upsamples them to the label size.

    Given several branches (backbone ``aggregation`` unset) branches 2.. are upsampled bilinearly
    (``align_corners``) to branch 1 and concatenated first; given one feature (``aggregation: v2``)
    it maps that. Channels come from the backbone. ``out_channels: null`` follows the task.
    """

    def __init__(self, in_channels: list[int] | int, out_channels: Optional[int] = None, align_corners: bool = False,
                 bn_momentum: float = 0.1, kernel_size: int = 1):
        super().__init__()
        if out_channels is None:
            raise ConfigError("DenseHead: out_channels is null (it follows the task: 1 depth, 3 normals, 1 boundary); "
                              "build the model from a task file, or give it")
        if not isinstance(out_channels, int) or isinstance(out_channels, bool) or out_channels < 1:
            raise ConfigError(f"DenseHead: out_channels must be a positive integer, got {out_channels!r}")
        if kernel_size not in (1, 3):
            raise ConfigError(f"DenseHead: kernel_size must be 1 or 3, got {kernel_size!r}")
        c = sum(in_channels) if isinstance(in_channels, (list, tuple)) else int(in_channels)
        self.align_corners = bool(align_corners)
        self.last_layer = nn.Sequential(
            nn.Conv2d(c, c, 1, 1, 0),
            nn.BatchNorm2d(c, momentum=bn_momentum),
            nn.ReLU(inplace=False),
            nn.Conv2d(c, out_channels, kernel_size, 1, kernel_size // 2),
        )

    #: given the branches, it computes the concat-then-conv with the first conv folded in first
    folds_branches = True

    def forward(self, feats: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        feats = [feats] if isinstance(feats, torch.Tensor) else list(feats)
        return sequential_on_branches(self.last_layer, feats, self.align_corners)
