"""The pose task's data check (``platform data check``; its quick part before every training):
samples and images per split, visible keypoints per joint, missing or unreadable images, boxes
outside their image, annotations without keypoints, what the keypoint info leaves out."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...datacheck import DataReport
from ...frames import header_size
from .keypoint_meta import DEFAULT_SIGMA


def check_pose_data(task: Any, report: DataReport, full: bool) -> None:
    """Each split read as training and evaluation will; ``full`` also opens every image header and
    reports the per-joint and per-annotation figures."""
    for split in ("train", "val"):
        with report.catching():
            dataset = task.build_dataset(split)
            for note in getattr(dataset, "notes", []):
                report.say(note)
            files = sorted({r.image_file for r in dataset.records})
            report.say(f"{split}: {len(dataset)} samples in {len(files)} images")
            report.faulty_files(f"{split} image files", _unreadable(files, full), len(files))
            if full and getattr(dataset, "bbox_file", None) is None:  # detected boxes carry no joints
                _joint_counts(report, split, task.meta, dataset.records)
                if hasattr(dataset, "ann_file"):
                    _annotation_figures(report, split, dataset)
    _meta_notes(task, report)


def _unreadable(files: list[str], full: bool) -> list[str]:
    """Missing files, and with ``full`` those whose PNG/JPEG header cannot be read (other formats:
    existence only)."""
    bad = []
    for f in files:
        if not os.path.isfile(f):
            bad.append(f)
        elif full and Path(f).suffix.lower() in (".jpg", ".jpeg", ".png") and header_size(Path(f)) is None:
            bad.append(f)
    return bad


def _joint_counts(report: DataReport, split: str, meta: Any, records: list) -> None:
    """Visible (labelled) keypoints per joint; a joint never labelled in training learns nothing."""
    if not records:
        return
    visible = np.sum([r.joints_vis[:, 0] > 0 for r in records], axis=0).astype(int)
    report.say(f"{split}: labelled keypoints per joint: "
               + ", ".join(f"{n} {c}" for n, c in zip(meta.names, visible)))
    never = [n for n, c in zip(meta.names, visible) if c == 0]
    if never and split == "train":
        report.warn(f"train: joint(s) {', '.join(never)} are never labelled: their heatmaps learn nothing")


def _annotation_figures(report: DataReport, split: str, dataset: Any) -> None:
    """Boxes reaching outside their image (clipped), annotations without a labelled keypoint (not
    trained on)."""
    coco = dataset.coco
    outside = empty = 0
    for ann in coco.dataset["annotations"]:
        info = coco.imgs.get(ann.get("image_id"))
        x, y, w, h = ann.get("bbox") or (0, 0, 0, 0)
        if info and (x < 0 or y < 0 or x + w > info["width"] + 1 or y + h > info["height"] + 1):
            outside += 1
        if not ann.get("iscrowd", 0) and ann.get("num_keypoints", 0) == 0:
            empty += 1
    if outside:
        report.warn(f"{split}: {outside} box(es) reach outside their image (they are clipped to it)")
    if empty:
        report.say(f"{split}: {empty} annotation(s) without a labelled keypoint (not trained on; evaluation "
                   "ignores them)")


def _meta_notes(task: Any, report: DataReport) -> None:
    """What the keypoint info does not give: sigmas (OKS AP not comparable), an upper body
    (half-body augmentation off)."""
    if task.data.format != "coco" or "pose" not in task.head_names:
        return
    meta = task.meta
    report.say(f"keypoints: {meta.num_keypoints} ({meta.source}), {len(meta.flip_pairs)} flip pair(s), "
               f"{len(meta.skeleton)} limb(s)")
    if meta.sigmas is None:
        report.warn(f"{meta.source} gives no OKS sigmas: AP uses {DEFAULT_SIGMA} for every joint and is not "
                    "comparable to published figures (give data.keypoint_info with sigmas)")
    if not meta.half_body and task.augment.half_body_prob > 0:
        report.say(f"{meta.source} names no upper body: half-body augmentation is off")
