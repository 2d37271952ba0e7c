"""One dataset for every dense target of a layout: one image decode, one joint augmentation, and a
sample with the image and each target under its key.

Sample keys: ``image`` (3xHxW float32, normalised), one per target (label ``(H, W) int64`` class
ids; boundary ``(H, W) int64`` 0/1, 255 ignored; depth ``(1, H, W) float32`` metres, 0 = none;
normals ``(3, H, W) float32``, zero = none), ``name``, ``index`` and ``fault`` (a per-sample fault
message: the sample then has a black image and nothing to learn).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...epoch import EpochAware
from ...errors import DataError
from ...imagenorm import normalize
from ...imageio import read_rgb
from .augment import augment_sample
from .samples import DenseSample
from .targets import DenseTarget, check_keys


def to_tensor(array: np.ndarray, kind: str) -> torch.Tensor:
    """A target array as its batch tensor (see the module docstring)."""
    if kind in ("label", "boundary"):
        return torch.from_numpy(array.astype(np.int64))
    if kind == "normals":
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)).astype(np.float32))
    return torch.from_numpy(array.astype(np.float32))[None]


class DenseDataset(EpochAware, Dataset):
    """The samples of a split with ``targets`` read, augmented together when ``train``."""

    def __init__(self, samples: list[DenseSample], targets: Sequence[DenseTarget], train: bool, augment_cfg: Any,
                 seed: int = 0, strict_images: bool = False):
        self.samples = samples
        self.targets = {t.key: t for t in check_keys(list(targets))}
        self.train = train
        self.aug = augment_cfg
        self.strict_images = strict_images
        self._init_epoch(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """uint8 RGB image and every target, full resolution (val) or augmented (train)."""
        s = self.samples[index]
        image = read_rgb(s.image)
        hw = image.shape[:2]
        arrays = {k: t.read(s, hw) for k, t in self.targets.items()}
        if self.train:
            image, arrays = augment_sample(image, arrays, self.targets, self.aug, self.rng(index))
        return image, arrays

    def _faulty(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        w, h = self.aug.crop_size
        return np.zeros((h, w, 3), np.uint8), {k: t.empty((h, w)) for k, t in self.targets.items()}

    def __getitem__(self, index: int) -> dict[str, Any]:
        fault = ""
        try:
            image, arrays = self.load(index)
        except DataError as e:
            if self.strict_images or not self.train:
                raise
            fault = str(e)
            image, arrays = self._faulty()
        sample = {"image": torch.from_numpy(normalize(image)), "name": self.samples[index].image.name,
                  "index": index, "fault": fault}
        sample.update({k: to_tensor(a, self.targets[k].kind) for k, a in arrays.items()})
        return sample
