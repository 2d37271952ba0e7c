"""A dense member's share of a multi-task `platform predict`: its prediction per frame, a titled
panel beside the combined picture (depth colour map, normals, boundaries), and its files in
``<out>/<member>/`` (none per video frame)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .panels import titled
from .predict_loop import predict_frame, write_outputs


class DensePanelPredictor:
    """Duck-types the multi-task ``MemberPredictor``: ``run``, ``draw``, ``problem``, ``finish``,
    plus ``panel`` (drawn beside the picture, not over it)."""

    layer = 3
    uses_boxes = False
    is_panel = True

    def __init__(self, name: str, task: Any, out_dir: Path, is_video: bool):
        self.name, self.task, self.out_dir, self.is_video = name, task, out_dir, is_video
        self.written = 0

    def run(self, model: torch.nn.Module, frame: Any, items: list, device: torch.device) -> np.ndarray:
        pred = predict_frame(self.task, model, frame.image, device)
        if not self.is_video:
            write_outputs(self.task, self.out_dir, frame, pred, None)
            self.written += 1
        return pred

    def draw(self, canvas: np.ndarray, result: np.ndarray) -> np.ndarray:
        return canvas   # a panel of its own (``panel``), not a layer over the picture

    def panel(self, image: np.ndarray, result: np.ndarray) -> np.ndarray:
        return titled(self.task.visualize(image, result), self.name)

    def problem(self, result: Any, note: str) -> Optional[str]:
        return None

    def finish(self, names: dict[str, str]) -> str:
        if self.is_video:
            return f"{self.name}: panel in the video (no {self.task.pred_suffix} file per video frame)"
        return f"{self.name}: {self.written} {self.task.kind} file(s) in {self.out_dir / self.task.pred_folder}"
