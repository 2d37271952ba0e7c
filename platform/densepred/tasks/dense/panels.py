"""Side-by-side pictures of dense outputs: titled panels of one height, and colour legends."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

TITLE_H = 18


def titled(rgb: np.ndarray, title: str) -> np.ndarray:
    """``rgb`` under a white strip holding ``title``."""
    strip = np.full((TITLE_H, rgb.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, title, (4, TITLE_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, rgb], axis=0)


def fit_height(rgb: np.ndarray, height: int) -> np.ndarray:
    if rgb.shape[0] == height:
        return rgb
    w = max(1, int(round(rgb.shape[1] * height / rgb.shape[0])))
    return cv2.resize(rgb, (w, height), interpolation=cv2.INTER_AREA)


def side_by_side(parts: Sequence[tuple[str, np.ndarray]], gap: int = 4) -> np.ndarray:
    """Titled panels left to right, each scaled to the first one's height."""
    height = parts[0][1].shape[0]
    tiles = [titled(fit_height(p, height), t) for t, p in parts]
    spacer = np.full((tiles[0].shape[0], gap, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row += [tile, spacer]
    return np.concatenate(row[:-1], axis=1)


def darken(image: np.ndarray, amount: float = 0.5) -> np.ndarray:
    """The image dimmed, so that an overlay drawn on it stands out."""
    return (image.astype(np.float32) * (1.0 - amount)).astype(np.uint8)
