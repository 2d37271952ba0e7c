"""Synthetic evaluation inputs of realistic size: COCO keypoint ground truth with results, and
Cityscapes labelId ground-truth / prediction PNG pairs. Everything is a function of the seed."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

COCO_VAL_IMAGES = 5000
COCO_VAL_PERSONS = 6352  # person annotations with keypoints in COCO val2017
CITIES = ("frankfurt", "lindau", "munster")


def _person(rng: np.random.Generator, img_w: int, img_h: int) -> tuple[list[float], np.ndarray]:
    """A box (x, y, w, h) and 17 keypoints (x, y, v) inside it, some unlabelled (v = 0)."""
    w = float(rng.uniform(40, img_w * 0.6))
    h = float(min(img_h - 1, w * rng.uniform(1.2, 2.5)))
    x, y = float(rng.uniform(0, img_w - w)), float(rng.uniform(0, img_h - h))
    kp = np.zeros((17, 3))
    kp[:, 0] = x + rng.uniform(0.1, 0.9, 17) * w
    kp[:, 1] = y + np.linspace(0.05, 0.95, 17) * h + rng.normal(0, 0.03 * h, 17)
    kp[:, 2] = np.where(rng.random(17) < 0.8, 2, 0)
    kp[kp[:, 2] == 0, :2] = 0
    return [x, y, w, h], kp


def write_coco_keypoints(folder: Path, num_images: int, num_persons: int, seed: int = 0) -> tuple[Path, Path]:
    """A person_keypoints annotation file and a results file (one noisy prediction per person);
    returns their paths."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480}
              for i in range(num_images)]
    with_people = rng.choice(num_images, size=min(num_images, max(1, num_persons * 3 // 8)), replace=False) + 1
    anns, results = [], []
    for k in range(num_persons):
        image_id = int(with_people[k % len(with_people)])
        box, kp = _person(rng, 640, 480)
        labelled = int((kp[:, 2] > 0).sum())
        if labelled == 0:
            kp[0] = [box[0] + box[2] / 2, box[1] + 5, 2]
            labelled = 1
        anns.append({"id": k + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "bbox": box,
                     "area": box[2] * box[3] * 0.6, "num_keypoints": labelled,
                     "keypoints": kp.ravel().round(2).tolist()})
        pred = kp.copy()
        pred[:, :2] = kp[:, :2] + rng.normal(0, 0.04 * np.sqrt(box[2] * box[3]), (17, 2))
        pred[:, 2] = rng.uniform(0.2, 1.0, 17)
        results.append({"image_id": image_id, "category_id": 1, "keypoints": pred.ravel().round(2).tolist(),
                        "score": float(rng.uniform(0.3, 1.0))})
    categories = [{"id": 1, "name": "person", "supercategory": "person",
                   "keypoints": [f"k{i}" for i in range(17)], "skeleton": []}]
    ann_file, res_file = folder / "person_keypoints_val.json", folder / "results.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    res_file.write_text(json.dumps(results))
    return ann_file, res_file


def label_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A labelId map of coarse blocks and ellipses over ids 0..33, and a prediction that differs
    along boundaries and in whole regions (the layout of benchmarks/seg_metric_bench.py)."""
    small = rng.integers(0, 34, size=(max(1, height // 64), max(1, width // 64))).astype(np.uint8)
    gt = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    for _ in range(40):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(rng.integers(5, max(6, width // 10))), int(rng.integers(5, max(6, height // 5))))
        cv2.ellipse(gt, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.integers(34)), -1)
    pred = cv2.resize(gt, (width // 8, height // 8), interpolation=cv2.INTER_NEAREST)
    pred = cv2.resize(pred, (width, height), interpolation=cv2.INTER_NEAREST)
    noise = cv2.resize(rng.random((max(1, height // 32), max(1, width // 32))).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_LINEAR)
    pred[noise < 0.15] = int(rng.integers(34))
    return gt, pred


def write_label_pairs(root: Path, n: int, height: int = 1024, width: int = 2048, seed: int = 0
                      ) -> tuple[Path, Path]:
    """``n`` pairs as ``root/gtFine/val/<city>/*_gtFine_labelIds.png`` and ``root/results/*.png``;
    returns (gt_dir, pred_dir)."""
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = root / "gtFine" / "val", root / "results"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        city = CITIES[i % len(CITIES)]
        stem = f"{city}_{i:06d}_000019"
        (gt_dir / city).mkdir(parents=True, exist_ok=True)
        gt, pred = label_pair(rng, height, width)
        cv2.imwrite(str(gt_dir / city / f"{stem}_gtFine_labelIds.png"), gt)
        cv2.imwrite(str(pred_dir / f"{stem}_leftImg8bit.png"), pred)
    return gt_dir, pred_dir
