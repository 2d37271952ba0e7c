"""`platform predict` for pose: images, folders or videos in; COCO results and skeleton pictures out.

Person boxes come from one of:
- ``--boxes``: a COCO results file whose ``image_id`` is the image's file stem (numeric stems as
  in COCO, e.g. 000000000139 -> 139; other stems as strings) or, for a video, the frame index;
- OpenCV's HOG people detector (the default without ``--boxes``; needs no download). Where it finds
  nobody, the whole image is one box, so single-person crops still work;
- ``detector="whole"``: every image is one person box covering the whole image.
Boxes scoring below the detection threshold (``--det-thr``, else ``data.det_score_thr``) are not used.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import cv2
import numpy as np
import torch

from ...errors import DataError, PlatformError
from ...frames import (Frame, InputSource, VideoSink, check_fraction, finish_skips, image_key,
                       max_pixels_from_megapixels, open_input, prepare_out_dir, progress_line)
from ...imagenorm import normalize
from .dataset import as_box
from .evaluation import to_coco_results
from .geometry import box_to_center_scale
from .keypoint_meta import coco_keypoints
from .keypoint_meta import KeypointMeta
from .visualize import draw_person

DEFAULT_KPT_THR = 0.3
DETECTORS = ("hog", "whole")
Box = list[float]  # [x, y, w, h]


# --------------------------------------------------------------------------- boxes from a file

def load_boxes(path: Optional[str]) -> dict[Any, list[tuple[Box, float]]]:
    """Person boxes of a COCO results file, by image id: ``{image_id: [([x, y, w, h], score), ...]}``."""
    if not path:
        return {}
    p = Path(path)
    if p.is_dir():
        raise DataError(f"--boxes {p} is a folder; give a COCO results JSON file")
    if not p.is_file():
        raise DataError(f"--boxes file {p} not found")
    try:
        dets = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--boxes {p} cannot be read: {e}") from None
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
        key = image_key(d["image_id"]) if isinstance(d["image_id"], str) else d["image_id"]
        out.setdefault(key, []).append((box, float(score)))
    return out


def check_boxes_match(boxes: dict, source: InputSource, path: str) -> None:
    """A boxes file whose ids match none of the inputs would silently draw nothing: refuse it."""
    if not boxes:
        raise DataError(f"--boxes {path} has no person detections (category_id 1); nothing could be drawn")
    expected = source.expected_ids()
    if set(boxes) & set(expected):
        return
    have = ", ".join(repr(k) for k in sorted(boxes, key=str)[:4])
    want = ", ".join(repr(k) for k in expected[:4]) + (", ..." if len(expected) > 4 else "")
    rule = ("the frame index" if source.is_video
            else "the file stem, numeric stems as integers (000000000139.jpg -> 139)")
    raise DataError(f"--boxes {path}: none of its image ids ({have}{', ...' if len(boxes) > 4 else ''}) "
                    f"match the inputs, whose ids are {want}; image_id must be {rule}")


# --------------------------------------------------------------------------- HOG person detector

class HogPersonDetector:
    """OpenCV's HOG + linear SVM people detector (Dalal & Triggs, trained on upright pedestrians):
    built into OpenCV, no download. It proposes boxes only; a real detector's boxes are better."""

    MIN_HEIGHT = 256     # smaller images are upscaled: the 64x128 window needs people >= ~100 px tall
    MAX_UPSCALE = 4.0
    MAX_SIDE = 640       # larger images are downscaled: time grows with pixels; big people stay findable
    NMS_IOU = 0.3        # HOG windows are loose, so duplicates of one person overlap a lot
    PAD = 32             # border padding: people cut off by the image edge are still found
    WINDOW = (64, 128)   # the default people detector's window (width, height)

    def __init__(self) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise PlatformError(f"this OpenCV ({cv2.__version__}) has no HOG people detector (OpenCV 5 moved it "
                                "to the contrib build): install opencv-contrib-python-headless or "
                                "opencv-python-headless<5, or give --boxes, or use --detector whole")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def working_scale(self, height: int, width: int) -> float:
        """Resize factor for the copy the detector runs on."""
        f = min(self.MAX_UPSCALE, max(1.0, self.MIN_HEIGHT / height))
        return min(f, self.MAX_SIDE / max(height, width))

    def __call__(self, image_rgb: np.ndarray) -> list[tuple[Box, float]]:
        """Person boxes ``[x, y, w, h]`` in image pixels with scores in [0, 1), best first."""
        h, w = image_rgb.shape[:2]
        f = self.working_scale(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        if size[0] < self.WINDOW[0] or size[1] < self.WINDOW[1]:
            # No person fits the window; and OpenCV crashes (segfault) on images much smaller than it.
            return []
        small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_LINEAR if f > 1 else cv2.INTER_AREA)
        # A fine stride finds more people but costs 4x: affordable on small working images only.
        stride = 4 if small.shape[0] * small.shape[1] <= 200_000 else 8
        rects, weights = self.hog.detectMultiScale(small, hitThreshold=0.0, winStride=(stride, stride),
                                                   padding=(self.PAD, self.PAD), scale=1.05, groupThreshold=0)
        if len(rects) == 0:
            return []
        boxes = np.asarray(rects, np.float64).reshape(-1, 4) / f
        # The SVM margin is >= 0 here; 1 - exp(-margin) maps it to a score in [0, 1).
        scores = 1.0 - np.exp(-np.clip(np.ravel(weights).astype(np.float64), 0, None))
        keep = nms(boxes, scores, self.NMS_IOU)
        return [(_clip_box(boxes[i], w, h), float(scores[i])) for i in keep]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    """Greedy non-maximum suppression on ``[x, y, w, h]`` boxes; indices kept, best score first."""
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    area = boxes[:, 2] * boxes[:, 3]
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = np.asarray(order, dtype=int)
        if rest.size == 0:
            break
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / (area[i] + area[rest] - inter + 1e-9)
        order = [j for j, o in zip(rest, iou) if o <= iou_thr]
    return keep


def _clip_box(box: np.ndarray, width: int, height: int) -> Box:
    x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
    x2, y2 = min(float(width), float(box[0] + box[2])), min(float(height), float(box[1] + box[3]))
    return [x1, y1, max(1.0, x2 - x1), max(1.0, y2 - y1)]


# --------------------------------------------------------------------------- one run

@dataclass
class PosePredictOptions:
    """The checked options of one prediction run."""

    det_thr: float
    kpt_thr: float
    detector: str                                   # file | hog | whole
    boxes: dict = field(default_factory=dict)
    hog: Optional[HogPersonDetector] = None


def resolve_options(task: Any, boxes_file: Optional[str], det_thr: Optional[float], kpt_thr: Optional[float],
                    detector: Optional[str]) -> PosePredictOptions:
    """Check thresholds and the detector choice; ``det_thr`` defaults to ``data.det_score_thr``."""
    check_fraction("--det-thr", det_thr)
    check_fraction("--kpt-thr", kpt_thr)
    if detector not in (None, *DETECTORS):
        raise PlatformError(f"--detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    if boxes_file and detector:
        raise PlatformError("give either --boxes or --detector, not both")
    det = float(task.data.det_score_thr if det_thr is None else det_thr)
    check_fraction("data.det_score_thr", det)
    kpt = DEFAULT_KPT_THR if kpt_thr is None else float(kpt_thr)
    if boxes_file:
        return PosePredictOptions(det, kpt, "file", boxes=load_boxes(boxes_file))
    return PosePredictOptions(det, kpt, detector or "hog")


def person_boxes(frame: Frame, opts: PosePredictOptions) -> tuple[list[tuple[Box, float, str]], str]:
    """(box, score, source) of the persons to estimate, above the detection threshold, and a note
    saying why there are none (or that the whole image was used)."""
    h, w = frame.image.shape[:2]
    whole = [([0.0, 0.0, float(w), float(h)], 1.0, "whole-image")]
    if opts.detector == "whole":
        return whole, ""
    if opts.detector == "hog":
        found = [(b, s, "hog") for b, s in opts.hog(frame.image)]
        if not found:
            return whole, "HOG found nobody; whole image used as one box"
    else:
        found = [(b, s, "file") for b, s in opts.boxes.get(frame.image_id, [])]
        if not found:
            return [], f"no boxes for image id {frame.image_id!r} in --boxes"
    kept = [item for item in found if item[1] >= opts.det_thr]
    if not kept:
        best = max(score for _, score, _ in found)
        return [], (f"none of {len(found)} box(es) scores >= {opts.det_thr:g} (best {best:.2f}); "
                    "lower --det-thr or data.det_score_thr")
    return kept, ""


def crop_boxes(codec: Any, image: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The normalised network crops ``(N, 3, H_in, W_in)`` of person boxes and their centers and
    scales ``(N, 2)`` (the crop geometry of ``codec``, no rotation)."""
    w_in, h_in = codec.input_size
    crops, centers, scales = [], [], []
    for box in boxes:
        c, s = box_to_center_scale(*box, aspect_ratio=w_in / h_in)
        trans = codec.crop_transform(c, s, 0.0)
        crops.append(normalize(cv2.warpAffine(image, trans, (w_in, h_in), flags=cv2.INTER_LINEAR)))
        centers.append(c)
        scales.append(s)
    return np.stack(crops), np.stack(centers), np.stack(scales)


@torch.no_grad()
def estimate(task: Any, model: torch.nn.Module, image: np.ndarray, items: list[tuple[Box, float, str]],
             device: torch.device, batch_size: int = 32) -> list[dict]:
    """Keypoints (original image pixels) of each box, with the box and its score attached."""
    persons: list[dict] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        crops, centers, scales = crop_boxes(task.codec, image, [box for box, _, _ in chunk])
        batch = {"center": torch.as_tensor(centers), "scale": torch.as_tensor(scales),
                 "image_id": [0] * len(chunk), "score": torch.as_tensor([s for _, s, _ in chunk])}
        heatmaps = task.infer_heatmaps(model, torch.as_tensor(crops).to(device))
        for p, (box, _, src) in zip(task.persons_from_batch(heatmaps, batch), chunk):
            p["box"], p["box_source"] = box, src
            persons.append(p)
    return persons


def draw_persons(image: np.ndarray, persons: list[dict], kpt_thr: float,
                 meta: Optional[KeypointMeta] = None) -> tuple[np.ndarray, int]:
    """A copy of the image with every person's box, score and keypoints above ``kpt_thr`` (skeleton
    of ``meta``, COCO by default); and the number of keypoints drawn."""
    out = np.ascontiguousarray(image.copy())
    meta = meta or coco_keypoints()
    drawn = sum(draw_person(out, p["box"], p["score"], p["keypoints"], kpt_thr, meta) for p in persons)
    return out, drawn


def nothing_drawn_reason(persons: list[dict], drawn: int, note: str, kpt_thr: float) -> Optional[str]:
    """Why a picture shows no keypoint, with what to try; None when something was drawn."""
    if drawn:
        return None
    if not persons:
        return note or "no person box"
    best = max(float(np.max(p["keypoints"][:, 2])) for p in persons)
    return (f"no keypoint of {len(persons)} person(s) above --kpt-thr {kpt_thr:g}, best {best:.2f}; "
            "lower --kpt-thr, or check the checkpoint fits this config")


ModelOrLoader = Union[torch.nn.Module, Callable[[], torch.nn.Module]]


def run_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path, boxes_file: Optional[str],
                   device: torch.device, det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                   max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
    """Write ``results.json`` (COCO keypoint results), ``images.json`` (id -> file), ``boxes.json``
    (the boxes used) and pictures (``vis/*.jpg``, or ``<video>_pose.mp4``). ``model`` may be a
    callable that loads it: it is called only once every input and option has been checked."""
    opts, src, out_dir, model = open_prediction(task, model, source, out_dir, boxes_file, device, det_thr,
                                                kpt_thr, max_megapixels, detector)
    return _predict_all(task, model, src, out_dir, opts, device)


def open_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path, boxes_file: Optional[str],
                    device: torch.device, det_thr: Optional[float], kpt_thr: Optional[float],
                    max_megapixels: Optional[float], detector: Optional[str],
                    ) -> tuple[PosePredictOptions, InputSource, Path, torch.nn.Module]:
    """Check the options and the input, make the output folder, set up the box source, then load
    the model (in that order: a mistake fails before anything slow); for every top-down task."""
    opts = resolve_options(task, boxes_file, det_thr, kpt_thr, detector)
    max_pixels = max_pixels_from_megapixels(max_megapixels)
    src = open_input(source, max_pixels, exclude=Path(out_dir))
    out_dir = prepare_out_dir(out_dir)  # after the input: a wrong --input leaves no empty folder behind
    if opts.detector == "file":
        check_boxes_match(opts.boxes, src, str(boxes_file))
    if opts.detector == "hog":
        opts.hog = HogPersonDetector()
        print("note: no --boxes: OpenCV's HOG people detector proposes the person boxes; a real detector's "
              "boxes (--boxes, COCO results format) give better results")
    if not isinstance(model, torch.nn.Module):
        model = model()
    return opts, src, out_dir, model.to(device).eval()


def _predict_all(task: Any, model: torch.nn.Module, src: InputSource, out_dir: Path,
                 opts: PosePredictOptions, device: torch.device) -> dict[str, Any]:
    vis_dir = out_dir / "vis"
    sink = VideoSink(out_dir / f"{src.path.stem}_pose.mp4", src.fps) if src.is_video else None
    persons: list[dict] = []
    names: dict[str, str] = {}
    empty: list[str] = []
    try:
        for frame in src:
            items, note = person_boxes(frame, opts)
            found = estimate(task, model, frame.image, items, device) if items else []
            for p in found:
                p["image_id"] = frame.image_id
            persons += found
            names[str(frame.image_id)] = frame.name
            drawn, n_kpts = draw_persons(frame.image, found, opts.kpt_thr, task.meta)
            write_picture(drawn, frame, sink, vis_dir)
            progress_line(src, frame, _describe(found, note))
            reason = nothing_drawn_reason(found, n_kpts, note, opts.kpt_thr)
            if reason and sink is None:
                print(f"warning: {frame.name}: nothing drawn ({reason})", flush=True)
            elif reason:
                empty.append(frame.name)
    finally:
        if sink is not None:
            sink.close()
    if empty:  # one line for a video, not one per frame
        print(f"warning: {src.path.name}: nothing drawn on {len(empty)} of {len(names)} frame(s) (first: "
              f"{empty[0]}); lower --det-thr / --kpt-thr, or give --boxes", flush=True)
    return _write_outputs(src, out_dir, persons, names, sink)


def write_picture(drawn: np.ndarray, frame: Frame, sink: Optional[VideoSink], vis_dir: Path) -> None:
    """One drawn frame: into the video, or as ``vis_dir/<stem>.jpg``."""
    if sink is not None:
        sink.write(drawn)
        return
    vis_dir.mkdir(exist_ok=True)
    cv2.imwrite(str(vis_dir / (Path(frame.name).stem + ".jpg")), drawn[:, :, ::-1])


def _describe(persons: list[dict], note: str) -> str:
    sources = sorted({p["box_source"] for p in persons})
    text = f"{len(persons)} person(s)" + (f" (boxes: {', '.join(sources)})" if sources else "")
    return text + (f"; {note}" if note and persons else "")


def _write_outputs(src: InputSource, out_dir: Path, persons: list[dict], names: dict[str, str],
                   sink: Optional[VideoSink]) -> dict[str, Any]:
    """results.json, images.json and boxes.json are written in every case, also with 0 persons."""
    results = write_pose_results(out_dir, persons, names)
    where = sink.path if sink is not None else out_dir / "vis"
    print(f"wrote {len(results)} person(s) for {len(names)} image(s): {out_dir / 'results.json'}, "
          f"pictures in {where}" + (f" ({src.fps:g} fps)" if sink is not None else ""))
    if src.is_video and not src.fps_reported:
        print(f"note: {src.path.name} does not state its frame rate; the output uses {src.fps:g} fps")
    finish_skips(src, out_dir)
    return {"persons": len(results), "images": len(names), "skipped": len(src.skipped)}


def write_pose_results(out_dir: Path, persons: list[dict], names: dict[str, str]) -> list[dict]:
    """``results.json`` (COCO keypoint results), ``images.json`` (id -> file) and ``boxes.json``
    (the boxes used) in ``out_dir``; returns the COCO results."""
    results = to_coco_results(persons)
    used = [{"image_id": p["image_id"], "category_id": 1, "bbox": [round(v, 2) for v in p["box"]],
             "score": round(float(p["score"]), 5), "source": p["box_source"]} for p in persons]
    (out_dir / "results.json").write_text(json.dumps(results))
    (out_dir / "images.json").write_text(json.dumps(names, indent=1))
    (out_dir / "boxes.json").write_text(json.dumps(used))
    return results
