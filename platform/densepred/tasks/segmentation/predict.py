"""`platform predict` for segmentation: Cityscapes-format labelId PNGs (the benchmark submission
format) plus colour overlays with a legend."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ...errors import DataError
from ...imageio import read_rgb
from ...imagenorm import normalize
from .labels import train_ids_to_label_ids
from .visualize import overlay

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def _inputs(source: Path) -> list[Path]:
    if not source.exists():
        raise DataError(f"--input {source} not found")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"--input folder {source} has no images")
        return files
    return [source]


def run_prediction(task: Any, model: torch.nn.Module, source: Path, out_dir: Path,
                   device: torch.device) -> dict[str, Any]:
    """Write ``<name>_labelIds.png`` under ``out_dir/labelIds`` and overlays under ``out_dir/vis``."""
    model = model.to(device).eval()
    (out_dir / "labelIds").mkdir(parents=True, exist_ok=True)
    (out_dir / "vis").mkdir(parents=True, exist_ok=True)
    files = _inputs(source)
    for i, f in enumerate(files):
        image = read_rgb(f)
        x = torch.from_numpy(normalize(image))[None].to(device)
        pred = task.predict_probs(model, x).argmax(1)[0].numpy().astype(np.uint8)
        stem = f.stem[: -len("_leftImg8bit")] if f.stem.endswith("_leftImg8bit") else f.stem
        cv2.imwrite(str(out_dir / "labelIds" / f"{stem}_labelIds.png"), train_ids_to_label_ids(pred))
        cv2.imwrite(str(out_dir / "vis" / f"{stem}.jpg"), overlay(image, pred)[:, :, ::-1])
        print(f"  predicted {i + 1}/{len(files)}: {f.name}", flush=True)
    print(f"wrote {len(files)} labelId PNG(s) to {out_dir / 'labelIds'} and overlays to {out_dir / 'vis'}")
    return {"images": len(files)}
