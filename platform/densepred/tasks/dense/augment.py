"""Joint augmentation of an image and its dense targets, all with one geometry: random scale (long
side relative to ``base_size``), random crop with padding, horizontal flip.

Per target kind: labels and boundaries are resized with nearest neighbours (no invented classes or
half boundaries); depth too (a blend of a measured and a missing pixel would be a false depth);
normals bilinearly, then renormalised, and zero where the nearest source pixel had no normal.
Padding is ignored in every target. A flip negates the x component of normals and swaps mirrored
classes. Depth values stay as they are unless the target asks to follow the zoom (then they are
divided by it: a zoomed-in object looks closer, as the MTL survey's NYUD recipe does).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import cv2
import numpy as np

from ...config import setting
from .decode import unit_or_zero


@dataclass
class DenseAugment:
    """``data.augment`` of a dense task (the keys of the segmentation task's, so that both read one
    dataset in a same-input run)."""

    scale_range: list[float] = setting(factory=lambda: [0.5, 2.0], gt=0, le=8)
    base_size: Optional[int] = setting(None, ge=16, le=16384)   # long side at scale 1.0 (None: the image's own)
    crop_size: list[int] = setting(factory=lambda: [512, 512], ge=16, le=8192)   # [W, H]
    flip: bool = True


def geometry_key(aug: Any) -> tuple:
    """What fixes the crops of an augmentation config (same for a segmentation and a dense task)."""
    return (tuple(aug.scale_range), aug.base_size, tuple(aug.crop_size), bool(aug.flip))


def _resize(array: np.ndarray, kind: str, size: tuple[int, int]) -> np.ndarray:
    """``array`` at ``size`` (W, H) with its kind's interpolation."""
    if kind != "normals":
        return cv2.resize(array, size, interpolation=cv2.INTER_NEAREST)
    smooth = unit_or_zero(cv2.resize(array, size, interpolation=cv2.INTER_LINEAR))
    valid = cv2.resize((np.abs(array).sum(axis=2) > 0).astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    smooth[valid == 0] = 0.0
    return smooth


def _pad(array: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    if not (ph or pw):
        return array
    width = ((0, ph), (0, pw)) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, width, mode="constant", constant_values=value)


def _flip(array: np.ndarray, target: Any) -> np.ndarray:
    out = array[:, ::-1].copy()
    if target.kind == "normals":
        out[..., 0] *= -1.0
    elif target.kind == "label" and target.flip_lut is not None:
        out = target.flip_lut[out]
    return out


def augment_sample(image: np.ndarray, arrays: dict[str, np.ndarray], targets: dict[str, Any], aug: Any,
                   rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scale, crop and flip ``image`` and every target array (``targets[key]`` says its kind)."""
    h, w = image.shape[:2]
    base = aug.base_size or max(h, w)
    lo, hi = aug.scale_range
    zoom = float(rng.uniform(lo, hi))
    s = base * zoom / max(h, w)
    size = (max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    arrays = {k: _resize(a, targets[k].kind, size) for k, a in arrays.items()}
    for k, t in targets.items():
        if t.kind == "depth" and t.rescale_depth:
            arrays[k] = arrays[k] / zoom
    cw, ch = aug.crop_size
    ph, pw = max(ch - size[1], 0), max(cw - size[0], 0)
    image = _pad(image, ph, pw, 0)
    arrays = {k: _pad(a, ph, pw, targets[k].pad_value()) for k, a in arrays.items()}
    H, W = image.shape[:2]
    y, x = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    image = image[y:y + ch, x:x + cw]
    arrays = {k: a[y:y + ch, x:x + cw] for k, a in arrays.items()}
    if aug.flip and rng.random() < 0.5:
        image = image[:, ::-1]
        arrays = {k: _flip(a, targets[k]) for k, a in arrays.items()}
    return np.ascontiguousarray(image), {k: np.ascontiguousarray(a) for k, a in arrays.items()}
