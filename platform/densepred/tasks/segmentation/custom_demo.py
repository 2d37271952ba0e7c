"""A small segmentation set with classes of its own, in the generic ``folders`` layout: the demo of
"train on your own data" (`platform data demo --task custom-seg`, trained by tasks/custom_seg_demo.yaml)::

    <out_dir>/images/{train,val}/<nnnnnn>.jpg     RGB photos of toy scenes
    <out_dir>/labels/{train,val}/<nnnnnn>.png     single-channel class ids (255 = ignore)
    <out_dir>/classes.yaml                        the class list (names, palette, ignore_index)

Scenes: a sky and the ground with a wavy horizon, and boxes, balls and cones standing on the ground at
random depths (nearer objects are larger and hide farther ones), with shadows. Colours are random for
every object and lighting changes per image, so classes are told apart by shape and context; lens
smudges are labelled ignore. Deterministic given ``seed``; the same reader as any real data set.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

NAMES = ("sky", "ground", "box", "ball", "cone")
PALETTE = ((70, 130, 180), (140, 110, 70), (230, 150, 30), (220, 20, 60), (250, 230, 40))
SKY, GROUND, BOX, BALL, CONE = range(len(NAMES))
IGNORE = 255


def class_info_yaml() -> str:
    """The demo's class list as a class_info YAML file."""
    lines = ["# Class list of the custom segmentation demo (platform data demo --task custom-seg).",
             "names: [" + ", ".join(NAMES) + "]", "palette:"]
    lines += [f"  - [{r}, {g}, {b}]   # {n}" for n, (r, g, b) in zip(NAMES, PALETTE)]
    lines += [f"ignore_index: {IGNORE}", "reduce_zero_label: false"]
    return "\n".join(lines) + "\n"


def _colour(rng: np.random.Generator, lo: float = 0.25, hi: float = 0.95) -> np.ndarray:
    hsv = np.uint8([[[rng.integers(0, 180), rng.integers(60, 256), int(255 * rng.uniform(lo, hi))]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sky above a wavy horizon, textured ground below; returns (image float32, label, horizon row per column)."""
    x = np.arange(s)
    horizon = (s * rng.uniform(0.3, 0.55) + s * 0.04 * np.sin(x / s * rng.uniform(2, 7) + rng.uniform(0, 6))).astype(int)
    rows = np.arange(s)[:, None]
    sky_top, sky_low = _colour(rng, 0.5, 1.0), _colour(rng, 0.6, 1.0)
    t = (rows / max(horizon.max(), 1)).clip(0, 1)[..., None]
    image = sky_top * (1 - t) + sky_low * t + np.zeros((s, s, 3), np.float32)
    ground = _colour(rng, 0.25, 0.7)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), rng.uniform(0.8, 2.5))
    below = rows >= horizon[None, :]
    image[below] = (ground * (0.8 + 0.25 * noise[..., None] + 0.3 * rows / s))[below]
    label = np.where(below, GROUND, SKY).astype(np.uint8)
    return image, label, horizon


def _box(image, label, rng, cx, base, size, colour) -> None:
    w, h = size * rng.uniform(0.8, 1.4), size * rng.uniform(0.6, 1.6)
    x0, x1, y0 = int(cx - w / 2), int(cx + w / 2), int(base - h)
    dx, dy = int(w * rng.uniform(0.2, 0.4)) * rng.choice([-1, 1]), -int(h * rng.uniform(0.15, 0.3))
    top = np.int32([[x0, y0], [x1, y0], [x1 + dx, y0 + dy], [x0 + dx, y0 + dy]])
    side_x = x1 if dx > 0 else x0
    side = np.int32([[side_x, y0], [side_x + dx, y0 + dy], [side_x + dx, base + dy], [side_x, base]])
    for poly, shade in ((side, 0.6), (top, 1.25), (np.int32([[x0, y0], [x1, y0], [x1, base], [x0, base]]), 1.0)):
        cv2.fillPoly(image, [poly], (colour * shade).clip(0, 255).tolist())
        cv2.fillPoly(label, [poly], BOX)


def _ball(image, label, rng, cx, base, size, colour) -> None:
    r = size * rng.uniform(0.4, 0.7)
    cy = base - r
    yy, xx = np.mgrid[: label.shape[0], : label.shape[1]]
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    inside = d2 <= r * r
    light = np.sqrt((xx - cx + r * 0.35) ** 2 + (yy - cy + r * 0.35) ** 2) / (2 * r)
    shade = (1.35 - light).clip(0.35, 1.4)
    image[inside] = (colour[None, :] * shade[inside][:, None]).clip(0, 255)
    label[inside] = BALL


def _cone(image, label, rng, cx, base, size, colour) -> None:
    w, h = size * rng.uniform(0.9, 1.4), size * rng.uniform(1.3, 2.0)
    tri = np.int32([[cx - w / 2, base], [cx + w / 2, base], [cx, base - h]])
    cv2.fillPoly(image, [tri], colour.tolist())
    cv2.fillPoly(label, [tri], CONE)
    if rng.random() < 0.6:  # a light band, as on traffic cones
        y = base - h * 0.5
        band = np.int32([[cx - w * 0.3, y + h * 0.08], [cx + w * 0.3, y + h * 0.08], [cx + w * 0.2, y - h * 0.08],
                         [cx - w * 0.2, y - h * 0.08]])
        cv2.fillPoly(image, [band], (240, 240, 240))


def render(rng: np.random.Generator, s: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene: uint8 RGB image and uint8 label."""
    image, label, horizon = _background(rng, s)
    objects = []
    for _ in range(int(rng.integers(2, 6))):
        cx = rng.uniform(0.05, 0.95) * s
        base = rng.uniform(horizon[int(np.clip(cx, 0, s - 1))] + 0.05 * s, s * 1.02)
        objects.append((base, cx))
    for base, cx in sorted(objects):  # farther (higher on the ground) first: nearer ones hide them
        size = s * (0.08 + 0.3 * (base / s - 0.3))
        cv2.ellipse(image, (int(cx), int(base)), (int(size * 0.7), max(1, int(size * 0.15))), 0, 0, 360,
                    (image[min(int(base), s - 1), int(np.clip(cx, 0, s - 1))] * 0.55).tolist(), -1)
        draw = (_box, _ball, _cone)[int(rng.integers(0, 3))]
        draw(image, label, rng, cx, base, size, _colour(rng))
    if rng.random() < 0.3:  # a lens smudge: not a class, ignored
        cx, cy, rx, ry = (int(v) for v in rng.uniform([0.1 * s, 0.1 * s, 4, 4], [0.9 * s, 0.9 * s, 0.12 * s, 0.1 * s]))
        mask = np.zeros((s, s), np.uint8)
        cv2.ellipse(mask, (cx, cy), (rx, ry), 0, 0, 360, 1, -1)
        image[mask > 0] = cv2.GaussianBlur(image, (0, 0), 3)[mask > 0] * 0.6 + 90
        label[mask > 0] = IGNORE
    image = image * rng.uniform(0.7, 1.2) + rng.normal(0, rng.uniform(2, 8), image.shape)
    return image.clip(0, 255).astype(np.uint8), label


def make_custom_seg_demo(out_dir: str | Path, num_train: int = 60, num_val: int = 20, image_size: int = 128,
                         seed: int = 0, progress: bool = True) -> dict:
    """Write the demo set under ``out_dir``; returns counts."""
    out = Path(out_dir)
    start = time.time()
    pixels = np.zeros(len(NAMES) + 1, np.int64)
    for split, count in (("train", num_train), ("val", num_val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, label = render(np.random.default_rng([seed, split == "val", i]), image_size)
            name = f"{i:06d}"
            cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
            cv2.imwrite(str(out / "labels" / split / f"{name}.png"), label)
            counts = np.bincount(label.ravel(), minlength=256)
            pixels += np.append(counts[: len(NAMES)], counts[IGNORE])
    (out / "classes.yaml").write_text(class_info_yaml())
    if progress:
        print(f"  custom segmentation demo: {num_train} + {num_val} images in {time.time() - start:.1f}s")
    return {"train_images": num_train, "val_images": num_val, "classes": len(NAMES),
            "ignored_pixels": int(pixels[-1])}
