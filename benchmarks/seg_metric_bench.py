"""Time cityscapesscripts' evalPixelLevelSemanticLabeling against densepred's
evaluate_prediction_folder on the same synthetic Cityscapes-layout files.

    python benchmarks/seg_metric_bench.py --num-images 4

Writes N labelId ground-truth / prediction PNG pairs (structured: blocks + ellipses, predictions
with shifted boundaries, wrong regions and void ids) into a temporary gtFine tree, runs both
evaluators on them and prints both times, the speed-up and whether the mIoUs agree.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

CITIES = ("frankfurt", "lindau", "munster")
VOID_IDS = (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30)


def make_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A label map made of coarse blocks and ellipses over all labelIds 0..33, and a prediction
    that differs along boundaries, in whole regions and by predicting void ids."""
    ids = np.arange(34)
    small = rng.choice(ids, size=(max(1, height // 64), max(1, width // 64))).astype(np.uint8)
    gt = cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    for _ in range(40):
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        axes = (int(rng.integers(5, max(6, width // 10))), int(rng.integers(5, max(6, height // 5))))
        cv2.ellipse(gt, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.choice(ids)), -1)
    pred = cv2.resize(gt, (width // 8, height // 8), interpolation=cv2.INTER_NEAREST)
    pred = cv2.resize(pred, (width, height), interpolation=cv2.INTER_NEAREST)  # blocky boundaries
    noise = cv2.resize(rng.random((max(1, height // 32), max(1, width // 32))).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_LINEAR)
    pred[noise < 0.15] = int(rng.choice(ids))
    pred[(noise > 0.85)] = int(rng.choice(VOID_IDS))
    return gt, pred


def write_png(path: Path, image: np.ndarray, writer: str) -> None:
    if writer == "pil":  # how cityscapesscripts' own tools write label images
        from PIL import Image

        Image.fromarray(image).save(path)
    else:
        cv2.imwrite(str(path), image)


def build_tree(root: Path, n: int, height: int, width: int, seed: int, writer: str) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    gt_dir = root / "gtFine" / "val"
    pred_dir = root / "results"
    for i in range(n):
        city = CITIES[i % len(CITIES)]
        stem = f"{city}_{i:06d}_{(19 * i) % 1000000:06d}"
        (gt_dir / city).mkdir(parents=True, exist_ok=True)
        pred_dir.mkdir(parents=True, exist_ok=True)
        gt, pred = make_pair(rng, height, width)
        write_png(gt_dir / city / f"{stem}_gtFine_labelIds.png", gt, writer)
        write_png(pred_dir / f"{stem}_leftImg8bit.png", pred, writer)
    return gt_dir, pred_dir


def run_cityscapesscripts(gt_dir: Path, pred_dir: Path) -> tuple[float, dict]:
    if not hasattr(np, "in1d"):  # cityscapesscripts 2.3.0 still calls np.in1d (gone in numpy 2.4)
        np.in1d = np.isin
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    args = copy.copy(cs.args)
    args.groundTruthSearch = str(gt_dir / "*" / "*_gtFine_labelIds.png")
    args.predictionPath, args.predictionWalk = str(pred_dir), None
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized, args.bold, args.nocol = False, "", ""
    start = time.perf_counter()
    gt_list = sorted(str(p) for p in gt_dir.glob("*/*_gtFine_labelIds.png"))
    pred_list = [cs.getPrediction(args, g) for g in gt_list]
    result = cs.evaluateImgLists(pred_list, gt_list, args)
    return time.perf_counter() - start, result


def run_densepred(gt_dir: Path, pred_dir: Path, workers: int | None) -> tuple[float, dict]:
    from densepred.tasks.segmentation.metric import evaluate_prediction_folder

    start = time.perf_counter()
    result = evaluate_prediction_folder(pred_dir, gt_dir, num_workers=workers)
    return time.perf_counter() - start, result


def decode_only(gt_dir: Path, pred_dir: Path) -> float:
    """Time to just decode every PNG once with OpenCV: a floor for any evaluator of PNG files."""
    files = [str(p) for p in gt_dir.glob("*/*.png")] + [str(p) for p in pred_dir.glob("*.png")]
    start = time.perf_counter()
    for f in files:
        cv2.imread(f, cv2.IMREAD_UNCHANGED)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-images", type=int, default=10)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--width", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None,
                    help="decoding threads for densepred (default min(4, cpu count))")
    ap.add_argument("--writer", choices=("pil", "cv2"), default="pil",
                    help="PNG writer of the synthetic files (decode speed depends on it)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="time each evaluator this many times and keep the best (the machine may be busy)")
    ap.add_argument("--keep", type=Path, default=None, help="write the files here and keep them")
    a = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        t0 = time.perf_counter()
        gt_dir, pred_dir = build_tree(root, a.num_images, a.height, a.width, a.seed, a.writer)
        print(f"generated {a.num_images} pairs of {a.width}x{a.height} labelId PNGs ({a.writer}) "
              f"in {time.perf_counter() - t0:.1f} s")
        reps = max(1, a.repeat)
        ref_t, ref = min((run_cityscapesscripts(gt_dir, pred_dir) for _ in range(reps)), key=lambda r: r[0])
        ours_t, ours = min((run_densepred(gt_dir, pred_dir, a.workers) for _ in range(reps)), key=lambda r: r[0])
        one_t, _ = min((run_densepred(gt_dir, pred_dir, 1) for _ in range(reps)), key=lambda r: r[0])
        decode_t = min(decode_only(gt_dir, pred_dir) for _ in range(reps))

    n = a.num_images
    workers = a.workers if a.workers is not None else min(4, os.cpu_count() or 1)
    print(f"cityscapesscripts evaluateImgLists : {ref_t:8.3f} s  ({1000 * ref_t / n:7.1f} ms/image)")
    print(f"densepred evaluate_prediction_folder: {ours_t:8.3f} s  ({1000 * ours_t / n:7.1f} ms/image, "
          f"{workers} worker(s))")
    print(f"densepred, 1 worker                 : {one_t:8.3f} s  ({1000 * one_t / n:7.1f} ms/image)")
    print(f"(floor) cv2 PNG decoding alone, 1 thread: {decode_t:6.3f} s  ({1000 * decode_t / n:7.1f} ms/image)")
    print(f"speed-up: {ref_t / ours_t:.1f}x ({workers} worker(s)), {ref_t / one_t:.1f}x (1 worker); "
          f"best of {reps}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")
    diffs = [abs(ours["mIoU"] - ref["averageScoreClasses"])]
    from densepred.tasks.segmentation.labels import CLASS_NAMES

    for name in CLASS_NAMES:
        x, y = ours[f"IoU.{name}"], ref["classScores"][name]
        diffs.append(0.0 if (math.isnan(x) and math.isnan(y)) else abs(x - y))
    worst = max(diffs)
    agree = worst <= 1e-6
    print(f"mIoU cityscapesscripts {ref['averageScoreClasses']:.9f}  densepred {ours['mIoU']:.9f}  "
          f"max |diff| over mIoU and class IoUs {worst:.2e}: {'agree' if agree else 'DISAGREE'}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
