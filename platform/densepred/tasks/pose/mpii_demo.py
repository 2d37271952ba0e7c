"""Synthetic person-keypoint demo set in the official MPII layout of the HRNet code.

The figures are those of the COCO demo (``demo_data.py``: same renderer, backgrounds, occlusion
and truncation); their 16 MPII joints come from the drawing: the limb joints are the COCO ones,
``pelvis`` is the middle of the hips, ``thorax`` the middle of the shoulders (where the neck is
drawn), ``upper_neck`` and ``head_top`` the points where the body axis enters and leaves the head
disc, and the head box is the square around that disc. Written like MPII::

    <out_dir>/
      annot/train.json, annot/valid.json   one entry per person, 1-based pixels:
          {"image", "joints" (16 x [x, y]), "joints_vis" (16), "center" [x, y], "scale"}
      annot/gt_valid.mat                    dataset_joints, jnt_missing, pos_gt_src, headboxes_src
      images/<9 digits>.jpg

A joint is labelled (``joints_vis`` 1) when it lies inside the image, also when another person
hides it (MPII labels occluded joints too); an unlabelled joint is ``[-1, -1]``. ``center`` and
``scale`` are written so that the official adjustment (``y + 15 s``, ``s * 1.25``) centres the
crop on the person with a quarter of margin. Deterministic given ``seed``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from .demo_data import JPEG_QUALITY, L_AN, L_EL, L_HIP, L_KN, L_SH, L_WR, R_AN, R_EL, R_HIP, R_KN, R_SH, R_WR, \
    _Figure, _render_image
from .mpii_dataset import CENTER_SHIFT
from .pckh import NUM_KEYPOINTS
from .pckh import PckhGroundTruth, save_gt

TRAIN_ANN_FILE = "annot/train.json"
VAL_ANN_FILE = "annot/valid.json"
VAL_GT_FILE = "annot/gt_valid.mat"
IMG_DIR = "images"

# MPII joint -> the COCO demo joint drawn there (pelvis, thorax, neck and head top are derived)
_FROM_COCO = {0: R_AN, 1: R_KN, 2: R_HIP, 3: L_HIP, 4: L_KN, 5: L_AN,
              10: R_WR, 11: R_EL, 12: R_SH, 13: L_SH, 14: L_EL, 15: L_WR}
PELVIS, THORAX, UPPER_NECK, HEAD_TOP = 6, 7, 8, 9
MIN_LABELLED = 8      # persons with fewer labelled joints are not annotated
MIN_VISIBLE_PX = 30   # nor persons hidden almost entirely


def mpii_joints(fig: _Figure, kp: np.ndarray) -> np.ndarray:
    """``(16, 2)`` 0-based MPII joints of ``fig`` drawn with the COCO keypoints ``kp`` (17, 2)."""
    out = np.zeros((NUM_KEYPOINTS, 2), np.float64)
    for j, c in _FROM_COCO.items():
        out[j] = kp[c]
    out[PELVIS] = (kp[L_HIP] + kp[R_HIP]) / 2.0
    out[THORAX] = (kp[L_SH] + kp[R_SH]) / 2.0
    neck = (fig.joints[L_SH] + fig.joints[R_SH]) / 2.0  # the head hangs on the unrounded neck
    axis = fig.head_c - neck
    up = axis / max(float(np.linalg.norm(axis)), 1e-6)
    out[UPPER_NECK] = fig.head_c - up * fig.head_r
    out[HEAD_TOP] = fig.head_c + up * fig.head_r
    return out


def head_box(fig: _Figure) -> np.ndarray:
    """``(2, 2)`` corners ``[[x1, y1], [x2, y2]]`` (0-based) of the square around the head disc."""
    return np.stack([fig.head_c - fig.head_r, fig.head_c + fig.head_r])


def center_scale(fig: _Figure, w: int, h: int) -> tuple[np.ndarray, float]:
    """0-based annotation center and scale: after the official ``y + 15 s`` the center is the
    middle of the figure's (clipped) extent, and ``200 s`` its longer side."""
    x0, y0, x1, y1 = fig.extent()
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, w - 1.0), min(y1, h - 1.0)
    scale = max(x1 - x0, y1 - y0, 1.0) / 200.0
    return np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0 - CENTER_SHIFT * scale]), scale


def _person_entry(p: dict, image: str, w: int, h: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """The JSON entry of a rendered person and its 0-based joints and head box."""
    fig = p["fig"]
    joints = mpii_joints(fig, p["kp"].astype(np.float64))
    inside = (joints[:, 0] >= 0) & (joints[:, 0] < w) & (joints[:, 1] >= 0) & (joints[:, 1] < h)
    center, scale = center_scale(fig, w, h)
    written = np.where(inside[:, None], np.round(joints + 1.0, 2), -1.0)  # MATLAB pixels; -1: not labelled
    entry = {"joints_vis": inside.astype(int).tolist(), "joints": written.tolist(), "image": image,
             "scale": round(scale, 6), "center": np.round(center + 1.0, 2).tolist()}
    return entry, written, head_box(fig) + 1.0


def _usable(p: dict, w: int, h: int) -> bool:
    joints = mpii_joints(p["fig"], p["kp"].astype(np.float64))
    inside = (joints[:, 0] >= 0) & (joints[:, 0] < w) & (joints[:, 1] >= 0) & (joints[:, 1] < h)
    head = p["fig"].head_c
    return (int(p["visible"].sum()) >= MIN_VISIBLE_PX and int(inside.sum()) >= MIN_LABELLED
            and 0 <= head[0] < w and 0 <= head[1] < h)


def _render_split(root: Path, split_code: int, num_persons: int, size: tuple[int, int], seed: int,
                  progress: bool) -> tuple[list[dict], PckhGroundTruth, int]:
    """Render images until ``num_persons`` persons are annotated; returns the JSON entries, their
    PCKh ground truth and the number of images written."""
    w, h = size
    entries: list[dict] = []
    joints, boxes = [], []
    images = 0
    for i in range(1000 * num_persons):  # a bound that no seed comes near: most images hold a usable person
        if len(entries) >= num_persons:
            break
        rng = np.random.default_rng([seed, 100 + split_code, i])
        img, persons, _crowd = _render_image(rng, w, h)
        usable = [p for p in persons if _usable(p, w, h)][:num_persons - len(entries)]
        if not usable:
            continue
        name = f"{split_code + 1}{i:08d}.jpg"  # MPII-like 9-digit names, distinct per split
        if not cv2.imwrite(str(root / IMG_DIR / name), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"could not write {root / IMG_DIR / name}")
        images += 1
        for p in usable:
            entry, written, box = _person_entry(p, name, w, h)
            entries.append(entry)
            joints.append(written)
            boxes.append(box)
        if progress and images % 100 == 0:
            print(f"[mpii demo] split {split_code}: {len(entries)}/{num_persons} persons", flush=True)
    vis = np.array([e["joints_vis"] for e in entries], np.float64)                 # (N, 16)
    gt = PckhGroundTruth(jnt_missing=(1.0 - vis).T, pos_gt_src=np.stack(joints, axis=-1),
                         headboxes_src=np.stack(boxes, axis=-1))
    return entries, gt, images


def make_mpii_demo(out_dir: str | Path, num_train_persons: int = 300, num_val_persons: int = 60,
                   image_size: tuple[int, int] = (256, 192), seed: int = 0, progress: bool = True) -> dict:
    """Write the synthetic MPII-layout set under ``out_dir`` (see the module docstring).

    Returns a summary: ``root``, ``train_ann``, ``val_ann``, ``val_gt``, ``images`` (paths as str),
    ``train_persons``, ``val_persons``, ``train_images``, ``val_images`` and ``seconds``.
    """
    t0 = time.time()
    w, h = int(image_size[0]), int(image_size[1])
    if w < 32 or h < 32:
        raise ValueError(f"image_size (width, height) too small: {image_size}")
    if num_train_persons < 1 or num_val_persons < 1:
        raise ValueError("the MPII demo needs at least one person per split")
    root = Path(out_dir)
    (root / "annot").mkdir(parents=True, exist_ok=True)
    (root / IMG_DIR).mkdir(parents=True, exist_ok=True)
    summary: dict = {"root": str(root), "images": str(root / IMG_DIR)}
    for split_code, (split, ann, n) in enumerate((("train", TRAIN_ANN_FILE, num_train_persons),
                                                  ("val", VAL_ANN_FILE, num_val_persons))):
        entries, gt, images = _render_split(root, split_code, n, (w, h), seed, progress)
        (root / ann).write_text(json.dumps(entries, separators=(",", ":")))
        if split == "val":
            save_gt(root / VAL_GT_FILE, gt)
            summary["val_gt"] = str(root / VAL_GT_FILE)
        summary[f"{split}_ann"] = str(root / ann)
        summary[f"{split}_persons"] = len(entries)
        summary[f"{split}_images"] = images
    summary["seconds"] = round(time.time() - t0, 2)
    if progress:
        print(f"[mpii demo] wrote {summary['train_persons']}+{summary['val_persons']} persons in "
              f"{summary['train_images']}+{summary['val_images']} images to {root} in {summary['seconds']:.1f}s",
              flush=True)
    return summary
