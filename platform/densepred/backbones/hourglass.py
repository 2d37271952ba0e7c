"""Stacked Hourglass (Newell et al. 2016) with intermediate supervision.

Parameter names follow the widely used PyTorch port (princeton-vl ``pytorch_stacked_hourglass``,
``models/posenet.py`` + ``models/layers.py``) so that its checkpoints load through
``load_checkpoint`` without renaming (``backbone.<name>`` <-> ``<name>``):

* ``pre``                       stem: 7x7/2 conv+BN+ReLU, Residual(64,128), max-pool, Residual(128,128),
                                Residual(128, inp_dim)  -> stride 4
* ``hgs.<i>.0``                 the hourglass of stack i (recursive: ``up1``, ``low1``, ``low2``, ``low3``;
                                ``low2`` is the next-lower hourglass, a Residual at the bottom)
* ``features.<i>``              Residual + 1x1 conv/BN/ReLU after the hourglass
* ``outs.<i>``                  1x1 conv predicting ``oup_dim`` heatmaps of stack i
* ``merge_features.<i>``, ``merge_preds.<i>``  1x1 convs adding features and heatmaps of stack i back
                                into the input of stack i+1 (intermediate supervision)
* convolutions are ``<name>.conv.weight/bias`` (+ ``<name>.bn.*`` where the port has BN); residual
  modules are pre-activation ``bn1, conv1, bn2, conv2, bn3, conv3, skip_layer``.

Why the per-stack predictors live in the backbone: stack i+1 consumes stack i's heatmaps
(``merge_preds``), so the predictors are part of the recurrence, not a separable head. The backbone
returns one heatmap tensor per stack (a list, first stack first); ``StackedHeatmapHead`` (heads/)
turns it into the model output. ``oup_dim`` is therefore the number of joints.

Unused skip convolutions: the port creates ``skip_layer`` in every residual module, also where the
input and output widths agree and ``forward`` uses the identity. They are kept (its checkpoints
contain them; its parameter counts include them: 32,819,328 for 8 stacks x 256 channels x 16 joints)
but with ``requires_grad=False``, so that DistributedDataParallel (no ``find_unused_parameters``)
and optimisers ignore them.

Input: NCHW (the port takes NHWC and permutes inside ``forward``); height and width must be
multiples of ``4 * 2**order`` (64 for the standard order 4). Outputs are at 1/4 resolution.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import BACKBONES


def hourglass_error(key: str, template: str) -> ConfigError:
    """A one-line ConfigError about backbone key ``key`` (``{key}`` in ``template``); ``build_model``
    re-words it with the full key path and the file that set it (same protocol as HRNet)."""
    err = ConfigError("StackedHourglass: " + template.replace("{key}", key))
    err.key, err.template = key, template  # type: ignore[attr-defined]
    return err


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ConvUnit(nn.Module):
    """The port's ``Conv``: ``conv`` (bias, 'same' padding), then optional ``bn`` and ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 bn: bool = False, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, bias=True)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class PreActResidual(nn.Module):
    """Pre-activation bottleneck: (BN-ReLU-conv) 1x1 -> 3x3 -> 1x1 at half width, plus a skip.

    ``skip_layer`` always exists (as in the port) but is applied only when widths differ; otherwise
    it is frozen (``requires_grad=False``) and the identity is used.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = ConvUnit(cin, mid, 1, relu=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = ConvUnit(mid, mid, 3, relu=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = ConvUnit(mid, cout, 1, relu=False)
        self.skip_layer = ConvUnit(cin, cout, 1, relu=False)
        self.need_skip = cin != cout
        if not self.need_skip:
            self.skip_layer.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.skip_layer(x) if self.need_skip else x
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + residual


class Hourglass(nn.Module):
    """Order-``order`` hourglass: ``up1`` at full resolution plus, after a 2x2 max-pool,
    ``low1`` -> ``low2`` (the order-1 hourglass, or a residual at order 1) -> ``low3``, upsampled
    (nearest, x2) and added.

    ``increase`` widens the lower branch of this level only (the port does not pass it on to the
    inner levels, which keep the widened width).
    """

    def __init__(self, order: int, width: int, increase: int = 0):
        super().__init__()
        inner = width + increase
        self.order = order
        self.up1 = PreActResidual(width, width)
        self.low1 = PreActResidual(width, inner)
        self.low2 = Hourglass(order - 1, inner) if order > 1 else PreActResidual(inner, inner)
        self.low3 = PreActResidual(inner, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up1 = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2, 2))))
        return up1 + F.interpolate(low, scale_factor=2, mode="nearest")


class Merge(nn.Module):
    """The port's ``Merge``: a 1x1 conv (``conv.conv``) without BN or ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvUnit(cin, cout, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@BACKBONES.register_module()
class StackedHourglass(nn.Module):
    """Stacked Hourglass network; the port's ``PoseNet(nstack, inp_dim, oup_dim, bn, increase)``.

    Args:
        nstack: number of stacked hourglasses (1, 2, 4, 8 in the paper); each predicts heatmaps.
        inp_dim: width of the hourglasses (256 in the paper).
        oup_dim: heatmaps predicted per stack (the number of joints, 16 for MPII, 17 for COCO).
        bn: accepted for compatibility with the port's configuration; the port ignores it (every
            residual module has BatchNorm), and so does this implementation.
        increase: extra channels in the lower branch of each stack's outermost hourglass level.
        order: recursion depth of each hourglass (4 in the paper and the port).
        in_channels: image channels.

    ``forward(x)`` (NCHW) returns a list of ``nstack`` heatmap tensors ``(N, oup_dim, H/4, W/4)``,
    first stack first (the last is the final prediction); ``out_channels`` is ``[oup_dim] * nstack``.
    """

    def __init__(self, nstack: int = 8, inp_dim: int = 256, oup_dim: int = 16, bn: bool = False,
                 increase: int = 0, order: int = 4, in_channels: int = 3):
        super().__init__()
        if not _is_int(nstack) or nstack < 1:
            raise hourglass_error("nstack", f"{{key}} must be a positive integer (1, 2, 4 or 8 in the "
                                            f"paper), got {nstack!r}")
        if not _is_int(inp_dim) or inp_dim < 2:
            raise hourglass_error("inp_dim", f"{{key}} (hourglass width) must be an integer >= 2, "
                                             f"got {inp_dim!r}")
        if not _is_int(oup_dim) or oup_dim < 1:
            raise hourglass_error("oup_dim", f"{{key}} (heatmaps per stack, the number of joints) must be "
                                             f"a positive integer, got {oup_dim!r}")
        if not _is_int(increase) or increase < 0:
            raise hourglass_error("increase", f"{{key}} must be an integer >= 0, got {increase!r}")
        if not _is_int(order) or not 1 <= order <= 6:
            raise hourglass_error("order", f"{{key}} (hourglass recursion depth) must be an integer "
                                           f"from 1 to 6, got {order!r}")
        if not isinstance(bn, bool):
            raise hourglass_error("bn", f"{{key}} must be true or false, got {bn!r}")
        if not _is_int(in_channels) or in_channels < 1:
            raise hourglass_error("in_channels", f"{{key}} must be a positive integer, got {in_channels!r}")
        self.nstack, self.inp_dim, self.oup_dim, self.order = nstack, inp_dim, oup_dim, order
        self.pre = nn.Sequential(
            ConvUnit(in_channels, 64, 7, 2, bn=True, relu=True),
            PreActResidual(64, 128),
            nn.MaxPool2d(2, 2),
            PreActResidual(128, 128),
            PreActResidual(128, inp_dim),
        )
        self.hgs = nn.ModuleList([nn.Sequential(Hourglass(order, inp_dim, increase)) for _ in range(nstack)])
        self.features = nn.ModuleList([
            nn.Sequential(PreActResidual(inp_dim, inp_dim), ConvUnit(inp_dim, inp_dim, 1, bn=True, relu=True))
            for _ in range(nstack)
        ])
        self.outs = nn.ModuleList([ConvUnit(inp_dim, oup_dim, 1, relu=False) for _ in range(nstack)])
        self.merge_features = nn.ModuleList([Merge(inp_dim, inp_dim) for _ in range(nstack - 1)])
        self.merge_preds = nn.ModuleList([Merge(oup_dim, inp_dim) for _ in range(nstack - 1)])
        self.out_channels: list[int] = [oup_dim] * nstack

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (stride 4 stem, ``order`` poolings)."""
        return 4 * 2 ** self.order

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.size_multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"StackedHourglass (order {self.order}) needs input height and width that are "
                             f"multiples of {m}, got {tuple(x.shape[-2:])}")
        x = self.pre(x)
        preds: list[torch.Tensor] = []
        for i in range(self.nstack):
            feature = self.features[i](self.hgs[i](x))
            pred = self.outs[i](feature)
            preds.append(pred)
            if i < self.nstack - 1:
                x = x + self.merge_preds[i](pred) + self.merge_features[i](feature)
        return preds
