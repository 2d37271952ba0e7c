"""Section ``data``: samples/s on one core of the pose and segmentation training pipelines (the
real datasets' ``__getitem__`` with augmentation, on demo sets generated into a temporary
folder), next to the decode-only floor (``cv2.imread`` of the same files in the same order).

``pipeline_over_decode`` is the pipeline's samples/s divided by the decode-only samples/s of the
same files (as the README states it: "204 samples/s against 406 (0.50x)"): 1.0 would mean
augmentation, cropping and target encoding cost nothing; lower is more overhead.
Both run with one OpenCV and one torch thread, as a DataLoader worker does.
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2

from .timing import rounded, torch_threads

REPO = Path(__file__).resolve().parents[3]
POSE_IMAGE_SIZE = (640, 480)  # a typical COCO image (W, H)


@contextmanager
def one_core() -> Iterator[None]:
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with torch_threads(1):
            yield
    finally:
        cv2.setNumThreads(before)


def rate(fn: Callable[[int], object], n: int, budget_s: float) -> tuple[float, int]:
    """(samples/s, samples done): ``fn(i)`` over i = 0, 1, ... (cycling over ``n``) until the
    budget is spent (at least one pass over the ``n`` items)."""
    done, start = 0, time.perf_counter()
    while done < n or time.perf_counter() - start < budget_s:
        fn(done % n)
        done += 1
    return done / (time.perf_counter() - start), done


def _task(task_file: str, overrides: dict[str, Any]) -> Any:
    from ..config import load_config
    from ..tasks.base import build_task

    return build_task(load_config(REPO / "tasks" / task_file, overrides))


def _measure(name: str, dataset: Any, files_of: Callable[[int], list[str]], budget_s: float,
             extra: dict[str, Any]) -> dict[str, Any]:
    n = len(dataset)
    with one_core():
        dataset[0]  # first call builds lazy state (annotation index, RNG streams)
        pipe, done = rate(dataset.__getitem__, n, budget_s)
        decode, _ = rate(lambda i: [cv2.imread(f, cv2.IMREAD_UNCHANGED) for f in files_of(i)], n, budget_s / 2)
    return data_row(name, n, done, pipe, decode, extra)


def pipeline_over_decode(pipeline_per_s: float, decode_per_s: float) -> float:
    """Pipeline samples/s over decode-only samples/s (at most ~1: the pipeline decodes too)."""
    return pipeline_per_s / decode_per_s


def data_row(name: str, samples: int, timed: int, pipeline_per_s: float, decode_per_s: float,
             extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON row of one pipeline from its two rates."""
    return {"pipeline": name, "samples": samples, "samples_timed": timed,
            "samples_per_s_per_core": rounded(pipeline_per_s),
            "decode_samples_per_s_per_core": rounded(decode_per_s),
            "pipeline_over_decode": rounded(pipeline_over_decode(pipeline_per_s, decode_per_s)), **extra}


def pose_pipeline(root: Path, quick: bool, budget_s: float) -> dict[str, Any]:
    """COCO top-down training samples (tasks/pose_coco.yaml: 256x192 crops, flip, scale, rotation,
    half-body, heatmap targets) from demo images of a typical COCO size."""
    from ..tasks.pose.demo_data import make_pose_demo

    make_pose_demo(root / "coco", num_train_images=6 if quick else 30, num_val_images=1,
                   image_size=POSE_IMAGE_SIZE, seed=5, progress=False)
    ds = _task("pose_coco.yaml", {"data_root": str(root / "coco")}).build_dataset("train")
    return _measure("pose", ds, lambda i: [str(ds.records[i].image_file)], budget_s,
                    {"image_wh": list(POSE_IMAGE_SIZE), "task": "tasks/pose_coco.yaml", "format": "JPEG"})


def seg_pipeline(root: Path, quick: bool, budget_s: float) -> dict[str, Any]:
    """Cityscapes training samples (tasks/seg_cityscapes.yaml: random scale, 1024x512 crop, flip)
    from 2048x1024 PNGs; quick mode uses 1024x512 images with the scale base and crop halved."""
    from ..tasks.segmentation.demo_data import make_seg_demo

    w, h = (1024, 512) if quick else (2048, 1024)
    make_seg_demo(root / "cityscapes", num_train=3 if quick else 8, num_val=1, image_size=(w, h), seed=5,
                  progress=False)
    overrides = {"data_root": str(root / "cityscapes"), "data.augment.base_size": w,
                 "data.augment.crop_size": [w // 2, h // 2]}
    ds = _task("seg_cityscapes.yaml", overrides).build_dataset("train")
    return _measure("seg", ds, lambda i: [str(ds.samples[i].image), str(ds.samples[i].label)], budget_s,
                    {"image_wh": [w, h], "crop_wh": [w // 2, h // 2], "task": "tasks/seg_cityscapes.yaml",
                     "format": "PNG (image and labelIds)"})


def run_data(quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    budget = 2.0 if quick else 8.0
    old_cache = os.environ.get("DENSEPRED_CACHE")
    os.environ["DENSEPRED_CACHE"] = "off"  # keep the demo sets' indexes out of the user's cache
    try:
        with tempfile.TemporaryDirectory(prefix="densepred-bench-data-") as tmp:
            rows = [pose_pipeline(Path(tmp), quick, budget), seg_pipeline(Path(tmp), quick, budget)]
    finally:
        if old_cache is None:
            os.environ.pop("DENSEPRED_CACHE", None)
        else:
            os.environ["DENSEPRED_CACHE"] = old_cache
    for r in rows:
        log(f"  data {r['pipeline']}: {r['samples_per_s_per_core']:.4g} samples/s/core, decode only "
            f"{r['decode_samples_per_s_per_core']:.4g}/s -> pipeline/decode samples/s {r['pipeline_over_decode']:.3g}x")
    return {"rows": rows, "threads": 1, "quick_inputs_reduced": quick}
