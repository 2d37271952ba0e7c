"""The segmentation task's precision check: validation images (a crop of the training crop size
where an image is larger), the argmax class per output pixel compared between the precisions."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...precision_check import Calibration, PrecisionSettings, class_agreement
from ..pose.calibration import evenly_spaced


def _centre_crop(image: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centre ``(h, w)`` window of a ``(1, 3, H, W)`` image (the whole image when smaller)."""
    H, W = image.shape[-2:]
    top, left = max(0, (H - h) // 2), max(0, (W - w) // 2)
    return image[..., top:top + h, left:left + w]


def seg_calibration(task: Any, settings: PrecisionSettings) -> Calibration:
    """``settings.calibration_samples`` validation images, one per batch, compared with
    ``settings.pixel_agreement``."""
    ds = task.build_dataset("val")
    h, w = task.cost_input_size()
    batches = []
    for i in evenly_spaced(len(ds), settings.calibration_samples):
        sample = ds[i]
        if sample.get("fault"):
            continue
        batches.append(_centre_crop(sample["image"].unsqueeze(0).float(), h, w).contiguous())

    def compare(reference: list, outputs: list):
        return class_agreement([r[task.head] for r in reference], [o[task.head] for o in outputs],
                               settings.pixel_agreement)

    key = {"task": "segmentation", "data": str(Path(task.data_root).resolve()), "samples": len(batches),
           "crop": [h, w], "required": settings.pixel_agreement}
    return Calibration(batches, compare, key)
