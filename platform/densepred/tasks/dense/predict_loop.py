"""`platform predict` for a dense task: per image a prediction file in the task's format
(``<pred_folder>/<stem><pred_suffix>``) and a picture (``vis/<stem>.jpg``: image | prediction); for
a video, one picture video (``<video>_<kind>.mp4``) at the input's frame rate and no files per frame."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

import cv2
import numpy as np
import torch

from ...frames import (Frame, VideoSink, finish_skips, max_pixels_from_megapixels, open_input, prepare_out_dir,
                       progress_line)
from ...imagenorm import normalize
from .panels import side_by_side

ModelOrLoader = Union[torch.nn.Module, Callable[[], torch.nn.Module]]


def predict_frame(task: Any, model: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """The task's prediction for an RGB image, at the image's size."""
    return task.predict_map(model, torch.from_numpy(normalize(image))[None].to(device))


def picture(task: Any, image: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return side_by_side([("image", image), (task.kind, task.visualize(image, pred))])


def write_outputs(task: Any, out_dir: Path, frame: Frame, pred: np.ndarray, vis: Optional[np.ndarray]) -> Path:
    """The prediction file and, when given, the picture of one image."""
    stem = Path(frame.name).stem
    folder = out_dir / task.pred_folder
    folder.mkdir(exist_ok=True)
    path = folder / f"{stem}{task.pred_suffix}"
    task.write_prediction(path, pred)
    if vis is not None:
        (out_dir / "vis").mkdir(exist_ok=True)
        cv2.imwrite(str(out_dir / "vis" / f"{stem}.jpg"), vis[:, :, ::-1])
    return path


def run_dense_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path, device: torch.device,
                         max_megapixels: Optional[float] = None) -> dict[str, Any]:
    """Predict on an image, a folder or a video; ``model`` may be a loader, called once the input is checked."""
    src = open_input(source, max_pixels_from_megapixels(max_megapixels), exclude=Path(out_dir))
    out_dir = prepare_out_dir(out_dir)  # after the input: a wrong --input leaves no empty folder behind
    if not isinstance(model, torch.nn.Module):
        model = model()
    model = model.to(device).eval()
    sink = VideoSink(out_dir / f"{src.path.stem}_{task.kind}.mp4", src.fps) if src.is_video else None
    done = 0
    try:
        for frame in src:
            pred = predict_frame(task, model, frame.image, device)
            vis = picture(task, frame.image, pred)
            if sink is not None:
                sink.write(vis)
            else:
                write_outputs(task, out_dir, frame, pred, vis)
            done += 1
            progress_line(src, frame)
    finally:
        if sink is not None:
            sink.close()
    if sink is not None:
        print(f"wrote the {task.kind} video of {done} frame(s) at {src.fps:g} fps: {sink.path}")
    else:
        print(f"wrote {done} {task.kind} prediction(s) to {out_dir / task.pred_folder} and pictures to {out_dir / 'vis'}")
    finish_skips(src, out_dir)
    return {"images": done, "skipped": len(src.skipped)}
