"""Keypoint metadata of one data set: what the pose pipeline must know about its joints.

Augmentation (flip, half-body crops), the codec's joint weights, the flip test and the pictures all
read the joints through a :class:`KeypointMeta`, so a data set with another skeleton (MPII's 16
joints) uses the same code as COCO's 17. Instances: ``coco_meta.COCO_META``, ``mpii_meta.MPII_META``;
:func:`keypoint_meta` picks one by the ``data.format`` name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: ``data.format`` values and the module holding each format's metadata
FORMATS = ("coco", "mpii")


@dataclass(frozen=True)
class KeypointMeta:
    """Joint names (in heatmap order), left/right flip pairs, limbs, the upper-body joints of the
    half-body augmentation and the per-joint loss weights (``data.use_joint_weights``)."""

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...]
    joint_weights: np.ndarray = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        k = len(self.names)
        used = [i for pair in (*self.flip_pairs, *self.skeleton) for i in pair] + list(self.upper_body_ids)
        if any(not 0 <= i < k for i in used):
            raise ValueError(f"{self.name} keypoint meta: a joint index is outside 0..{k - 1}")
        if np.shape(self.joint_weights) != (k,):
            raise ValueError(f"{self.name} keypoint meta: joint_weights must have {k} entries")

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def lower_body_ids(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_keypoints) if i not in self.upper_body_ids)

    def side(self, joint: int) -> str:
        """``L``, ``R`` or ``M`` (middle) from the joint's name (``left_*``/``l_*``, ``right_*``/``r_*``);
        pictures colour the two sides differently so that left/right mistakes show."""
        name = self.names[joint]
        if name.startswith(("left_", "l_")):
            return "L"
        if name.startswith(("right_", "r_")):
            return "R"
        return "M"


def make_meta(name: str, names: Sequence[str], flip_pairs: Sequence[Sequence[int]],
              skeleton: Sequence[Sequence[int]], upper_body_ids: Sequence[int],
              joint_weights: Sequence[float] | None = None) -> KeypointMeta:
    """A :class:`KeypointMeta` from plain lists (weights default to 1 per joint)."""
    weights = np.ones(len(names), np.float32) if joint_weights is None else np.array(joint_weights, np.float32)
    weights.setflags(write=False)  # shared by every codec: nobody may change it in place
    return KeypointMeta(name, tuple(names), tuple((int(a), int(b)) for a, b in flip_pairs),
                        tuple((int(a), int(b)) for a, b in skeleton), tuple(int(i) for i in upper_body_ids),
                        weights)


def keypoint_meta(fmt: str) -> KeypointMeta:
    """The metadata of ``data.format`` ``fmt`` (``coco`` or ``mpii``)."""
    if fmt == "coco":
        from .coco_meta import COCO_META

        return COCO_META
    if fmt == "mpii":
        from .mpii_meta import MPII_META

        return MPII_META
    raise ValueError(f"unknown keypoint format {fmt!r}; valid: {', '.join(FORMATS)}")
