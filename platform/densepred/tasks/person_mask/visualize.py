"""Person masks in pictures: pasting a crop's mask back into the image, and drawing masks."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from ..pose.geometry import get_crop_transform

#: a few distinct colours for the persons of one picture (RGB)
PALETTE = ((255, 64, 64), (64, 160, 255), (80, 220, 80), (255, 200, 0), (200, 80, 255), (0, 220, 220))


def heatmap_from_image(center: Any, scale: Any, input_size: Sequence[int], heatmap_hw: tuple[int, int],
                       udp: bool = False) -> np.ndarray:
    """``(2, 3)`` image -> mask-grid matrix: the crop warp, then the area downsampling of the target
    (``PersonMaskTarget.encode``), whose pixel centres sit at ``(x + 0.5) * w / W_in - 0.5``."""
    w_in, h_in = int(input_size[0]), int(input_size[1])
    sx, sy = heatmap_hw[1] / w_in, heatmap_hw[0] / h_in
    crop = np.vstack([get_crop_transform(center, scale, 0.0, (w_in, h_in), udp=udp), [0.0, 0.0, 1.0]])
    down = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]])
    return down @ crop


def paste_mask(mask_hm: np.ndarray, center: Any, scale: Any, input_size: Sequence[int],
               image_hw: tuple[int, int], udp: bool = False) -> np.ndarray:
    """A crop's mask ``(h, w)`` (heatmap grid, values in [0, 1]) as an ``(H, W)`` float32 image
    mask: bilinear, 0 outside the crop. ``udp`` selects the UDP crop geometry (``codec.udp``)."""
    mask_hm = np.ascontiguousarray(mask_hm, dtype=np.float32)
    if mask_hm.ndim != 2:
        raise ValueError(f"paste_mask needs an (h, w) mask, got shape {mask_hm.shape}")
    trans = heatmap_from_image(center, scale, input_size, mask_hm.shape, udp=udp)
    h, w = int(image_hw[0]), int(image_hw[1])
    # The matrix maps image (destination) pixels to mask-grid (source) pixels: one interpolation.
    return cv2.warpAffine(mask_hm, trans, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def draw_mask(image_rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int] = PALETTE[0],
              alpha: float = 0.5) -> np.ndarray:
    """A copy of the image with the pixels where ``mask > 0.5`` tinted with ``colour`` (RGB) and
    outlined; ``mask`` has the image's height and width (floats in [0, 1], bool or 0/255)."""
    out = np.ascontiguousarray(image_rgb.copy())
    fg = np.asarray(mask) > 0.5
    if fg.shape != out.shape[:2]:
        raise ValueError(f"draw_mask: mask shape {fg.shape} differs from the image's {out.shape[:2]}")
    if not fg.any():
        return out
    tint = np.asarray(colour, np.float32)
    out[fg] = ((1 - alpha) * out[fg].astype(np.float32) + alpha * tint).round().astype(np.uint8)
    contours, _ = cv2.findContours(fg.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, int(round(min(out.shape[:2]) / 300)))
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in colour), thickness, cv2.LINE_AA)
    return out


def mask_panel(patch_rgb: np.ndarray, *masks: np.ndarray) -> np.ndarray:
    """The crop, then the crop with each mask (any resolution, resized to the crop) drawn on it,
    side by side (e.g. target | prediction)."""
    h, w = patch_rgb.shape[:2]
    panels = [patch_rgb]
    for i, m in enumerate(masks):
        m = cv2.resize(np.asarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        panels.append(draw_mask(patch_rgb, m, PALETTE[i % len(PALETTE)]))
    return np.concatenate(panels, axis=1)
