"""ResNet backbone of SimpleBaseline (Xiao et al. 2018, the official ``pose_resnet``).

Parameter names follow the torchvision / official ``pose_resnet`` layout exactly (``conv1``,
``bn1``, ``layer1..4.<i>.conv1..3/bn1..3``, ``layer<k>.0.downsample.0/1``), so official
SimpleBaseline checkpoints and torchvision-layout ImageNet weights (whose ``fc.*`` is the only
extra) load without key conversion. The stride of a downsampling Bottleneck is on its 3x3 ``conv2``
(as in the official code and torchvision >= 0.2, "ResNet v1.5"). No torchvision dependency.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import BACKBONES
from .hrnet import BasicBlock, Bottleneck, make_blocks

# depth -> (block, blocks per layer); the official pose_resnet ``resnet_spec``.
RESNET_SPECS: dict[int, tuple[type, list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


def resnet_error(key: str, template: str) -> ConfigError:
    """A ConfigError about backbone key ``key`` (``{key}`` in ``template``); ``build_model`` re-words
    it with the full key path and the file that set it (same protocol as ``hrnet_error``)."""
    err = ConfigError("ResNet: " + template.replace("{key}", key))
    err.key, err.template = key, template  # type: ignore[attr-defined]
    return err


@BACKBONES.register_module()
class ResNet(nn.Module):
    """ResNet-18/34/50/101/152 feature extractor (no average pool, no ``fc``).

    Args:
        depth: 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck [3,4,6,3] / [3,4,23,3] / [3,8,36,3]).
        in_channels: input image channels.
        bn_momentum: BatchNorm momentum (0.1 in the official pose_resnet).

    ``forward`` returns a one-element list: the ``layer4`` feature at stride 32 (2048 channels for
    Bottleneck depths, 512 for BasicBlock ones); ``out_channels`` gives its channels.
    """

    def __init__(self, depth: int = 50, in_channels: int = 3, bn_momentum: float = 0.1):
        super().__init__()
        if isinstance(depth, bool) or depth not in RESNET_SPECS:
            raise resnet_error("depth", f"{{key}} must be one of {', '.join(map(str, RESNET_SPECS))}, "
                                        f"got {depth!r}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
            raise resnet_error("in_channels", f"{{key}} must be a positive integer, got {in_channels!r}")
        block, counts = RESNET_SPECS[depth]
        self.depth = depth
        m = bn_momentum
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=m)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            layer = make_blocks(block, inplanes, planes, n, m, stride=1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", layer)
            inplanes = planes * block.expansion
        self.out_channels: list[int] = [inplanes]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return [x]

    def extra_repr(self) -> str:
        return f"depth={self.depth}"
