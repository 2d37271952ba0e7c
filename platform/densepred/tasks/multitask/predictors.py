"""Each member's share of a multi-task ``predict``: its inference on one frame, its layer of the
combined picture, and its machine-readable results in the member's usual format.

The member modules do the work (``estimate``, ``segment``, ``predict_train_ids``, their writers);
these adapters only hold what one run accumulates. Layers are drawn bottom to top: the
segmentation overlay, then person masks, then pose skeletons and boxes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ...errors import PlatformError
from ...frames import Frame
from ..person_mask.predict import draw_masks, mask_records, segment, write_mask_results
from ..person_mask.task import PersonMaskTask
from ..pose.predict import Box, draw_persons, estimate, nothing_drawn_reason, write_pose_results
from ..pose.task import PoseTask
from ..segmentation.predict import predict_train_ids, write_label_ids
from ..segmentation.task import SegmentationTask
from ..segmentation.visualize import legend_strip, overlay

Items = list[tuple[Box, float, str]]


class MemberPredictor:
    """Base: ``run`` one frame, ``draw`` its layer, ``finish`` by writing the member's files."""

    layer = 0              # drawing order, bottom first
    uses_boxes = False     # crops the shared person boxes

    def __init__(self, name: str, task: Any, out_dir: Path):
        self.name, self.task, self.out_dir = name, task, out_dir

    def run(self, model: torch.nn.Module, frame: Frame, items: Items, device: torch.device) -> Any:
        raise NotImplementedError

    def draw(self, canvas: np.ndarray, result: Any) -> np.ndarray:
        raise NotImplementedError

    def problem(self, result: Any, note: str) -> Optional[str]:
        """Why this member drew nothing on a frame (with what to try); None when it drew."""
        return None

    def finish(self, names: dict[str, str]) -> str:
        """Write the result files; a one-line summary of what was written."""
        raise NotImplementedError


class PosePredictor(MemberPredictor):
    """Keypoints of every shared box; COCO keypoint results, images.json and boxes.json."""

    layer, uses_boxes = 2, True

    def __init__(self, name: str, task: Any, out_dir: Path, kpt_thr: float):
        super().__init__(name, task, out_dir)
        self.kpt_thr = kpt_thr
        self.persons: list[dict] = []

    def run(self, model: torch.nn.Module, frame: Frame, items: Items, device: torch.device) -> list[dict]:
        found = estimate(self.task, model, frame.image, items, device) if items else []
        for p in found:
            p["image_id"] = frame.image_id
        self.persons += found
        return found

    def draw(self, canvas: np.ndarray, result: list[dict]) -> np.ndarray:
        return draw_persons(canvas, result, self.kpt_thr, self.task.meta)[0]

    def problem(self, result: list[dict], note: str) -> Optional[str]:
        drawn = sum(int((np.asarray(p["keypoints"])[:, 2] > self.kpt_thr).sum()) for p in result)
        return nothing_drawn_reason(result, drawn, note, self.kpt_thr)

    def finish(self, names: dict[str, str]) -> str:
        results = write_pose_results(self.out_dir, self.persons, names)
        return f"{self.name}: {len(results)} person(s) in {self.out_dir / 'results.json'}"


class MaskPredictor(MemberPredictor):
    """A mask per shared box, drawn translucent (boxes too unless a pose layer draws them)."""

    layer, uses_boxes = 1, True

    def __init__(self, name: str, task: Any, out_dir: Path, draw_boxes: bool):
        super().__init__(name, task, out_dir)
        self.draw_boxes = draw_boxes
        self.results: list[dict] = []

    def run(self, model: torch.nn.Module, frame: Frame, items: Items, device: torch.device) -> list[dict]:
        found = segment(self.task, model, frame.image, items, device) if items else []
        self.results += mask_records(frame, found)
        return found

    def draw(self, canvas: np.ndarray, result: list[dict]) -> np.ndarray:
        return draw_masks(canvas, result, boxes=self.draw_boxes)

    def problem(self, result: list[dict], note: str) -> Optional[str]:
        if not result:
            return note or "no person box"
        return None if any(p["mask"].any() for p in result) else f"no mask pixel in {len(result)} box(es)"

    def finish(self, names: dict[str, str]) -> str:
        write_mask_results(self.out_dir, self.results, names)
        return f"{self.name}: {len(self.results)} person mask(s) in {self.out_dir / 'results.json'}"


class SegPredictor(MemberPredictor):
    """The image's class ids; label PNGs per image (none per video frame, as for segmentation)."""

    layer = 0

    def __init__(self, name: str, task: Any, out_dir: Path, is_video: bool):
        super().__init__(name, task, out_dir)
        self.is_video = is_video
        self.written = 0

    def run(self, model: torch.nn.Module, frame: Frame, items: Items, device: torch.device) -> np.ndarray:
        pred = predict_train_ids(self.task, model, frame.image, device)
        if not self.is_video:
            write_label_ids(self.out_dir, frame, pred, self.task)
            self.written += 1
        return pred

    def draw(self, canvas: np.ndarray, result: np.ndarray) -> np.ndarray:
        return overlay(canvas, result, legend=False, info=self.task.class_info)

    def legend(self, result: np.ndarray, height: int) -> np.ndarray:
        """The legend strip: classes present, or every class for a video (constant frame size)."""
        info = self.task.class_info
        classes = (range(info.num_classes) if self.is_video
                   else [int(c) for c in np.unique(result) if c < info.num_classes])
        return legend_strip(height, list(classes), info)

    def finish(self, names: dict[str, str]) -> str:
        if self.is_video:
            return f"{self.name}: overlay in the video (no labelId PNGs per video frame)"
        from ..segmentation.predict import label_folder

        kind = "labelId" if self.task.data.format == "cityscapes" else "label"
        return f"{self.name}: {self.written} {kind} PNG(s) in {self.out_dir / label_folder(self.task)}"


def member_kind(task: Any) -> str:
    """``pose``, ``mask``, ``seg`` or ``panel``: which predictor a member gets (``panel``: a task
    that draws itself beside the picture through ``member_predictor``, e.g. depth)."""
    if getattr(task, "draws_panel", False):
        return "panel"
    # PersonMaskTask is a PoseTask (same crops): test it first.
    for kind, cls in (("mask", PersonMaskTask), ("pose", PoseTask), ("seg", SegmentationTask)):
        if isinstance(task, cls):
            return kind
    raise PlatformError(f"platform predict cannot draw a {type(task).__name__} member of a multi-task run "
                        "(supported: PoseTask, PersonMaskTask, SegmentationTask and tasks that draw a panel: "
                        "DepthTask, NormalsTask, BoundaryTask); predict with that "
                        "member's own task file")


def build_predictors(members: dict[str, Any], out_dir: Path, is_video: bool,
                     kpt_thr: Optional[float]) -> list[MemberPredictor]:
    """One predictor per member, in drawing order (bottom layer first, then member order)."""
    kinds = {name: member_kind(task) for name, task in members.items()}
    has_pose = "pose" in kinds.values()
    made: list[MemberPredictor] = []
    for name, task in members.items():
        sub = out_dir / name
        sub.mkdir(exist_ok=True)
        if kinds[name] == "pose":
            made.append(PosePredictor(name, task, sub, float(kpt_thr)))
        elif kinds[name] == "mask":
            made.append(MaskPredictor(name, task, sub, draw_boxes=not has_pose))
        elif kinds[name] == "panel":
            made.append(task.member_predictor(name, sub, is_video))
        else:
            made.append(SegPredictor(name, task, sub, is_video))
    return sorted(made, key=lambda p: p.layer)  # stable: member order within a layer
