"""A small keypoint set with a skeleton of its own, in COCO format: robot arms (6 joints: base,
shoulder, elbow, wrist and two claws), for the "Train on your own data" walk-through.

Written by `platform data demo --task custom-pose` under ``<out>/custom_pose/``::

    annotations/train.json, annotations/val.json    COCO keypoints, category "robot_arm" (6 joints, skeleton)
    images/train/*.jpg, images/val/*.jpg

The joint names give the flip pair (``left_claw``/``right_claw``): the left claw is the one on the
left when looking from the wrist along the arm, so a mirrored image swaps them, as COCO's left and
right do. Several arms per image, clutter, occluders (occluded joints are labelled ``v=1``) and arms
cut off by the border (joints outside the image unlabelled) keep it from being trivial.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

JOINTS = ["base", "shoulder", "elbow", "wrist", "left_claw", "right_claw"]
SKELETON = [(0, 1), (1, 2), (2, 3), (3, 4), (3, 5)]  # 0-based
IMAGE_SIZE = 160


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth colour noise with a few flat shapes of clutter."""
    coarse = rng.uniform(40, 200, (5, 5, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    for _ in range(rng.integers(2, 6)):
        colour = tuple(float(c) for c in rng.uniform(30, 230, 3))
        x, y = rng.integers(0, size, 2)
        if rng.random() < 0.5:
            cv2.circle(img, (int(x), int(y)), int(rng.integers(5, 25)), colour, -1)
        else:
            cv2.rectangle(img, (int(x), int(y)), (int(x + rng.integers(8, 40)), int(y + rng.integers(4, 20))), colour, -1)
    return img


def _arm(rng: np.random.Generator, size: int) -> np.ndarray:
    """Joint positions (6, 2) of one arm: a chain of three segments and two claws."""
    scale = rng.uniform(0.6, 1.3) * size / 160
    base = rng.uniform(-0.05, 1.05, 2) * size  # near or beyond the border: truncation happens
    angle = rng.uniform(0, 2 * math.pi)
    points = [base]
    for length, bend in ((rng.uniform(22, 34), 0.0), (rng.uniform(26, 40), 1.1), (rng.uniform(20, 32), 1.0)):
        angle += rng.uniform(-bend, bend)
        points.append(points[-1] + scale * length * np.array([math.cos(angle), math.sin(angle)]))
    wrist, claw = points[-1], scale * rng.uniform(10, 15)
    spread = rng.uniform(0.35, 0.8)
    # image y points down: the left claw (seen from the wrist looking along the arm) turns by -spread
    for turn in (-spread, spread):
        points.append(wrist + claw * np.array([math.cos(angle + turn), math.sin(angle + turn)]))
    return np.array(points)


def _draw_arm(img: np.ndarray, joints: np.ndarray, rng: np.random.Generator) -> None:
    colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
    width = int(rng.integers(4, 8))
    for a, b in SKELETON:
        pa, pb = (tuple(int(round(v)) for v in joints[i]) for i in (a, b))
        cv2.line(img, pa, pb, colour, width if b < 4 else max(2, width // 2), cv2.LINE_AA)
    for i in range(4):
        cv2.circle(img, tuple(int(round(v)) for v in joints[i]), width, tuple(c * 0.6 for c in colour), -1)


def _occluder(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw an opaque rectangle; returns its mask."""
    mask = np.zeros((size, size), bool)
    x, y = rng.integers(0, size, 2)
    w, h = rng.integers(15, 45, 2)
    cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), tuple(float(c) for c in rng.uniform(0, 255, 3)), -1)
    mask[max(0, y):y + h + 1, max(0, x):x + w + 1] = True
    return mask


def _annotation(joints: np.ndarray, occluded: np.ndarray, size: int, ann_id: int, image_id: int) -> dict[str, Any]:
    inside = (joints >= 0).all(1) & (joints < size).all(1)
    kpts = []
    for (x, y), ok, occ in zip(joints, inside, occluded):
        kpts += [round(float(x), 2), round(float(y), 2), (1 if occ else 2)] if ok else [0, 0, 0]
    lo, hi = np.clip(joints.min(0) - 8, 0, size - 1), np.clip(joints.max(0) + 8, 0, size - 1)
    box = [round(float(lo[0]), 2), round(float(lo[1]), 2), round(float(hi[0] - lo[0]), 2), round(float(hi[1] - lo[1]), 2)]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
            "area": round(box[2] * box[3] * 0.5, 2), "num_keypoints": int(inside.sum()), "keypoints": kpts}


def _image(rng: np.random.Generator, image_id: int, first_ann: int) -> tuple[np.ndarray, list[dict]]:
    size = IMAGE_SIZE
    img = _background(rng, size)
    arms = [_arm(rng, size) for _ in range(int(rng.integers(1, 4)))]
    occluded = [np.zeros(len(JOINTS), bool) for _ in arms]
    for k, joints in enumerate(arms):
        _draw_arm(img, joints, rng)
        if rng.random() < 0.35:  # something in front of the arms drawn so far
            mask = _occluder(img, rng, size)
            for j in range(k + 1):
                xy = np.clip(np.round(arms[j]).astype(int), 0, size - 1)
                occluded[j] |= mask[xy[:, 1], xy[:, 0]]
    anns = [_annotation(j, o, size, first_ann + i, image_id) for i, (j, o) in enumerate(zip(arms, occluded))]
    anns = [a for a in anns if a["num_keypoints"] >= 2 and a["bbox"][2] > 4 and a["bbox"][3] > 4]
    return np.clip(img, 0, 255).astype(np.uint8), anns


def _write_split(root: Path, split: str, count: int, rng: np.random.Generator) -> int:
    folder = root / "images" / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image_id = i + 1
        img, anns = _image(rng, image_id, len(annotations) + 1)
        name = f"{image_id:06d}.jpg"
        cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": image_id, "file_name": name, "width": IMAGE_SIZE, "height": IMAGE_SIZE})
        annotations += anns
    category = {"id": 1, "name": "robot_arm", "supercategory": "robot", "keypoints": JOINTS,
                "skeleton": [[a + 1, b + 1] for a, b in SKELETON]}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    data = {"images": images, "annotations": annotations, "categories": [category]}
    (root / "annotations" / f"{split}.json").write_text(json.dumps(data))
    return len(annotations)


def make_custom_pose_demo(out_dir: str | Path, num_train: int = 300, num_val: int = 60, seed: int = 0) -> dict:
    """Write the robot-arm set under ``out_dir``; returns counts (images and arms per split)."""
    root = Path(out_dir)
    rng = np.random.default_rng(seed + 1234)
    train = _write_split(root, "train", num_train, rng)
    val = _write_split(root, "val", num_val, rng)
    return {"train_images": num_train, "train_arms": train, "val_images": num_val, "val_arms": val}
