"""Keypoint heatmap head of the official HRNet pose model."""
from __future__ import annotations

import torch
from torch import nn

from ..registry import HEADS


@HEADS.register_module()
class HeatmapHead(nn.Module):
    """``final_layer``: a conv on the first (highest-resolution) feature giving one heatmap per keypoint.

    What that feature is follows the backbone's ``aggregation``: the high-resolution branch (v1, the
    official pose model) or all branches upsampled and concatenated (v2). Its channel count comes
    from the backbone's ``out_channels``, so any width, stage count and aggregation fit.

    Args:
        in_channels: channels of the features the head receives (filled in from the backbone).
        num_keypoints: heatmaps produced (17 for COCO).
        kernel_size: 1 (official) or 3.
    """

    def __init__(self, in_channels: list[int] | int, num_keypoints: int = 17, kernel_size: int = 1):
        super().__init__()
        c = in_channels[0] if isinstance(in_channels, (list, tuple)) else in_channels
        self.final_layer = nn.Conv2d(c, num_keypoints, kernel_size, 1, kernel_size // 2)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.final_layer(feats[0])
