"""ImageNet normalisation shared by every task (the official HRNet code uses it for pose and
segmentation alike)."""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalize(image_rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB HxWx3 -> float32 3xHxW, (x/255 - mean) / std."""
    x = image_rgb.astype(np.float32) / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()
