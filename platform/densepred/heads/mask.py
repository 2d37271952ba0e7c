"""Person mask head: one foreground logit per pixel at 1/4 of the input."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.hrnet import concat_branches
from ..errors import ConfigError
from ..registry import HEADS


@HEADS.register_module()
class MaskHead(nn.Module):
    """``mask_layer``: 3x3 conv + BN + ReLU + 1x1 conv to one logit map ``(N, 1, H/4, W/4)``.

    Given several features (backbone ``aggregation`` unset), branches 2.. are upsampled bilinearly
    to branch 1 and concatenated first, as the HRNetV2 heads do. All parameters live under
    ``mask_layer`` so that a pose checkpoint's ``final_layer`` never maps onto this head.

    Args:
        in_channels: channels of the features the head receives (filled in from the backbone).
        hidden: channels of the 3x3 conv.
        align_corners: bilinear upsampling of branches 2.. (only with several features).
    """

    def __init__(self, in_channels: list[int] | int, hidden: int = 32, align_corners: bool = False):
        super().__init__()
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ConfigError(f"MaskHead: hidden must be a positive integer, got {hidden!r}")
        c = sum(in_channels) if isinstance(in_channels, (list, tuple)) else int(in_channels)
        self.align_corners = bool(align_corners)
        self.mask_layer = nn.Sequential(
            nn.Conv2d(c, hidden, 3, 1, 1, bias=False),  # BN follows: a bias would be redundant
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 1, 1, 0),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.mask_layer(concat_branches(list(feats), self.align_corners))
