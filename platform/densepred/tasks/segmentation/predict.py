"""`platform predict` for segmentation: Cityscapes-format labelId PNGs (the benchmark submission
format) plus colour overlays with a legend; for a video, one overlay video at the input's frame rate.

A video gets no labelId PNG per frame: thousands of full-size PNGs are rarely wanted, and frames
written out as images (a folder) give them in the submission format when they are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

import cv2
import numpy as np
import torch

from ...frames import (Frame, InputSource, VideoSink, finish_skips, max_pixels_from_megapixels, open_input,
                       prepare_out_dir, progress_line)
from ...imagenorm import normalize
from .labels import CLASS_NAMES, train_ids_to_label_ids
from .visualize import overlay

ModelOrLoader = Union[torch.nn.Module, Callable[[], torch.nn.Module]]


def output_stem(name: str) -> str:
    """``<city>_<seq>_<frame>`` for a Cityscapes image name, the plain stem otherwise."""
    stem = Path(name).stem
    return stem[: -len("_leftImg8bit")] if stem.endswith("_leftImg8bit") else stem


@torch.no_grad()
def predict_train_ids(task: Any, model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """(H, W) uint8 trainIds for an RGB image, with the task's inference mode (whole/slide/multiscale)."""
    x = torch.from_numpy(normalize(image))[None].to(device)
    return task.predict_probs(model, x).argmax(1)[0].numpy().astype(np.uint8)


def run_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path, device: torch.device,
                   max_megapixels: Optional[float] = None) -> dict[str, Any]:
    """Images: ``labelIds/<name>_labelIds.png`` and ``vis/<name>.jpg``; a video: ``<stem>_seg.mp4``.
    ``model`` may be a callable that loads it, called once the input and options are checked."""
    max_pixels = max_pixels_from_megapixels(max_megapixels)
    src = open_input(source, max_pixels, exclude=Path(out_dir))
    out_dir = prepare_out_dir(out_dir)  # after the input: a wrong --input leaves no empty folder behind
    if not isinstance(model, torch.nn.Module):
        model = model()
    model = model.to(device).eval()
    sink = VideoSink(out_dir / f"{src.path.stem}_seg.mp4", src.fps) if src.is_video else None
    done = 0
    try:
        for frame in src:
            pred = predict_train_ids(task, model, frame.image, device)
            if sink is not None:
                # Every class in the legend: the strip, and so the frame size, stays the same.
                sink.write(overlay(frame.image, pred, legend_classes=range(len(CLASS_NAMES))))
            else:
                _write_image_outputs(out_dir, frame, pred)
            done += 1
            progress_line(src, frame)
    finally:
        if sink is not None:
            sink.close()
    _summary(src, out_dir, sink, done)
    return {"images": done, "skipped": len(src.skipped)}


def _write_image_outputs(out_dir: Path, frame: Frame, pred: np.ndarray) -> None:
    write_label_ids(out_dir, frame, pred)
    (out_dir / "vis").mkdir(exist_ok=True)
    cv2.imwrite(str(out_dir / "vis" / f"{output_stem(frame.name)}.jpg"), overlay(frame.image, pred)[:, :, ::-1])


def write_label_ids(out_dir: Path, frame: Frame, pred: np.ndarray) -> Path:
    """``out_dir/labelIds/<stem>_labelIds.png``: a frame's trainIds as Cityscapes labelIds."""
    (out_dir / "labelIds").mkdir(exist_ok=True)
    path = out_dir / "labelIds" / f"{output_stem(frame.name)}_labelIds.png"
    cv2.imwrite(str(path), train_ids_to_label_ids(pred))
    return path


def _summary(src: InputSource, out_dir: Path, sink: Optional[VideoSink], done: int) -> None:
    if sink is not None:
        print(f"wrote the overlay video of {done} frame(s) at {src.fps:g} fps: {sink.path}")
        if not src.fps_reported:
            print(f"note: {src.path.name} does not state its frame rate; the output uses {src.fps:g} fps")
    else:
        print(f"wrote {done} labelId PNG(s) to {out_dir / 'labelIds'} and overlays to {out_dir / 'vis'}")
    finish_skips(src, out_dir)
