"""Pictures for segmentation: colour overlays in the class list's palette with a legend of the
classes present (Cityscapes' colours when no class list is given)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from .class_info import ClassInfo
from .labels import CITYSCAPES


def colorize(class_ids: np.ndarray, info: Optional[ClassInfo] = None) -> np.ndarray:
    """Class-id map -> RGB using the class list's colours (ignore = black)."""
    return (info or CITYSCAPES).colorize(class_ids)


def overlay(image_rgb: np.ndarray, class_ids: np.ndarray, alpha: float = 0.5, legend: bool = True,
            legend_classes: Optional[Sequence[int]] = None, info: Optional[ClassInfo] = None) -> np.ndarray:
    """Blend the colour map over the image; ignore pixels keep the image. Adds a legend strip of the
    classes present, or of ``legend_classes`` (a fixed list keeps every video frame the same size)."""
    info = info or CITYSCAPES
    colour = info.colorize(class_ids)
    out = image_rgb.copy()
    mask = (class_ids >= 0) & (class_ids < info.num_classes)
    out[mask] = (alpha * colour[mask] + (1 - alpha) * image_rgb[mask]).astype(np.uint8)
    if not legend:
        return out
    present = (list(legend_classes) if legend_classes is not None
               else [int(c) for c in np.unique(class_ids) if 0 <= c < info.num_classes])
    return np.concatenate([out, legend_strip(out.shape[0], present, info)], axis=1)


def legend_strip(height: int, present: Sequence[int], info: Optional[ClassInfo] = None) -> np.ndarray:
    """A white ``(height, W, 3)`` strip naming ``present`` classes with their colours, to put to
    the right of an overlay."""
    info = info or CITYSCAPES
    row_h = max(12, height // 30)
    per_col = max(1, (height - 4) // (row_h + 2))
    col_w = row_h * max(8, 2 + max((len(info.names[c]) for c in present), default=0) // 2)
    cols = max(1, -(-len(present) // per_col))
    strip = np.full((height, col_w * cols + 4, 3), 255, np.uint8)
    for k, c in enumerate(present):
        x = 4 + (k // per_col) * col_w
        y = 4 + (k % per_col) * (row_h + 2)
        strip[y:y + row_h, x:x + row_h] = info.palette[c]
        cv2.putText(strip, info.names[c], (x + row_h + 4, y + row_h - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    row_h / 30, (0, 0, 0), 1, cv2.LINE_AA)
    return strip
