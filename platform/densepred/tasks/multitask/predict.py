"""`platform predict` for a multi-task run: every member's output drawn on one picture.

One pass over the input (image, folder or video, as every task's predict). Per frame, person boxes
(``--boxes``, HOG or the whole image) are found once and shared by the pose and person-mask
members; each member runs once on the shared model (identical crops cost one forward pass, see
``SharedForward``). The picture stacks the segmentation overlay, the person masks and the pose
skeletons and boxes; each member also writes its usual results under ``<out>/<member>/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ...errors import ConfigError
from ...frames import (InputSource, VideoSink, finish_skips, max_pixels_from_megapixels, open_input,
                       prepare_out_dir, progress_line)
from ..pose.predict import ModelOrLoader, PosePredictOptions, open_prediction, person_boxes, write_picture
from .predictors import MemberPredictor, SegPredictor, build_predictors, member_kind
from .shared_forward import SharedForward

BOX_KINDS = ("pose", "mask")


def check_member_options(kinds: dict[str, str], boxes: Optional[str], det_thr: Optional[float],
                         kpt_thr: Optional[float], detector: Optional[str]) -> None:
    """Refuse options for members the run does not have, as the single-task predicts do."""
    members = ", ".join(f"{n} ({k})" for n, k in kinds.items())
    if kpt_thr is not None and "pose" not in kinds.values():
        raise ConfigError(f"--kpt-thr applies to pose members only; this multi-task run has none "
                          f"(members: {members})")
    box_only = [name for name, value in (("--boxes", boxes), ("--det-thr", det_thr), ("--detector", detector))
                if value is not None]
    if box_only and not set(BOX_KINDS) & set(kinds.values()):
        raise ConfigError(f"{', '.join(box_only)} appl{'ies' if len(box_only) == 1 else 'y'} to pose and "
                          f"person-mask members only; this multi-task run has none (members: {members})")


def _box_member(task: Any, kinds: dict[str, str], det_thr: Optional[float]) -> Optional[Any]:
    """The member whose settings (``data.det_score_thr``) choose the shared boxes: the first pose
    member, else the first person-mask member; None without either."""
    names = [n for n, k in kinds.items() if k == "pose"] + [n for n, k in kinds.items() if k == "mask"]
    if not names:
        return None
    thresholds = {n: float(task.members[n].data.det_score_thr) for n in names}
    if det_thr is None and len(set(thresholds.values())) > 1:
        print(f"note: members set different data.det_score_thr ({thresholds}); the shared person boxes "
              f"use {names[0]}'s, or give --det-thr")
    return task.members[names[0]]


def _open(task: Any, kinds: dict[str, str], model: ModelOrLoader, source: Path, out_dir: Path,
          boxes_file: Optional[str], device: torch.device, det_thr: Optional[float], kpt_thr: Optional[float],
          max_megapixels: Optional[float], detector: Optional[str],
          ) -> tuple[Optional[PosePredictOptions], InputSource, Path, torch.nn.Module]:
    """Options, input and output folder checked, then the model loaded (the member predicts' order)."""
    box_member = _box_member(task, kinds, det_thr)
    if box_member is not None:
        return open_prediction(box_member, model, source, out_dir, boxes_file, device, det_thr, kpt_thr,
                               max_megapixels, detector)
    max_pixels = max_pixels_from_megapixels(max_megapixels)
    src = open_input(source, max_pixels, exclude=Path(out_dir))
    out_dir = prepare_out_dir(out_dir)  # after the input: a wrong --input leaves no empty folder behind
    if not isinstance(model, torch.nn.Module):
        model = model()
    return None, src, out_dir, model.to(device).eval()


def run_multitask_prediction(task: Any, model: ModelOrLoader, source: Path, out_dir: Path,
                             boxes_file: Optional[str], device: torch.device, det_thr: Optional[float] = None,
                             kpt_thr: Optional[float] = None, max_megapixels: Optional[float] = None,
                             detector: Optional[str] = None) -> dict[str, Any]:
    """Write combined pictures (``vis/<stem>.jpg`` or ``<video>_multitask.mp4``) and each member's
    results under ``<member>/``. ``model`` may be a loader, called once everything is checked."""
    kinds = {name: member_kind(member) for name, member in task.members.items()}
    check_member_options(kinds, boxes_file, det_thr, kpt_thr, detector)
    opts, src, out_dir, model = _open(task, kinds, model, Path(source), out_dir, boxes_file, device, det_thr,
                                      kpt_thr, max_megapixels, detector)
    predictors = build_predictors(task.members, out_dir, src.is_video, opts.kpt_thr if opts else None)
    return _predict_all(predictors, SharedForward(model), src, out_dir, opts, device)


def _predict_all(predictors: list[MemberPredictor], model: SharedForward, src: InputSource, out_dir: Path,
                 opts: Optional[PosePredictOptions], device: torch.device) -> dict[str, Any]:
    sink = VideoSink(out_dir / f"{src.path.stem}_multitask.mp4", src.fps) if src.is_video else None
    names: dict[str, str] = {}
    empty: list[str] = []
    persons = 0
    try:
        for frame in src:
            items, note = person_boxes(frame, opts) if opts is not None else ([], "")
            results = {p.name: p.run(model, frame, items, device) for p in predictors}
            model.clear()
            write_picture(compose(frame.image, predictors, results), frame, sink, out_dir / "vis")
            names[str(frame.image_id)] = frame.name
            persons += len(items)
            progress_line(src, frame, describe(predictors, items, note))
            problems = [f"{p.name}: {why}" for p in predictors if (why := p.problem(results[p.name], note))]
            if problems and sink is None:
                print(f"warning: {frame.name}: nothing drawn by {'; '.join(problems)}", flush=True)
            elif problems:
                empty.append(frame.name)
    finally:
        if sink is not None:
            sink.close()
    if empty:  # one line for a video, not one per frame
        print(f"warning: {src.path.name}: a member drew nothing on {len(empty)} of {len(names)} frame(s) "
              f"(first: {empty[0]}); lower --det-thr / --kpt-thr, or give --boxes", flush=True)
    return _finish(predictors, src, out_dir, sink, names, persons)


def compose(image: np.ndarray, predictors: list[MemberPredictor], results: dict[str, Any]) -> np.ndarray:
    """Every member's layer on one copy of ``image``, bottom first; the first segmentation member
    is the background (a second overlay would hide it) and its legend goes to the right. Members
    that draw a panel (depth, normals, boundaries) follow side by side, at the picture's height."""
    background = next((p for p in predictors if isinstance(p, SegPredictor)), None)
    canvas = image
    for p in predictors:
        if isinstance(p, SegPredictor) and p is not background or getattr(p, "is_panel", False):
            continue
        canvas = p.draw(canvas, results[p.name])
    if background is not None:
        strip = background.legend(results[background.name], canvas.shape[0])
        canvas = np.concatenate([canvas, strip], axis=1)
    return _with_panels(canvas, [p.panel(image, results[p.name]) for p in predictors if getattr(p, "is_panel", False)])


def _with_panels(canvas: np.ndarray, panels: list[np.ndarray]) -> np.ndarray:
    """``canvas`` with ``panels`` to its right, each scaled to the canvas height (a panel may carry a
    title strip above the image, so its own height differs)."""
    import cv2

    parts = [canvas]
    for panel in panels:
        w = max(1, int(round(panel.shape[1] * canvas.shape[0] / panel.shape[0])))
        parts += [np.full((canvas.shape[0], 4, 3), 255, np.uint8),
                  cv2.resize(panel, (w, canvas.shape[0]), interpolation=cv2.INTER_AREA)]
    return np.concatenate(parts, axis=1)


def describe(predictors: list[MemberPredictor], items: list, note: str) -> str:
    """The progress detail of one frame, e.g. ``2 person(s) (boxes: hog), seg overlay``."""
    parts = []
    if any(p.uses_boxes for p in predictors):
        sources = sorted({src for _, _, src in items})
        parts.append(f"{len(items)} person(s)" + (f" (boxes: {', '.join(sources)})" if sources else ""))
    if any(isinstance(p, SegPredictor) for p in predictors):
        parts.append("seg overlay")
    parts += [f"{p.name} panel" for p in predictors if getattr(p, "is_panel", False)]
    return ", ".join(parts) + (f"; {note}" if note else "")


def _finish(predictors: list[MemberPredictor], src: InputSource, out_dir: Path, sink: Optional[VideoSink],
            names: dict[str, str], persons: int) -> dict[str, Any]:
    """Every member's result files, the summary lines, and skipped.txt."""
    lines = [p.finish(names) for p in predictors]
    where = sink.path if sink is not None else out_dir / "vis"
    print(f"wrote combined pictures of {len(names)} image(s) to {where}"
          + (f" ({src.fps:g} fps)" if sink is not None else ""))
    for line in lines:
        print(f"  {line}")
    if src.is_video and not src.fps_reported:
        print(f"note: {src.path.name} does not state its frame rate; the output uses {src.fps:g} fps")
    finish_skips(src, out_dir)
    return {"images": len(names), "persons": persons, "skipped": len(src.skipped),
            "members": [p.name for p in predictors]}
