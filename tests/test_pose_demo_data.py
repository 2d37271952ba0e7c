"""Tests of the synthetic COCO-format person keypoint dataset (densepred.tasks.pose.demo_data)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densepred.tasks.pose.keypoint_meta import coco_keypoints

KEYPOINT_NAMES, SKELETON = coco_keypoints().names, coco_keypoints().skeleton
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
from densepred.tasks.pose.demo_data import (DET_FILE, TRAIN_ANN_FILE, TRAIN_IMG_DIR,
                                            VAL_ANN_FILE, VAL_IMG_DIR, make_pose_demo)

W, H = 192, 144


def _quiet_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose_demo")
    summary = make_pose_demo(root, num_train_images=10, num_val_images=6, image_size=(W, H),
                             seed=3, progress=False)
    return root, summary


def _splits(root):
    return [(root / TRAIN_ANN_FILE, root / TRAIN_IMG_DIR), (root / VAL_ANN_FILE, root / VAL_IMG_DIR)]


def test_layout_and_summary(demo):
    root, s = demo
    for rel in (TRAIN_ANN_FILE, VAL_ANN_FILE, DET_FILE):
        assert (root / rel).is_file(), rel
    assert s["train"]["images"] == 10 and s["val"]["images"] == 6
    assert s["train"]["persons"] > 0 and s["val"]["persons"] > 0
    assert Path(s["train_ann"]) == root / TRAIN_ANN_FILE
    assert Path(s["detections"]) == root / DET_FILE


def test_coco_schema(demo):
    root, _ = demo
    all_img_ids, all_ann_ids = set(), set()
    for ann_file, _ in _splits(root):
        raw = json.loads(ann_file.read_text())
        assert set(raw) >= {"info", "licenses", "images", "annotations", "categories"}
        cats = raw["categories"]
        assert len(cats) == 1
        cat = cats[0]
        assert (cat["id"], cat["name"], cat["supercategory"]) == (1, "person", "person")
        assert cat["keypoints"] == list(KEYPOINT_NAMES)
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in SKELETON]
        for im in raw["images"]:
            assert {"id", "file_name", "width", "height"} <= set(im)
            assert im["file_name"] == f"{im['id']:012d}.jpg"
            assert im["id"] not in all_img_ids
            all_img_ids.add(im["id"])
        for a in raw["annotations"]:
            assert {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "num_keypoints",
                    "keypoints", "segmentation"} <= set(a)
            assert a["category_id"] == 1 and a["iscrowd"] in (0, 1)
            assert a["id"] not in all_ann_ids
            all_ann_ids.add(a["id"])
        coco = _quiet_coco(ann_file)  # pycocotools accepts it
        assert coco.getCatIds(catNms=["person"]) == [1]


def test_images_exist_and_match(demo):
    root, _ = demo
    for ann_file, img_dir in _splits(root):
        coco = _quiet_coco(ann_file)
        for info in coco.loadImgs(coco.getImgIds()):
            img = cv2.imread(str(img_dir / info["file_name"]))
            assert img is not None, info["file_name"]
            assert img.shape == (info["height"], info["width"], 3) == (H, W, 3)


def test_person_annotations(demo):
    root, _ = demo
    n_occluded = n_outside_person = n_persons = 0
    for ann_file, _ in _splits(root):
        coco = _quiet_coco(ann_file)
        for a in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
            n_persons += 1
            info = coco.loadImgs(a["image_id"])[0]
            w, h = info["width"], info["height"]
            kp = np.asarray(a["keypoints"], dtype=np.float64)
            assert kp.shape == (3 * NUM_KEYPOINTS,)
            kp = kp.reshape(-1, 3)
            v = kp[:, 2]
            assert set(np.unique(v)) <= {0, 1, 2}
            assert a["num_keypoints"] == int((v > 0).sum())
            assert np.all(kp[v == 0] == 0)  # unlabelled joints are (0, 0, 0)
            lab = kp[v > 0]
            assert np.all(lab[:, 0] >= 0) and np.all(lab[:, 0] < w)
            assert np.all(lab[:, 1] >= 0) and np.all(lab[:, 1] < h)
            x, y, bw, bh = a["bbox"]
            assert bw > 0 and bh > 0
            assert x >= 0 and y >= 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6
            # polygons; area is the polygon (mask) area and fits in the box
            assert isinstance(a["segmentation"], list) and a["segmentation"]
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in a["segmentation"])
            m = coco.annToMask(a)
            assert abs(int(m.sum()) - a["area"]) <= max(2.0, 0.01 * a["area"])
            assert 0 < a["area"] <= bw * bh
            n_occluded += int((v == 1).sum())
            n_outside_person += int(a["num_keypoints"] < 17)
    assert n_persons >= 16
    assert n_occluded > 0, "expected some labelled-but-occluded (v=1) keypoints"
    assert n_outside_person > 0


def test_crowd_regions(demo):
    root, s = demo
    crowds = []
    for ann_file, _ in _splits(root):
        coco = _quiet_coco(ann_file)
        crowds += [(coco, a) for a in coco.loadAnns(coco.getAnnIds(iscrowd=True))]
    assert len(crowds) == s["train"]["crowd_regions"] + s["val"]["crowd_regions"]
    assert crowds, "expected at least one crowd region"
    for coco, a in crowds:
        assert a["iscrowd"] == 1 and a["num_keypoints"] == 0
        assert a["keypoints"] == [0] * (3 * NUM_KEYPOINTS)
        seg = a["segmentation"]
        assert isinstance(seg, dict) and isinstance(seg["counts"], str)
        info = coco.loadImgs(a["image_id"])[0]
        assert seg["size"] == [info["height"], info["width"]]
        rle = {"counts": seg["counts"].encode("ascii"), "size": seg["size"]}
        m = mask_utils.decode(rle)
        assert m.shape == (info["height"], info["width"])
        assert abs(int(m.sum()) - a["area"]) <= 1
        assert np.allclose(mask_utils.toBbox(rle), a["bbox"], atol=0.01)


def test_detections_file(demo):
    root, _ = demo
    dets = json.loads((root / DET_FILE).read_text())
    assert isinstance(dets, list) and dets
    gt = _quiet_coco(root / VAL_ANN_FILE)
    img_ids = set(gt.getImgIds())
    for d in dets:
        assert set(d) == {"image_id", "category_id", "bbox", "score"}
        assert d["category_id"] == 1 and d["image_id"] in img_ids
        assert len(d["bbox"]) == 4 and 0.0 < d["score"] <= 1.0
    with contextlib.redirect_stdout(io.StringIO()):
        res = gt.loadRes(str(root / DET_FILE))
    assert len(res.getAnnIds()) == len(dets)
    scores = np.array([d["score"] for d in dets])
    # one jittered box (score >= 0.7) per person, the rest are background false positives
    assert (scores >= 0.7).sum() == len(gt.getAnnIds(iscrowd=False))
    assert np.all((scores >= 0.7) | (scores < 0.3))


def test_gt_as_results_gives_perfect_ap(demo):
    root, _ = demo
    gt = _quiet_coco(root / VAL_ANN_FILE)
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0}
               for a in gt.loadAnns(gt.getAnnIds(iscrowd=False)) if a["num_keypoints"] > 0]
    assert results
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_deterministic(tmp_path):
    kw = dict(num_train_images=3, num_val_images=2, image_size=(160, 128), seed=11, progress=False)
    make_pose_demo(tmp_path / "a", **kw)
    make_pose_demo(tmp_path / "b", **kw)
    for rel in (TRAIN_ANN_FILE, VAL_ANN_FILE, DET_FILE):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    files_a = sorted(p.name for p in (tmp_path / "a" / TRAIN_IMG_DIR).iterdir())
    for name in files_a:
        assert (tmp_path / "a" / TRAIN_IMG_DIR / name).read_bytes() == \
            (tmp_path / "b" / TRAIN_IMG_DIR / name).read_bytes()
    make_pose_demo(tmp_path / "c", **{**kw, "seed": 12})
    assert (tmp_path / "a" / TRAIN_ANN_FILE).read_bytes() != (tmp_path / "c" / TRAIN_ANN_FILE).read_bytes()
