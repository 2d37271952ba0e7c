"""One forward pass for several members that feed the model the same input.

Pose and person-mask members crop the same person boxes; where their crop geometry agrees, the
crops are equal tensors and one forward pass yields both heads. Each member's inference code
stays its own (it calls ``model(x)[its head]``); this wrapper answers a repeated input from a
small cache instead of running the backbone again.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class SharedForward(nn.Module):
    """Wraps an eval-mode model; ``model(x)`` for an input equal to one of the last ``size``
    inputs returns that call's outputs. Call ``clear()`` between frames."""

    def __init__(self, model: nn.Module, size: int = 2):
        super().__init__()
        self.model = model
        # Two entries: a member's plain and flipped crops (flip test) are both reused by the next member.
        self.size = size
        self._cache: list[tuple[torch.Tensor, Any]] = []
        self.calls = 0       # forward passes actually run (tests check the sharing)

    def forward(self, x: torch.Tensor) -> Any:
        for seen, out in self._cache:
            if seen.shape == x.shape and seen.dtype == x.dtype and seen.device == x.device and torch.equal(seen, x):
                return out
        out = self.model(x)
        self.calls += 1
        self._cache = [*self._cache, (x, out)][-self.size:] if self.size > 0 else []
        return out

    def clear(self) -> None:
        """Forget the cached inputs and outputs (their memory is released)."""
        self._cache = []
