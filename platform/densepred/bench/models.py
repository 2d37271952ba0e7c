"""The model configurations the bench sections run, and their forward FLOPs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

MODEL_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "models"


@dataclass(frozen=True)
class ModelCase:
    """One model at one input size: ``name`` (the config's stem), ``head`` (its output key)."""

    name: str
    head: str
    input_hw: tuple[int, int]

    @property
    def config(self) -> Path:
        return MODEL_CONFIGS / f"{self.name}.yaml"

    @property
    def label(self) -> str:
        return f"{self.name} {self.input_hw[0]}x{self.input_hw[1]}"


def build(case: ModelCase) -> torch.nn.Module:
    from ..model import build_model

    return build_model(str(case.config))


def forward_gflops(case: ModelCase, model: torch.nn.Module) -> float:
    """Forward GFLOPs of one image of ``model`` at the case's input (``densepred.cost.count_gflops``:
    a multiply-add is 2 FLOPs, convolutions and matrix products only), counted on a meta-device
    copy: shapes only, no arithmetic, so a large input costs nothing."""
    from ..cost import count_gflops

    return count_gflops(model, case.input_hw, "meta")
