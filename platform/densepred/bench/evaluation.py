"""Section ``eval``: evaluation time of the platform's metrics on inputs of real size.

* OKS AP: ``load_coco_gt`` + ``evaluate_keypoints`` (pycocotools COCOeval, what ``platform eval
  --predictions`` runs) on a synthetic COCO-val-sized set: 5,000 images, 6,352 persons with
  keypoints and one result per person (in quick mode too: it takes seconds); then, when
  faster-coco-eval is installed, the same with it (``faster_*`` fields, ``pycocotools_over_faster``).
* mIoU: ``evaluate_prediction_folder`` on 2048x1024 labelId PNG pairs, with one decoding thread
  and with its default, next to the floor of decoding the same PNGs with ``cv2.imread``.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2

from .data import one_core
from .synthetic import COCO_VAL_IMAGES, COCO_VAL_PERSONS, write_coco_keypoints, write_label_pairs
from .timing import rounded


def oks_eval(folder: Path) -> dict[str, Any]:
    """OKS AP time with pycocotools (the existing fields) and, when installed, faster-coco-eval on the
    same files (``faster_*`` fields and the speed ratio)."""
    from ..tasks.pose.evaluation import (STAT_NAMES, evaluate_keypoints, faster_coco_eval_available,
                                         load_coco_gt, resolve_backend)

    images, persons = COCO_VAL_IMAGES, COCO_VAL_PERSONS
    ann_file, res_file = write_coco_keypoints(folder, images, persons)
    t0 = time.perf_counter()
    coco = load_coco_gt(ann_file)
    t1 = time.perf_counter()
    stats = evaluate_keypoints(coco, res_file, backend="pycocotools")
    t2 = time.perf_counter()
    out: dict[str, Any] = {
        "images": images, "persons": persons, "results": persons, "load_gt_s": rounded(t1 - t0),
        "cocoeval_s": rounded(t2 - t1), "total_s": rounded(t2 - t0), "AP": round(stats["AP"], 4),
        "evaluator": "pycocotools COCOeval (keypoints)", "default_backend": resolve_backend("auto")}
    if not faster_coco_eval_available():
        out["faster_skipped"] = "faster-coco-eval not installed (pip install -e '.[fast-eval]')"
        return out
    t3 = time.perf_counter()
    fast = evaluate_keypoints(coco, res_file, backend="faster")  # also reads the results file, as above
    t4 = time.perf_counter()
    out.update({"faster_cocoeval_s": rounded(t4 - t3), "faster_AP": round(fast["AP"], 4),
                "faster_max_stat_diff": max(abs(fast[k] - stats[k]) for k in STAT_NAMES),
                "pycocotools_over_faster": rounded((t2 - t1) / (t4 - t3))})
    return out


def decode_floor(gt_dir: Path, pred_dir: Path) -> float:
    """Seconds to decode every label PNG once with OpenCV on one thread."""
    files = [str(p) for p in gt_dir.glob("*/*.png")] + [str(p) for p in pred_dir.glob("*.png")]
    with one_core():
        t0 = time.perf_counter()
        for f in files:
            cv2.imread(f, cv2.IMREAD_UNCHANGED)
        return time.perf_counter() - t0


def miou_eval(folder: Path, quick: bool) -> dict[str, Any]:
    from ..tasks.segmentation.metric import evaluate_prediction_folder

    n = 4 if quick else 20
    gt_dir, pred_dir = write_label_pairs(folder, n)
    decode_s = decode_floor(gt_dir, pred_dir)  # also warms the page cache for both timings
    with one_core():
        t0 = time.perf_counter()
        result = evaluate_prediction_folder(pred_dir, gt_dir, num_workers=1)
        one_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate_prediction_folder(pred_dir, gt_dir)
    default_s = time.perf_counter() - t0
    return {"images": n, "image_wh": [2048, 1024], "ms_per_image_1_thread": rounded(1e3 * one_s / n),
            "ms_per_image_default_workers": rounded(1e3 * default_s / n),
            "decode_ms_per_image": rounded(1e3 * decode_s / n), "metric_over_decode": rounded(one_s / decode_s),
            "mIoU": round(float(result["mIoU"]), 4), "evaluator": "densepred evaluate_prediction_folder"}


def run_eval(quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="densepred-bench-eval-") as tmp:
        oks = oks_eval(Path(tmp))
        log(f"  eval OKS AP: {oks['persons']} persons on {oks['images']} images in {oks['total_s']:.3g} s "
            f"(load {oks['load_gt_s']:.3g} s, COCOeval {oks['cocoeval_s']:.3g} s)")
        if "faster_cocoeval_s" in oks:
            log(f"  eval OKS AP faster-coco-eval: COCOeval {oks['faster_cocoeval_s']:.3g} s -> "
                f"{oks['pycocotools_over_faster']:.3g}x faster than pycocotools (stats differ by at most "
                f"{oks['faster_max_stat_diff']:.2g})")
        miou = miou_eval(Path(tmp), quick)
        log(f"  eval mIoU: {miou['ms_per_image_1_thread']:.4g} ms/image on 1 thread "
            f"({miou['ms_per_image_default_workers']:.4g} with default workers), PNG decode floor "
            f"{miou['decode_ms_per_image']:.4g} ms -> metric/decode {miou['metric_over_decode']:.3g}x")
    return {"oks": oks, "miou": miou, "quick_inputs_reduced": quick}
