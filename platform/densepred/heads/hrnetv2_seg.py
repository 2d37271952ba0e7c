"""HRNetV2 segmentation head: concatenate all branches at 1/4 resolution and classify."""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.hrnet import concat_branches
from ..registry import HEADS


@HEADS.register_module()
class HRNetV2SegHead(nn.Module):
    """Official ``last_layer``: 1x1 conv + BN + ReLU + 1x1 conv to classes.

    Given several branches (backbone ``aggregation`` unset), branches 2.. are upsampled bilinearly
    (``align_corners``) to branch 1 and concatenated first, as in the official model. Given one
    feature (backbone ``aggregation: v2``, which concatenates the same way with the backbone's
    ``align_corners``, or ``v1``), it classifies that feature. The output logits stay at 1/4 of the
    input resolution (upsampling to label size belongs to the task). Channels come from the
    backbone's ``out_channels``.
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
        return self.last_layer(concat_branches(feats, self.align_corners))
