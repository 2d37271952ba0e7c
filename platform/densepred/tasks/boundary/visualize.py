"""Boundary pictures: the image dimmed, boundary strength drawn over it in red."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ..dense.panels import darken
from ..dense.targets import BOUNDARY_IGNORE

COLOUR = np.array([255, 40, 40], np.float32)


def boundary_overlay(image: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """``strength``: probabilities in [0, 1], or a 0/1 map (255 = not scored, drawn as nothing)."""
    e = np.where(strength == BOUNDARY_IGNORE, 0.0, np.clip(strength, 0.0, 1.0)).astype(np.float32)[..., None]
    base = darken(image, 0.55).astype(np.float32)
    return (base * (1.0 - e) + COLOUR * e).astype(np.uint8)


def write_probability_png(path: Path, prob: np.ndarray) -> None:
    """Probabilities as an 8-bit grey PNG (0..255), the format seism reads."""
    cv2.imwrite(str(path), np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8))


def read_probability_png(path: Path) -> np.ndarray:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise DataError(f"{path}: not a readable boundary PNG")
    return gray.astype(np.float32) / 255.0
