"""Pictures for segmentation: colour overlays with a legend of the classes present."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from .labels import CLASS_NAMES, IGNORE_INDEX, PALETTE

_PALETTE = np.zeros((256, 3), np.uint8)
_PALETTE[: len(PALETTE)] = np.asarray(PALETTE, np.uint8)


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """trainId map -> RGB using the Cityscapes colours (ignore = black)."""
    return _PALETTE[train_ids.astype(np.uint8)]


def overlay(image_rgb: np.ndarray, train_ids: np.ndarray, alpha: float = 0.5, legend: bool = True,
            legend_classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """Blend the colour map over the image; ignore pixels keep the image. Adds a legend strip of the
    classes present, or of ``legend_classes`` (a fixed list keeps every video frame the same size)."""
    colour = colorize(train_ids)
    out = image_rgb.copy()
    mask = train_ids != IGNORE_INDEX
    out[mask] = (alpha * colour[mask] + (1 - alpha) * image_rgb[mask]).astype(np.uint8)
    if not legend:
        return out
    present = (list(legend_classes) if legend_classes is not None
               else [int(c) for c in np.unique(train_ids) if c != IGNORE_INDEX])
    return np.concatenate([out, legend_strip(out.shape[0], present)], axis=1)


def legend_strip(height: int, present: Sequence[int]) -> np.ndarray:
    """A white ``(height, W, 3)`` strip naming ``present`` classes with their colours, to put to
    the right of an overlay."""
    row_h = max(12, height // 30)
    per_col = max(1, (height - 4) // (row_h + 2))
    col_w = row_h * 8
    cols = max(1, -(-len(present) // per_col))
    strip = np.full((height, col_w * cols + 4, 3), 255, np.uint8)
    for k, c in enumerate(present):
        x = 4 + (k // per_col) * col_w
        y = 4 + (k % per_col) * (row_h + 2)
        strip[y:y + row_h, x:x + row_h] = _PALETTE[c]
        cv2.putText(strip, CLASS_NAMES[c], (x + row_h + 4, y + row_h - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    row_h / 30, (0, 0, 0), 1, cv2.LINE_AA)
    return strip
