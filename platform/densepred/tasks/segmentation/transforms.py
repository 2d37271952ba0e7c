"""Segmentation augmentation of the official HRNetV2 recipes: random scale (long side relative to
``base_size``), random crop with padding (black image, ignore label), horizontal flip (swapping the
classes of ``label_flip_pairs``, e.g. left and right arm, as the official LIP loader does)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from ...config import setting

IGNORE_INDEX = 255


@dataclass
class SegAugment:
    """``data.augment`` of a segmentation task YAML."""

    scale_range: list[float] = setting(factory=lambda: [0.5, 2.0], gt=0, le=8)
    base_size: Optional[int] = setting(None, ge=16, le=16384)         # long side at scale 1.0 (None: the image's own; 2048 official)
    crop_size: list[int] = setting(factory=lambda: [1024, 512], ge=16, le=8192)   # [W, H]
    flip: bool = True


def resize_pair(image: np.ndarray, label: np.ndarray, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = label.shape
    s = long_side / max(h, w)
    size = (max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


def random_crop(image: np.ndarray, label: np.ndarray, crop_wh: list[int], rng: np.random.Generator,
                ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Pad to at least the crop (image black, label ``ignore_index``) and cut a random window."""
    cw, ch = crop_wh
    h, w = label.shape
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore_index)
        h, w = label.shape
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]


def augment(image: np.ndarray, label: np.ndarray, aug: SegAugment, rng: np.random.Generator,
            ignore_index: int = IGNORE_INDEX, flip_lut: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Scale, crop and flip one image/label pair. ``flip_lut`` (class id -> class id of the mirrored
    image) relabels a flipped label, so that a left arm seen in a mirror becomes a right arm."""
    base = aug.base_size or max(label.shape)
    lo, hi = aug.scale_range
    image, label = resize_pair(image, label, int(base * rng.uniform(lo, hi) + 0.5))
    image, label = random_crop(image, label, aug.crop_size, rng, ignore_index)
    if aug.flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
        if flip_lut is not None:
            label = flip_lut[label]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
