"""HRNetV2 segmentation head: concatenate all branches at 1/4 resolution and classify."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..backbones.hrnet import sequential_on_branches
from ..errors import ConfigError
from ..registry import HEADS


@HEADS.register_module()
class HRNetV2SegHead(nn.Module):
    """Official ``last_layer``: 1x1 conv + BN + ReLU + 1x1 conv to classes.

    Given several branches (backbone ``aggregation`` unset), branches 2.. are upsampled bilinearly
    (``align_corners``) to branch 1 and concatenated first, as in the official model. Given one
    feature (backbone ``aggregation: v2``, which concatenates the same way with the backbone's
    ``align_corners``, or ``v1``), it classifies that feature. The output logits stay at 1/4 of the
    input resolution (upsampling to label size belongs to the task). Channels come from the
    backbone's ``out_channels``. ``num_classes: null`` means "the task's class list": a segmentation
    task fills it in when it builds the model. ``channels`` sets the width of the hidden 1x1 conv
    (``null``: the concatenated channels, as in the official model and its checkpoints); in a
    narrow network that conv is a quarter of the forward FLOPs.
    """

    def __init__(self, in_channels: list[int], num_classes: Optional[int] = 19, align_corners: bool = False,
                 bn_momentum: float = 0.01, kernel_size: int = 1, channels: Optional[int] = None):
        super().__init__()
        if num_classes is None:
            raise ConfigError("model.heads.seg.num_classes is null (it follows the task's class list): build "
                              "the model from a segmentation task file, or give the number of classes")
        if num_classes < 1:
            raise ConfigError(f"model.heads.seg.num_classes must be >= 1, got {num_classes}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ConfigError(f"model.heads.seg.channels must be a positive integer or null, got {channels!r}")
        c = sum(in_channels)
        hidden = c if channels is None else channels
        self.align_corners = align_corners
        self.last_layer = nn.Sequential(
            nn.Conv2d(c, hidden, 1, 1, 0),
            nn.BatchNorm2d(hidden, momentum=bn_momentum),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, num_classes, kernel_size, 1, kernel_size // 2),
        )

    #: given the branches, it computes the official concat-then-conv with the conv folded in first
    folds_branches = True

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return sequential_on_branches(self.last_layer, feats, self.align_corners)
