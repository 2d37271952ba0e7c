"""HRNet / HRNetV2 backbone: one implementation for the pose and segmentation variants.

Parameter names follow the official implementations exactly (``conv1``, ``bn1``, ``layer1``,
``transition1..3``, ``stage2..4.<module>.branches.<b>.<k>``, ``stage<s>.<module>.fuse_layers.<i>.<j>``)
so official checkpoints load without any key conversion. Architectures are data: a preset table
plus per-stage overrides; the stages are built by one loop.
"""
from __future__ import annotations

import copy
import difflib
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
# The standard family: branch widths [w, 2w, 4w, 8w] with this layout (w18/w32/w48 are instances).
STANDARD_LAYOUT: dict[str, dict[str, Any]] = {
    "stage1": dict(block="BOTTLENECK", num_blocks=4, num_channels=64),
    "stage2": dict(num_modules=1, block="BASIC", num_blocks=[4, 4], width_factors=[1, 2]),
    "stage3": dict(num_modules=4, block="BASIC", num_blocks=[4, 4, 4], width_factors=[1, 2, 4]),
    "stage4": dict(num_modules=3, block="BASIC", num_blocks=[4, 4, 4, 4], width_factors=[1, 2, 4, 8]),
}


def _standard(width: int) -> dict[str, Any]:
    stages = copy.deepcopy(STANDARD_LAYOUT)
    for st in stages.values():
        factors = st.pop("width_factors", None)
        if factors is not None:
            st["num_channels"] = [f * width for f in factors]
    return stages


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

STAGE_NAMES = ("stage1", "stage2", "stage3", "stage4")
NUM_STAGES = (3, 4)
# What the heads see: the highest-resolution branch only (HRNetV1) or every branch upsampled
# bilinearly to the highest resolution and concatenated (HRNetV2). ``None``: the list of branches
# the last module outputs, and each head takes what it needs (the behaviour before the key existed).
AGGREGATIONS = {"v1": "highest-resolution branch only (HRNetV1)",
                "v2": "all branches upsampled and concatenated (HRNetV2)"}
UPSAMPLE_MODES = ("nearest", "bilinear", "bicubic")
_STAGE_KEYS = {"num_modules", "block", "num_blocks", "num_channels", "num_branches", "fuse_method"}


def hrnet_error(key: str, template: str) -> ConfigError:
    """A ConfigError about backbone key ``key``; ``template`` names it as ``{key}``.

    The message names the key as the backbone knows it (``HRNet: num_stages must be ...``);
    ``build_model`` re-words it with the full path and the file that set it
    (``tasks/x.yaml: model.backbone.num_stages must be ...``) from ``err.key`` / ``err.template``.
    """
    err = ConfigError("HRNet: " + template.replace("{key}", key))
    err.key, err.template = key, template  # type: ignore[attr-defined]
    return err


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _positive_ints(value: Any, count: int) -> bool:
    return isinstance(value, list) and len(value) == count and all(_positive_int(v) for v in value)


def _check_stage(name: str, st: dict[str, Any], branches: int) -> None:
    """One stage's settings: block type, positive sizes, one entry per branch."""
    if st.get("block") not in BLOCKS:
        raise hrnet_error(f"{name}.block", f"{{key}} must be one of {list(BLOCKS)}, got {st.get('block')!r}")
    if st.get("fuse_method", "SUM") != "SUM":
        raise hrnet_error(f"{name}.fuse_method", f"{{key}} {st['fuse_method']!r} is not supported (SUM only)")
    if name == "stage1":
        for k in ("num_blocks", "num_channels"):
            if not _positive_int(st.get(k)):
                raise hrnet_error(f"{name}.{k}", f"{{key}} must be a positive integer, got {st.get(k)!r}")
        return
    if not _positive_int(st.get("num_modules")):
        raise hrnet_error(f"{name}.num_modules",
                          f"{{key}} must be a positive integer, got {st.get('num_modules')!r}")
    for k in ("num_channels", "num_blocks"):
        if not _positive_ints(st.get(k), branches):
            raise hrnet_error(f"{name}.{k}", f"{{key}} must list {branches} positive integers (one per "
                                             f"branch of {name}), got {st.get(k)!r}")
    if st.get("num_branches", branches) != branches:
        raise hrnet_error(f"{name}.num_branches",
                          f"{{key}} must be {branches} ({name} has {branches} branches), got {st['num_branches']!r}")


def _preset(arch: Optional[str], width: Optional[int]) -> dict[str, dict[str, Any]]:
    if arch is not None and width is not None:
        raise hrnet_error("width", "give either 'arch' or '{key}', not both (--set model.backbone.arch=null "
                                   "to use a width)")
    if width is not None:
        if not _positive_int(width):
            raise hrnet_error("width", f"{{key}} must be a positive integer, got {width!r}")
        return _standard(width)
    if arch is not None:
        if arch not in ARCH_PRESETS:
            raise hrnet_error("arch", f"unknown {{key}} {arch!r}; presets: {', '.join(ARCH_PRESETS)}")
        return copy.deepcopy(ARCH_PRESETS[arch])
    return {}


def resolve_arch(arch: Optional[str], width: Optional[int], overrides: dict[str, Optional[dict]],
                 num_stages: int = 4) -> dict[str, dict[str, Any]]:
    """Merge a preset (``arch`` or ``width``) with explicit per-stage settings, key by key.

    Explicit settings win (``stage3: {num_modules: 2}`` on top of ``arch: w32`` changes only the
    module count). Only the first ``num_stages`` stages are returned; settings of an unused stage
    4 are checked for unknown keys but otherwise not used.
    """
    preset = _preset(arch, width)
    stages: dict[str, dict[str, Any]] = {}
    for s, name in enumerate(STAGE_NAMES, start=1):
        given = overrides.get(name) or {}
        if not isinstance(given, dict):
            raise hrnet_error(name, f"{{key}} must be a mapping of {sorted(_STAGE_KEYS)}, got {given!r}")
        given = {str(k).lower(): v for k, v in given.items()}
        unknown = sorted(set(given) - _STAGE_KEYS)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(_STAGE_KEYS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise hrnet_error(f"{name}.{unknown[0]}", f"unknown key(s) {unknown} in {name} ({{key}}){hint}; "
                                                      f"allowed: {sorted(_STAGE_KEYS)}")
        if s > num_stages:
            continue
        merged = {**preset.get(name, {}), **given}
        if not merged:
            raise hrnet_error(name, "{key} is not set; give 'arch', 'width' or a {key} mapping")
        _check_stage(name, merged, s)
        stages[name] = merged
    return stages


def resolve_multiscale_output(aggregation: Optional[str], multiscale_output: Optional[bool]) -> bool:
    """Whether the last module outputs every branch: what ``aggregation`` needs, or as given.

    ``v1`` needs only the highest-resolution output (the official pose layout, whose last module
    has fuse row 0 only); ``v2`` needs all of them; without ``aggregation`` the default is all.
    """
    if aggregation is not None and (not isinstance(aggregation, str) or aggregation not in AGGREGATIONS):
        choices = "; ".join(f"{k}: {v}" for k, v in AGGREGATIONS.items())
        raise hrnet_error("aggregation", f"{{key}} must be v1, v2 or null, got {aggregation!r} ({choices})")
    needed = {None: None, "v1": False, "v2": True}[aggregation]
    if multiscale_output is None:
        return True if needed is None else needed
    if needed is not None and multiscale_output != needed:
        raise hrnet_error("multiscale_output",
                          f"{{key}}={str(multiscale_output).lower()} contradicts aggregation {aggregation} "
                          f"({AGGREGATIONS[aggregation]}); remove {{key}} (it follows aggregation) or set "
                          f"it to {str(needed).lower()}")
    return multiscale_output


def concat_branches(feats: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """HRNetV2 aggregation: branches 2.. upsampled bilinearly to branch 1, concatenated on channels."""
    if len(feats) == 1:
        return feats[0]
    size = feats[0].shape[-2:]
    ups = [feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=align_corners)
                        for f in feats[1:]]
    return torch.cat(ups, 1)


def conv1x1_of_branches(feats: list[torch.Tensor], conv: nn.Conv2d, align_corners: bool) -> torch.Tensor:
    """``conv(concat_branches(feats, align_corners))`` for a 1x1 ``conv``, mapped before upsampling.

    Bilinear upsampling (weights summing to 1) and a 1x1 convolution are both linear per pixel, so
    they commute: each branch goes through its slice of the conv's input channels at its own, lower
    resolution and the results are upsampled and summed (bias added once). Same output up to float
    rounding, without the concatenated tensor: the HRNetV2 segmentation head's first conv and the
    upsampling shrink by the branches' resolution (8 % of the forward FLOPs of the official W48 at
    512x1024 and of the segmentation demo model). Other convolutions (3x3) do not commute with
    upsampling and take the concatenation.
    """
    if len(feats) == 1 or conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        return conv(concat_branches(feats, align_corners))
    size, start, out = feats[0].shape[-2:], 0, None
    for f in feats:
        c = f.shape[1]
        y = F.conv2d(f, conv.weight[:, start:start + c])
        if start:  # branches 2.. have lower resolutions (as in concat_branches)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=align_corners)
        start += c
        out = y if out is None else out + y
    if start != conv.in_channels:
        raise ValueError(f"branches have {start} channels in all, the conv takes {conv.in_channels}")
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def sequential_on_branches(layers: nn.Sequential, feats: list[torch.Tensor], align_corners: bool) -> torch.Tensor:
    """``layers(concat_branches(feats))`` with a leading 1x1 conv folded in before the upsampling
    (``conv1x1_of_branches``)."""
    y = conv1x1_of_branches(list(feats), layers[0], align_corners)
    for layer in list(layers)[1:]:
        y = layer(y)
    return y


@BACKBONES.register_module()
class HRNet(nn.Module):
    """High-Resolution Network (HRNet for pose, HRNetV2 for segmentation).

    Args:
        arch: preset name (``w18``, ``w32``, ``w48``, ``w18_small_v1``, ``w18_small_v2``).
        width: standard layout with branch widths ``[w, 2w, 4w, 8w]`` (alternative to ``arch``).
        stage1..stage4: per-stage settings merged key by key over the preset (``block``,
            ``num_blocks``, ``num_channels``, ``num_modules``).
        num_stages: 4 (official) or 3: the network ends after stage 3 with three branches.
        aggregation: what the heads see: ``v1`` the highest-resolution branch, ``v2`` all branches
            upsampled (bilinear, ``align_corners``) and concatenated; ``None``: the list of
            branches of the last module, each head takes what it needs.
        upsample_mode: fusion upsampling, ``nearest`` (official pose) or ``bilinear`` (official
            segmentation).
        align_corners: used by bilinear upsampling (fusion and the v2 concatenation).
        multiscale_output: whether the last module outputs all branches (True) or only the highest
            resolution one (False, official pose). Follows ``aggregation`` when not given
            (v1: False, v2: True, none: True); a contradicting value is an error.
        bn_momentum: BatchNorm momentum (0.1 pose, 0.01 segmentation in the official code).
        stem_channels: channels of the two stride-2 stem convolutions (64 official). At small
            widths the stem is about half of the forward time: 32 made the width-16 demo model
            train 8 % faster (README "Results").

    ``forward`` returns a list of features, highest resolution first (stride 4); ``out_channels``
    gives the channels of each (heads get it as ``in_channels``).
    """

    def __init__(self, arch: Optional[str] = None, width: Optional[int] = None,
                 stage1: Optional[dict] = None, stage2: Optional[dict] = None,
                 stage3: Optional[dict] = None, stage4: Optional[dict] = None,
                 num_stages: int = 4, aggregation: Optional[str] = None,
                 upsample_mode: str = "nearest", align_corners: bool = False,
                 multiscale_output: Optional[bool] = None, bn_momentum: float = 0.1, in_channels: int = 3,
                 stem_channels: int = 64):
        super().__init__()
        if upsample_mode not in UPSAMPLE_MODES:
            raise hrnet_error("upsample_mode", f"{{key}} must be one of {', '.join(UPSAMPLE_MODES)}, "
                                               f"got {upsample_mode!r}")
        if not _positive_int(num_stages) or num_stages not in NUM_STAGES:
            raise hrnet_error("num_stages", f"{{key}} must be 3 or 4, got {num_stages!r} (3 ends the network "
                                            "after stage 3 with three branches)")
        multiscale = resolve_multiscale_output(aggregation, multiscale_output)
        self.arch = resolve_arch(arch, width, dict(stage1=stage1, stage2=stage2, stage3=stage3,
                                                   stage4=stage4), num_stages)
        self.num_stages, self.aggregation, self.align_corners = num_stages, aggregation, align_corners
        m = bn_momentum
        if not _positive_int(stem_channels):
            raise hrnet_error("stem_channels", f"{{key}} must be a positive integer, got {stem_channels!r}")
        stem = stem_channels
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False)
        self.bn1 = _bn(stem, m)
        self.conv2 = nn.Conv2d(stem, stem, 3, 2, 1, bias=False)
        self.bn2 = _bn(stem, m)
        self.relu = nn.ReLU(inplace=True)

        s1 = self.arch["stage1"]
        block1 = BLOCKS[s1["block"]]
        self.layer1 = make_blocks(block1, stem, s1["num_channels"], s1["num_blocks"], m)
        channels = [s1["num_channels"] * block1.expansion]
        for s in range(2, num_stages + 1):
            cfg = self.arch[f"stage{s}"]
            target = [c * BLOCKS[cfg["block"]].expansion for c in cfg["num_channels"]]
            setattr(self, f"transition{s - 1}", self._transition(channels, target, m))
            stage, channels = self._stage(cfg, target, multiscale or s < num_stages,
                                          upsample_mode, align_corners, m)
            setattr(self, f"stage{s}", stage)
        self.branch_channels: list[int] = target    # every branch of the last stage
        self.out_channels: list[int] = {"v1": channels[:1], "v2": [sum(channels)]}.get(aggregation, channels)

    @staticmethod
    def _stage(cfg: dict[str, Any], in_channels: list[int], multiscale_output: bool, upsample_mode: str,
               align_corners: bool, m: float) -> tuple[nn.Sequential, list[int]]:
        """``num_modules`` HighResolutionModules; ``multiscale_output`` applies to the last one."""
        block, modules, channels = BLOCKS[cfg["block"]], [], in_channels
        for k in range(cfg["num_modules"]):
            module = HighResolutionModule(
                block, cfg["num_blocks"], channels, cfg["num_channels"],
                multiscale_output=multiscale_output or k < cfg["num_modules"] - 1,
                upsample_mode=upsample_mode, align_corners=align_corners, bn_momentum=m)
            modules.append(module)
            channels = module.out_channels
        return nn.Sequential(*modules), channels

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

    def forward(self, x: torch.Tensor, aggregate: bool = True) -> list[torch.Tensor]:
        """Features, highest resolution first; ``aggregate=False`` skips the ``v2`` concatenation
        and returns the branches (for heads that fold it into their first conv, see ``DensePredictor``)."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in range(2, self.num_stages + 1):
            transition = getattr(self, f"transition{s - 1}")
            xs = [
                (t(xs[i] if i < len(xs) else xs[-1]) if t is not None else xs[i])
                for i, t in enumerate(transition)
            ]
            xs = getattr(self, f"stage{s}")(xs)
        if self.aggregation == "v1":
            return xs[:1]
        if self.aggregation == "v2" and aggregate:
            return [concat_branches(xs, self.align_corners)]
        return xs
