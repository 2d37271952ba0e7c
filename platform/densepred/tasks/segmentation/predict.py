"""`platform predict` for segmentation: label PNGs that read back like the dataset's own labels
(Cityscapes: ``labelIds/<name>_labelIds.png``, the benchmark submission format; a folders task:
``labels/<stem><label_suffix>``) plus colour overlays with a legend in the class list's palette; for
a video, one overlay video at the input's frame rate.

A video gets no label PNG per frame: thousands of full-size PNGs are rarely wanted, and frames
written out as images (a folder) give them when they are.
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
from .visualize import overlay

ModelOrLoader = Union[torch.nn.Module, Callable[[], torch.nn.Module]]


def output_stem(name: str, image_suffix: str = "_leftImg8bit.png") -> str:
    """The file name without ``image_suffix`` (Cityscapes: ``<city>_<seq>_<frame>``), else its stem."""
    if image_suffix and name.endswith(image_suffix) and len(name) > len(image_suffix):
        return name[: -len(image_suffix)]
    stem = Path(name).stem
    return stem[: -len("_leftImg8bit")] if stem.endswith("_leftImg8bit") else stem


@torch.no_grad()
def predict_train_ids(task: Any, model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """(H, W) class ids for an RGB image, with the task's inference mode (whole/slide/multiscale)."""
    x = torch.from_numpy(normalize(image))[None].to(device)
    ids = task.predict_probs(model, x).argmax(1)[0].numpy()
    return ids.astype(np.uint8 if task.class_info.num_classes <= 256 else np.uint16)


def label_folder(task: Any) -> str:
    """The output subfolder of prediction PNGs."""
    return "labelIds" if task.data.format == "cityscapes" else "labels"


def write_label_ids(out_dir: Path, frame: Frame, pred: np.ndarray, task: Any = None) -> Path:
    """A frame's class ids as the dataset stores labels (Cityscapes: labelIds), in
    ``out_dir/<labelIds|labels>/<stem><suffix>``; without a task, the Cityscapes format."""
    from .labels import CITYSCAPES

    info = task.class_info if task is not None else CITYSCAPES
    folder = label_folder(task) if task is not None else "labelIds"
    suffix = task.prediction_suffix if task is not None else "_labelIds.png"
    image_suffix = task.data.image_suffix if task is not None and task.data.format == "folders" else "_leftImg8bit.png"
    (out_dir / folder).mkdir(exist_ok=True)
    path = out_dir / folder / f"{output_stem(frame.name, image_suffix)}{suffix}"
    cv2.imwrite(str(path), info.encode(pred))
    return path


def run_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path, device: torch.device,
                   max_megapixels: Optional[float] = None) -> dict[str, Any]:
    """Images: label PNGs and ``vis/<name>.jpg``; a video: ``<stem>_seg.mp4``.
    ``model`` may be a callable that loads it, called once the input and options are checked."""
    max_pixels = max_pixels_from_megapixels(max_megapixels)
    src = open_input(source, max_pixels, exclude=Path(out_dir))
    out_dir = prepare_out_dir(out_dir)  # after the input: a wrong --input leaves no empty folder behind
    if not isinstance(model, torch.nn.Module):
        model = model()
    model = model.to(device).eval()
    sink = VideoSink(out_dir / f"{src.path.stem}_seg.mp4", src.fps) if src.is_video else None
    info = task.class_info
    done = 0
    try:
        for frame in src:
            pred = predict_train_ids(task, model, frame.image, device)
            if sink is not None:
                # Every class in the legend: the strip, and so the frame size, stays the same.
                sink.write(overlay(frame.image, pred, legend_classes=range(info.num_classes), info=info))
            else:
                _write_image_outputs(task, out_dir, frame, pred)
            done += 1
            progress_line(src, frame)
    finally:
        if sink is not None:
            sink.close()
    _summary(task, src, out_dir, sink, done)
    return {"images": done, "skipped": len(src.skipped)}


def _write_image_outputs(task: Any, out_dir: Path, frame: Frame, pred: np.ndarray) -> None:
    write_label_ids(out_dir, frame, pred, task)
    (out_dir / "vis").mkdir(exist_ok=True)
    cv2.imwrite(str(out_dir / "vis" / f"{output_stem(frame.name, task.data.image_suffix)}.jpg"),
                overlay(frame.image, pred, info=task.class_info)[:, :, ::-1])


def _summary(task: Any, src: InputSource, out_dir: Path, sink: Optional[VideoSink], done: int) -> None:
    if sink is not None:
        print(f"wrote the overlay video of {done} frame(s) at {src.fps:g} fps: {sink.path}")
        if not src.fps_reported:
            print(f"note: {src.path.name} does not state its frame rate; the output uses {src.fps:g} fps")
    else:
        kind = "labelId" if task.data.format == "cityscapes" else "label"
        print(f"wrote {done} {kind} PNG(s) to {out_dir / label_folder(task)} and overlays to {out_dir / 'vis'}")
    finish_skips(src, out_dir)
