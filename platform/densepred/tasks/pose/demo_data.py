"""Synthetic person-keypoint demo dataset written in exact COCO keypoint format.

``make_pose_demo`` renders small images of simple "people" (a torso, a head with
hair/face/eyes/nose/ears, and thick two-segment limbs) on textured backgrounds and
writes them with the same file layout and JSON schema as COCO 2017 person keypoints,
so that the regular COCO loader, the top-down pipeline and pycocotools' ``COCOeval``
run on it unchanged::

    <out_dir>/
      annotations/person_keypoints_train2017.json
      annotations/person_keypoints_val2017.json
      images/train2017/000000xxxxxx.jpg
      images/val2017/000000xxxxxx.jpg
      person_detection_results/COCO_val2017_detections_AP_H_56_person.json

Design choices that keep the data learnable in a few CPU minutes:

* The person's left limbs (arm, leg, ear) are drawn in warm colours (red/orange)
  and the right ones in cool colours (blue); every joint is a lighter blob. Most
  figures face the camera (their left side on the image's right, eyes and nose
  visible); about 12% are seen from behind (hair instead of a face, nose/eyes not
  labelled, left side on the image's left). The geometric cue is flip-consistent,
  the colour cue is not, so training with horizontal flips still has a consistent
  left/right signal.
* Each image holds 1-4 people with varied sizes, joint angles, lean and yaw; some
  are truncated by the image border (joints outside become ``(0, 0, 0)``), some
  are partly hidden by a person drawn in front (their covered joints get ``v=1``),
  and some images hold a crowd region (``iscrowd=1``, RLE mask) of tiny figures.
  Roughly three quarters of the people are fully visible.
* ``segmentation`` is the visible part of the person as polygons that rasterise
  back to exactly the drawn pixel mask, and ``area`` is that polygon's area, which
  COCOeval uses as the OKS scale.

Everything is deterministic given ``seed`` (every image has its own RNG stream).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .keypoint_meta import coco_keypoints

KEYPOINT_NAMES = coco_keypoints().names
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
SKELETON = coco_keypoints().skeleton

TRAIN_ANN_FILE = "annotations/person_keypoints_train2017.json"
VAL_ANN_FILE = "annotations/person_keypoints_val2017.json"
TRAIN_IMG_DIR = "images/train2017"
VAL_IMG_DIR = "images/val2017"
DET_FILE = "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"

JPEG_QUALITY = 90
_CROWD_ID_BASE = 900100000000  # COCO gives its crowd annotations ids in this range

# Joint indices (COCO order: configs/datasets/keypoints/coco.yaml).
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KN, R_KN, L_AN, R_AN = 11, 12, 13, 14, 15, 16

_SKIN = [(170, 200, 240), (140, 180, 225), (110, 150, 205), (80, 115, 170),
         (60, 85, 130), (150, 190, 235), (120, 160, 200)]
_HAIR = [(20, 20, 25), (25, 40, 70), (30, 60, 110), (60, 60, 60), (40, 30, 30),
         (90, 140, 180)]


# --------------------------------------------------------------------------- colours

def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    px = np.array([[[int(h) % 180, int(np.clip(s, 0, 255)), int(np.clip(v, 0, 255))]]],
                  dtype=np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _shade(c, f: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(x * f, 0, 255)) for x in c)


def _mix(c, other, a: float) -> tuple[int, int, int]:
    return tuple(int(round((1 - a) * x + a * y)) for x, y in zip(c, other))


def _left_colour(rng) -> tuple[int, int, int]:
    # warm family: red / orange (OpenCV hue 170..180 and 0..16)
    return _hsv(rng.uniform(-10, 16), rng.uniform(170, 255), rng.uniform(175, 255))


def _right_colour(rng) -> tuple[int, int, int]:
    # cool family: blue / azure (OpenCV hue 98..124)
    return _hsv(rng.uniform(98, 124), rng.uniform(170, 255), rng.uniform(150, 255))


def _torso_colour(rng) -> tuple[int, int, int]:
    k = rng.random()
    if k < 0.55:  # greens
        return _hsv(rng.uniform(40, 85), rng.uniform(90, 220), rng.uniform(90, 220))
    if k < 0.85:  # greys, white, black
        return _hsv(rng.uniform(0, 180), rng.uniform(0, 35), rng.uniform(40, 235))
    return _hsv(rng.uniform(20, 32), rng.uniform(60, 160), rng.uniform(60, 140))  # khaki / brown


# --------------------------------------------------------------------------- figure model

@dataclass
class _Figure:
    """One rendered person; all coordinates are image pixels (x, y)."""

    hp: float                       # nominal standing height in pixels
    joints: np.ndarray              # (17, 2) float
    labelled: np.ndarray            # (17,) bool: joint exists as an annotation (face parts may not)
    head_c: np.ndarray
    head_r: float
    face_c: np.ndarray
    face_r: float
    front: bool
    feet: np.ndarray                # (2, 2) toe points of the left / right foot
    thick: dict = field(default_factory=dict)
    colours: dict = field(default_factory=dict)
    draw_order: tuple = ()

    def shift(self, d) -> None:
        d = np.asarray(d, dtype=np.float64)
        self.joints = self.joints + d
        self.head_c = self.head_c + d
        self.face_c = self.face_c + d
        self.feet = self.feet + d

    def extent(self) -> np.ndarray:
        """Conservative [x0, y0, x1, y1] of everything drawn."""
        pts = np.concatenate([self.joints, self.feet, self.head_c[None]], 0)
        m = max(self.thick.values()) * 0.7 + 1
        x0, y0 = pts.min(0) - m
        x1, y1 = pts.max(0) + m
        x0 = min(x0, self.head_c[0] - self.head_r * 1.25)
        x1 = max(x1, self.head_c[0] + self.head_r * 1.25)
        y0 = min(y0, self.head_c[1] - self.head_r - 1)
        return np.array([x0, y0, x1, y1])


def _unit(a: float) -> np.ndarray:
    """Unit vector at angle ``a`` (radians) measured from image +x towards image +y."""
    return np.array([math.cos(a), math.sin(a)])


def _rot(v: np.ndarray, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _mixture(rng, parts):
    """parts: list of (prob, lo, hi) in degrees -> radians."""
    p = np.array([q[0] for q in parts], dtype=np.float64)
    k = rng.choice(len(parts), p=p / p.sum())
    return math.radians(rng.uniform(parts[k][1], parts[k][2]))


def _sample_figure(rng, hp: float, crowd: bool = False) -> _Figure:
    """A random pose with the pelvis centre at the origin."""
    deg = math.radians
    # whole-body tilt, upper-body lean, yaw (rotation about the vertical axis)
    r = rng.random()
    if r < 0.88:
        psi = deg(float(np.clip(rng.normal(0, 6), -15, 15)))
    elif r < 0.97:
        psi = deg(rng.uniform(18, 45)) * rng.choice([-1, 1])
    else:
        psi = deg(rng.uniform(55, 90)) * rng.choice([-1, 1])
    lean = deg(float(np.clip(rng.normal(0, 10), -30, 30)))
    front = bool(rng.random() < 0.88)
    yaw = float(np.clip(rng.normal(0, 22), -55, 55))
    yaw = deg(yaw if front else 180.0 + yaw * 0.8)
    cy = math.cos(yaw)
    cyf = math.copysign(max(abs(cy), 0.4), cy)   # projected width factor (sign: facing)
    facing = 1.0 if cy > 0 else -1.0

    up_b = np.array([math.sin(psi + lean), -math.cos(psi + lean)])   # upper-body "up"
    lat_b = np.array([math.cos(psi + lean), math.sin(psi + lean)])   # camera-facing person's left
    up_l = np.array([math.sin(psi), -math.cos(psi)])
    lat_l = np.array([math.cos(psi), math.sin(psi)])

    J = np.zeros((NUM_KEYPOINTS, 2))
    labelled = np.ones(NUM_KEYPOINTS, dtype=bool)
    torso_len = rng.uniform(0.28, 0.32) * hp
    sw = rng.uniform(0.11, 0.13) * hp
    hw = rng.uniform(0.075, 0.09) * hp
    neck = up_b * torso_len
    J[L_SH] = neck + lat_b * sw * cyf
    J[R_SH] = neck - lat_b * sw * cyf
    J[L_HIP] = lat_l * hw * cyf
    J[R_HIP] = -lat_l * hw * cyf

    # arms: angle from "down" towards the person's own outward side
    for side, (sh, el, wr) in ((1, (L_SH, L_EL, L_WR)), (-1, (R_SH, R_EL, R_WR))):
        out = side * facing * lat_b
        a = _mixture(rng, [(0.55, 5, 55), (0.28, 55, 170), (0.17, -35, 5)])
        d = math.cos(a) * (-up_b) + math.sin(a) * out
        J[el] = J[sh] + d * rng.uniform(0.15, 0.17) * hp
        b = _mixture(rng, [(0.5, 0, 30), (0.5, 30, 140)])
        d2 = _rot(d, b * rng.choice([-1, 1]))
        J[wr] = J[el] + d2 * rng.uniform(0.13, 0.15) * hp
    # legs
    feet = np.zeros((2, 2))
    for k, (side, (hip, kn, an)) in enumerate(((1, (L_HIP, L_KN, L_AN)), (-1, (R_HIP, R_KN, R_AN)))):
        out = side * facing * lat_l
        g = _mixture(rng, [(0.7, -8, 20), (0.25, 20, 55), (0.05, 55, 90)])
        d = math.cos(g) * (-up_l) + math.sin(g) * out
        J[kn] = J[hip] + d * rng.uniform(0.23, 0.25) * hp
        b = _mixture(rng, [(0.6, 0, 15), (0.3, 15, 60), (0.1, 60, 110)])
        d2 = _rot(d, b * rng.choice([-1, 1]))
        J[an] = J[kn] + d2 * rng.uniform(0.22, 0.24) * hp
        # a short foot pointing sideways-forward, perpendicular to the shin
        fdir = _rot(d2, -side * facing * math.pi / 2 * 0.85)
        feet[k] = J[an] + fdir * 0.055 * hp

    # head: a sphere of radius r; features at azimuths, rotated by yaw and projected
    tilt = deg(float(np.clip(rng.normal(0, 9), -25, 25)))
    up_h = _rot(up_b, tilt)
    lat_h = _rot(lat_b, tilt)
    head_r = rng.uniform(0.065, 0.075) * hp
    head_c = neck + up_b * 0.13 * hp
    # (azimuth for the person's side, height on the face, visibility threshold on cos)
    feats = {NOSE: (0.0, -0.25, 0.2), L_EYE: (35.0, 0.12, 0.15), R_EYE: (-35.0, 0.12, 0.15),
             L_EAR: (85.0, 0.05, -0.35), R_EAR: (-85.0, 0.05, -0.35)}
    for j, (az, h, thr) in feats.items():
        a = deg(az) + yaw
        J[j] = head_c + lat_h * head_r * math.sin(a) * (0.95 if j in (L_EAR, R_EAR) else 0.9) \
            + up_h * head_r * h
        labelled[j] = math.cos(a) > thr
    face_r = 0.82 * head_r
    face_c = head_c + lat_h * head_r * 0.25 * math.sin(yaw) - up_h * 0.12 * head_r

    base = max(2.0, hp / 90.0) if crowd else 2.0
    thick = {
        "uarm": max(base, 0.065 * hp), "farm": max(base, 0.055 * hp),
        "thigh": max(base, 0.085 * hp), "shin": max(base, 0.07 * hp),
        "neck": max(base, 0.075 * hp), "foot": max(base - 1, 0.04 * hp),
    }
    lc, rc = _left_colour(rng), _right_colour(rng)
    colours = {
        "left": lc, "right": rc, "left2": _shade(lc, rng.uniform(0.72, 0.88)),
        "right2": _shade(rc, rng.uniform(0.72, 0.88)), "torso": _torso_colour(rng),
        "skin": _SKIN[rng.integers(len(_SKIN))], "hair": _HAIR[rng.integers(len(_HAIR))],
    }
    order = ("left", "right") if rng.random() < 0.5 else ("right", "left")
    return _Figure(hp=hp, joints=J, labelled=labelled, head_c=head_c, head_r=head_r,
                   face_c=face_c, face_r=face_r, front=front, feet=feet, thick=thick,
                   colours=colours, draw_order=order)


# --------------------------------------------------------------------------- rendering

class _Canvas:
    """Draws each primitive on the image (anti-aliased) and on a binary mask."""

    def __init__(self, img: np.ndarray, mask: np.ndarray):
        self.img, self.mask = img, mask

    @staticmethod
    def _p(p) -> tuple[int, int]:
        return int(round(float(p[0]))), int(round(float(p[1])))

    def line(self, a, b, colour, t: float) -> None:
        a, b, t = self._p(a), self._p(b), max(1, int(round(t)))
        cv2.line(self.img, a, b, colour, t, cv2.LINE_AA)
        cv2.line(self.mask, a, b, 255, t, cv2.LINE_8)

    def circle(self, c, r: float, colour, mask: bool = True) -> None:
        c, r = self._p(c), max(1, int(round(r)))
        cv2.circle(self.img, c, r, colour, -1, cv2.LINE_AA)
        if mask:
            cv2.circle(self.mask, c, r, 255, -1, cv2.LINE_8)

    def poly(self, pts, colour) -> None:
        pts = np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.img, [pts], colour, cv2.LINE_AA)
        cv2.fillPoly(self.mask, [pts], 255, cv2.LINE_8)


def _draw_figure(cv: _Canvas, f: _Figure, kp: np.ndarray, blobs: bool = True) -> None:
    """Render figure ``f`` with keypoints ``kp`` (17, 2 rounded ints)."""
    c, t = f.colours, f.thick
    white = (255, 255, 255)
    limbs = {"left": ((L_HIP, L_KN, L_AN, 0), (L_SH, L_EL, L_WR)),
             "right": ((R_HIP, R_KN, R_AN, 1), (R_SH, R_EL, R_WR))}
    # legs (behind the torso)
    for side in f.draw_order:
        (hip, kn, an, k), _ = limbs[side]
        cv.line(kp[hip], kp[kn], c[side], t["thigh"])
        cv.line(kp[kn], kp[an], c[side + "2"], t["shin"])
        cv.line(kp[an], f.feet[k], _shade(c[side + "2"], 0.6), t["foot"])
    # torso: quadrilateral with rounded edges
    quad = [kp[L_SH], kp[R_SH], kp[R_HIP], kp[L_HIP]]
    cv.poly(quad, c["torso"])
    for a, b in ((L_SH, R_SH), (R_SH, R_HIP), (R_HIP, L_HIP), (L_HIP, L_SH)):
        cv.line(kp[a], kp[b], c["torso"], t["uarm"] * 0.9)
    # neck + head
    neck = (kp[L_SH] + kp[R_SH]) / 2.0
    cv.line(neck, f.head_c, _shade(c["skin"], 0.9), t["neck"])
    cv.circle(f.head_c, f.head_r, c["hair"])
    if f.front:
        cv.circle(f.face_c, f.face_r, c["skin"], mask=False)  # inside the hair disc
    # arms (in front of the torso)
    for side in f.draw_order:
        _, (sh, el, wr) = limbs[side]
        cv.line(kp[sh], kp[el], c[side], t["uarm"])
        cv.line(kp[el], kp[wr], c[side + "2"], t["farm"])
    # face features and ears
    er = max(1.0, 0.22 * f.head_r)
    if f.labelled[L_EAR]:
        cv.circle(kp[L_EAR], er, _mix(c["left"], white, 0.2))
    if f.labelled[R_EAR]:
        cv.circle(kp[R_EAR], er, _mix(c["right"], white, 0.2))
    fr = max(1.0, 0.13 * f.head_r)
    for j in (L_EYE, R_EYE):
        if f.labelled[j]:
            cv.circle(kp[j], fr, (25, 25, 25), mask=False)
    if f.labelled[NOSE]:
        cv.circle(kp[NOSE], fr, (40, 50, 120), mask=False)
    # joint blobs: lighter discs of the limb colour, slightly wider than the limb;
    # the wrists end in a skin-coloured hand
    if blobs:
        for side, js in (("left", (L_SH, L_EL, L_HIP, L_KN, L_AN)),
                         ("right", (R_SH, R_EL, R_HIP, R_KN, R_AN))):
            col = _mix(c[side], white, 0.5)
            for j in js:
                tt = t["uarm"] if j in (L_SH, R_SH, L_EL, R_EL) else t["shin"]
                cv.circle(kp[j], max(1.5, 0.62 * tt), col)
    for j in (L_WR, R_WR):
        cv.circle(kp[j], max(1.5, 0.68 * t["farm"]), _shade(c["skin"], 0.95))


def _background(rng, w: int, h: int) -> np.ndarray:
    base = np.array(_hsv(rng.uniform(0, 180), rng.uniform(0, 70), rng.uniform(70, 200)),
                    dtype=np.float32)
    gh, gw = int(rng.integers(2, 7)), int(rng.integers(2, 7))
    low = rng.normal(0, rng.uniform(15, 45), size=(gh, gw, 3)).astype(np.float32)
    low = low.mean(2, keepdims=True) * 0.7 + low * 0.3  # mostly brightness variation
    img = base[None, None] + cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    # random soft shapes (rectangles, ellipses, blobs; no thin limb-like strokes)
    for _ in range(int(rng.integers(3, 10))):
        col = _hsv(rng.uniform(0, 180), rng.uniform(0, 90), rng.uniform(40, 230))
        layer = img.copy()
        kind = rng.random()
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind < 0.4:
            rw, rh = int(rng.integers(15, w // 2)), int(rng.integers(15, h // 2))
            cv2.rectangle(layer, (cx - rw // 2, cy - rh // 2), (cx + rw // 2, cy + rh // 2), col, -1)
        elif kind < 0.75:
            ax = (int(rng.integers(8, w // 4)), int(rng.integers(8, h // 4)))
            cv2.ellipse(layer, (cx, cy), ax, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
        else:
            n = int(rng.integers(3, 7))
            rad = rng.uniform(10, 40)
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            pts = np.stack([cx + rad * np.cos(ang) * rng.uniform(0.6, 1.2, n),
                            cy + rad * np.sin(ang) * rng.uniform(0.6, 1.2, n)], 1)
            cv2.fillPoly(layer, [pts.astype(np.int32).reshape(-1, 1, 2)], col, cv2.LINE_AA)
        a = rng.uniform(0.35, 1.0)
        img = cv2.addWeighted(layer, a, img, 1 - a, 0)
    # fine texture
    tex = rng.normal(0, rng.uniform(3, 9), size=(h, w, 1)).astype(np.float32)
    img = np.clip(img.astype(np.float32) + tex, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    return img


# --------------------------------------------------------------------------- annotations

def _mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Polygons (COCO flat lists) that rasterise (pycocotools) back to ``mask``.

    Contours are traced on a 2x nearest-upsampled mask and mapped back with a
    quarter-pixel offset, which makes the pycocotools rasterisation reproduce the
    pixel mask (instead of shrinking it by half a pixel all around).
    """
    up = cv2.resize(mask, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours((up > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for cnt in contours:
        if cv2.contourArea(cnt) < 8:  # specks of a few pixels
            continue
        cnt = cv2.approxPolyDP(cnt, 0.6, True)
        if len(cnt) < 3:
            continue
        pts = (cnt.reshape(-1, 2).astype(np.float64) + 0.25) / 2.0
        polys.append([round(float(v), 2) for v in pts.reshape(-1)])
    return polys


def _polys_rle(polys, h: int, w: int):
    return mask_utils.merge(mask_utils.frPyObjects(polys, h, w))


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


def _overlap_frac(a, b) -> float:
    """Fraction of box ``b`` covered by box ``a``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return ix * iy / area_b if area_b > 0 else 0.0


# --------------------------------------------------------------------------- one image

def _place(rng, f: _Figure, w: int, h: int, mode: str, boxes: list, target=None) -> bool:
    """Translate ``f`` (pelvis at origin) into the image; returns False if it cannot fit."""
    ext = f.extent()
    bw, bh = ext[2] - ext[0], ext[3] - ext[1]
    if mode == "truncated":
        edge = rng.choice(4, p=[0.35, 0.35, 0.2, 0.1])  # left, right, bottom, top
        cut = rng.uniform(0.15, 0.5)

        def along(lo, hi, size):
            return rng.uniform(-lo, max(-lo, size - hi))

        if edge == 0:
            d = (-cut * bw - ext[0], along(ext[1], ext[3], h))
        elif edge == 1:
            d = (w + cut * bw - ext[2], along(ext[1], ext[3], h))
        elif edge == 2:
            d = (along(ext[0], ext[2], w), h + cut * bh - ext[3])
        else:
            d = (along(ext[0], ext[2], w), -cut * bh - ext[1])
        f.shift(d)
        return True
    if bw > w - 2 or bh > h - 2:
        return False
    best, best_cost = None, None
    for _ in range(25):
        d = np.array([rng.uniform(1 - ext[0], w - 1 - ext[2]), rng.uniform(1 - ext[1], h - 1 - ext[3])])
        box = ext + np.array([d[0], d[1], d[0], d[1]])
        if mode == "occluder":
            cov = _overlap_frac(box, target)
            cost = 0.0 if 0.15 <= cov <= 0.45 else min(abs(cov - 0.15), abs(cov - 0.45))
            cost += sum(_box_iou(box, b) for b in boxes if b is not target) * 0.5
        else:
            cost = sum(_box_iou(box, b) for b in boxes)
        if best_cost is None or cost < best_cost:
            best, best_cost = d, cost
        if best_cost == 0.0:
            break
    f.shift(best)
    return True


def _render_image(rng, w: int, h: int):
    """Render one image; returns (img, persons, crowd) where persons is a list of dicts."""
    img = _background(rng, w, h)

    # optional crowd region: a cluster of tiny figures, drawn first (in the background)
    crowd_mask = None
    if rng.random() < 0.18:
        crowd_mask = np.zeros((h, w), np.uint8)
        cw, ch = rng.uniform(0.3, 0.55) * w, rng.uniform(0.18, 0.3) * h
        cx0, cy0 = rng.uniform(0, w - cw), rng.uniform(0, h * 0.55)
        for _ in range(int(rng.integers(6, 14))):
            f = _sample_figure(rng, rng.uniform(0.1, 0.17) * h, crowd=True)
            ext = f.extent()
            f.shift((cx0 + rng.uniform(0, cw) - (ext[0] + ext[2]) / 2,
                     cy0 + rng.uniform(0, ch) - (ext[1] + ext[3]) / 2))
            _draw_figure(_Canvas(img, crowd_mask), f, np.round(f.joints), blobs=False)

    n = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15]))
    occluder = int(rng.integers(1, n)) if n >= 2 and rng.random() < 0.45 else -1
    figs, boxes = [], []
    for k in range(n):
        mode = "occluder" if k == occluder else ("truncated" if rng.random() < 0.13 else "free")
        target = boxes[int(rng.integers(len(boxes)))] if mode == "occluder" else None
        for attempt in range(8):
            if rng.random() < 0.12:
                hp = rng.uniform(0.28, 0.4) * h
            else:
                hp = rng.uniform(0.45, 0.95 if n <= 2 else 0.8) * h * (0.85 ** attempt)
            f = _sample_figure(rng, hp)
            if _place(rng, f, w, h, mode, boxes, target):
                break
        else:
            continue
        figs.append(f)
        boxes.append(f.extent())

    masks = []
    kps = []
    for f in figs:
        m = np.zeros((h, w), np.uint8)
        kp = np.round(f.joints)
        _draw_figure(_Canvas(img, m), f, kp)
        masks.append(m)
        kps.append(kp.astype(np.int64))

    # sensor noise over everything
    noise = rng.normal(0, rng.uniform(1.5, 4.0), size=img.shape).astype(np.float32)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)

    persons = []
    front = np.zeros((h, w), bool)  # union of masks of people drawn later
    for f, m, kp in reversed(list(zip(figs, masks, kps))):
        full = m > 0
        visible = full & ~front          # `front`: people drawn after this one
        vis = np.zeros(NUM_KEYPOINTS, np.int64)
        for j in range(NUM_KEYPOINTS):
            x, y = int(kp[j, 0]), int(kp[j, 1])
            if not f.labelled[j] or not (0 <= x < w and 0 <= y < h):
                continue  # not annotated / outside the image -> (0, 0, 0)
            vis[j] = 1 if front[y, x] else 2
        front |= full
        persons.append({"fig": f, "full": full, "visible": visible, "kp": kp, "v": vis})
    persons.reverse()
    if crowd_mask is not None:
        crowd_mask = (crowd_mask > 0) & ~front
        if crowd_mask.sum() < 30:
            crowd_mask = None
    return img, persons, crowd_mask


def _annotations_for_image(img_id: int, persons, crowd_mask, h: int, w: int, ann_id: int,
                           crowd_id: int):
    anns = []
    stats = {"persons": 0, "crowd": 0, "fully_visible": 0, "occluded_kpts": 0, "labelled_kpts": 0}
    for p in persons:
        vmask = p["visible"].astype(np.uint8)
        if vmask.sum() < 30:
            continue
        polys = _mask_to_polygons(vmask)
        if not polys:
            continue
        rle = _polys_rle(polys, h, w)
        area = float(mask_utils.area(rle))
        bbox = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
        kps = []
        for j in range(NUM_KEYPOINTS):
            v = int(p["v"][j])
            kps += [int(p["kp"][j, 0]), int(p["kp"][j, 1]), v] if v > 0 else [0, 0, 0]
        nk = int((p["v"] > 0).sum())
        anns.append({
            "segmentation": polys, "num_keypoints": nk, "area": area, "iscrowd": 0,
            "keypoints": kps, "image_id": img_id, "bbox": bbox, "category_id": 1, "id": ann_id,
        })
        ann_id += 1
        stats["persons"] += 1
        stats["labelled_kpts"] += nk
        stats["occluded_kpts"] += int((p["v"] == 1).sum())
        n_lab = int(p["fig"].labelled.sum())
        if int((p["v"] == 2).sum()) == n_lab:
            stats["fully_visible"] += 1
    if crowd_mask is not None:
        rle = mask_utils.encode(np.asfortranarray(crowd_mask.astype(np.uint8)))
        area = float(mask_utils.area(rle))
        bbox = [round(float(v), 2) for v in mask_utils.toBbox(rle)]
        anns.append({
            "segmentation": {"counts": rle["counts"].decode("ascii"), "size": [h, w]},
            "num_keypoints": 0, "area": area, "iscrowd": 1, "keypoints": [0] * (3 * NUM_KEYPOINTS),
            "image_id": img_id, "bbox": bbox, "category_id": 1, "id": crowd_id,
        })
        crowd_id += 1
        stats["crowd"] += 1
    return anns, ann_id, crowd_id, stats


def _detections(rng, img_id: int, anns: list, w: int, h: int) -> list[dict]:
    """GT person boxes jittered by a few percent, plus some low-score false positives."""
    dets = []
    gt_boxes = []
    for a in anns:
        if a["iscrowd"]:
            continue
        x, y, bw, bh = a["bbox"]
        gt_boxes.append((x, y, x + bw, y + bh))
        cx = x + bw / 2 + rng.normal(0, 0.03) * bw
        cy = y + bh / 2 + rng.normal(0, 0.03) * bh
        bw2 = bw * math.exp(rng.normal(0, 0.05))
        bh2 = bh * math.exp(rng.normal(0, 0.05))
        x0, y0 = max(0.0, cx - bw2 / 2), max(0.0, cy - bh2 / 2)
        x1, y1 = min(float(w), cx + bw2 / 2), min(float(h), cy + bh2 / 2)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        dets.append({"image_id": img_id, "category_id": 1,
                     "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                     "score": round(float(rng.uniform(0.7, 1.0)), 5)})
    for _ in range(int(rng.choice([0, 1, 2], p=[0.65, 0.25, 0.1]))):
        for _try in range(20):
            bh = rng.uniform(0.15, 0.45) * h
            bw = bh * rng.uniform(0.35, 0.9)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = (x0, y0, x0 + bw, y0 + bh)
            if all(_box_iou(box, g) < 0.1 for g in gt_boxes):
                dets.append({"image_id": img_id, "category_id": 1,
                             "bbox": [round(x0, 2), round(y0, 2), round(bw, 2), round(bh, 2)],
                             "score": round(float(rng.uniform(0.02, 0.28)), 5)})
                break
    return dets


# --------------------------------------------------------------------------- public API

def _categories() -> list[dict]:
    return [{
        "supercategory": "person", "id": 1, "name": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
    }]


# summary counts of a split <- the per-image statistics of _annotations_for_image
_COUNTED = {"persons": "persons", "crowd_regions": "crowd", "fully_visible": "fully_visible",
            "occluded_keypoints": "occluded_kpts", "labelled_keypoints": "labelled_kpts"}


def _write_image(img_dir: Path, split: str, img_id: int, img: np.ndarray) -> dict:
    """Write one rendered image as COCO names it; its ``images`` record."""
    h, w = img.shape[:2]
    file_name = f"{img_id:012d}.jpg"
    if not cv2.imwrite(str(img_dir / file_name), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"could not write {img_dir / file_name}")
    return {"license": 1, "file_name": file_name,
            "coco_url": f"http://images.cocodataset.invalid/{split}2017/{file_name}",
            "height": h, "width": w, "date_captured": "2017-01-01 00:00:00",
            "flickr_url": "", "id": img_id}


def _coco_document(seed: int, images: list[dict], annotations: list[dict]) -> dict:
    """A split's COCO keypoint annotation file."""
    return {
        "info": {"description": "densepred synthetic person keypoints (COCO format)",
                 "url": "", "version": "1.0", "year": 2017,
                 "contributor": f"densepred make_pose_demo (seed {seed})",
                 "date_created": "2017/01/01"},
        "licenses": [{"url": "", "id": 1, "name": "synthetic data, no restrictions"}],
        "images": images,
        "annotations": annotations,
        "categories": _categories(),
    }


def make_pose_demo(out_dir: str | Path, num_train_images: int = 300, num_val_images: int = 60,
                   image_size: tuple[int, int] = (256, 192), seed: int = 0,
                   progress: bool = True) -> dict:
    """Generate the synthetic COCO-format person keypoint dataset under ``out_dir``.

    Args:
        out_dir: root folder (created); existing files of the same names are overwritten.
        num_train_images / num_val_images: number of images per split.
        image_size: ``(width, height)`` of every image in pixels (default 256 x 192).
        seed: everything (images, ids, annotations, detections) is a function of it.
        progress: print progress lines.

    Returns:
        A summary dict: ``root``, ``train_ann``, ``val_ann``, ``train_images``,
        ``val_images``, ``detections`` (paths as str), per-split counts
        ``images`` / ``persons`` / ``crowd_regions`` / ``fully_visible`` /
        ``occluded_keypoints`` / ``labelled_keypoints``, ``num_detections`` and
        ``seconds``.
    """
    t0 = time.time()
    w, h = int(image_size[0]), int(image_size[1])
    if w < 32 or h < 32:
        raise ValueError(f"image_size (width, height) too small: {image_size}")
    root = Path(out_dir)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "person_detection_results").mkdir(parents=True, exist_ok=True)

    total = num_train_images + num_val_images
    id_rng = np.random.default_rng([seed, 7919])
    ids = id_rng.choice(581929, size=total, replace=False) + 1
    split_ids = {"train": sorted(int(i) for i in ids[:num_train_images]),
                 "val": sorted(int(i) for i in ids[num_train_images:])}

    summary: dict = {"root": str(root), "image_size": [w, h]}
    ann_id, crowd_id = 1, _CROWD_ID_BASE
    detections: list[dict] = []
    for split_code, (split, img_dir, ann_file) in enumerate(
            (("train", TRAIN_IMG_DIR, TRAIN_ANN_FILE), ("val", VAL_IMG_DIR, VAL_ANN_FILE))):
        (root / img_dir).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        counts = {"images": 0, "persons": 0, "crowd_regions": 0, "fully_visible": 0,
                  "occluded_keypoints": 0, "labelled_keypoints": 0}
        n_split = len(split_ids[split])
        for i, img_id in enumerate(split_ids[split]):
            rng = np.random.default_rng([seed, split_code, i])
            img, persons, crowd_mask = _render_image(rng, w, h)
            images.append(_write_image(root / img_dir, split, img_id, img))
            anns, ann_id, crowd_id, st = _annotations_for_image(
                img_id, persons, crowd_mask, h, w, ann_id, crowd_id)
            annotations += anns
            counts["images"] += 1
            for key, stat in _COUNTED.items():
                counts[key] += st[stat]
            if split == "val":
                detections += _detections(rng, img_id, anns, w, h)
            if progress and ((i + 1) % 100 == 0 or i + 1 == n_split):
                print(f"[pose demo] {split}: {i + 1}/{n_split} images", flush=True)
        with open(root / ann_file, "w") as fh:
            json.dump(_coco_document(seed, images, annotations), fh, separators=(",", ":"))
        summary[f"{split}_ann"] = str(root / ann_file)
        summary[f"{split}_images"] = str(root / img_dir)
        summary[split] = counts

    with open(root / DET_FILE, "w") as fh:
        json.dump(detections, fh, separators=(",", ":"))
    summary["detections"] = str(root / DET_FILE)
    summary["num_detections"] = len(detections)
    summary["seconds"] = round(time.time() - t0, 2)
    if progress:
        tr, va = summary["train"], summary["val"]
        print(f"[pose demo] wrote {tr['images']}+{va['images']} images, "
              f"{tr['persons']}+{va['persons']} persons, "
              f"{tr['crowd_regions']}+{va['crowd_regions']} crowd regions to {root} "
              f"in {summary['seconds']:.1f}s", flush=True)
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Generate the synthetic COCO-format pose demo dataset.")
    ap.add_argument("out_dir")
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--val", type=int, default=60)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    make_pose_demo(args.out_dir, args.train, args.val, (args.width, args.height), args.seed)


if __name__ == "__main__":
    main()
