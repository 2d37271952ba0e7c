"""HRNetV2 segmentation head: concatenate all branches at 1/4 resolution and classify."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import HEADS


@HEADS.register_module()
class HRNetV2SegHead(nn.Module):
    """Official ``last_layer``: 1x1 conv + BN + ReLU + 1x1 conv to classes.

    Branches 2-4 are upsampled bilinearly to branch 1 before the concat; the output logits stay at
    1/4 of the input resolution (upsampling to label size belongs to the task).
    """

    def __init__(self, in_channels: list[int], num_classes: int = 19, align_corners: bool = False,
                 bn_momentum: float = 0.01, kernel_size: int = 1):
        super().__init__()
        c = sum(in_channels)
        self.align_corners = align_corners
        self.last_layer = nn.Sequential(
            nn.Conv2d(c, c, 1, 1, 0),
            nn.BatchNorm2d(c, momentum=bn_momentum),
            nn.ReLU(inplace=False),
            nn.Conv2d(c, num_classes, kernel_size, 1, kernel_size // 2),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        ups = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=self.align_corners)
            for f in feats[1:]
        ]
        return self.last_layer(torch.cat(ups, 1))
