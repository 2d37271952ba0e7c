"""MPII Human Pose keypoint metadata, in the order of the official HRNet code (``lib/dataset/mpii.py``)
and of MPII's own ``gt_valid.mat`` (``dataset_joints``)."""
from __future__ import annotations

from .keypoint_meta import make_meta

KEYPOINT_NAMES = [
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
]
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

#: MPII's short joint codes (``dataset_joints`` of gt_valid.mat), same order as KEYPOINT_NAMES
JOINT_CODES = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
               "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri")

FLIP_PAIRS = [(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)]

# Limbs (0-based): legs to the pelvis, the spine to the head, arms to the thorax.
SKELETON = [
    (0, 1), (1, 2), (2, 6), (5, 4), (4, 3), (3, 6), (6, 7), (7, 8), (8, 9),
    (10, 11), (11, 12), (12, 7), (15, 14), (14, 13), (13, 7),
]

# Official: upper body = thorax, neck, head and arms; pelvis counts as lower body.
UPPER_BODY_IDS = [7, 8, 9, 10, 11, 12, 13, 14, 15]

# The official MPII dataset has no per-joint loss weights (``joints_weight = 1``).
MPII_META = make_meta("mpii", KEYPOINT_NAMES, FLIP_PAIRS, SKELETON, UPPER_BODY_IDS)
