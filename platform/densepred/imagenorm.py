"""ImageNet normalisation shared by every task (the official HRNet code uses it for pose and
segmentation alike)."""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _lookup_table() -> np.ndarray:
    """(3, 256) float32: the normalised value of every uint8 level per channel, computed with the
    same float32 operations as the direct formula, so a lookup gives bit-identical results."""
    levels = np.arange(256, dtype=np.float32)[:, None] / 255.0
    return np.ascontiguousarray(((levels - IMAGENET_MEAN) / IMAGENET_STD).T)


_LUT = _lookup_table()


def normalize(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB HxWx3 -> float32 3xHxW, (x/255 - mean) / std.

    A per-channel table lookup: about 3x faster than converting and scaling the whole image in
    float32, which took a fifth of a pose training sample's loading time."""
    if image_rgb.dtype != np.uint8:
        x = image_rgb.astype(np.float32) / 255.0
        return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()
    out = np.empty((3,) + image_rgb.shape[:2], dtype=np.float32)
    for c in range(3):
        np.take(_LUT[c], image_rgb[:, :, c], out=out[c])
    return out
