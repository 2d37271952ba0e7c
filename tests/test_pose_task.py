"""Pose task end to end on the COCO-format demo data: evaluation, codec round trip, browse,
predict, bad input. Everything goes through the same loaders real COCO uses."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPO
from densepred import DataError, load_config
from densepred.cli import main
from densepred.tasks.base import build_task
from densepred.tasks.pose.geometry import PIXEL_STD
from densepred.tasks.pose.demo_data import make_pose_demo
from densepred.tasks.pose.evaluation import evaluate_keypoints, to_coco_results

TASK = str(REPO / "tasks" / "pose_demo.yaml")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "coco"
    make_pose_demo(root, num_train_images=12, num_val_images=12, seed=3, progress=False)
    return root


def _task(root, *overrides):
    return build_task(load_config(TASK, [f"data_root={root}", *overrides]))


def _copy(root, tmp_path):
    dst = tmp_path / "coco"
    shutil.copytree(root, dst)
    return dst


def test_eval_predictions_of_ground_truth_gives_ap_1(demo_root, tmp_path, capsys):
    gt = json.loads((demo_root / "annotations" / "person_keypoints_val2017.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                "keypoints": [float(v) if i % 3 != 2 else float(v > 0) for i, v in enumerate(a["keypoints"])]}
               for a in gt["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    (tmp_path / "gt_results.json").write_text(json.dumps(results))
    assert main(["eval", TASK, "--set", f"data_root={demo_root}", "--predictions",
                 str(tmp_path / "gt_results.json"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "AR50" in out and "APm" in out
    stats = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


@pytest.mark.parametrize("encoding,decoding,min_ap", [("udp", "udp", 0.95), ("dark", "dark", 0.95),
                                                      ("msra", "argmax", 0.5)])
def test_encode_decode_ground_truth_round_trip(demo_root, encoding, decoding, min_ap):
    """Ground truth -> crop -> heatmaps -> decode -> COCO AP: the codec loses (almost) nothing."""
    task = _task(demo_root, "bbox_file=null", f"data.encoding={encoding}", f"data.decoding={decoding}",
                 "data.input_size=[192, 256]", "data.heatmap_size=[48, 64]", "data.sigma=2.0",
                 "model.heads.pose={type: HeatmapHead, num_keypoints: 17}")  # the official stride 4
    ds = task.val_dataset()
    persons = []
    for i, r in enumerate(ds.records):
        s = ds.load(i)
        target, _ = task.codec.encode(s["joints"], s["joints_vis"])
        preds, maxvals = task.codec.decode(target[None], r.center[None], r.scale[None])
        kp = np.concatenate([preds[0], maxvals[0]], axis=1)
        persons.append({"image_id": r.image_id, "keypoints": kp, "score": 1.0})
    stats = evaluate_keypoints(str(ds.ann_file), to_coco_results(persons))
    assert stats["AP"] >= min_ap, stats


def test_val_samples_follow_the_official_box_convention(demo_root, tmp_path):
    """browse --split val: crop, center/scale and targets as the official data code makes them."""
    import cv2

    from densepred.tasks.pose.codec import generate_target
    from densepred.tasks.pose.geometry import get_affine_transform

    assert main(["data", "browse", TASK, "--set", f"data_root={demo_root}", "--set", "bbox_file=null",
                 "--split", "val", "--out", str(tmp_path / "b"), "--limit", "3"]) == 0
    task = _task(demo_root, "bbox_file=null")
    ds = task.val_dataset()
    coco = ds.coco
    w_in, h_in = task.codec.input_size
    # persons in loader order: images by id, then their non-crowd annotations with keypoints
    anns = [a for iid in sorted(coco.getImgIds()) for a in coco.loadAnns(coco.getAnnIds(imgIds=iid))
            if not a["iscrowd"] and max(a["keypoints"]) > 0 and a["area"] > 0]
    for i, f in enumerate(sorted((tmp_path / "b").glob("*.npz"))):
        z = np.load(f)
        assert (tmp_path / "b" / (f.stem + ".jpg")).exists()
        r = ds.records[i]
        ann = anns[i]
        assert ann["image_id"] == r.image_id
        info = coco.imgs[r.image_id]
        # official _box2cs on the cleaned box
        x, y, w, h = ann["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(info["width"] - 1, x1 + max(0, w - 1)), min(info["height"] - 1, y1 + max(0, h - 1))
        w, h = x2 - x1, y2 - y1
        center = np.array([x1 + w * 0.5, y1 + h * 0.5], dtype=np.float32)  # official dtypes
        if w > w_in / h_in * h:
            h = w * h_in / w_in
        else:
            w = h * w_in / h_in
        scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * 1.25
        np.testing.assert_allclose(z["center"], center, atol=1e-4)
        np.testing.assert_allclose(z["scale"], scale, atol=1e-4)
        image = cv2.cvtColor(cv2.imread(str(ds.image_dir / info["file_name"])), cv2.COLOR_BGR2RGB)
        trans = get_affine_transform(center, scale, 0, [w_in, h_in])
        patch = cv2.warpAffine(image, trans, (w_in, h_in), flags=cv2.INTER_LINEAR)
        assert z["image"].dtype == np.uint8 and np.array_equal(z["image"], patch)
        k = np.asarray(ann["keypoints"], np.float32).reshape(-1, 3)
        vis = np.repeat(np.minimum(k[:, 2:3], 1), 3, axis=1)
        vis[:, 2] = 0
        joints = np.zeros((17, 3), np.float32)
        joints[:, :2] = k[:, :2]
        for j in range(17):
            if vis[j, 0] > 0:
                joints[j, :2] = trans @ np.array([joints[j, 0], joints[j, 1], 1.0])
        target, weight = generate_target(joints, vis, [w_in, h_in], task.codec.heatmap_size, task.codec.sigma)
        np.testing.assert_allclose(z["target"], target, atol=1e-6)
        np.testing.assert_array_equal(z["target_weight"], weight)


def test_predict_writes_results_and_pictures(demo_root, tmp_path, reference_dir):
    from densepred import build_model, save_checkpoint

    task = _task(demo_root)
    ckpt = save_checkpoint(tmp_path / "m.pth", build_model(task.cfg))
    images = sorted((demo_root / "images" / "val2017").glob("*.jpg"))[:2]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for im in images:
        shutil.copy(im, folder / im.name)
    assert main(["predict", TASK, "--set", f"data_root={demo_root}", "--checkpoint", str(ckpt),
                 "--input", str(folder), "--out", str(tmp_path / "pred"), "--detector", "whole"]) == 0
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    assert len(results) == 2 and all(len(r["keypoints"]) == 51 for r in results)
    assert {r["image_id"] for r in results} == {int(im.stem) for im in images}
    assert len(list((tmp_path / "pred" / "vis").glob("*.jpg"))) == 2


# ----------------------------------------------------------------------------- bad input

def test_missing_data_root(tmp_path):
    with pytest.raises(DataError, match=r"data_root .*nowhere does not exist; set data_root to your dataset folder"):
        _task(tmp_path / "nowhere").build_dataset("train")


def test_empty_annotation_file(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    (root / "annotations" / "person_keypoints_train2017.json").write_text("")
    with pytest.raises(DataError, match="person_keypoints_train2017.json"):
        _task(root).build_dataset("train")


def test_wrong_number_of_keypoints(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    f = root / "annotations" / "person_keypoints_train2017.json"
    gt = json.loads(f.read_text())
    bad = next(a for a in gt["annotations"] if not a["iscrowd"])
    bad["keypoints"] = bad["keypoints"][:48]
    f.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=rf"person_keypoints_train2017.json: annotation {bad['id']} has 48 keypoint values, expected 51"):
        _task(root).build_dataset("train")


@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated"])
def test_bad_image_is_an_error_when_inspecting_and_a_counted_fault_in_training(demo_root, tmp_path, damage):
    root = _copy(demo_root, tmp_path)
    task = _task(root)
    ds = task.build_dataset("train")
    path = ds.records[0].image_file
    with open(path, "rb") as fh:
        data = fh.read()
    if damage == "missing":
        import os
        os.remove(path)
    elif damage == "corrupt":
        open(path, "wb").write(b"\x00garbage" * 50)
    else:
        open(path, "wb").write(data[: len(data) // 2])
    name = path.rsplit("/", 1)[-1]
    with pytest.raises(DataError, match=name):
        task.build_dataset("train", strict_images=True).load(0)
    sample = ds[0]                      # training: no exception, the fault is carried and weighted out
    assert name in sample["fault"]
    assert float(sample["target_weight"].sum()) == 0.0
    assert ds[len(ds) - 1]["fault"] == "" or name in ds[len(ds) - 1]["fault"]


def test_detection_file_with_negative_box(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    f = root / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    dets = json.loads(f.read_text())
    dets[0]["bbox"][2] = -5
    f.write_text(json.dumps(dets))
    with pytest.raises(DataError, match=r"detection #0 has an invalid box"):
        _task(root).build_dataset("val")


def test_unknown_data_key_is_named(demo_root):
    with pytest.raises(Exception, match=r"unknown key 'data.sigmaa' \(did you mean 'sigma'\?\)"):
        _task(demo_root, "data.sigmaa=3")


def test_persistent_loader_workers_see_new_epochs(demo_root):
    """Augmentation changes every epoch even though loader workers are forked only once."""
    from torch.utils.data import DataLoader

    ds = _task(demo_root).build_dataset("train")
    loader = DataLoader(ds, batch_size=2, num_workers=1, persistent_workers=True)
    firsts = []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        firsts.append(next(iter(loader))["image"])
    assert not np.array_equal(firsts[0].numpy(), firsts[1].numpy())
    assert np.array_equal(firsts[0].numpy(), firsts[2].numpy())  # same epoch, same augmentation


def test_predict_on_a_video(demo_root, tmp_path):
    import cv2

    from densepred import build_model, save_checkpoint

    task = _task(demo_root)
    ckpt = save_checkpoint(tmp_path / "m.pth", build_model(task.cfg))
    frames = [cv2.imread(str(p)) for p in sorted((demo_root / "images" / "val2017").glob("*.jpg"))[:3]]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (w, h))
    for f in frames:
        writer.write(cv2.resize(f, (w, h)))
    writer.release()
    assert main(["predict", TASK, "--set", f"data_root={demo_root}", "--checkpoint", str(ckpt),
                 "--input", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "pv"), "--detector", "whole"]) == 0
    results = json.loads((tmp_path / "pv" / "results.json").read_text())
    assert sorted(r["image_id"] for r in results) == [0, 1, 2]       # frame indices
    assert (tmp_path / "pv" / "clip_pose.mp4").stat().st_size > 0
