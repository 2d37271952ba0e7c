"""`platform predict` for person masks: person boxes as for pose (``--boxes``, HOG or the whole
image), one mask per box pasted back into the image; COCO RLE results and overlay pictures out."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from ...frames import Frame, InputSource, VideoSink, finish_skips, progress_line
from ..pose.predict import (Box, ModelOrLoader, PosePredictOptions, crop_boxes, open_prediction, person_boxes,
                            write_picture)
from .visualize import PALETTE, draw_mask, paste_mask


@torch.no_grad()
def segment(task: Any, model: torch.nn.Module, image: np.ndarray, items: list[tuple[Box, float, str]],
            device: torch.device, batch_size: int = 32) -> list[dict]:
    """Per box: ``mask`` (bool, the image's size), ``box``, ``score`` and ``box_source``."""
    codec, image_hw = task.codec, image.shape[:2]
    persons: list[dict] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        crops, centers, scales = crop_boxes(codec, image, [box for box, _, _ in chunk])
        probs = task.infer_masks(model, torch.as_tensor(crops).to(device)).float().cpu().numpy()
        for prob, c, s, (box, score, src) in zip(probs, centers, scales, chunk):
            mask = paste_mask(prob[0], c, s, codec.input_size, image_hw, udp=codec.udp) > 0.5
            persons.append({"mask": mask, "box": box, "score": float(score), "box_source": src})
    return persons


def to_rle(mask: np.ndarray) -> dict:
    """A bool mask as COCO RLE with the counts as text (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def draw_masks(image: np.ndarray, persons: list[dict], boxes: bool = True) -> np.ndarray:
    """A copy of the image with each person's mask (one colour each) and, if ``boxes``, box."""
    out = np.ascontiguousarray(image.copy())
    unit = max(1, int(min(out.shape[:2]) / 400))
    for i, p in enumerate(persons):
        colour = PALETTE[i % len(PALETTE)]
        out = draw_mask(out, p["mask"], colour)
        if not boxes:
            continue
        x, y, w, h = p["box"]
        cv2.rectangle(out, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), colour, unit)
    return out


def run_mask_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path, boxes_file: Optional[str],
                        device: torch.device, det_thr: Optional[float] = None,
                        max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
    """Write ``results.json`` (per person: image, bbox, score, segmentation as RLE), ``images.json``
    (id -> file), ``boxes.json`` and pictures (``vis/*.jpg``, or ``<video>_mask.mp4``)."""
    opts, src, out_dir, model = open_prediction(task, model, source, out_dir, boxes_file, device, det_thr,
                                                None, max_megapixels, detector)
    sink = VideoSink(out_dir / f"{src.path.stem}_mask.mp4", src.fps) if src.is_video else None
    results: list[dict] = []
    names: dict[str, str] = {}
    try:
        for frame in src:
            results += _predict_frame(task, model, frame, opts, device, sink, out_dir / "vis", src)
            names[str(frame.image_id)] = frame.name
    finally:
        if sink is not None:
            sink.close()
    write_mask_results(out_dir, results, names)
    where = sink.path if sink is not None else out_dir / "vis"
    print(f"wrote {len(results)} person mask(s) for {len(names)} image(s): {out_dir / 'results.json'}, "
          f"pictures in {where}")
    finish_skips(src, out_dir)
    return {"persons": len(results), "images": len(names), "skipped": len(src.skipped)}


def _predict_frame(task: Any, model: torch.nn.Module, frame: Frame, opts: PosePredictOptions,
                   device: torch.device, sink: Optional[VideoSink], vis_dir: Path, src: InputSource) -> list[dict]:
    """Masks of one frame: its picture written, its results returned."""
    items, note = person_boxes(frame, opts)
    found = segment(task, model, frame.image, items, device) if items else []
    write_picture(draw_masks(frame.image, found), frame, sink, vis_dir)
    progress_line(src, frame, f"{len(found)} person(s)" + (f"; {note}" if note else ""))
    if not found and sink is None:
        print(f"warning: {frame.name}: no person mask ({note or 'no person box'})", flush=True)
    return mask_records(frame, found)


def mask_records(frame: Frame, found: list[dict]) -> list[dict]:
    """The ``results.json`` entries of one frame's masks (``segment``'s output)."""
    return [{"image_id": frame.image_id, "image": frame.name, "category_id": 1,
             "bbox": [round(float(v), 2) for v in p["box"]], "score": round(p["score"], 5),
             "source": p["box_source"], "segmentation": to_rle(p["mask"])} for p in found]


def write_mask_results(out_dir: Path, results: list[dict], names: dict[str, str]) -> None:
    """``results.json`` (masks as RLE), ``images.json`` (id -> file) and ``boxes.json`` in ``out_dir``."""
    (out_dir / "results.json").write_text(json.dumps(results))
    (out_dir / "images.json").write_text(json.dumps(names, indent=1))
    boxes = [{k: r[k] for k in ("image_id", "category_id", "bbox", "score", "source")} for r in results]
    (out_dir / "boxes.json").write_text(json.dumps(boxes))
