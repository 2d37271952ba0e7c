"""MPII Human Pose in the official HRNet layout, as top-down samples.

Layout under ``data_root`` (deep-high-resolution-net.pytorch, ``data/mpii``)::

    annot/train.json, annot/valid.json   one entry per person:
        {"image": "015601864.jpg", "joints": [[x, y] x 16], "joints_vis": [16 x 0/1],
         "center": [x, y], "scale": s}
    annot/gt_valid.mat                   the PCKh ground truth (see ``pckh.py``)
    images/*.jpg

Conventions of the official loader (``lib/dataset/mpii.py``), applied here in the same order:
``scale`` is the person's size in 200-px units and becomes ``[s, s]``; when the center is given
(``x != -1``) it moves down by ``15 * s`` pixels and the scale grows by 1.25 (so that the crop
keeps the limbs); then the 1-based MATLAB coordinates of the center and the joints become
0-based (``- 1``). The records then go through the same crop, augmentation and heatmap code as
COCO (``TopDownDataset``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ...errors import DataError
from .codec import HeatmapCodec
from .geometry import PIXEL_STD
from .crop_targets import CropTarget
from .dataset import PersonRecord, TopDownDataset
from .keypoint_meta import load_keypoint_info
from .pckh import NUM_KEYPOINTS
from .transforms import AugmentConfig

CENTER_SHIFT = 15.0   # official: c[1] += 15 * s (pixels per 200-px unit of scale)
SCALE_FACTOR = 1.25   # official: s *= 1.25


def annot_file(data_root: str | Path, split: str) -> Path:
    return Path(data_root) / "annot" / f"{split}.json"


def gt_file(data_root: str | Path, split: str) -> Path:
    """The PCKh ground truth of ``split`` (official name ``annot/gt_<split>.mat``)."""
    return Path(data_root) / "annot" / f"gt_{split}.mat"


def image_dir(data_root: str | Path) -> Path:
    folder = Path(data_root) / "images"
    if not folder.is_dir():
        raise DataError(f"{folder}: MPII image folder not found; data_root must hold annot/ and images/ "
                        "(make the demo set with `platform data demo --task mpii`)")
    return folder


def read_annot(path: Path) -> list:
    """The entries of an MPII annotation file (a JSON list)."""
    if not path.is_file():
        raise DataError(f"{path}: MPII annotation file not found; check data_root and data.train_split/"
                        "data.val_split (expected annot/<split>.json)")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); "
                        "fix or regenerate the annotation file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the annotation file ({e})") from None
    if not isinstance(entries, list):
        raise DataError(f"{path}: an MPII annotation file must be a JSON list of persons, "
                        f"got {type(entries).__name__}")
    if not entries:
        raise DataError(f"{path}: the annotation file lists no persons")
    return entries


def _numbers(value: Any, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """``value`` as a float64 array of ``shape``, or None if it is not finite numbers of that shape."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != shape or not np.isfinite(arr).all():
        return None
    return arr


def _check_entry(entry: Any, i: int, path: Path) -> tuple[str, np.ndarray, float, np.ndarray, np.ndarray]:
    """The fields of entry ``i``: image, center (2,), scale, joints (16, 2), joints_vis (16,)."""
    if not isinstance(entry, dict):
        raise DataError(f"{path}: entry {i} is a {type(entry).__name__}, expected an object with "
                        "image, joints, joints_vis, center, scale")
    missing = [k for k in ("image", "joints", "joints_vis", "center", "scale") if k not in entry]
    if missing:
        raise DataError(f"{path}: entry {i} lacks {', '.join(missing)}; every person needs image, "
                        "joints, joints_vis, center and scale")
    image = entry["image"]
    if not isinstance(image, str) or not image:
        raise DataError(f"{path}: entry {i} has image {image!r}; expected a file name")
    center = _numbers(entry["center"], (2,))
    scale = entry["scale"]
    if center is None:
        raise DataError(f"{path}: entry {i} ({image}) has center {entry['center']!r}; expected [x, y]")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise DataError(f"{path}: entry {i} ({image}) has scale {scale!r}; expected a positive number "
                        "(person size / 200 px)")
    joints = _numbers(entry["joints"], (NUM_KEYPOINTS, 2))
    if joints is None:
        raise DataError(f"{path}: entry {i} ({image}) has joints of the wrong shape or type; expected "
                        f"{NUM_KEYPOINTS} [x, y] number pairs")
    vis = _numbers(entry["joints_vis"], (NUM_KEYPOINTS,))
    if vis is None:
        raise DataError(f"{path}: entry {i} ({image}) has joints_vis of the wrong shape or type; expected "
                        f"{NUM_KEYPOINTS} numbers (0 or 1)")
    return image, center, float(scale), joints, vis


def adjust_center_scale(center: Sequence[float], scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The official adjustment of an annotated (1-based) center and scalar scale: ``[s, s]``, then
    (if the center is known, ``x != -1``) ``y += 15 s`` and ``s *= 1.25``, then ``center - 1``."""
    c = np.array(center, dtype=np.float64)
    s = np.array([scale, scale], dtype=np.float64)
    if c[0] != -1:
        c[1] = c[1] + CENTER_SHIFT * s[1]
        s = s * SCALE_FACTOR
    return (c - 1).astype(np.float32), s.astype(np.float32)


def _image_ids(names: list[str]) -> dict[str, int]:
    """An integer id per image: the number in the name (MPII's are digits, e.g. 015601864.jpg),
    else a running number for names that are not."""
    ids: dict[str, int] = {}
    for name in names:
        if name in ids:
            continue
        stem = Path(name).stem
        ids[name] = int(stem) if stem.isdigit() and len(stem) < 18 else -(len(ids) + 1)
    return ids


def load_mpii_records(path: Path, images: Path) -> list[PersonRecord]:
    """One ``PersonRecord`` per entry of the annotation file ``path``, in file order."""
    entries = read_annot(path)
    checked = [_check_entry(e, i, path) for i, e in enumerate(entries)]
    ids = _image_ids([c[0] for c in checked])
    records = []
    for i, (image, center, scale, joints, vis) in enumerate(checked):
        c, s = adjust_center_scale(center, scale)
        joints3 = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        joints3[:, :2] = joints - 1  # 1-based MATLAB pixels -> 0-based
        vis3 = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        vis3[:, 0] = vis3[:, 1] = vis
        area = float(s[0] * s[1]) * PIXEL_STD * PIXEL_STD
        records.append(PersonRecord(ids[image], str(images / image), c, s, joints3, vis3, 1.0, area, i))
    return records


class MpiiPoseDataset(TopDownDataset):
    """The persons of ``annot/<split>.json`` as top-down samples (same sample dict as COCO's);
    ``index`` of a sample is its position in the file, the order of ``gt_<split>.mat``."""

    def __init__(self, data_root: str | Path, split: str, codec: HeatmapCodec, train: bool,
                 augment_cfg: Optional[AugmentConfig] = None, seed: int = 0, strict_images: bool = False,
                 extra_targets: Sequence[CropTarget] = ()):
        root = Path(data_root)
        if not root.is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root to your MPII folder "
                            "(--set data_root=...) or make the demo set with `platform data demo --task mpii`")
        self.split = split
        self.ann_file = annot_file(root, split)
        self.gt_file = gt_file(root, split)
        self._init_samples(codec, train, augment_cfg, seed, strict_images, extra_targets, load_keypoint_info("mpii"))
        self.records = load_mpii_records(self.ann_file, root / "images")
        self.image_dir = image_dir(root)
