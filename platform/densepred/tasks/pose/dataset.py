"""COCO person keypoints for top-down pose: one sample per person box.

Layout under ``data_root`` (the official one)::

    annotations/person_keypoints_{train2017,val2017}.json
    images/{train2017,val2017}/*.jpg        (or {train2017,val2017}/*.jpg directly under the root)

Validation boxes come from ground truth or from a person detection results file
(``bbox_file``, COCO results format) filtered by ``det_score_thr``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ...epoch import EpochAware
from ...errors import DataError
from ...imageio import read_rgb
from .codec import HeatmapCodec
from .coco_meta import NUM_KEYPOINTS
from .evaluation import load_coco_gt
from .geometry import box_to_center_scale
from ...imagenorm import normalize
from .transforms import AugmentConfig, augment, crop


@dataclass
class PersonRecord:
    image_id: int
    image_file: str
    center: np.ndarray
    scale: np.ndarray
    joints: np.ndarray       # (K, 3) x, y, 0 in image pixels
    joints_vis: np.ndarray   # (K, 3) 0/1
    score: float = 1.0
    area: float = 0.0


def resolve_image_dir(data_root: Path, split: str) -> Path:
    for cand in (data_root / "images" / split, data_root / split):
        if cand.is_dir():
            return cand
    raise DataError(f"no image folder for split '{split}' under {data_root} "
                    f"(looked for images/{split}/ and {split}/)")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _keypoint_array(kps: list) -> Optional[np.ndarray]:
    """The keypoint values as float32, or None if one is not a finite number."""
    try:
        k = np.asarray(kps)
    except (TypeError, ValueError):  # ragged nesting
        return None
    if k.ndim != 1 or k.dtype.kind not in "iuf":  # strings, null, booleans or lists among the values
        return None
    k = k.astype(np.float32)
    return k if np.isfinite(k).all() else None


def as_box(box: Any) -> Optional[list[float]]:
    """``box`` as four floats ``[x, y, w, h]``, or None if it is not a list of four finite numbers."""
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
        return None
    return [float(v) for v in box]


def check_images(coco: Any, ann_file: Path) -> None:
    """Every image entry names its file and has a positive width and height (the loader needs them)."""
    for image_id, info in coco.imgs.items():
        if not isinstance(info.get("file_name"), str) or not info["file_name"]:
            raise DataError(f"{ann_file}: image {image_id} has no 'file_name'; every entry of 'images' "
                            "needs id, file_name, width and height")
        for key in ("width", "height"):
            if not _is_number(info.get(key)) or info[key] <= 0:
                raise DataError(f"{ann_file}: image {image_id} ({info['file_name']}) has {key} "
                                f"{info.get(key)!r}; expected a positive number of pixels")


def clean_box(bbox: list[float], width: int, height: int) -> Optional[list[float]]:
    """Clip a COCO [x, y, w, h] box to the image as the official loader does; None if empty."""
    x, y, w, h = bbox
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1))
    if x2 >= x1 and y2 >= y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


def load_gt_persons(coco: Any, ann_file: Path, image_dir: Path, aspect_ratio: float,
                    num_keypoints: int = NUM_KEYPOINTS) -> list[PersonRecord]:
    """One record per non-crowd person with at least one labelled keypoint."""
    records = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            if ann.get("category_id") != 1 or ann.get("iscrowd", 0):
                continue
            kps = ann.get("keypoints") or []
            if not isinstance(kps, list):
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has keypoints of type "
                                f"{type(kps).__name__}; expected a list of {3 * num_keypoints} numbers")
            if len(kps) != 3 * num_keypoints:
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has {len(kps)} keypoint values, "
                                f"expected {3 * num_keypoints} ({num_keypoints} keypoints x 3)")
            k = _keypoint_array(kps)
            if k is None:
                bad = next((v for v in kps if not _is_number(v)), "out of range")
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has the keypoint value {bad!r}; "
                                "keypoints must be numbers (x, y, visibility)")
            area = ann.get("area", 0)
            if not _is_number(area):
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has area {area!r}; expected a number")
            bbox = as_box(ann.get("bbox"))
            if bbox is None:
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has an invalid bbox {ann.get('bbox')!r} "
                                "(expected [x, y, width, height])")
            if k.max() == 0 or area <= 0:
                continue
            box = clean_box(bbox, info["width"], info["height"])
            if box is None:
                continue
            k = k.reshape(-1, 3)
            joints = np.zeros((num_keypoints, 3), np.float32)
            joints[:, :2] = k[:, :2]
            vis = np.minimum(k[:, 2:3], 1.0).repeat(3, axis=1)
            vis[:, 2] = 0
            center, scale = box_to_center_scale(*box, aspect_ratio=aspect_ratio)
            records.append(PersonRecord(image_id, str(image_dir / info["file_name"]), center, scale,
                                        joints, vis, 1.0, float(box[2] * box[3])))
    return records


def load_detected_persons(coco: Any, bbox_file: Path, image_dir: Path, aspect_ratio: float,
                          score_thr: float, num_keypoints: int = NUM_KEYPOINTS) -> list[PersonRecord]:
    """One record per detected person box with score >= ``score_thr``."""
    if not bbox_file.is_file():
        raise DataError(f"person detection file {bbox_file} not found (set bbox_file: null to use "
                        "ground-truth boxes)")
    try:
        dets = json.loads(bbox_file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{bbox_file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(dets, list):
        raise DataError(f"{bbox_file}: expected a list of detections in COCO results format")
    records = []
    for i, d in enumerate(dets):
        try:
            image_id, box, score = d["image_id"], d["bbox"], d["score"]
        except (KeyError, TypeError):
            raise DataError(f"{bbox_file}: detection #{i} lacks image_id/bbox/score") from None
        if not _is_number(score):
            raise DataError(f"{bbox_file}: detection #{i} has score {score!r}; expected a number")
        score = float(score)
        if d.get("category_id", 1) != 1 or score < score_thr:
            continue
        if image_id not in coco.imgs:
            raise DataError(f"{bbox_file}: detection #{i} refers to image_id {image_id}, "
                            "which is not in the annotation file")
        checked = as_box(box)
        if checked is None:
            raise DataError(f"{bbox_file}: detection #{i} has an invalid box {box} (expected [x, y, width, height])")
        if checked[2] <= 0 or checked[3] <= 0:
            raise DataError(f"{bbox_file}: detection #{i} has an invalid box {box} (width and height must be > 0)")
        center, scale = box_to_center_scale(*checked, aspect_ratio=aspect_ratio)
        zeros = np.zeros((num_keypoints, 3), np.float32)
        records.append(PersonRecord(image_id, str(image_dir / coco.imgs[image_id]["file_name"]),
                                    center, scale, zeros, zeros.copy(), score, checked[2] * checked[3]))
    return records


@dataclass
class FaultLog:
    """Per-sample faults (missing/corrupt images) seen by a dataset; reported, never fatal in training."""

    files: dict[str, str] = field(default_factory=dict)


class CocoPoseDataset(EpochAware, Dataset):
    """Top-down samples: the affine crop of one person, its target heatmaps and weights.

    ``__getitem__`` returns a dict: ``image`` (3xHxW float32), ``target`` (KxhxW), ``target_weight``
    (Kx1), ``center``, ``scale``, ``rotation``, ``image_id``, ``score``, ``area``, ``index`` and
    ``fault`` (empty, or the message of a per-sample fault: the sample then has zero weight).
    """

    def __init__(self, data_root: str | Path, split: str, codec: HeatmapCodec, train: bool,
                 ann_file: Optional[str | Path] = None, bbox_file: Optional[str | Path] = None,
                 det_score_thr: float = 0.0, augment_cfg: Optional[AugmentConfig] = None,
                 seed: int = 0, strict_images: bool = False):
        root = Path(data_root)
        if not root.is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root to your COCO folder "
                            "(--set data_root=...) or make the demo set with `platform data demo`")
        self.ann_file = Path(ann_file) if ann_file else root / "annotations" / f"person_keypoints_{split}.json"
        if not self.ann_file.is_absolute() and not self.ann_file.exists():
            self.ann_file = root / self.ann_file
        self.coco = load_coco_gt(self.ann_file)
        if not self.coco.imgs:
            raise DataError(f"{self.ann_file}: the annotation file lists no images")
        check_images(self.coco, self.ann_file)
        self.image_dir = resolve_image_dir(root, split)
        self.codec = codec
        self.input_size = tuple(codec.input_size)
        self.aspect_ratio = self.input_size[0] / self.input_size[1]
        self.train = train
        self.augment_cfg = augment_cfg or AugmentConfig()
        self._init_epoch(seed)
        self.strict_images = strict_images
        if bbox_file and not train:
            bf = Path(bbox_file)
            if not bf.is_absolute() and not bf.exists():
                bf = root / bf
            self.records = load_detected_persons(self.coco, bf, self.image_dir, self.aspect_ratio, det_score_thr)
        else:
            self.records = load_gt_persons(self.coco, self.ann_file, self.image_dir, self.aspect_ratio)
        if not self.records:
            raise DataError(f"{self.ann_file}: no usable person samples for split '{split}'")

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> dict[str, Any]:
        """The crop as uint8 RGB plus joints in crop pixels (before normalisation and encoding)."""
        r = self.records[index]
        image = read_rgb(r.image_file)
        joints, vis, center, scale, rot = r.joints, r.joints_vis, r.center, r.scale, 0.0
        if self.train:
            image, joints, vis, center, scale, rot = augment(
                image, joints, vis, center, scale, self.augment_cfg, self.aspect_ratio, self.rng(index))
        trans = self.codec.crop_transform(center, scale, rot)
        patch, joints = crop(image, joints, vis, trans, self.input_size)
        return {"patch": patch, "joints": joints, "joints_vis": vis, "center": center, "scale": scale,
                "rotation": rot}

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        fault = ""
        try:
            s = self.load(index)
        except DataError as e:
            if self.strict_images:
                raise
            fault = str(e)
            w, h = self.input_size
            s = {"patch": np.zeros((h, w, 3), np.uint8), "joints": r.joints, "joints_vis": r.joints_vis * 0,
                 "center": r.center, "scale": r.scale, "rotation": 0.0}
        target, weight = self.codec.encode(s["joints"], s["joints_vis"])
        return {
            "image": torch.from_numpy(normalize(s["patch"])),
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
            "target_weight": torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)),
            "center": torch.as_tensor(s["center"], dtype=torch.float32),
            "scale": torch.as_tensor(s["scale"], dtype=torch.float32),
            "rotation": float(s["rotation"]),
            "image_id": int(r.image_id),
            "score": float(r.score),
            "area": float(r.area),
            "index": int(index),
            "fault": fault,
        }
