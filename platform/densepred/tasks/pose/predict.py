"""`platform predict` for pose: images, folders or videos in; COCO results and skeleton pictures out.

Boxes: a COCO results file (``--boxes``) whose ``image_id`` is the image's file stem (numeric stems
as in COCO, e.g. 000000000139 -> 139) or, for videos, the frame index. Without boxes every image
(frame) is treated as one person box covering the whole image.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Optional

import cv2
import numpy as np
import torch

from ...errors import DataError
from ...imageio import read_rgb
from .dataset import as_box
from .evaluation import to_coco_results
from .geometry import box_to_center_scale
from ...imagenorm import normalize
from .visualize import draw_skeleton

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def _image_key(stem: str) -> Any:
    return int(stem) if stem.isdigit() else stem


def iter_frames(source: Path) -> Iterator[tuple[Any, str, np.ndarray]]:
    """(image_id, name, RGB image) for an image, every image of a folder, or every video frame."""
    if not source.exists():
        raise DataError(f"--input {source} not found")
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"--input folder {source} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for f in files:
            yield _image_key(f.stem), f.name, read_rgb(f)
    elif source.suffix.lower() in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(source))
        if not cap.isOpened():
            raise DataError(f"video {source} cannot be opened (unsupported codec or corrupt file)")
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield index, f"{source.stem}_{index:06d}.jpg", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        cap.release()
        if index == 0:
            raise DataError(f"video {source} has no readable frames")
    else:
        yield _image_key(source.stem), source.name, read_rgb(source)


def load_boxes(path: Optional[str]) -> dict[Any, list[tuple[list[float], float]]]:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--boxes file {p} not found")
    try:
        dets = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(dets, list):
        raise DataError(f"{p}: expected a JSON list of detections in COCO results format "
                        f"([{{\"image_id\": ..., \"bbox\": [x, y, w, h], \"score\": ...}}, ...]), "
                        f"got a {type(dets).__name__}")
    out: dict[Any, list] = {}
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
            raise DataError(f"{p}: detection #{i} lacks image_id/bbox (COCO results format: "
                            "{\"image_id\": ..., \"bbox\": [x, y, w, h], \"score\": ...})")
        if d.get("category_id", 1) != 1:
            continue
        box = as_box(d["bbox"])
        if box is None:
            raise DataError(f"{p}: detection #{i} has an invalid box {d['bbox']} (expected [x, y, width, height])")
        if box[2] <= 0 or box[3] <= 0:
            raise DataError(f"{p}: detection #{i} has an invalid box {d['bbox']} (width and height must be > 0)")
        score = d.get("score", 1.0)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise DataError(f"{p}: detection #{i} has score {score!r}; expected a number")
        out.setdefault(d["image_id"], []).append((box, float(score)))
    return out


def run_prediction(task: Any, model: torch.nn.Module, source: Path, out_dir: Path,
                   boxes_file: Optional[str], device: torch.device) -> dict[str, Any]:
    """Write ``results.json`` (COCO keypoint results), ``images.json`` (id -> file) and pictures."""
    boxes = load_boxes(boxes_file)
    codec = task.codec
    w_in, h_in = codec.input_size
    model = model.to(device).eval()
    vis_dir = out_dir / "vis"
    vis_dir.mkdir(parents=True, exist_ok=True)
    persons: list[dict] = []
    names: dict[str, str] = {}
    writer = None
    for image_id, name, image in iter_frames(source):
        h, w = image.shape[:2]
        items = boxes.get(image_id, [([0.0, 0.0, float(w), float(h)], 1.0)] if not boxes else [])
        crops, centers, scales, scores = [], [], [], []
        for box, score in items:
            c, s = box_to_center_scale(*box, aspect_ratio=w_in / h_in)
            trans = codec.crop_transform(c, s, 0.0)
            crops.append(normalize(cv2.warpAffine(image, trans, (w_in, h_in), flags=cv2.INTER_LINEAR)))
            centers.append(c)
            scales.append(s)
            scores.append(score)
        drawn = image
        if crops:
            batch = {"center": torch.as_tensor(np.stack(centers)), "scale": torch.as_tensor(np.stack(scales)),
                     "image_id": [0] * len(crops), "score": torch.as_tensor(scores)}
            heatmaps = task.infer_heatmaps(model, torch.as_tensor(np.stack(crops)).to(device))
            for p in task.persons_from_batch(heatmaps, batch):
                p["image_id"] = image_id if isinstance(image_id, int) else len(names)
                persons.append(p)
                drawn = draw_skeleton(drawn, p["keypoints"])
        names[str(image_id)] = name
        if source.suffix.lower() in VIDEO_SUFFIXES:
            if writer is None:
                writer = cv2.VideoWriter(str(out_dir / f"{source.stem}_pose.mp4"),
                                         cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
            writer.write(drawn[:, :, ::-1])
        else:
            cv2.imwrite(str(vis_dir / (Path(name).stem + ".jpg")), drawn[:, :, ::-1])
    if writer is not None:
        writer.release()
    results = to_coco_results(persons)
    (out_dir / "results.json").write_text(json.dumps(results))
    (out_dir / "images.json").write_text(json.dumps(names, indent=1))
    print(f"wrote {len(results)} person(s) for {len(names)} image(s): {out_dir / 'results.json'}, "
          f"pictures in {vis_dir if writer is None else out_dir}")
    return {"persons": len(results), "images": len(names)}


