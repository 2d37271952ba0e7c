"""Output head for multi-stack heatmap backbones (Stacked Hourglass)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import HEADS

OUTPUTS = ("stacked", "last")


@HEADS.register_module()
class StackedHeatmapHead(nn.Module):
    """Collects the per-stack heatmaps of a multi-stack backbone; it has no parameters.

    The per-stack predictors (the port's ``outs``) belong to the backbone because every stack feeds
    its heatmaps into the next one; this head only fixes the output layout.

    Args:
        in_channels: the backbone's ``out_channels``, one entry per stack (filled in by ``build_model``).
        num_keypoints: optional check: must equal the heatmaps per stack (the backbone's ``oup_dim``).
        output: ``stacked`` (default): a tensor ``(N, nstack, K, H/4, W/4)``, first stack first, as the
            port returns it; training applies the loss to every stack, evaluation, flip test and
            pictures use ``[:, -1]``. ``last``: only the last stack, ``(N, K, H/4, W/4)``, the layout
            of single-output heads (no intermediate supervision).
    """

    def __init__(self, in_channels: list[int] | int, num_keypoints: Optional[int] = None,
                 output: str = "stacked"):
        super().__init__()
        channels = list(in_channels) if isinstance(in_channels, (list, tuple)) else [in_channels]
        if not channels or len(set(channels)) != 1:
            raise ConfigError(f"StackedHeatmapHead: the backbone must output the same number of heatmaps "
                              f"per stack, got {channels}")
        if output not in OUTPUTS:
            raise ConfigError(f"StackedHeatmapHead: output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if num_keypoints is not None and num_keypoints != channels[0]:
            raise ConfigError(f"StackedHeatmapHead: num_keypoints is {num_keypoints!r} but the backbone "
                              f"predicts {channels[0]} heatmaps per stack; set model.backbone.oup_dim to "
                              f"the number of keypoints")
        self.num_stacks, self.num_keypoints, self.output = len(channels), channels[0], output

    @property
    def num_outputs(self) -> int:
        """Predictions per sample along dim 1 of the output (``nstack`` when stacked, else 1); the
        pose task checks ``task.stack_weights`` against it."""
        return self.num_stacks if self.output == "stacked" else 1

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if self.output == "last":
            return feats[-1]
        return torch.stack(list(feats), dim=1)
