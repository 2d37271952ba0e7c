"""Tiny hand-made sets in the multi-task benchmark layouts, for the dense task tests.

``make_nyud_like`` writes the NYUD-v2 layout as the ``scenes`` demo does (PNG normals and edges, or
the published ``.npy`` variant): toy rooms of a wall, a floor and a box whose depth, normals and
boundaries follow from the geometry, so every target is consistent with the others.
``make_pascal_like`` writes the PASCAL-Context MT layout (Pascal-Part ``.mat`` parts, a
``LabelMap`` ``.mat``, distilled saliency and normals PNGs).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

CLASSES = ["wall", "floor", "box"]
PALETTE = [[200, 180, 150], [120, 90, 60], [40, 90, 200]]
WALL_N = (0.0, 0.0, 1.0)
FLOOR_N = (0.0, -1.0, 0.0)
BOX_N = (0.6, 0.0, 0.8)     # a side-facing face: a mirror negates its x


def scene(rng: np.random.Generator, w: int, h: int) -> dict[str, np.ndarray]:
    """Class ids (0 wall, 1 floor, 2 box, 255 void), depth (m, 0 = none), normals and boundaries."""
    horizon = int(rng.integers(h // 3, h // 2 + 1))
    ids = np.zeros((h, w), np.int32)
    ids[horizon:] = 1
    x0, y0 = int(rng.integers(2, w // 2)), int(rng.integers(horizon - 6, horizon + 2))
    ids[y0:y0 + h // 3, x0:x0 + w // 3] = 2
    ids[0, :] = 255                                       # a void row
    rows = np.arange(h, dtype=np.float32)[:, None]
    depth = np.where(ids == 1, 4.0 - 2.5 * (rows - horizon) / max(1, h - horizon), 4.0).astype(np.float32)
    depth[ids == 2] = 2.5
    depth[:3, :3] = 0.0                                   # no measurement
    normals = np.zeros((h, w, 3), np.float32)
    for cls, n in ((0, WALL_N), (1, FLOOR_N), (2, BOX_N)):
        normals[ids == cls] = n
    valid = ids != 255
    change = np.zeros((h, w), bool)
    change[:, 1:] |= (ids[:, 1:] != ids[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    change[1:, :] |= (ids[1:, :] != ids[:-1, :]) & valid[1:, :] & valid[:-1, :]
    colours = np.array(PALETTE + [[0, 0, 0]] * 253, np.float32)
    image = colours[np.where(valid, ids, 3)] + rng.normal(0, 6, (h, w, 3))
    return {"ids": ids, "depth": depth, "normals": normals, "edge": change.astype(np.uint8),
            "image": np.clip(image, 0, 255).astype(np.uint8)}


def make_nyud_like(root: Path, n_train: int = 4, n_val: int = 2, size: tuple[int, int] = (64, 48),
                   seed: int = 0, npy: bool = False) -> Path:
    """The NYUD-v2 layout under ``root`` with ``classes.yaml``; ``npy``: normals and edges as .npy."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = {"train": [f"{i:04d}" for i in range(n_train)],
             "val": [f"{i:04d}" for i in range(n_train, n_train + n_val)]}
    for split, names in stems.items():
        (root / "gt_sets" / f"{split}.txt").write_text("".join(f"{s}\n" for s in names))
        for stem in names:
            s = scene(rng, *size)
            cv2.imwrite(str(root / "images" / f"{stem}.jpg"), s["image"][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            stored = np.where(s["ids"] == 255, 0, s["ids"] + 1).astype(np.uint8)    # 1..N, 0 = void
            cv2.imwrite(str(root / "segmentation" / f"{stem}.png"), stored)
            np.save(root / "depth" / f"{stem}.npy", s["depth"])
            if npy:
                np.save(root / "normals" / f"{stem}.npy", s["normals"])
                np.save(root / "edge" / f"{stem}.npy", s["edge"].astype(np.float32))
            else:
                rgb = np.where(np.abs(s["normals"]).sum(2, keepdims=True) > 0,
                               np.clip((s["normals"] + 1) / 2 * 255 + 0.5, 0, 255), 0).astype(np.uint8)
                cv2.imwrite(str(root / "normals" / f"{stem}.png"), rgb[:, :, ::-1])
                cv2.imwrite(str(root / "edge" / f"{stem}.png"), s["edge"] * 255)
    (root / "classes.yaml").write_text(yaml.safe_dump({"names": CLASSES, "palette": PALETTE,
                                                       "ignore_index": 255, "reduce_zero_label": True}))
    return root


# ---------------------------------------------------------------------------- PASCAL-Context MT

def parts_mat(path: Path, objects: list[tuple[int, np.ndarray, list[tuple[str, np.ndarray]]]]) -> None:
    """A Pascal-Part ``anno`` file: objects of (class index, mask, [(part name, mask)])."""
    from scipy.io import savemat

    part_dt = [("part_name", "O"), ("mask", "O")]
    obj_dt = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
    objs = np.zeros((1, len(objects)), dtype=obj_dt)
    for i, (cls, mask, parts) in enumerate(objects):
        arr = np.zeros((1, len(parts)), dtype=part_dt) if parts else np.zeros((0, 0))
        for j, (name, pmask) in enumerate(parts):
            arr[0, j]["part_name"] = name
            arr[0, j]["mask"] = pmask.astype(np.uint8)
        objs[0, i]["class"] = "person" if cls == 15 else "other"
        objs[0, i]["class_ind"] = np.array([[cls]])
        objs[0, i]["mask"] = mask.astype(np.uint8)
        objs[0, i]["parts"] = arr
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0]["imname"] = path.stem
    anno[0, 0]["objects"] = objs
    savemat(str(path), {"anno": anno})


def make_pascal_like(root: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """Two train and one val image in the PASCAL_MT layout: image a has a person with head and
    torso parts, image b has no person (its parts map is ignored), c is the val image."""
    from scipy.io import savemat

    w, h = size
    for sub in ("JPEGImages", "semseg/VOC12", "semseg/pascal-context", "human_parts", "sal_distill",
                "normals_distill", "pascal-context/trainval", "ImageSets/Context"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Context/train.txt").write_text("a\nb\n")
    (root / "ImageSets/Context/val.txt").write_text("c\n")
    rng = np.random.default_rng(1)
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(root / "JPEGImages" / f"{stem}.jpg"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        label_map = np.full((h, w), 440, np.int32)       # wall: a class with normals
        label_map[:, w // 2:] = 360                      # sky: none
        savemat(str(root / "pascal-context/trainval" / f"{stem}.mat"), {"LabelMap": label_map})
        sal = np.zeros((h, w), np.uint8)
        sal[5:15, 5:15] = 200
        sal[20:25, 5:15] = 100                           # below the 0.5 threshold
        cv2.imwrite(str(root / "sal_distill" / f"{stem}.png"), sal)
        normals = np.zeros((h, w, 3), np.uint8)
        normals[:] = (128, 128, 255)                     # facing the camera
        cv2.imwrite(str(root / "normals_distill" / f"{stem}.png"), normals[:, :, ::-1])
        semseg = np.zeros((h, w), np.uint8)
        semseg[10:20, 10:20] = 15
        semseg[0, :] = 255
        folder = "semseg/VOC12" if stem == "a" else "semseg/pascal-context"
        cv2.imwrite(str(root / folder / f"{stem}.png"), semseg)
    head, torso = np.zeros((h, w), bool), np.zeros((h, w), bool)
    head[2:6, 10:14], torso[6:16, 9:15] = True, True
    person = head | torso
    parts_mat(root / "human_parts" / "a.mat", [(15, person, [("head", head), ("torso", torso)]),
                                             (7, np.zeros((h, w), bool), [])])
    parts_mat(root / "human_parts" / "b.mat", [(7, np.ones((h, w), bool), [])])
    parts_mat(root / "human_parts" / "c.mat", [(15, person, [("hair", head), ("luarm", torso)])])
    return root


# ---------------------------------------------------------------------------- training without Ray

def train_in_process(task, epochs: int = 2, lr: float = 2e-3, seed: int = 0) -> tuple[object, list[dict]]:
    """The engine's step without Ray: the task's batches, forward, ``train_loss``, backward, Adam.
    Returns the model and per-step logs (``loss`` plus the task's figures)."""
    import torch

    from densepred.tasks.base import StepContext

    torch.manual_seed(seed)
    model = task.build_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = task.build_train_batches(seed)
    logs, step = [], 0
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        model.train()
        for batch in batches:
            loss, figures = task.train_loss(model(batch["image"]), batch, StepContext(model, epoch, step))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            logs.append({"loss": float(loss.detach()), **figures})
    return model.eval(), logs


def ray_train(cfg, workers: int = 1):
    """One Ray Train run of a loaded config (the suite's shared local Ray must be up: ``ray_local``)."""
    from densepred.engine.launch import train

    return train(cfg, workers=workers)
