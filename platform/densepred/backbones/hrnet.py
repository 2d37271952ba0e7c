"""HRNet / HRNetV2 backbone: one implementation for the pose and segmentation variants.

Parameter names follow the official implementations exactly (``conv1``, ``bn1``, ``layer1``,
``transition1..3``, ``stage2..4.<module>.branches.<b>.<k>``, ``stage<s>.<module>.fuse_layers.<i>.<j>``)
so official checkpoints load without any key conversion. Architectures are data: a preset table
plus per-stage overrides; the stages are built by one loop.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import BACKBONES


def _bn(channels: int, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=momentum)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes, bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes, bn_momentum)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = _bn(planes, bn_momentum)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = _bn(planes, bn_momentum)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion, bn_momentum)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


def make_blocks(block: type, inplanes: int, planes: int, num_blocks: int,
                bn_momentum: float, stride: int = 1) -> nn.Sequential:
    """A residual chain; the first block projects with 1x1 conv + BN when shapes change."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            _bn(planes * block.expansion, bn_momentum),
        )
    layers = [block(inplanes, planes, stride, downsample, bn_momentum)]
    layers += [block(planes * block.expansion, planes, bn_momentum=bn_momentum)
               for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def _conv_bn(cin: int, cout: int, k: int, stride: int, momentum: float, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), _bn(cout, momentum)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches followed by all-to-all fusion (the official ``HighResolutionModule``).

    Fusion j -> i: j > i is 1x1 conv + BN then upsampling (``upsample_mode``); j < i is a chain
    of 3x3 stride-2 conv + BN, with ReLU on every link but the last.
    """

    def __init__(self, block: type, num_blocks: list[int], in_channels: list[int],
                 num_channels: list[int], multiscale_output: bool, upsample_mode: str,
                 align_corners: bool, bn_momentum: float):
        super().__init__()
        n = len(num_channels)
        self.upsample_mode = upsample_mode
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            make_blocks(block, in_channels[b], num_channels[b], num_blocks[b], bn_momentum)
            for b in range(n)
        )
        self.out_channels = [c * block.expansion for c in num_channels]
        ch = self.out_channels
        self.fuse_layers: Optional[nn.ModuleList] = None
        if n > 1:
            rows = []
            for i in range(n if multiscale_output else 1):
                row: list[Optional[nn.Module]] = []
                for j in range(n):
                    if j > i:
                        row.append(_conv_bn(ch[j], ch[i], 1, 1, bn_momentum, relu=False))
                    elif j == i:
                        row.append(None)
                    else:
                        links = [_conv_bn(ch[j], ch[j], 3, 2, bn_momentum, relu=True)
                                 for _ in range(i - j - 1)]
                        links.append(_conv_bn(ch[j], ch[i], 3, 2, bn_momentum, relu=False))
                        row.append(nn.Sequential(*links))
                rows.append(nn.ModuleList(row))
            self.fuse_layers = nn.ModuleList(rows)
        else:
            multiscale_output = True
        if not multiscale_output:
            self.out_channels = self.out_channels[:1]
        self.relu = nn.ReLU(inplace=True)

    def _upsample(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        size = like.shape[-2:]
        if self.upsample_mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode=self.upsample_mode, align_corners=self.align_corners)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                z = layer(xs[j])
                y = y + (self._upsample(z, xs[i]) if j > i else z)
            out.append(self.relu(y))
        return out


# Architectures as data. ``stage1`` is a single residual chain; stages 2-4 are lists of
# HighResolutionModules. Channels are before block expansion, as in the official YAML files.
def _standard(width: int) -> dict[str, Any]:
    w = width
    return {
        "stage1": dict(block="BOTTLENECK", num_blocks=4, num_channels=64),
        "stage2": dict(num_modules=1, block="BASIC", num_blocks=[4, 4], num_channels=[w, 2 * w]),
        "stage3": dict(num_modules=4, block="BASIC", num_blocks=[4, 4, 4],
                       num_channels=[w, 2 * w, 4 * w]),
        "stage4": dict(num_modules=3, block="BASIC", num_blocks=[4, 4, 4, 4],
                       num_channels=[w, 2 * w, 4 * w, 8 * w]),
    }


ARCH_PRESETS: dict[str, dict[str, Any]] = {
    "w18": _standard(18),
    "w32": _standard(32),
    "w48": _standard(48),
    "w18_small_v1": {
        "stage1": dict(block="BOTTLENECK", num_blocks=1, num_channels=32),
        "stage2": dict(num_modules=1, block="BASIC", num_blocks=[2, 2], num_channels=[16, 32]),
        "stage3": dict(num_modules=1, block="BASIC", num_blocks=[2, 2, 2], num_channels=[16, 32, 64]),
        "stage4": dict(num_modules=1, block="BASIC", num_blocks=[2, 2, 2, 2],
                       num_channels=[16, 32, 64, 128]),
    },
    "w18_small_v2": {
        "stage1": dict(block="BOTTLENECK", num_blocks=2, num_channels=64),
        "stage2": dict(num_modules=1, block="BASIC", num_blocks=[2, 2], num_channels=[18, 36]),
        "stage3": dict(num_modules=3, block="BASIC", num_blocks=[2, 2, 2], num_channels=[18, 36, 72]),
        "stage4": dict(num_modules=2, block="BASIC", num_blocks=[2, 2, 2, 2],
                       num_channels=[18, 36, 72, 144]),
    },
}

_STAGE_KEYS = {"num_modules", "block", "num_blocks", "num_channels", "num_branches", "fuse_method"}


def resolve_arch(arch: Optional[str], width: Optional[int],
                 overrides: dict[str, Optional[dict]]) -> dict[str, dict[str, Any]]:
    """Merge a preset (``arch`` or ``width``) with explicit per-stage settings."""
    if arch is not None and width is not None:
        raise ConfigError("HRNet: give either 'arch' or 'width', not both")
    if width is not None:
        if not isinstance(width, int) or width <= 0:
            raise ConfigError(f"HRNet: 'width' must be a positive integer, got {width!r}")
        stages = _standard(width)
    elif arch is not None:
        if arch not in ARCH_PRESETS:
            raise ConfigError(f"HRNet: unknown arch {arch!r}; presets: {', '.join(ARCH_PRESETS)}")
        stages = copy.deepcopy(ARCH_PRESETS[arch])
    else:
        stages = {}
    for name in ("stage1", "stage2", "stage3", "stage4"):
        given = overrides.get(name) or {}
        unknown = set(given) - _STAGE_KEYS
        if unknown:
            raise ConfigError(f"HRNet: unknown key(s) {sorted(unknown)} in {name}; "
                              f"allowed: {sorted(_STAGE_KEYS)}")
        merged = {**stages.get(name, {}), **{k.lower(): v for k, v in given.items()}}
        if not merged:
            raise ConfigError(f"HRNet: {name} is not set; give 'arch', 'width' or a {name} mapping")
        stages[name] = merged
    for name, st in stages.items():
        if st.get("block") not in BLOCKS:
            raise ConfigError(f"HRNet: {name}.block must be one of {list(BLOCKS)}, got {st.get('block')!r}")
        if st.get("fuse_method", "SUM") != "SUM":
            raise ConfigError(f"HRNet: {name}.fuse_method {st['fuse_method']!r} is not supported (SUM only)")
        if name != "stage1":
            n = len(st["num_channels"])
            if len(st["num_blocks"]) != n or st.get("num_branches", n) != n:
                raise ConfigError(f"HRNet: {name} has {n} channel entries but num_blocks "
                                  f"{st['num_blocks']} / num_branches {st.get('num_branches')}")
    return stages


@BACKBONES.register_module()
class HRNet(nn.Module):
    """High-Resolution Network (HRNet for pose, HRNetV2 for segmentation).

    Args:
        arch: preset name (``w18``, ``w32``, ``w48``, ``w18_small_v1``, ``w18_small_v2``).
        width: standard layout with branch widths ``[w, 2w, 4w, 8w]`` (alternative to ``arch``).
        stage1..stage4: per-stage settings overriding the preset (``block``, ``num_blocks``,
            ``num_channels``, ``num_modules``).
        upsample_mode: ``nearest`` (official pose) or ``bilinear`` (official segmentation).
        align_corners: used by bilinear upsampling.
        multiscale_output: if False the last module keeps only the highest-resolution output
            (official pose); if True all branches are returned (HRNetV2).
        bn_momentum: BatchNorm momentum (0.1 pose, 0.01 segmentation in the official code).

    ``forward`` returns the list of branch features, highest resolution first (stride 4).
    """

    def __init__(self, arch: Optional[str] = None, width: Optional[int] = None,
                 stage1: Optional[dict] = None, stage2: Optional[dict] = None,
                 stage3: Optional[dict] = None, stage4: Optional[dict] = None,
                 upsample_mode: str = "nearest", align_corners: bool = False,
                 multiscale_output: bool = True, bn_momentum: float = 0.1, in_channels: int = 3):
        super().__init__()
        if upsample_mode not in ("nearest", "bilinear", "bicubic"):
            raise ConfigError(f"HRNet: upsample_mode must be nearest, bilinear or bicubic, got {upsample_mode!r}")
        stages = resolve_arch(arch, width, dict(stage1=stage1, stage2=stage2, stage3=stage3, stage4=stage4))
        self.arch = stages
        m = bn_momentum
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64, m)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64, m)
        self.relu = nn.ReLU(inplace=True)

        s1 = stages["stage1"]
        block1 = BLOCKS[s1["block"]]
        self.layer1 = make_blocks(block1, 64, s1["num_channels"], s1["num_blocks"], m)
        channels = [s1["num_channels"] * block1.expansion]

        for s in (2, 3, 4):
            cfg = stages[f"stage{s}"]
            block = BLOCKS[cfg["block"]]
            target = [c * block.expansion for c in cfg["num_channels"]]
            setattr(self, f"transition{s - 1}", self._transition(channels, target, m))
            modules = []
            for k in range(cfg["num_modules"]):
                last = s == 4 and k == cfg["num_modules"] - 1
                module = HighResolutionModule(
                    block, cfg["num_blocks"], target, cfg["num_channels"],
                    multiscale_output=multiscale_output or not last,
                    upsample_mode=upsample_mode, align_corners=align_corners, bn_momentum=m)
                modules.append(module)
                target = module.out_channels
            setattr(self, f"stage{s}", nn.Sequential(*modules))
            channels = target
        self.out_channels: list[int] = channels

    @staticmethod
    def _transition(prev: list[int], cur: list[int], m: float) -> nn.ModuleList:
        """Adapt existing branches whose width changes; grow new branches from the lowest one."""
        layers: list[Optional[nn.Module]] = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(_conv_bn(prev[i], c, 3, 1, m, relu=True) if prev[i] != c else None)
            else:
                n_down = i + 1 - len(prev)
                layers.append(nn.Sequential(*[
                    _conv_bn(prev[-1], c if d == n_down - 1 else prev[-1], 3, 2, m, relu=True)
                    for d in range(n_down)
                ]))
        return nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in (2, 3, 4):
            transition = getattr(self, f"transition{s - 1}")
            xs = [
                (t(xs[i] if i < len(xs) else xs[-1]) if t is not None else xs[i])
                for i, t in enumerate(transition)
            ]
            xs = getattr(self, f"stage{s}")(xs)
        return xs
