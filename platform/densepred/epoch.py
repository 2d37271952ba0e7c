"""Epoch-aware datasets: the epoch lives in shared memory so that persistent DataLoader workers
(forked once) see ``set_epoch`` and draw new augmentations every epoch."""
from __future__ import annotations

import multiprocessing

import numpy as np


class EpochAware:
    """Mixin giving ``set_epoch`` and a per-(seed, epoch, index) random generator."""

    seed: int = 0

    def _init_epoch(self, seed: int) -> None:
        self.seed = seed
        self._epoch = multiprocessing.Value("i", 0, lock=False)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        # Independent of worker count and loader order: same sample and epoch, same augmentation.
        return np.random.default_rng([self.seed, self.epoch, index])
