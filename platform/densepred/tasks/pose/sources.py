"""Where a COCO-format keypoint set's files are, and which joints it has.

``data.train_ann``/``val_ann`` (annotation files) and ``data.train_images``/``val_images`` (image
folders) are relative to ``data_root`` unless absolute; left out, they follow COCO's layout for
``data.train_split``/``val_split`` (``annotations/person_keypoints_<split>.json``, ``images/<split>/``
or ``<split>/``). ``data.keypoint_info`` names the joints (a shipped name, a YAML file, an inline
mapping) or, ``null``, takes them from the annotation file's category.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ...errors import DataError
from .dataset import resolve_image_dir, under_root
from .keypoint_meta import KeypointMeta, from_categories, load_keypoint_info


def annotation_file(root: Path, data: Any, split: str) -> Path:
    """The annotation file of ``split`` (``train`` or ``val``)."""
    explicit = getattr(data, f"{split}_ann")
    name = getattr(data, f"{split}_split")
    return under_root(root, explicit or Path("annotations") / f"person_keypoints_{name}.json")


def image_folder(root: Path, data: Any, split: str) -> Path:
    """The image folder of ``split``; a missing one is a one-line DataError naming the key."""
    explicit = getattr(data, f"{split}_images")
    if explicit is None:
        return resolve_image_dir(root, getattr(data, f"{split}_split"))
    folder = under_root(root, explicit)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} not found; check data_root and data.{split}_images")
    return folder


def check_files(root: Path, data: Any, bbox_file: Optional[str]) -> None:
    """Annotation files, image folders and the detections file exist (no file is read)."""
    for split in ("train", "val"):
        ann = annotation_file(root, data, split)
        if not ann.is_file():
            key = f"data.{split}_ann" if getattr(data, f"{split}_ann") else f"data.{split}_split"
            raise DataError(f"{ann}: COCO annotation file not found; check data_root and {key}")
        image_folder(root, data, split)
    if bbox_file:
        path = under_root(root, bbox_file)
        if not path.is_file():
            raise DataError(f"person detection file {path} not found (set bbox_file: null to use ground-truth boxes)")


def configured_meta(data: Any, where: str) -> Optional[KeypointMeta]:
    """The joints the config names (``data.keypoint_info``); None when they come from the file.
    MPII files name no joints: its layout always has MPII's 16."""
    if data.keypoint_info is None:
        return load_keypoint_info("mpii", where) if data.format == "mpii" else None
    return load_keypoint_info(data.keypoint_info, where)


def meta_from_file(root: Path, data: Any) -> KeypointMeta:
    """The joints of the annotation files' keypoint category (the validation file, usually the
    smaller one, else the training file)."""
    for split in ("val", "train"):
        ann = annotation_file(root, data, split)
        if ann.is_file():
            return from_categories(_categories(ann), str(ann))
    raise DataError(f"{annotation_file(root, data, 'val')}: COCO annotation file not found; data.keypoint_info is "
                    "null, so the joints are read from it: check data_root and data.val_ann")


def _categories(ann: Path) -> list:
    try:
        with open(ann, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{ann}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); fix or regenerate "
                        "the annotation file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{ann}: cannot read the annotation file ({e})") from None
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list):
        raise DataError(f"{ann}: no 'categories' list; this is not a COCO keypoint annotation file")
    return categories
