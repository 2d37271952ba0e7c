"""Time cityscapesscripts' evalPixelLevelSemanticLabeling against densepred's
evaluate_prediction_folder on the same synthetic Cityscapes-layout files.

    python benchmarks/seg_metric_bench.py --num-images 4 --repeat 2

Writes N labelId ground-truth / prediction PNG pairs (structured: blocks + ellipses, predictions
with shifted boundaries, wrong regions and void ids) into a temporary gtFine tree and measures two
things on them, both with the best of --repeat runs:

* end to end (PNG files): cityscapesscripts' ``evaluateImgLists`` against densepred's
  ``evaluate_prediction_folder``. Both are dominated by PNG decoding.
* metric only (pre-decoded arrays): every PNG is decoded once into memory (PIL, as
  cityscapesscripts reads them). Then (a) cityscapesscripts' own ``evaluatePair`` runs on every
  pair with the ``Image`` name of its module patched so that ``Image.open`` returns the cached
  array (its real counting code, then ``getIouScoreForLabel`` per label and ``getScoreAverage``),
  and (b) densepred's ``ConfusionMatrix`` is fed the same arrays, the labelId -> trainId mapping
  (``label_ids_to_train_ids``) included in the timed block. For reference it also times densepred's
  folder path (``evaluate_prediction_folder``, 1 worker) with its PNG reader patched to return the
  cached arrays.

It prints all times, the speed-ups and whether the mIoUs and class IoUs agree (to 1e-6).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

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


def _cs_module():
    if not hasattr(np, "in1d"):  # cityscapesscripts 2.3.0 still calls np.in1d (gone in numpy 2.4)
        np.in1d = np.isin
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    return cs


def _cs_args(cs, gt_dir: Path, pred_dir: Path):
    args = copy.copy(cs.args)
    args.groundTruthSearch = str(gt_dir / "*" / "*_gtFine_labelIds.png")
    args.predictionPath, args.predictionWalk = str(pred_dir), None
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized, args.bold, args.nocol = False, "", ""
    return args


def _cs_file_lists(cs, args, gt_dir: Path) -> tuple[list[str], list[str]]:
    gt_list = sorted(str(p) for p in gt_dir.glob("*/*_gtFine_labelIds.png"))
    pred_list = [cs.getPrediction(args, g) for g in gt_list]
    return pred_list, gt_list


def run_cityscapesscripts(gt_dir: Path, pred_dir: Path) -> tuple[float, dict]:
    cs = _cs_module()
    args = _cs_args(cs, gt_dir, pred_dir)
    start = time.perf_counter()
    pred_list, gt_list = _cs_file_lists(cs, args, gt_dir)
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


# ----------------------------------------------------------------------------------------------
# Metric only: both evaluators on arrays decoded once, PNG decoding out of the timed blocks
# ----------------------------------------------------------------------------------------------
def _key(path) -> str:
    return os.path.abspath(str(path))


def decode_all(gt_dir: Path, pred_dir: Path) -> dict[str, np.ndarray]:
    """Every GT and prediction PNG decoded once, as cityscapesscripts reads it
    (``np.array(Image.open(f))``), keyed by absolute path."""
    from PIL import Image

    files = list(gt_dir.glob("*/*_gtFine_labelIds.png")) + list(pred_dir.glob("*.png"))
    cache = {}
    for f in files:
        with Image.open(f) as im:
            arr = np.array(im)
        arr.setflags(write=False)  # neither evaluator may change the shared arrays
        cache[_key(f)] = arr
    return cache


class _CachedImage:
    """What the patched ``Image.open`` hands cityscapesscripts: ``.size`` like a PIL image and the
    cached pixels through ``np.array(img)`` (a fresh array, as ``np.array`` of a PIL image is)."""

    __slots__ = ("_arr", "size")

    def __init__(self, arr: np.ndarray) -> None:
        self._arr = arr
        self.size = (arr.shape[1], arr.shape[0])  # PIL order: (width, height)

    def __array__(self, dtype=None, copy=None):
        out = self._arr if dtype is None else self._arr.astype(dtype, copy=False)
        return out if copy is False else out.copy()


class _CachedImageModule:
    """Stands in for ``PIL.Image`` inside cityscapesscripts' evaluation module: ``open`` serves
    the cached arrays and fails loudly for anything not cached."""

    def __init__(self, cache: dict[str, np.ndarray]) -> None:
        self._cache = cache

    def open(self, fp, *args, **kwargs):
        return _CachedImage(self._cache[_key(fp)])


@contextmanager
def cs_reads_from(cache: dict[str, np.ndarray]):
    """Within the block, cityscapesscripts' evalPixelLevelSemanticLabeling gets its images from
    ``cache`` instead of PNG files (it calls ``Image.open`` + ``np.array`` in ``evaluatePair``)."""
    cs = _cs_module()
    with mock.patch.object(cs, "Image", _CachedImageModule(cache)):
        yield


def cs_metric_only(cache: dict[str, np.ndarray], gt_dir: Path, pred_dir: Path) -> tuple[float, dict]:
    """cityscapesscripts' own per-image counting (``evaluatePair``, pure-Python path unless its
    Cython extension is built) and class scoring on the cached arrays; the file lists and argument
    set-up stay out of the timed block, exactly as the decoding does."""
    cs = _cs_module()
    args = _cs_args(cs, gt_dir, pred_dir)
    pred_list, gt_list = _cs_file_lists(cs, args, gt_dir)
    inst_stats = cs.generateInstanceStats(args)
    with cs_reads_from(cache):
        start = time.perf_counter()
        conf = cs.generateMatrix(args)  # also sets args.evalLabels
        n_pixels = 0
        for pred, gt in zip(pred_list, gt_list):
            n_pixels += cs.evaluatePair(pred, gt, conf, inst_stats, {}, args)
        class_scores = {cs.id2label[label].name: cs.getIouScoreForLabel(label, conf, args)
                        for label in args.evalLabels}
        miou = cs.getScoreAverage(class_scores, args)
        elapsed = time.perf_counter() - start
    if int(conf.sum()) != n_pixels:
        raise RuntimeError(f"cityscapesscripts counted {int(conf.sum())} pixels, expected {n_pixels}")
    return elapsed, {"averageScoreClasses": miou, "classScores": class_scores, "csupport": bool(cs.CSUPPORT)}


def densepred_metric_only(cache: dict[str, np.ndarray], gt_dir: Path, pred_dir: Path) -> tuple[float, dict]:
    """densepred's ConfusionMatrix fed the same cached labelId arrays; the labelId -> trainId
    mapping is part of the timed work (cityscapesscripts counts labelIds directly)."""
    from densepred.tasks.segmentation.labels import label_ids_to_train_ids
    from densepred.tasks.segmentation.metric import ConfusionMatrix, match_predictions

    pairs = [(cache[_key(p)], cache[_key(g)]) for p, g in match_predictions(pred_dir, gt_dir)]
    start = time.perf_counter()
    cm = ConfusionMatrix()
    for pred, gt in pairs:
        cm.update(label_ids_to_train_ids(pred), label_ids_to_train_ids(gt))
    result = cm.summary()
    return time.perf_counter() - start, result


def densepred_folder_cached(cache: dict[str, np.ndarray], gt_dir: Path, pred_dir: Path) -> tuple[float, dict]:
    """densepred's folder path (``evaluate_prediction_folder``, 1 worker: file matching, labelId
    joint histogram, id checks, trainId folding) with its PNG reader patched to serve the cached
    arrays, i.e. the product's end-to-end code minus PNG decoding."""
    from densepred.tasks.segmentation import metric

    def read(path: str) -> np.ndarray:
        return cache[_key(path)]

    with mock.patch.object(metric, "_read_label_png", read):
        start = time.perf_counter()
        result = metric.evaluate_prediction_folder(pred_dir, gt_dir, num_workers=1)
        return time.perf_counter() - start, result


def score_diff(ref: dict, ours: dict) -> float:
    """Largest |difference| over the mIoU and the 19 class IoUs (NaN == NaN)."""
    from densepred.tasks.segmentation.labels import CLASS_NAMES

    diffs = [abs(ours["mIoU"] - ref["averageScoreClasses"])]
    for name in CLASS_NAMES:
        x, y = ours[f"IoU.{name}"], ref["classScores"][name]
        diffs.append(0.0 if (math.isnan(x) and math.isnan(y)) else abs(x - y))
    return max(diffs)


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

        # metric only: decode once, then time the counting and scoring alone
        cache = decode_all(gt_dir, pred_dir)
        cs_m_t, cs_m = min((cs_metric_only(cache, gt_dir, pred_dir) for _ in range(reps)), key=lambda r: r[0])
        cm_m_t, cm_m = min((densepred_metric_only(cache, gt_dir, pred_dir) for _ in range(reps)),
                           key=lambda r: r[0])
        fc_m_t, fc_m = min((densepred_folder_cached(cache, gt_dir, pred_dir) for _ in range(reps)),
                           key=lambda r: r[0])

    n = a.num_images
    workers = a.workers if a.workers is not None else min(4, os.cpu_count() or 1)
    print(f"cityscapesscripts evaluateImgLists : {ref_t:8.3f} s  ({1000 * ref_t / n:7.1f} ms/image)")
    print(f"densepred evaluate_prediction_folder: {ours_t:8.3f} s  ({1000 * ours_t / n:7.1f} ms/image, "
          f"{workers} worker(s))")
    print(f"densepred, 1 worker                 : {one_t:8.3f} s  ({1000 * one_t / n:7.1f} ms/image)")
    print(f"(floor) cv2 PNG decoding alone, 1 thread: {decode_t:6.3f} s  ({1000 * decode_t / n:7.1f} ms/image)")
    print(f"speed-up: {ref_t / ours_t:.1f}x ({workers} worker(s)), {ref_t / one_t:.1f}x (1 worker); "
          f"best of {reps}, {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}")

    checks = {  # name -> (reference result, our result)
        "end to end": (ref, ours),
        "metric only, ConfusionMatrix": (cs_m, cm_m),
        "metric only, folder path": (cs_m, fc_m),
    }
    worst = {k: score_diff(r, o) for k, (r, o) in checks.items()}
    worst["cityscapesscripts files vs arrays"] = score_diff(ref, {"mIoU": cs_m["averageScoreClasses"], **{
        f"IoU.{k}": v for k, v in cs_m["classScores"].items()}})
    agree = all(v <= 1e-6 for v in worst.values())
    la1, la5, _ = os.getloadavg()

    def row(label: str, t_ref: float, t_ours: float) -> str:
        return (f"{label:<46} {t_ref:9.3f} s {1000 * t_ref / n:8.1f} ms   {t_ours:9.3f} s "
                f"{1000 * t_ours / n:8.1f} ms   {t_ref / t_ours:7.1f}x")

    cs_path = "Cython" if cs_m["csupport"] else "pure-Python np.unique"
    rule = "-" * 114
    print()
    print(f"{n} image pair(s) of {a.width}x{a.height} labelIds ({a.writer} PNGs); best of {reps}; "
          f"{os.cpu_count()} CPU(s), load average {la1:.2f} (1 min) {la5:.2f} (5 min); numpy {np.__version__}; "
          f"cityscapesscripts counting path: {cs_path}")
    print(rule)
    print(f"{'measurement':<46} {'cityscapesscripts (total, per image)':>36}   "
          f"{'densepred (total, per image)':>28}   {'speed-up':>8}")
    print(rule)
    print(row(f"end to end (PNG files), {workers} worker(s)", ref_t, ours_t))
    print(row("end to end (PNG files), 1 worker", ref_t, one_t))
    print(row("metric only (pre-decoded arrays), CM+mapping", cs_m_t, cm_m_t))
    print(row("metric only (pre-decoded arrays), folder path", cs_m_t, fc_m_t))
    print(rule)
    print(f"mIoU  end to end: cityscapesscripts {ref['averageScoreClasses']:.9f}  densepred {ours['mIoU']:.9f}")
    print(f"mIoU metric only: cityscapesscripts {cs_m['averageScoreClasses']:.9f}  densepred "
          f"ConfusionMatrix {cm_m['mIoU']:.9f}  folder path {fc_m['mIoU']:.9f}")
    print("max |diff| over mIoU and class IoUs: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
          + f" -> {'agree' if agree else 'DISAGREE'} (tolerance 1e-6)")
    target = 20.0
    best_metric = cs_m_t / min(cm_m_t, fc_m_t)
    print(f"requirement >= {target:.0f}x: end to end {ref_t / min(ours_t, one_t):.1f}x, "
          f"metric only {best_metric:.1f}x (best densepred variant) -> "
          f"{'met' if best_metric >= target else 'NOT met'}")
    return 0 if agree else 1

if __name__ == "__main__":
    sys.exit(main())
