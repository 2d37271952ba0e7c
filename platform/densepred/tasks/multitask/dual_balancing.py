"""DB-MTL's gradient balancing as a TorchJD aggregator.

Lin, Jiang, Ye, Zhang, Chen, Chen, Liu, Tsang, Kwok, "Dual-Balancing for Multi-Task Learning"
(arXiv:2308.12029). The loss-scale half (the log of each loss) is the balancer's objective
(``aggregation.DBMTLBalancer``); this is the gradient-magnitude half, applied to the rows of the
Jacobian of those log losses w.r.t. the shared parameters.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor
from torchjd.aggregation import Aggregator


class DualBalancing(Aggregator):
    """ĝ_i ← β_t ĝ_i + (1 - β_t) g_i with β_t = β / t^σ and ĝ starting at 0 (a moving average of each
    task's gradient g_i over the steps t = 1, 2, ...), then the update max_j ||ĝ_j|| Σ_i ĝ_i / ||ĝ_i||:
    every task's averaged gradient rescaled to the largest norm.

    The averages (one row per task over every shared parameter) and the step count are the state:
    ``get_extra_state`` puts them into the run's checkpoints, so a resumed run continues them.
    ``last_weights`` holds the factors max_j ||ĝ_j|| / ||ĝ_i|| of the last call, for the logs.
    """

    EPS = 1e-8

    def __init__(self, beta: float = 0.9, beta_sigma: float = 0.0):
        super().__init__()
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.steps = 0
        self.ema: Optional[Tensor] = None
        self.last_weights: Optional[Tensor] = None

    def forward(self, matrix: Tensor, /) -> Tensor:
        self.steps += 1
        beta_t = self.beta / self.steps ** self.beta_sigma
        if self.ema is None or self.ema.shape != matrix.shape:
            self.ema = torch.zeros_like(matrix)
        self.ema = self.ema.to(matrix).mul_(beta_t).add_(matrix, alpha=1.0 - beta_t)
        norms = self.ema.norm(dim=1)
        self.last_weights = norms.max() / (norms + self.EPS)
        return self.last_weights @ self.ema

    def get_extra_state(self) -> dict[str, Any]:
        return {"steps": self.steps, "ema": self.ema}

    def set_extra_state(self, state: Any) -> None:
        self.steps, self.ema = int(state["steps"]), state["ema"]

    def __repr__(self) -> str:
        return f"DualBalancing(beta={self.beta}, beta_sigma={self.beta_sigma})"
