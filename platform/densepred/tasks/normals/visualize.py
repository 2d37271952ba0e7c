"""Normals pictures and files: a unit vector as RGB = (n + 1) / 2 * 255 (x red, y green, z blue), the
NYUD / PASCAL-Context storage convention; no normal black."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ..dense.decode import unit_or_zero


def normals_rgb(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) vectors -> uint8 RGB; zero vectors black."""
    n = unit_or_zero(normals)
    rgb = np.clip((n + 1.0) * 0.5 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    rgb[np.abs(n).sum(axis=2) == 0] = 0
    return rgb


def write_normals_png(path: Path, normals: np.ndarray) -> None:
    cv2.imwrite(str(path), normals_rgb(normals)[:, :, ::-1])


def read_normals_png(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: not a readable normals PNG")
    rgb = bgr[:, :, ::-1]
    n = unit_or_zero(rgb.astype(np.float32) / 255.0 * 2.0 - 1.0)
    n[(rgb == 0).all(axis=2)] = 0.0
    return n
