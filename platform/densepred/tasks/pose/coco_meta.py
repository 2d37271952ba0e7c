"""COCO person keypoint metadata: names, flip pairs, skeleton, OKS sigmas, official joint weights."""
from __future__ import annotations

import numpy as np

KEYPOINT_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# Left/right pairs swapped by a horizontal flip.
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]

# Limbs as 0-based joint index pairs (the COCO skeleton, which is 1-based in the JSON).
SKELETON = [
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
]

# Per-keypoint OKS constants used by COCOeval.
SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                   1.07, 1.07, .87, .87, .89, .89], dtype=np.float64) / 10.0

# Loss weights of the official HRNet COCO dataset (used when `use_different_joints_weight`).
JOINT_WEIGHTS = np.array([1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5],
                         dtype=np.float32)

UPPER_BODY_IDS = list(range(11))
LOWER_BODY_IDS = list(range(11, 17))

PIXEL_STD = 200.0  # official unit of `scale`: a box of width 200 px has scale 1.0


def _coco_meta():
    from .keypoint_meta import make_meta

    return make_meta("coco", KEYPOINT_NAMES, FLIP_PAIRS, SKELETON, UPPER_BODY_IDS, JOINT_WEIGHTS)


#: the constants above as one KeypointMeta (what the pose task uses for ``data.format: coco``)
COCO_META = _coco_meta()
