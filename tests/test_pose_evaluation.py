"""COCO keypoint evaluation: OKS, (soft) OKS NMS, rescoring, COCOeval wrapper, the registered metric."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densepred.errors import DataError
from densepred.registry import METRICS
from densepred.tasks.pose.keypoint_meta import coco_keypoints

SIGMAS = coco_keypoints().sigmas
NUM_KEYPOINTS = len(SIGMAS)
from densepred.tasks.pose.evaluation import (
    STAT_NAMES,
    CocoKeypointMetric,
    evaluate_keypoints,
    format_table,
    group_nms,
    load_coco_gt,
    load_results,
    oks_iou,
    oks_nms,
    rescore,
    soft_oks_nms,
    to_coco_results,
)

# A standing person in box-relative coordinates (x, y in [0, 1]), COCO joint order.
TEMPLATE = np.array([
    [0.50, 0.08], [0.53, 0.06], [0.47, 0.06], [0.57, 0.08], [0.43, 0.08],
    [0.65, 0.22], [0.35, 0.22], [0.72, 0.38], [0.28, 0.38], [0.75, 0.52], [0.25, 0.52],
    [0.60, 0.55], [0.40, 0.55], [0.62, 0.75], [0.38, 0.75], [0.63, 0.95], [0.37, 0.95],
])


def _person(ann_id, image_id, box, invisible=(), occluded=()):
    x, y, w, h = box
    kpts = np.zeros((NUM_KEYPOINTS, 3))
    kpts[:, 0] = x + TEMPLATE[:, 0] * w
    kpts[:, 1] = y + TEMPLATE[:, 1] * h
    kpts[:, 2] = 2
    kpts[list(occluded), 2] = 1
    kpts[list(invisible)] = 0
    return {
        "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
        "bbox": [float(v) for v in box], "area": float(w * h * 0.55),
        "keypoints": [float(round(v, 2)) for v in kpts.reshape(-1)],
        "num_keypoints": int((kpts[:, 2] > 0).sum()),
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


def _gt_dict():
    anns = [
        _person(1, 1, (40, 30, 180, 400)),                                   # large
        _person(2, 1, (300, 200, 60, 130), invisible=(3, 4, 15, 16)),       # medium, some unlabeled joints
        _person(3, 2, (100, 50, 220, 420), invisible=(0, 1, 2), occluded=(9, 10)),
        _person(4, 2, (400, 120, 70, 150)),                                  # medium
        _person(5, 3, (10, 10, 250, 450), invisible=tuple(range(11, 17))),  # upper body only
    ]
    # A crowd region (no keypoints) and a non-crowd person with no labeled joint: both ignored.
    crowd = {
        "id": 6, "image_id": 3, "category_id": 1, "iscrowd": 1, "bbox": [300.0, 100.0, 200.0, 300.0],
        "area": 30000.0, "keypoints": [0.0] * (3 * NUM_KEYPOINTS), "num_keypoints": 0,
        "segmentation": {"counts": [30000, 60000], "size": [480, 640]},
    }
    empty = dict(_person(7, 3, (520, 20, 40, 60), invisible=tuple(range(17))), num_keypoints=0)
    anns += [crowd, empty]
    return {
        "info": {"description": "tiny test set"},
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in (1, 2, 3, 4)],
        "annotations": anns,
        "categories": [{
            "id": 1, "name": "person", "supercategory": "person",
            "keypoints": ["kp%d" % i for i in range(NUM_KEYPOINTS)], "skeleton": [[16, 14]],
        }],
    }


@pytest.fixture()
def gt_file(tmp_path):
    path = tmp_path / "person_keypoints_tiny.json"
    path.write_text(json.dumps(_gt_dict()))
    return path


def _gt_persons(gt_dict=None, score=1.0):
    """Ground truth as per-person predictions (confidence 1 on labeled joints)."""
    gt_dict = gt_dict or _gt_dict()
    persons = []
    for a in gt_dict["annotations"]:
        if a["iscrowd"] or a["num_keypoints"] == 0:
            continue
        k = np.array(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        k[:, 2] = (k[:, 2] > 0).astype(np.float64)
        x, y, w, h = a["bbox"]
        persons.append({
            "image_id": a["image_id"], "keypoints": k, "score": score, "area": w * h * 1.25 ** 2,
            "center": np.array([x + w / 2, y + h / 2]), "scale": np.array([w, h]) * 1.25 / 200,
        })
    return persons


def _official_oks_iou(g, d, a_g, a_d, sigmas, in_vis_thre=None):
    """Loop transcription of the official formula, for checking the vectorised one."""
    variances = (sigmas * 2) ** 2
    out = np.zeros(d.shape[0])
    for n in range(d.shape[0]):
        dx, dy = d[n, 0::3] - g[0::3], d[n, 1::3] - g[1::3]
        e = (dx ** 2 + dy ** 2) / variances / ((a_g + a_d[n]) / 2 + np.spacing(1)) / 2
        if in_vis_thre is not None:
            e = e[d[n, 2::3] > in_vis_thre]
        out[n] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] else 0.0
    return out


# ------------------------------------------------------------------------------------------ OKS
def test_oks_iou_matches_loop_formula():
    rng = np.random.default_rng(0)
    g = np.concatenate([rng.uniform(0, 300, (17, 2)), rng.uniform(0, 1, (17, 1))], 1).reshape(-1)
    d = g[None] + np.concatenate([rng.normal(0, 8, (6, 17, 2)), np.zeros((6, 17, 1))], 2).reshape(6, -1)
    d[:, 2::3] = rng.uniform(0, 1, (6, 17))
    d[5, 2::3] = 0.0  # no joint above threshold -> 0
    areas = rng.uniform(2000, 40000, 6)
    for thre in (None, 0.2):
        np.testing.assert_allclose(oks_iou(g, d, 10000.0, areas, SIGMAS, thre),
                                   _official_oks_iou(g, d, 10000.0, areas, SIGMAS, thre), rtol=1e-12)
    assert oks_iou(g, d, 10000.0, areas, in_vis_thre=0.2)[5] == 0.0
    assert oks_iou(g, g[None], 5000.0, np.array([5000.0]))[0] == pytest.approx(1.0)
    assert oks_iou(g, np.zeros((0, 51)), 1.0, np.zeros(0)).shape == (0,)


# ------------------------------------------------------------------------------------------ rescoring
def test_rescore_exact_hand_example():
    k = np.zeros((17, 3))
    k[:, 2] = 0.1
    k[:4, 2] = [0.9, 0.5, 0.2, 0.3]  # 0.2 is not above the threshold
    persons = [{"image_id": 1, "keypoints": k, "score": 0.8, "area": 1.0},
               {"image_id": 1, "keypoints": np.zeros((17, 3)), "score": 0.9, "area": 1.0}]
    out = rescore(persons, in_vis_thre=0.2)
    assert out[0]["score"] == pytest.approx(0.8 * (0.9 + 0.5 + 0.3) / 3)
    assert out[1]["score"] == 0.0
    assert persons[0]["score"] == 0.8  # inputs untouched
    assert rescore(persons, in_vis_thre=0.05)[0]["score"] == pytest.approx(0.8 * k[:, 2].mean())


# ------------------------------------------------------------------------------------------ NMS
def _duplicate_pair(shift):
    p = _gt_persons()[0]
    p = dict(p, score=0.9)
    q = dict(p, keypoints=p["keypoints"] + np.array([shift, shift, 0.0]), score=0.7)
    other = _gt_persons()[1] | {"score": 0.8}
    return [q, p, other]


def test_oks_nms_removes_lower_scored_duplicate():
    db = _duplicate_pair(4.0)
    ovr = oks_iou(db[1]["keypoints"].reshape(-1), db[0]["keypoints"].reshape(1, -1), db[1]["area"],
                  np.array([db[0]["area"]]))[0]
    assert 0.9 < ovr < 0.99
    assert oks_nms(db, 0.9) == [1, 2]
    assert sorted(oks_nms(db, 0.99)) == [0, 1, 2]
    assert oks_nms([], 0.9) == []


def test_soft_oks_nms_decays_instead_of_removing():
    db = _duplicate_pair(4.0)
    keep, scores = soft_oks_nms(db, 0.9)
    assert sorted(keep) == [0, 1, 2]
    assert keep[0] == 1 and scores[0] == pytest.approx(0.9)
    dup_score = scores[keep.index(0)]
    ovr = oks_iou(db[1]["keypoints"].reshape(-1), db[0]["keypoints"].reshape(1, -1), db[1]["area"],
                  np.array([db[0]["area"]]))[0]
    assert dup_score < 0.7 * 0.5
    assert dup_score == pytest.approx(0.7 * np.exp(-ovr ** 2 / 0.9), rel=1e-3)

    kept = group_nms(db, soft=True, oks_thre=0.9)
    assert len(kept) == 3
    assert sorted(p["score"] for p in kept)[0] < 0.35
    hard = group_nms(db, soft=False, oks_thre=0.9)
    assert len(hard) == 2
    assert len(group_nms(db, use_nms=False)) == 3


def test_group_nms_is_per_image():
    db = _duplicate_pair(4.0)
    db[0] = dict(db[0], image_id=2)  # the duplicate is on another image: not suppressed
    assert len(group_nms(db, oks_thre=0.9)) == 3


# ------------------------------------------------------------------------------------------ COCOeval
def test_ground_truth_as_results_is_perfect(gt_file):
    coco = load_coco_gt(gt_file)
    results = to_coco_results(_gt_persons())
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}
    json.dumps(results)  # plain JSON types
    stats = evaluate_keypoints(coco, results)
    assert list(stats) == list(STAT_NAMES)
    for name in STAT_NAMES:
        assert stats[name] == pytest.approx(1.0), name


def test_perturbed_keypoints_lower_ap(gt_file, tmp_path):
    rng = np.random.default_rng(1)
    persons = _gt_persons()
    for p in persons:
        p["keypoints"][:, :2] += rng.normal(0, 6.0, (17, 2))
    res_file = tmp_path / "res.json"
    res_file.write_text(json.dumps(to_coco_results(persons)))
    out = tmp_path / "m" / "stats.json"
    stats = evaluate_keypoints(load_coco_gt(gt_file), res_file, out_json=out)
    assert 0.0 < stats["AP"] < 0.95
    assert json.loads(out.read_text()) == pytest.approx(stats)


def test_empty_results_give_zeros(gt_file):
    with pytest.warns(UserWarning, match="no keypoint results"):
        stats = evaluate_keypoints(load_coco_gt(gt_file), [])
    assert stats == {name: 0.0 for name in STAT_NAMES}


def test_verbose_prints_cocoeval_summary(gt_file, capsys):
    evaluate_keypoints(gt_file, to_coco_results(_gt_persons()))
    assert capsys.readouterr().out == ""
    evaluate_keypoints(gt_file, to_coco_results(_gt_persons()), verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_format_table():
    stats = {name: i / 10 for i, name in enumerate(STAT_NAMES)}
    text = format_table(stats, title="val")
    lines = text.splitlines()
    assert lines[0] == "val"
    assert len(lines) == 3 + 10
    assert "0.300" in text and lines[3].split()[0] == "AP" and lines[3].endswith("0.000")
    assert len({len(line) for line in lines[1:]} - {len(lines[2])}) <= 1


# ------------------------------------------------------------------------------------------ errors
def test_bad_results_files_raise_data_error(gt_file, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="nope.json"):
        load_results(missing)

    broken = tmp_path / "broken.json"
    broken.write_text('[{"image_id": 1,\n "score": 0.5 "keypoints": []}]')
    with pytest.raises(DataError, match=r"broken\.json.*line 2 column"):
        load_results(broken)

    not_list = tmp_path / "dict.json"
    not_list.write_text('{"image_id": 1}')
    with pytest.raises(DataError, match="dict.json.*list"):
        load_results(not_list)

    no_score = tmp_path / "noscore.json"
    no_score.write_text(json.dumps([{"image_id": 1, "keypoints": [0.0] * 51}]))
    with pytest.raises(DataError, match="noscore.json.*score"):
        load_results(no_score)

    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"image_id": 1, "keypoints": [0.0] * 50, "score": 1.0}]))
    with pytest.raises(DataError, match="short.json.*50 keypoint values, expected 51"):
        load_results(short)
    wrong_k = tmp_path / "wrongk.json"
    wrong_k.write_text(json.dumps([{"image_id": 1, "keypoints": [0.0] * 48, "score": 1.0}]))
    with pytest.raises(DataError, match="wrongk.json.*expected 51"):
        load_results(wrong_k)

    unknown = tmp_path / "unknown.json"
    res = to_coco_results(_gt_persons())
    res[1]["image_id"] = 987654
    unknown.write_text(json.dumps(res))
    with pytest.raises(DataError, match="unknown.json.*987654"):
        evaluate_keypoints(load_coco_gt(gt_file), unknown)
    with pytest.raises(DataError, match="987654"):
        evaluate_keypoints(load_coco_gt(gt_file), res)


def test_bad_gt_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="missing_gt.json"):
        load_coco_gt(tmp_path / "missing_gt.json")

    broken = tmp_path / "broken_gt.json"
    broken.write_text('{"images": [],\n\n  "annotations": [,]}')
    with pytest.raises(DataError, match=r"broken_gt\.json.*line 3 column"):
        load_coco_gt(broken)

    no_anns = tmp_path / "no_anns.json"
    d = _gt_dict()
    del d["annotations"]
    no_anns.write_text(json.dumps(d))
    with pytest.raises(DataError, match="no_anns.json.*annotations"):
        load_coco_gt(no_anns)

    no_kpt_cat = tmp_path / "instances.json"
    d = _gt_dict()
    d["categories"] = [{"id": 1, "name": "person", "supercategory": "person"}]
    no_kpt_cat.write_text(json.dumps(d))
    with pytest.raises(DataError, match="instances.json.*keypoints"):
        load_coco_gt(no_kpt_cat)


# ------------------------------------------------------------------------------------------ metric
def test_metric_end_to_end(gt_file, tmp_path):
    metric = METRICS.build({"type": "CocoKeypointMetric", "ann_file": str(gt_file)})
    assert isinstance(metric, CocoKeypointMetric)
    persons = _gt_persons(score=0.9)
    persons[1]["score"] = 0.5  # a lower-scored true person (medium, image 1)
    # A near-duplicate of person 0 scored above person 1: a false positive unless NMS removes it.
    dup = dict(persons[0], keypoints=persons[0]["keypoints"] + np.array([3.0, 3.0, 0.0]), score=0.8)
    metric.process(persons[:2])
    metric.process(persons[2:] + [dup])
    assert len(metric) == len(persons) + 1

    out_dir = tmp_path / "eval"
    stats = metric.compute(out_dir)
    assert stats["AP"] == pytest.approx(1.0)
    results = json.loads((out_dir / "keypoints_results.json").read_text())
    assert len(results) == len(persons)
    assert {r["image_id"] for r in results} == {1, 2, 3}
    assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in results)
    assert json.loads((out_dir / "metrics.json").read_text()) == pytest.approx(stats)

    no_nms = CocoKeypointMetric(str(gt_file), use_nms=False)
    no_nms.process(persons + [dup])
    assert no_nms.compute()["AP"] < 1.0

    metric.reset()
    assert len(metric) == 0
    with pytest.warns(UserWarning):
        assert metric.compute()["AP"] == 0.0


def test_metric_missing_ann_file_raises_on_compute(tmp_path):
    metric = CocoKeypointMetric(str(tmp_path / "absent_keypoints.json"))
    metric.process(_gt_persons()[:1])
    with pytest.raises(DataError, match="absent_keypoints.json"):
        metric.compute()


def test_only_keypoint_categories_are_evaluated(tmp_path):
    d = _gt_dict()
    d["categories"].append({"id": 18, "name": "dog", "supercategory": "animal"})
    d["annotations"].append({"id": 99, "image_id": 4, "category_id": 18, "iscrowd": 0,
                             "bbox": [10.0, 10.0, 100.0, 80.0], "area": 6000.0, "segmentation": []})
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(d))
    stats = evaluate_keypoints(load_coco_gt(path), to_coco_results(_gt_persons()))
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
