"""SimpleBaseline deconvolution head (the official ``pose_resnet`` ``deconv_layers`` + ``final_layer``)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import HEADS
from .heatmap import keypoint_count

# deconvolution kernel -> (padding, output_padding) giving exactly 2x upsampling at stride 2
# (the official ``_get_deconv_cfg``).
DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@HEADS.register_module()
class DeconvHead(nn.Module):
    """Stride-2 transposed convolutions (each + BN + ReLU), then a conv to one heatmap per keypoint.

    Names equal the official ones: ``deconv_layers.<3i>`` (ConvTranspose2d), ``deconv_layers.<3i+1>``
    (BatchNorm2d), ``deconv_layers.<3i+2>`` (ReLU, no parameters), ``final_layer``. With the defaults
    (three 4x4 deconvolutions of 256 channels, no bias) a stride-32 ResNet feature becomes stride-4
    heatmaps: 256x192 input -> 64x48 heatmaps.

    Args:
        in_channels: channels of the features the head receives (filled in from the backbone); the
            head uses the first feature.
        num_keypoints: heatmaps produced (17 for COCO, 16 for MPII); null: the data set's, filled in by the task.
        num_deconv_layers: number of deconvolutions (each doubles the resolution).
        num_deconv_filters: output channels of each deconvolution (an int applies to all).
        num_deconv_kernels: kernel of each deconvolution, 4, 3 or 2 (an int applies to all).
        deconv_with_bias: bias on the deconvolutions (False in the official configs).
        final_kernel_size: 1 (official) or 3.
        bn_momentum: BatchNorm momentum (0.1 official).
    """

    def __init__(self, in_channels: list[int] | int, num_keypoints: Optional[int] = 17, num_deconv_layers: int = 3,
                 num_deconv_filters: Sequence[int] | int = 256, num_deconv_kernels: Sequence[int] | int = 4,
                 deconv_with_bias: bool = False, final_kernel_size: int = 1, bn_momentum: float = 0.1):
        super().__init__()
        if not isinstance(num_deconv_layers, int) or isinstance(num_deconv_layers, bool) or num_deconv_layers < 0:
            raise ConfigError(f"DeconvHead: num_deconv_layers must be a non-negative integer, "
                              f"got {num_deconv_layers!r}")
        filters = self._per_layer("num_deconv_filters", num_deconv_filters, num_deconv_layers)
        kernels = self._per_layer("num_deconv_kernels", num_deconv_kernels, num_deconv_layers)
        if not all(_positive_int(f) for f in filters):
            raise ConfigError(f"DeconvHead: num_deconv_filters must be positive integers, got {num_deconv_filters!r}")
        bad = [k for k in kernels if k not in DECONV_PADDING]
        if bad:
            raise ConfigError(f"DeconvHead: num_deconv_kernels must be 4, 3 or 2, got {num_deconv_kernels!r}")
        if final_kernel_size not in (1, 3):
            raise ConfigError(f"DeconvHead: final_kernel_size must be 1 or 3, got {final_kernel_size!r}")
        num_keypoints = keypoint_count("DeconvHead", num_keypoints)
        self.num_keypoints = num_keypoints
        c = in_channels[0] if isinstance(in_channels, (list, tuple)) else in_channels
        layers: list[nn.Module] = []
        for planes, k in zip(filters, kernels):
            padding, output_padding = DECONV_PADDING[k]
            layers += [
                nn.ConvTranspose2d(c, planes, k, stride=2, padding=padding, output_padding=output_padding,
                                   bias=bool(deconv_with_bias)),
                nn.BatchNorm2d(planes, momentum=bn_momentum),
                nn.ReLU(inplace=True),
            ]
            c = planes
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(c, num_keypoints, final_kernel_size, 1, final_kernel_size // 2)

    @staticmethod
    def _per_layer(name: str, value: Sequence[int] | int, n: int) -> list[int]:
        if isinstance(value, int) and not isinstance(value, bool):
            return [value] * n
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ConfigError(f"DeconvHead: {name} must be an integer or a list of {n} "
                              f"(num_deconv_layers) integers, got {value!r}")
        return list(value)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(feats[0]))
