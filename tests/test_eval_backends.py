"""OKS AP backends: faster-coco-eval must give pycocotools' 10 keypoint stats.

``evaluation.eval_backend: auto`` uses faster-coco-eval whenever it is installed, so these tests are
what allows that default: same inputs, both backends, the 10 stats equal to 1e-12. They are usually
bit-identical; the one difference found is in the last bit of a precision: pycocotools computes
``tp / (tp + fp + np.spacing(1))`` and faster-coco-eval ``tp / (tp + fp)``, so where the precision
curve starts with a single true positive pycocotools has 1 - 2.2e-16 instead of 1
(``test_known_last_bit_difference``); stats then differ by at most about 1e-16.

The detections are made from the ground truth with a seeded RNG and cover what the matching and
the accumulation have to get right: jittered keypoints at several scales, missed persons, false
positives (also on images without people), duplicates, tied scores (the sort order of ties must
agree) and an image with more than 20 detections (``maxDets`` truncation).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from densepred.bench.synthetic import write_coco_keypoints
from densepred.errors import ConfigError, DataError
from densepred.tasks.pose import evaluation
from densepred.tasks.pose.demo_data import make_pose_demo
from densepred.tasks.pose.evaluation import STAT_NAMES, evaluate_keypoints, load_coco_gt

TOLERANCE = 1e-12  # measured: 0 on the sets below, at most 1.1e-16 elsewhere (module docstring)
needs_faster = pytest.mark.skipif(not evaluation.faster_coco_eval_available(),
                                  reason="faster-coco-eval not installed (the fast-eval extra)")


def _pose(rng: np.random.Generator, box: list[float]) -> list[float]:
    """17 random keypoints inside ``box`` (x, y, w, h) with random confidences."""
    x, y, w, h = box
    kp = np.stack([x + rng.random(17) * w, y + rng.random(17) * h, rng.uniform(0.05, 1.0, 17)], axis=1)
    return kp.ravel().round(2).tolist()


def perturbed_detections(gt: dict, seed: int) -> list[dict]:
    """COCO keypoint results derived from the ground truth ``gt`` (a COCO dict), see the module
    docstring for what they contain. Scores have 2 decimals, so many of them tie."""
    rng = np.random.default_rng(seed)
    sizes = {img["id"]: (img["width"], img["height"]) for img in gt["images"]}
    results: list[dict] = []
    for ann in gt["annotations"]:
        if ann.get("iscrowd") or ann["num_keypoints"] == 0 or rng.random() < 0.15:
            continue  # crowd regions have no pose to find; 15% of the persons are missed
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        spread = rng.choice([0.02, 0.06, 0.15]) * math.sqrt(max(ann["area"], 1.0))
        for copy in range(1 + int(rng.random() < 0.2)):  # some persons are found twice
            pred = kp.copy()
            pred[:, :2] += rng.normal(0.0, spread * (1 + copy), (len(kp), 2))
            pred[:, 2] = rng.uniform(0.05, 1.0, len(kp))
            results.append({"image_id": ann["image_id"], "category_id": 1,
                            "keypoints": pred.ravel().round(2).tolist(), "score": round(rng.uniform(0.2, 1.0), 2)})
    image_ids = sorted(sizes)
    for _ in range(max(5, len(results) // 4)):  # false positives anywhere, also on empty images
        image_id = int(rng.choice(image_ids))
        w, h = sizes[image_id]
        bw, bh = rng.uniform(10, w / 2), rng.uniform(10, h / 2)
        box = [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]
        results.append({"image_id": image_id, "category_id": 1, "keypoints": _pose(rng, box),
                        "score": round(rng.uniform(0.0, 0.9), 2)})
    busy = int(gt["annotations"][0]["image_id"])  # > maxDets (20) detections on one image
    w, h = sizes[busy]
    for _ in range(30):
        results.append({"image_id": busy, "category_id": 1, "keypoints": _pose(rng, [0, 0, w, h]),
                        "score": round(rng.uniform(0.0, 1.0), 1)})
    return results


def assert_same_stats(gt_file: Path, results: list[dict]) -> dict[str, float]:
    """Both backends on the same inputs; returns the stats after asserting them bit-identical."""
    reference = evaluate_keypoints(load_coco_gt(gt_file), results, backend="pycocotools")
    coco = load_coco_gt(gt_file)
    fast = evaluate_keypoints(coco, results, backend="faster")
    after = evaluate_keypoints(coco, results, backend="pycocotools")  # the GT faster-coco-eval indexed
    assert list(fast) == list(STAT_NAMES)
    diff = {k: abs(fast[k] - reference[k]) for k in STAT_NAMES}
    assert max(diff.values()) <= TOLERANCE, f"faster-coco-eval differs from pycocotools: {diff}"
    assert after == reference  # it left the shared annotation dicts as pycocotools needs them
    assert 0.05 < reference["AP"] < 0.99  # neither trivial nor empty: matching really happened
    return reference


@pytest.fixture(scope="module")
def demo_gt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("backend_demo")
    return Path(make_pose_demo(root, num_train_images=1, num_val_images=40, seed=3, progress=False)["val_ann"])


@needs_faster
@pytest.mark.parametrize("seed", [0, 1])
def test_identical_on_demo_set(demo_gt, seed):
    """The demo generator's COCO-format val split: crowd regions, occluded and truncated people."""
    assert_same_stats(demo_gt, perturbed_detections(json.loads(demo_gt.read_text()), seed))


@needs_faster
def test_identical_on_synthetic_coco_set(tmp_path):
    """The bench's synthetic set (medium and large persons, unlabelled joints), at 1/10 of its size."""
    ann_file, res_file = write_coco_keypoints(tmp_path, 500, 635, seed=4)
    assert_same_stats(ann_file, json.loads(res_file.read_text()))
    assert_same_stats(ann_file, perturbed_detections(json.loads(ann_file.read_text()), seed=5))


@needs_faster
def test_auto_falls_back_on_string_image_ids(tmp_path):
    """faster-coco-eval keys images by integers; other ids stay with pycocotools."""
    ann_file, _ = write_coco_keypoints(tmp_path, 20, 30, seed=6)
    gt = json.loads(ann_file.read_text())
    results = perturbed_detections(gt, seed=7)
    for item in gt["images"]:
        item["id"] = f"img{item['id']}"
    for item in gt["annotations"] + results:
        item["image_id"] = f"img{item['image_id']}"
    ann_file.write_text(json.dumps(gt))
    coco = load_coco_gt(ann_file)
    assert evaluate_keypoints(coco, results) == evaluate_keypoints(coco, results, backend="pycocotools")
    with pytest.raises(DataError, match="needs integer image and annotation ids"):
        evaluate_keypoints(coco, results, backend="faster")


@needs_faster
def test_known_last_bit_difference(tmp_path):
    """One person, found first (score 0.9), then a false positive: pycocotools' precision at the
    first point is 1 / (1 + eps), faster-coco-eval's 1. The only difference seen, 2.2e-16."""
    ann_file, _ = write_coco_keypoints(tmp_path, 1, 1, seed=8)
    gt = json.loads(ann_file.read_text())
    kp = np.asarray(gt["annotations"][0]["keypoints"], dtype=np.float64).reshape(-1, 3)
    kp[:, 2] = 1.0
    far = kp + [300.0, 300.0, 0.0]
    results = [{"image_id": 1, "category_id": 1, "keypoints": kp.ravel().tolist(), "score": 0.9},
               {"image_id": 1, "category_id": 1, "keypoints": far.ravel().tolist(), "score": 0.8}]
    coco = load_coco_gt(ann_file)
    reference = evaluate_keypoints(coco, results, backend="pycocotools")
    fast = evaluate_keypoints(coco, results, backend="faster")
    assert reference["AR"] == fast["AR"] == 1.0
    assert 1.0 - 1e-15 < reference["AP"] <= fast["AP"] == 1.0
    assert max(abs(fast[k] - reference[k]) for k in STAT_NAMES) <= TOLERANCE


def test_backend_names_are_checked(tmp_path, monkeypatch):
    ann_file, res_file = write_coco_keypoints(tmp_path, 5, 5)
    with pytest.raises(ConfigError, match=r"^evaluation\.eval_backend must be one of auto, pycocotools, faster, "
                                          r"got 'fast'$"):
        evaluate_keypoints(ann_file, res_file, backend="fast")
    with pytest.raises(ConfigError, match="eval_backend"):
        evaluation.CocoKeypointMetric(str(ann_file), backend="cocoapi")
    monkeypatch.setattr(evaluation, "faster_coco_eval_available", lambda: False)
    assert evaluation.resolve_backend("auto") == "pycocotools"
    with pytest.raises(ConfigError, match=r"faster needs the faster-coco-eval package"):
        evaluate_keypoints(ann_file, res_file, backend="faster")


def test_pose_config_checks_the_backend(monkeypatch):
    """A bad value, or faster without the package, fails when the task config is validated (driver)."""
    from densepred.config import load_config
    from densepred.tasks.base import build_task

    task_file = Path(__file__).resolve().parents[1] / "tasks" / "pose_demo.yaml"
    assert build_task(load_config(task_file)).eval_cfg.eval_backend == "auto"
    with pytest.raises(ConfigError, match=r"--set: evaluation\.eval_backend must be one of"):
        build_task(load_config(task_file, ["evaluation.eval_backend=pycocotool"]))
    monkeypatch.setattr(evaluation, "faster_coco_eval_available", lambda: False)
    with pytest.raises(ConfigError, match=r"--set: evaluation\.eval_backend: faster needs the faster-coco-eval"):
        build_task(load_config(task_file, ["evaluation.eval_backend=faster"]))
    assert build_task(load_config(task_file, ["evaluation.eval_backend=pycocotools"]))
