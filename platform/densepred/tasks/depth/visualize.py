"""Depth pictures: a colour map (viridis: near dark, far bright; no measurement black) with a scale
bar in metres to its right."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

BAR_W = 64


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """0 to the 99th percentile of the measured depth, rounded up to 0.5 m (a stable scale)."""
    valid = depth[depth > 0]
    top = float(np.percentile(valid, 99)) if valid.size else 1.0
    return 0.0, max(0.5, float(np.ceil(top * 2.0) / 2.0))


def colourize(depth: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """RGB of a depth map in [vmin, vmax]; pixels without depth (<= 0) black."""
    scaled = np.clip((depth - vmin) / max(vmax - vmin, 1e-6), 0.0, 1.0)
    rgb = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[:, :, ::-1].copy()
    rgb[depth <= 0] = 0
    return rgb


def scale_bar(height: int, vmin: float, vmax: float, ticks: int = 5) -> np.ndarray:
    """A vertical colour bar (far at the top) with tick labels in metres."""
    bar = np.full((height, BAR_W, 3), 255, np.uint8)
    top, bottom = 8, max(9, height - 8)
    ramp = np.linspace(1.0, 0.0, bottom - top)[:, None]
    colours = cv2.applyColorMap((ramp * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[:, :, ::-1]
    bar[top:bottom, 4:16] = colours
    for k in range(ticks):
        frac = k / (ticks - 1)
        y = int(bottom - 1 - frac * (bottom - top - 1))
        cv2.line(bar, (16, y), (20, y), (0, 0, 0), 1)
        cv2.putText(bar, f"{vmin + frac * (vmax - vmin):.1f} m", (22, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.33,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def depth_picture(depth: np.ndarray, value_range: Optional[tuple[float, float]] = None) -> np.ndarray:
    """The colour map with its scale bar (image height, image width + the bar)."""
    vmin, vmax = value_range or depth_range(depth)
    return np.concatenate([colourize(depth, vmin, vmax), scale_bar(depth.shape[0], vmin, vmax)], axis=1)
