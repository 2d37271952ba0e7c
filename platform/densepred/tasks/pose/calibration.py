"""The pose task's precision check: validation crops, and keypoints decoded from both precisions'
heatmaps compared in heatmap pixels over the joints fp32 sees."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...precision_check import Calibration, PrecisionSettings, class_agreement, keypoint_agreement


def evenly_spaced(total: int, n: int) -> list[int]:
    """``n`` indices spread over ``range(total)`` (all of them when ``n >= total``)."""
    if n >= total:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, n)})


def val_crop_batches(task: Any, n: int) -> list[torch.Tensor]:
    """``n`` validation crops spread over the split, batched as evaluation feeds them."""
    ds = task.val_dataset()
    samples = [s for s in (ds[i] for i in evenly_spaced(len(ds), n)) if not s.get("fault")]
    size = max(1, int(task.data.val_batch_size))
    return [task.collate(samples[i:i + size])["image"] for i in range(0, len(samples), size)]


def _key(task: Any, kind: str, batches: list[torch.Tensor], **more: Any) -> dict[str, Any]:
    return {"task": kind, "data": str(Path(task.data_root).resolve()), "split": task.data.val_split,
            "samples": sum(int(b.shape[0]) for b in batches), **more}


def pose_calibration(task: Any, settings: PrecisionSettings) -> Calibration:
    """``settings.calibration_samples`` validation crops, keypoints compared with
    ``settings.keypoint_tolerance_px`` / ``keypoint_agreement``."""
    from .task import final_heatmaps

    batches = val_crop_batches(task, settings.calibration_samples)

    def decode(heatmaps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return task.codec.decode_heatmap_coords(heatmaps.numpy())

    def compare(reference: list, outputs: list):
        return keypoint_agreement([final_heatmaps(r["pose"]) for r in reference],
                                  [final_heatmaps(o["pose"]) for o in outputs], decode,
                                  settings.keypoint_tolerance_px, settings.keypoint_agreement,
                                  task.eval_cfg.in_vis_thre)

    key = _key(task, "pose", batches, tolerance_px=settings.keypoint_tolerance_px,
               required=settings.keypoint_agreement, decoding=task.data.decoding)
    return Calibration(batches, compare, key)


def mask_calibration(task: Any, settings: PrecisionSettings) -> Calibration:
    """Validation crops of person masks: foreground or not (logit above 0) per mask pixel, compared
    with ``settings.pixel_agreement``."""
    batches = val_crop_batches(task, settings.calibration_samples)

    def two_class(logits: torch.Tensor) -> torch.Tensor:  # argmax picks the person where logit > 0
        return torch.cat([torch.zeros_like(logits), logits.float()], dim=1)

    def compare(reference: list, outputs: list):
        return class_agreement([two_class(r["mask"]) for r in reference], [two_class(o["mask"]) for o in outputs],
                               settings.pixel_agreement, "mask pixels")

    return Calibration(batches, compare, _key(task, "person_mask", batches, required=settings.pixel_agreement))
