"""Pictures for people: skeletons on images, heatmaps beside crops."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .keypoint_meta import KeypointMeta, coco_keypoints

# Left limbs warm, right limbs cool, centre green: left/right mistakes are visible at a glance.
_LEFT, _RIGHT, _MID = (255, 128, 0), (0, 160, 255), (60, 200, 60)
_SIDE_COLOUR = {"L": _LEFT, "R": _RIGHT, "M": _MID}


def _limb_color(a: int, b: int, meta: Optional[KeypointMeta] = None) -> tuple[int, int, int]:
    meta = meta or coco_keypoints()
    sa, sb = meta.side(a), meta.side(b)
    return _SIDE_COLOUR[sa] if sa == sb else _MID


def draw_skeleton(image_rgb: np.ndarray, keypoints: np.ndarray, thr: float = 0.2,
                  radius: int = 3, thickness: int = 2, meta: Optional[KeypointMeta] = None) -> np.ndarray:
    """Draw one person's (K, 3) keypoints (x, y, confidence or visibility) on a copy of the image."""
    out = np.ascontiguousarray(image_rgb.copy())
    draw_keypoints(out, keypoints, thr, radius, thickness, meta=meta)
    return out


def draw_keypoints(out: np.ndarray, keypoints: np.ndarray, thr: float, radius: int = 3,
                   thickness: int = 2, meta: Optional[KeypointMeta] = None) -> int:
    """Draw, in place, the limbs (``meta.skeleton``) and keypoints whose confidence is above
    ``thr``; returns how many keypoints were drawn. ``meta``: the data set's joints (default COCO's)."""
    meta = meta or coco_keypoints()
    kp = np.asarray(keypoints, dtype=np.float32)
    for a, b in meta.skeleton:
        if kp[a, 2] > thr and kp[b, 2] > thr:
            pa = tuple(int(round(v)) for v in kp[a, :2])
            pb = tuple(int(round(v)) for v in kp[b, :2])
            cv2.line(out, pa, pb, _limb_color(a, b, meta), thickness, cv2.LINE_AA)
    drawn = 0
    for i, (x, y, c) in enumerate(kp):
        if c > thr:
            color = _SIDE_COLOUR[meta.side(i)]
            cv2.circle(out, (int(round(x)), int(round(y))), radius, color, -1, cv2.LINE_AA)
            drawn += 1
    return drawn


_BOX = (255, 255, 0)


def draw_person(out: np.ndarray, box: list[float], score: float, keypoints: np.ndarray, kpt_thr: float,
                meta: Optional[KeypointMeta] = None) -> int:
    """Draw, in place, a person's box with its score and the keypoints above ``kpt_thr``. Line widths
    grow with the image so that drawings stay visible on large photos. Returns keypoints drawn."""
    unit = max(1.0, min(out.shape[:2]) / 400)
    x, y, w, h = box
    p1, p2 = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
    cv2.rectangle(out, p1, p2, _BOX, max(1, int(unit)), cv2.LINE_AA)
    text, font, scale = f"{score:.2f}", cv2.FONT_HERSHEY_SIMPLEX, 0.4 * unit
    (tw, th), base = cv2.getTextSize(text, font, scale, max(1, int(unit)))
    ty = p1[1] - 2 if p1[1] - th - base >= 0 else p1[1] + th + 2  # above the box, or inside at the top
    cv2.rectangle(out, (p1[0], ty - th - 1), (p1[0] + tw + 2, ty + base - 1), _BOX, -1)
    cv2.putText(out, text, (p1[0] + 1, ty - 1), font, scale, (0, 0, 0), max(1, int(unit)), cv2.LINE_AA)
    return draw_keypoints(out, keypoints, kpt_thr, radius=int(round(3 * unit)), thickness=int(round(2 * unit)),
                          meta=meta)


def heatmap_panel(patch_rgb: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The crop with the summed target heatmaps overlaid in red, side by side with the plain crop."""
    h, w = patch_rgb.shape[:2]
    heat = cv2.resize(target.max(axis=0), (w, h), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0, 1)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    blend = (0.5 * patch_rgb + 0.5 * colour).astype(np.uint8)
    return np.concatenate([patch_rgb, blend], axis=1)


def save_panel(path: Path, panel_rgb: np.ndarray, zoom: int = 2) -> None:
    """Write a browse picture enlarged ``zoom`` times with nearest-neighbour pixels (small crops
    stay readable) as a JPEG."""
    big = cv2.resize(panel_rgb, (panel_rgb.shape[1] * zoom, panel_rgb.shape[0] * zoom),
                     interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), big[:, :, ::-1])
