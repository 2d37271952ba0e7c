"""Top-down pose augmentation and cropping with the official HRNet semantics.

Everything works on one person record at a time: ``center``/``scale`` (200-px units), joints
(K, 3) and joints_vis (K, 3). Randomness comes from an explicit ``np.random.Generator`` so a run
is reproducible per worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from ...config import setting

from .geometry import PIXEL_STD
from .geometry import affine_transform, fliplr_joints
from .keypoint_meta import KeypointMeta


@dataclass
class AugmentConfig:
    """Training augmentation of the official recipe (``data.augment`` in the task YAML)."""

    flip: bool = True
    scale_factor: float = setting(0.35, ge=0, le=0.95)
    rotation_factor: float = setting(45.0, ge=0, le=180)
    rotation_prob: float = setting(0.6, ge=0, le=1)
    half_body_prob: float = setting(0.3, ge=0, le=1)
    half_body_min_joints: int = setting(8, ge=0, le=10000)
    # Box-centre jitter (mmpose's RandomBBoxTransform): with probability shift_prob the centre moves
    # by up to shift_factor of the box size in x and y. Off in the official HRNet recipe; it teaches
    # the model the detector's off-centre boxes.
    shift_factor: float = setting(0.0, ge=0, le=1)
    shift_prob: float = setting(0.0, ge=0, le=1)


def half_body_box(joints: np.ndarray, joints_vis: np.ndarray, aspect_ratio: float,
                  rng: np.random.Generator, upper_body_ids: Sequence[int] = tuple(range(11)),
                  ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Box around the upper or lower body (official ``half_body_transform``); None if too few joints."""
    visible = joints_vis[:, 0] > 0
    upper_mask = np.zeros(len(joints), bool)
    upper_mask[list(upper_body_ids)] = True
    upper = joints[visible & upper_mask]
    lower = joints[visible & ~upper_mask]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    chosen = chosen[:, :2].astype(np.float32)
    center = chosen.mean(axis=0)
    w, h = chosen.max(axis=0) - chosen.min(axis=0)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * 1.5
    return center, scale


def augment(image: np.ndarray, joints: np.ndarray, joints_vis: np.ndarray, center: np.ndarray,
            scale: np.ndarray, aug: AugmentConfig, aspect_ratio: float, rng: np.random.Generator,
            meta: Optional[KeypointMeta] = None):
    """Random half-body, box shift, scale, rotation and flip (``meta``: the data set's upper body and flip
    pairs; default COCO's; a data set without an upper body gets no half-body crops). Returns
    (image, joints, joints_vis, center, scale, rot)."""
    if meta is None:
        from .keypoint_meta import coco_keypoints
        meta = coco_keypoints()
    center, scale = center.copy(), scale.copy()
    if meta.half_body and aug.half_body_prob > 0 and joints_vis[:, 0].sum() > aug.half_body_min_joints \
            and rng.random() < aug.half_body_prob:
        hb = half_body_box(joints, joints_vis, aspect_ratio, rng, meta.upper_body_ids)
        if hb is not None:
            center, scale = hb
    if aug.shift_factor > 0 and aug.shift_prob > 0 and rng.random() < aug.shift_prob:
        center = center + rng.uniform(-1, 1, 2).astype(np.float32) * aug.shift_factor * scale * PIXEL_STD
    sf, rf = aug.scale_factor, aug.rotation_factor
    scale = scale * np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf)
    rot = float(np.clip(rng.standard_normal() * rf, -rf * 2, rf * 2)) if rng.random() <= aug.rotation_prob else 0.0
    if aug.flip and rng.random() <= 0.5:
        image = cv2.flip(image, 1)  # the same pixels as image[:, ::-1], but contiguous (the warp needs that)
        joints, joints_vis = fliplr_joints(joints, joints_vis, image.shape[1], meta.flip_pairs)
        center[0] = image.shape[1] - center[0] - 1
    return image, joints, joints_vis, center, scale, rot


def crop(image: np.ndarray, joints: np.ndarray, joints_vis: np.ndarray, trans: np.ndarray,
         input_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp with the (2, 3) image->crop matrix ``trans`` to ``input_size`` (W, H); joints follow."""
    patch = cv2.warpAffine(np.ascontiguousarray(image), trans, (int(input_size[0]), int(input_size[1])),
                           flags=cv2.INTER_LINEAR)
    joints = joints.copy()
    vis = joints_vis[:, 0] > 0
    if vis.any():
        joints[vis, :2] = affine_transform(joints[vis, :2], trans)
    return patch, joints


def warp_channel(channel: np.ndarray, trans: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Warp one ``(H, W)`` image channel (e.g. a mask) to the crop with the image's matrix ``trans``."""
    return cv2.warpAffine(np.ascontiguousarray(channel), trans, (int(input_size[0]), int(input_size[1])),
                          flags=cv2.INTER_LINEAR)
