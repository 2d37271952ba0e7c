"""MPII in the pose task: keypoint metadata, the official annot/*.json conventions, PCKh as the official
HRNet evaluation computes it, pred.mat files, the synthetic MPII demo set and the demo recipe."""
from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat

from conftest import REPO
from densepred.cli import main
from densepred.config import load_config
from densepred.errors import ConfigError, DataError
from densepred.tasks.base import build_task
from densepred.tasks.pose.codec import get_max_preds
from densepred.tasks.pose.keypoint_meta import coco_keypoints, keypoint_meta
from densepred.tasks.pose.mpii_dataset import MpiiPoseDataset, adjust_center_scale
from densepred.tasks.pose.mpii_demo import VAL_GT_FILE, VAL_ANN_FILE, make_mpii_demo
from densepred.tasks.pose.pckh import JOINT_CODES

COCO_META, MPII_META = coco_keypoints(), keypoint_meta("mpii")
KEYPOINT_NAMES = MPII_META.names
from densepred.tasks.pose.pckh import (LOW_THRESHOLD, PckhGroundTruth, evaluate_pckh, load_gt,
                                       load_predictions, pckh, save_gt)

TASKS = REPO / "tasks"
GROUPS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle")
J = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


@pytest.fixture(scope="module")
def mpii_demo(tmp_path_factory):
    """A tiny MPII-layout set written by the demo generator (12 train, 6 val persons)."""
    root = tmp_path_factory.mktemp("mpii") / "mpii"
    make_mpii_demo(root, num_train_persons=12, num_val_persons=6, seed=3, progress=False)
    return root


def demo_task(root, **overrides):
    return build_task(load_config(TASKS / "pose_mpii_demo.yaml", {"data_root": str(root), "data.loader_workers": 0,
                                                                  **overrides}))


def one_line_data_error(fn, *needles):
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    return msg


# ---------------------------------------------------------------- keypoint metadata
def test_flip_pairs_map_left_to_right_names():
    for meta in (MPII_META, COCO_META):
        paired = set()
        for a, b in meta.flip_pairs:
            left, right = sorted((meta.names[a], meta.names[b]))  # "l_"/"left_" sorts first
            assert {meta.side(a), meta.side(b)} == {"L", "R"}
            stem = lambda n: n.split("_", 1)[1]  # noqa: E731
            assert stem(left) == stem(right), (left, right)
            paired |= {a, b}
        # every sided joint has its mirror; the middle ones (pelvis, thorax, neck, head, nose) none
        assert paired == {i for i in range(meta.num_keypoints) if meta.side(i) != "M"}
    assert MPII_META.num_keypoints == 16 and KEYPOINT_NAMES[9] == "head_top" and JOINT_CODES[9] == "head"
    assert MPII_META.upper_body_ids == tuple(range(7, 16)) and MPII_META.lower_body_ids == tuple(range(7))
    assert keypoint_meta("coco") is COCO_META and keypoint_meta("mpii") is MPII_META


def test_task_meta_follows_data_format(mpii_demo):
    coco = build_task(load_config(TASKS / "pose_demo.yaml"))
    assert coco.meta == COCO_META and coco.primary_metric == "AP" and "AP50" in coco.metric_names
    task = demo_task(mpii_demo)
    assert task.meta == MPII_META and task.primary_metric == "PCKh"
    assert set(task.metric_names) == {"PCKh", "PCKh@0.1", *GROUPS}
    assert task.shared_input_key()[0] == "mpii-topdown"


# ---------------------------------------------------------------- PCKh
def hand_made_gt() -> PckhGroundTruth:
    """4 persons, every joint labelled except person 0's left ankle; head box 20 x 30 px."""
    rng = np.random.default_rng(0)
    pos = rng.uniform(50, 150, size=(16, 2, 4))
    missing = np.zeros((16, 4))
    missing[J["l_ankle"], 0] = 1
    boxes = np.zeros((2, 2, 4))
    boxes[0] = [[10.0], [10.0]]
    boxes[1] = [[30.0], [40.0]]
    return PckhGroundTruth(missing, pos, boxes)


def test_ground_truth_as_predictions_gives_100_everywhere(mpii_demo):
    gt = load_gt(mpii_demo / VAL_GT_FILE)
    stats = pckh(np.transpose(gt.pos_gt_src, (2, 0, 1)), gt)
    assert stats == {name: 100.0 for name in ("PCKh", "PCKh@0.1", *GROUPS)}
    # the same through the val records (0-based joints of annot/valid.json)
    ds = MpiiPoseDataset(mpii_demo, "valid", demo_task(mpii_demo).codec, train=False)
    preds = np.stack([r.joints[:, :2] for r in ds.records])
    assert evaluate_pckh(preds, mpii_demo / VAL_GT_FILE) == stats


def test_perturbed_predictions_give_the_figures_computed_by_hand():
    gt = hand_made_gt()
    head = 0.6 * np.hypot(20, 30)                          # 21.63 px
    preds = np.transpose(gt.pos_gt_src, (2, 0, 1)).copy()   # (4, 16, 2), 1-based like pos_gt_src
    preds[:, [J["l_wrist"], J["r_wrist"]], 0] += 0.6 * head   # misses at 0.5 and at 0.1
    preds[:, [J["l_elbow"], J["r_elbow"]], 1] -= 0.3 * head   # hits at 0.5, misses at 0.1
    preds[0, J["l_ankle"]] = [1e4, 1e4]                       # not labelled: does not count
    preds[:, [J["pelvis"], J["thorax"]]] += 1e4               # outside the mean (official mask)
    stats = pckh(preds, gt)
    # 16 joints x 4 persons, minus pelvis and thorax (8) and the unlabelled ankle: 55 joints count.
    assert stats["PCKh"] == pytest.approx(100 * (55 - 8) / 55)          # the 8 wrists miss
    assert stats["PCKh@0.1"] == pytest.approx(100 * (55 - 8 - 8) / 55)  # and the 8 elbows at 0.11
    assert stats["Wrist"] == 0 and stats["Elbow"] == 100
    assert all(stats[g] == 100 for g in ("Head", "Shoulder", "Hip", "Knee", "Ankle"))
    assert LOW_THRESHOLD == pytest.approx(0.11)  # the official "Mean@0.1" row of arange(0, 0.51, 0.01)


def test_pred_mat_and_json_round_trip_through_evaluate_file(mpii_demo, tmp_path):
    task = demo_task(mpii_demo)
    gt = load_gt(mpii_demo / VAL_GT_FILE)
    rng = np.random.default_rng(1)
    preds = np.transpose(gt.pos_gt_src, (2, 0, 1)) - 1 + rng.normal(0, 2.0, (gt.num_persons, 16, 2))
    direct = evaluate_pckh(preds, gt, tmp_path / "out")
    mat = loadmat(str(tmp_path / "out" / "pred.mat"))["preds"]
    np.testing.assert_allclose(mat, preds + 1)  # official pred.mat: N x 16 x 2, 1-based
    assert task.evaluate_file(tmp_path / "out" / "pred.mat") == pytest.approx(direct)
    with_scores = np.concatenate([preds, np.ones_like(preds[..., :1])], axis=-1)
    (tmp_path / "preds.json").write_text(json.dumps(with_scores.tolist()))
    assert task.evaluate_file(tmp_path / "preds.json") == pytest.approx(direct)
    print(task.format_metrics(direct))
    # a wrong count or shape names the file
    savemat(str(tmp_path / "short.mat"), {"preds": mat[:-1]})
    one_line_data_error(lambda: task.evaluate_file(tmp_path / "short.mat"), "short.mat", f"for {gt.num_persons}")
    (tmp_path / "bad.json").write_text(json.dumps(preds[:, :15].tolist()))
    one_line_data_error(lambda: task.evaluate_file(tmp_path / "bad.json"), "bad.json", "shape")
    (tmp_path / "preds.txt").write_text("1 2 3")
    one_line_data_error(lambda: load_predictions(tmp_path / "preds.txt", 6), "preds.txt", ".mat")


# ---------------------------------------------------------------- data set conventions
def write_layout(root, entries, image_size=(64, 48)):
    (root / "annot").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    (root / "annot" / "valid.json").write_text(json.dumps(entries))
    import cv2
    cv2.imwrite(str(root / "images" / "000000001.jpg"), np.zeros((image_size[1], image_size[0], 3), np.uint8))


def entry(**fields):
    base = {"image": "000000001.jpg", "joints": [[float(10 + i), float(20 + i)] for i in range(16)],
            "joints_vis": [1] * 15 + [0], "center": [30.0, 20.0], "scale": 0.4}
    return {**base, **fields}


def test_annot_entries_follow_the_official_conventions(tmp_path, mpii_demo):
    write_layout(tmp_path, [entry(), entry(center=[-1, -1], scale=1.0)])
    ds = MpiiPoseDataset(tmp_path, "valid", demo_task(mpii_demo).codec, train=False)
    r, unknown = ds.records
    # center y + 15 * s, then s * 1.25, then both center coordinates and the joints 1-based -> 0-based
    np.testing.assert_allclose(r.center, [30 - 1, 20 + 15 * 0.4 - 1])
    np.testing.assert_allclose(r.scale, [0.4 * 1.25, 0.4 * 1.25])
    np.testing.assert_allclose(r.joints[:, :2], np.array(entry()["joints"]) - 1)
    assert r.joints_vis[:, 0].tolist() == [1] * 15 + [0] and r.joints_vis[:, 2].sum() == 0
    np.testing.assert_allclose(unknown.center, [-2, -2])  # an unknown center (x = -1) is not adjusted
    np.testing.assert_allclose(unknown.scale, [1.0, 1.0])
    assert r.image_id == 1 and r.image_file == str(tmp_path / "images" / "000000001.jpg")
    c, s = adjust_center_scale([30.0, 20.0], 0.4)
    np.testing.assert_allclose(c, r.center) and np.testing.assert_allclose(s, r.scale)


def test_demo_crops_put_joints_where_the_targets_peak(mpii_demo):
    task = demo_task(mpii_demo)
    for split in ("val", "train"):  # train: with the augmentation (flip, scale, rotation)
        ds = task.build_dataset(split)
        for i in range(len(ds)):
            s = ds.load(i)
            target, weight = task.codec.encode(s["joints"], s["joints_vis"])
            peaks, _ = get_max_preds(target[None])
            on = weight[:, 0] > 0
            assert on.sum() >= 4
            np.testing.assert_allclose(peaks[0][on], np.floor(s["joints"][on, :2] / 4 + 0.5), atol=1e-6)
    # the annotation of the demo matches its PCKh ground truth
    gt = load_gt(mpii_demo / VAL_GT_FILE)
    entries = json.loads((mpii_demo / VAL_ANN_FILE).read_text())
    vis = np.array([e["joints_vis"] for e in entries])
    np.testing.assert_array_equal(gt.jnt_missing, 1 - vis.T)
    np.testing.assert_allclose(np.transpose(gt.pos_gt_src, (2, 0, 1)), [e["joints"] for e in entries])
    assert (gt.headboxes_src[1] > gt.headboxes_src[0]).all()


def test_demo_recipe_trains_and_evaluates_without_ray(mpii_demo, tmp_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    task = demo_task(mpii_demo, **{"data.batch_size": 4})
    task.preflight()
    model = task.build_model().train()
    loader = torch.utils.data.DataLoader(task.build_dataset("train"), batch_size=4, collate_fn=task.collate)
    batches = list(itertools.islice(loader, 2))
    assert batches[0]["target"].shape == (4, 16, 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(10):
        batch = batches[step % 2]
        loss = task.loss(model(batch["image"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and sum(losses[-2:]) < 0.95 * sum(losses[:2]), losses
    stats = task.evaluate(model, tmp_path, torch.device("cpu"))
    assert set(stats) == set(task.metric_names) and all(0 <= stats[k] <= 100 for k in stats)
    assert loadmat(str(tmp_path / "pred.mat"))["preds"].shape == (6, 16, 2)


def test_unreadable_images_are_per_sample_faults(mpii_demo, tmp_path):
    root = tmp_path / "mpii"
    shutil.copytree(mpii_demo, root)
    task = demo_task(root)
    ds = task.val_dataset()
    victim = ds.records[0].image_file
    (root / "images" / victim.rsplit("/", 1)[1]).write_bytes(b"")
    hit = [i for i, r in enumerate(ds.records) if r.image_file == victim]
    sample = ds[hit[0]]
    assert "is empty" in sample["fault"] and float(sample["target_weight"].sum()) == 0
    torch.manual_seed(0)
    stats = task.evaluate(task.build_model(), tmp_path / "eval", torch.device("cpu"))
    assert stats["faults"] == len(hit)
    preds = loadmat(str(tmp_path / "eval" / "pred.mat"))["preds"]
    assert np.isnan(preds[hit]).all() and not np.isnan(np.delete(preds, hit, axis=0)).any()


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("case,needles", [
    ("no-annot", ("valid.json", "not found")),
    ("bad-json", ("valid.json", "invalid JSON")),
    ("not-a-list", ("valid.json", "JSON list")),
    ("short-joints", ("valid.json", "entry 1", "joints")),
    ("no-scale", ("valid.json", "entry 0", "scale")),
    ("no-images", ("images", "image folder")),
])
def test_bad_layouts_are_one_line_data_errors(tmp_path, mpii_demo, case, needles):
    write_layout(tmp_path, [entry(), entry()])
    ann = tmp_path / "annot" / "valid.json"
    if case == "no-annot":
        ann.unlink()
    elif case == "bad-json":
        ann.write_text("[{")
    elif case == "not-a-list":
        ann.write_text("{}")
    elif case == "short-joints":
        ann.write_text(json.dumps([entry(), entry(joints=[[1, 2]] * 15)]))
    elif case == "no-scale":
        bad = entry()
        del bad["scale"]
        ann.write_text(json.dumps([bad]))
    else:
        shutil.rmtree(tmp_path / "images")
    codec = demo_task(mpii_demo).codec
    one_line_data_error(lambda: MpiiPoseDataset(tmp_path, "valid", codec, train=False), *needles)


def test_missing_or_bad_ground_truth_and_config_mistakes(tmp_path, mpii_demo):
    root = tmp_path / "mpii"
    shutil.copytree(mpii_demo, root)
    (root / VAL_GT_FILE).unlink()
    task = demo_task(root)
    one_line_data_error(task.preflight, "gt_valid.mat", "not found")
    one_line_data_error(lambda: task.evaluate_file(root / "x.mat"), "gt_valid.mat")
    savemat(str(root / VAL_GT_FILE), {"jnt_missing": np.zeros((16, 2))})
    one_line_data_error(lambda: load_gt(root / VAL_GT_FILE), "gt_valid.mat", "pos_gt_src")
    gt = hand_made_gt()
    save_gt(root / VAL_GT_FILE, gt)
    assert load_gt(root / VAL_GT_FILE).num_persons == 4
    one_line_data_error(lambda: evaluate_pckh(np.zeros((3, 16, 2)), root / VAL_GT_FILE), "gt_valid.mat", "4 persons")
    # a 17-joint head or a detection file with MPII data: ConfigErrors naming the key
    with pytest.raises(ConfigError, match=r"pose\.num_keypoints is 17 but the data set has 16 keypoints \(keypoint info 'mpii'\)"):
        demo_task(root, **{"model.heads.pose.num_keypoints": 17})
    with pytest.raises(ConfigError, match="bbox_file applies to COCO only"):
        demo_task(root, bbox_file="dets.json")
    # a head that leaves num_keypoints out predicts the data set's 16 joints
    child = tmp_path / "child.yaml"
    child.write_text(f"_base_: {TASKS / 'pose_mpii_demo.yaml'}\n"
                     "model:\n  heads:\n    pose:\n      _delete_: true\n      type: HeatmapHead\n")
    assert build_task(load_config(child)).build_model().heads["pose"].final_layer.out_channels == 16


# ---------------------------------------------------------------- command line and recipes
def test_data_demo_command_writes_the_mpii_layout(tmp_path):
    assert main(["data", "demo", "--task", "mpii", "--out", str(tmp_path), "--mpii-train", "3",
                 "--mpii-val", "2"]) == 0
    assert len(json.loads((tmp_path / "mpii" / "annot" / "train.json").read_text())) == 3
    assert load_gt(tmp_path / "mpii" / VAL_GT_FILE).num_persons == 2
    names = loadmat(str(tmp_path / "mpii" / VAL_GT_FILE))["dataset_joints"]
    assert np.where(names == "head")[1][0] == 9  # the official lookup works on the written file
    assert not (tmp_path / "coco").exists()


def test_mpii_recipes_state_their_targets_and_official_settings():
    hr = load_config(TASKS / "pose_mpii.yaml")
    assert "PCKh@0.5 90.3" in (TASKS / "pose_mpii.yaml").read_text()
    assert hr["data"]["format"] == "mpii" and hr["data"]["input_size"] == [256, 256]
    assert hr["data"]["heatmap_size"] == [64, 64] and hr["data"]["sigma"] == 2.0
    assert hr["data"]["augment"]["scale_factor"] == 0.25 and hr["data"]["augment"]["rotation_factor"] == 30
    assert hr["model"]["heads"]["pose"]["num_keypoints"] == 16 and hr["scheduler"]["milestones"] == [170, 200]
    hg = load_config(TASKS / "pose_mpii_hourglass.yaml")
    assert "90.9" in (TASKS / "pose_mpii_hourglass.yaml").read_text()
    assert hg["model"]["backbone"]["nstack"] == 8 and hg["model"]["backbone"]["oup_dim"] == 16
    assert hg["data"]["sigma"] == 1.0 and hg["data"]["input_size"] == [256, 256]
    for name in ("pose_mpii.yaml", "pose_mpii_hourglass.yaml", "pose_mpii_demo.yaml"):
        task = build_task(load_config(TASKS / name))
        assert task.primary_metric == "PCKh" and "Target:" in (TASKS / name).read_text()
