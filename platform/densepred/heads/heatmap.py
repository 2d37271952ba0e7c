"""Keypoint heatmap head of the official HRNet pose model."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import HEADS

#: the message of a head built without its task while its size is left to the data
FROM_DATA = ("{head}: num_keypoints is null ('as many as the data set has'), which only its task can fill in "
             "(platform train/eval/predict, Task.build_model); give a number to build the model alone")


def keypoint_count(head: str, num_keypoints: Optional[int]) -> int:
    """``num_keypoints`` checked: a positive integer (null: see ``FROM_DATA``)."""
    if num_keypoints is None:
        raise ConfigError(FROM_DATA.format(head=head))
    if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 1:
        raise ConfigError(f"{head}: num_keypoints must be a positive integer, got {num_keypoints!r}")
    return num_keypoints


@HEADS.register_module()
class HeatmapHead(nn.Module):
    """``final_layer``: a conv on the first (highest-resolution) feature giving one heatmap per keypoint.

    What that feature is follows the backbone's ``aggregation``: the high-resolution branch (v1, the
    official pose model) or all branches upsampled and concatenated (v2). Its channel count comes
    from the backbone's ``out_channels``, so any width, stage count and aggregation fit.

    Args:
        in_channels: channels of the features the head receives (filled in from the backbone).
        num_keypoints: heatmaps produced (17 for COCO); null: the data set's joints, filled in by the task.
        kernel_size: 1 (official) or 3.
    """

    def __init__(self, in_channels: list[int] | int, num_keypoints: Optional[int] = 17, kernel_size: int = 1):
        super().__init__()
        c = in_channels[0] if isinstance(in_channels, (list, tuple)) else in_channels
        self.num_keypoints = keypoint_count("HeatmapHead", num_keypoints)
        self.final_layer = nn.Conv2d(c, self.num_keypoints, kernel_size, 1, kernel_size // 2)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.final_layer(feats[0])
