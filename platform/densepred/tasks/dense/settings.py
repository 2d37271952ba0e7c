"""The config sections of a dense regression task (depth, normals, boundaries): ``data``,
``evaluation`` and ``inference``; ``data.augment`` is ``augment.DenseAugment``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ...config import setting
from ...precision_check import PrecisionSettings
from .layout import layout_names


@dataclass
class DenseData:
    """``data`` section: a shipped layout (``format``), the target this task reads (null: the
    layout's default for the task) and optional split files overriding the layout's."""

    format: str = setting("nyud_mt", choices=layout_names(),
                          hint="a multi-target layout of configs/datasets/layouts/")
    target: Optional[str] = None         # a target of the layout; null: the layout's default for this task
    train_split: Optional[str] = None    # split file (relative to data_root); null: the layout's
    val_split: Optional[str] = None
    batch_size: int = setting(8, ge=1, hint="samples per worker and step")
    loader_workers: int = setting(2, ge=0, le=64)
    augment: dict = field(default_factory=dict)

    def split_name(self, split: str) -> Optional[str]:
        return self.train_split if split == "train" else self.val_split


@dataclass
class DenseEval:
    interval: int = setting(10, ge=1)    # evaluate every N epochs (and after the last)
    pictures: int = setting(4, ge=0, le=100)   # validation pictures written per evaluation


@dataclass
class DenseInference(PrecisionSettings):
    """``inference`` section of a dense task (and the precision keys every task has; without a
    calibration of their own, dense heads' bf16 is held to the raw output tolerance)."""

    flip: bool = False                   # also average the mirrored image's prediction
    align_corners: bool = False          # upsampling of the 1/4-resolution output to the image size
