"""Image-aligned extra targets of the top-down crop dataset (e.g. a person mask).

A crop target renders one channel in image pixels per person record; the dataset augments and
crops it with exactly the image's geometry (flip, scale, rotation, affine warp), then the target
encodes the warped channel into training arrays. A same-input multi-task run adds the targets of
all its members to one dataset, so every member trains on the same crops.
"""
from __future__ import annotations

from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

#: keys of a pose sample; extra targets must not overwrite them
RESERVED_KEYS = frozenset({"image", "target", "target_weight", "center", "scale", "rotation", "image_id",
                           "score", "area", "index", "fault", "extras"})


@runtime_checkable
class CropTarget(Protocol):
    """One extra channel of a crop sample.

    ``render`` may return None when the record has no target (e.g. a detected box without a
    ground-truth annotation): the sample then gets ``empty()`` (zero weight) for this target.
    """

    key: str

    def render(self, record: Any, image_hw: tuple[int, int]) -> Optional[np.ndarray]:
        """The channel ``(H, W) uint8`` in image pixels for ``record`` (a ``PersonRecord``)."""
        ...

    def encode(self, warped: np.ndarray) -> dict[str, np.ndarray]:
        """Training arrays from the channel warped to the crop, ``(H_in, W_in) uint8``."""
        ...

    def empty(self) -> dict[str, np.ndarray]:
        """The arrays of ``encode`` with zero weight (a faulty sample or a record without target)."""
        ...


def check_targets(targets: Sequence[Any]) -> tuple[Any, ...]:
    """The targets as a tuple; their keys must be distinct and must not shadow a sample key."""
    targets = tuple(targets)
    keys = [t.key for t in targets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"extra crop targets need distinct keys, got {keys}")
    clash = sorted(set(keys) & RESERVED_KEYS)
    if clash:
        raise ValueError(f"extra crop target key(s) {clash} clash with the pose sample's keys")
    return targets
