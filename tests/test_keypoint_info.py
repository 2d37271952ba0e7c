"""Keypoint metadata as data: the shipped files, the one loader, joints read from a COCO-format file
(any count, several categories sharing one skeleton), OKS AP with a data set's own sigmas against
pycocotools, a configured skeleton that does not match the file, and name-mapped head transfer."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from densepred import ConfigError, load_config
from densepred.errors import DataError
from densepred.tasks.base import build_task
from densepred.tasks.pose.keypoint_meta import (derive_flip_pairs, from_categories, load_keypoint_info,
                                                parse_keypoint_info, shipped_names)

HAND = load_keypoint_info("hand21")


def test_shipped_keypoint_files_load_with_their_counts():
    counts = {n: load_keypoint_info(n).num_keypoints for n in shipped_names()}
    assert counts == {"ap10k": 17, "coco": 17, "crowdpose": 14, "face68": 68, "hand21": 21, "mpii": 16}
    for name in shipped_names():
        meta = load_keypoint_info(name)
        assert meta.sigmas is not None and len(meta.sigmas) == meta.num_keypoints, name
        for a, b in meta.flip_pairs:  # a pair mirrors: both sides, never a middle joint
            assert {meta.side(a), meta.side(b)} <= {"L", "R", "M"}


def test_coco_file_equals_pycocotools_and_the_official_hrnet_code():
    from pycocotools.cocoeval import Params

    coco = load_keypoint_info("coco")
    assert np.array_equal(coco.sigmas, Params(iouType="keypoints").kpt_oks_sigmas)  # bit-identical
    assert list(coco.flip_pairs) == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
    assert coco.upper_body_ids == tuple(range(11))
    assert list(coco.joint_weights) == [1.0] * 7 + [1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5]
    mpii = load_keypoint_info("mpii")
    assert list(mpii.flip_pairs) == [(0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)]
    assert mpii.upper_body_ids == tuple(range(7, 16))


@pytest.mark.parametrize("names,pairs", [
    (["nose", "left_eye", "right_eye"], [(1, 2)]),
    (["l_wrist", "r_wrist", "neck"], [(0, 1)]),
    (["Left Front Paw", "Right Front Paw", "tail"], [(0, 1)]),
    (["wing_L", "wing_R", "beak"], [(0, 1)]),
    (["hipleft", "hipright"], [(0, 1)]),
    (["wrist", "thumb1", "thumb2"], []),                # a hand: no pairs, flipping keeps every joint
    (["left_ear", "nose"], []),                         # a joint without its partner maps to itself
])
def test_flip_pairs_follow_the_joint_names(names, pairs):
    assert derive_flip_pairs(names) == pairs


@pytest.mark.parametrize("raw,message", [
    ({"keypoints": ["a", "b"], "sigmas": [0.1]}, r"sigmas must list one number per keypoint \(2\), got 1"),
    ({"keypoints": ["a", "b"], "flip_pairs": [[0, 5]]}, r"flip_pairs: joint index 5 is out of range 0\.\.1"),
    ({"keypoints": ["a", "b"], "skeleton": [["a", "c"]]}, r"skeleton: 'c' is not one of the keypoints"),
    ({"keypoints": ["a", "a"]}, r"keypoint 'a' is listed twice"),
    ({"keypoints": ["a", "b"], "flip_pairs": [[0, 0]]}, r"flip_pairs must pair distinct joints"),
    ({"keypoints": ["a", "b"], "sigmas": [0.1, -1]}, r"sigmas must be finite numbers > 0"),
    ({"keypoints": ["a"], "sigma": [0.1]}, r"unknown key\(s\) \['sigma'\]"),
    ({"keypoints": []}, r"keypoints must be a non-empty list of joint names"),
])
def test_bad_keypoint_info_is_one_line_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_keypoint_info(raw, "my.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("my.yaml: ")


def test_categories_sharing_one_skeleton_are_one_and_different_ones_are_refused():
    cats = [{"id": 3, "name": "dog", "keypoints": ["left_eye", "right_eye", "nose"], "skeleton": [[1, 3], [2, 3]]},
            {"id": 7, "name": "cat", "keypoints": ["left_eye", "right_eye", "nose"]}]
    meta = from_categories(cats, "animals.json")
    assert meta.names == ("left_eye", "right_eye", "nose") and meta.flip_pairs == ((0, 1),)
    assert meta.skeleton == ((0, 2), (1, 2)) and meta.sigmas is None and not meta.half_body
    cats[1]["keypoints"] = ["nose", "tail"]
    with pytest.raises(DataError, match=r"animals\.json: categories 'dog' and 'cat' list different keypoints"):
        from_categories(cats, "animals.json")


# ----------------------------------------------------------------------------- a hand-made 21-joint set

def write_hand_set(root: Path, images: int = 4, categories: tuple[int, ...] = (1, 2), seed: int = 0,
                   with_counts: bool = False) -> Path:
    """A COCO-format hand set: 21 joints in OneHand10K order, no flip pairs, two categories (left and
    right hands) sharing the skeleton, annotations without num_keypoints/area unless ``with_counts``."""
    import cv2

    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"hand{c}", "keypoints": list(HAND.names),
             "skeleton": [[a + 1, b + 1] for a, b in HAND.skeleton]} for c in categories]
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        imgs, anns = [], []
        for i in range(images):
            img = rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), img)
            imgs.append({"id": i, "file_name": f"{i}.png", "width": 96, "height": 96})
            for c in categories:
                xy = rng.uniform(20, 76, (21, 2))
                kpts = np.concatenate([xy, np.full((21, 1), 2.0)], 1).round(2).reshape(-1).tolist()
                ann = {"id": len(anns) + 1, "image_id": i, "category_id": c, "iscrowd": 0,
                       "bbox": [float(xy[:, 0].min()), float(xy[:, 1].min()), float(np.ptp(xy[:, 0])),
                                float(np.ptp(xy[:, 1]))], "keypoints": kpts}
                if with_counts:
                    ann.update(num_keypoints=21, area=ann["bbox"][2] * ann["bbox"][3])
                anns.append(ann)
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(json.dumps(
            {"images": imgs, "annotations": anns, "categories": cats}))
    return root


HAND_SETS = {"data.format": "coco", "data.train_ann": "annotations/train.json", "data.train_images": "images/train",
             "data.val_ann": "annotations/val.json", "data.val_images": "images/val", "bbox_file": None,
             "data.keypoint_info": None, "model.heads.pose.num_keypoints": None, "data.input_size": [64, 64],
             "data.heatmap_size": [32, 32], "data.augment.half_body_prob": 0.0}


def hand_task(root: Path, **sets):
    return build_task(load_config(REPO / "tasks" / "pose_demo.yaml", {**HAND_SETS, "data_root": str(root), **sets}))


def test_a_21_joint_two_category_file_indexes_every_hand_with_computed_fields(tmp_path):
    task = hand_task(write_hand_set(tmp_path / "hands"))
    task.preflight()
    assert task.meta.num_keypoints == 21 and task.meta.flip_pairs == () and task.meta.sigmas is None
    ds = task.build_dataset("train")
    assert len(ds) == 8 and {r.category_id for r in ds.records} == {1, 2}  # no category is dropped
    assert any("4" in n or "8" in n for n in ds.notes) and any("computed" in n for n in ds.notes)
    model = task.build_model()
    assert model.heads["pose"].final_layer.out_channels == 21
    sample = ds[0]
    assert sample["target"].shape == (21, 32, 32)


def test_oks_ap_with_a_data_sets_sigmas_equals_pycocotools(tmp_path):
    """`platform eval --predictions` on a 21-joint file = pycocotools' COCOeval with the hand sigmas."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = write_hand_set(tmp_path / "hands", images=6, with_counts=True)
    gt = json.loads((root / "annotations" / "val.json").read_text())
    rng = np.random.default_rng(1)
    results = []
    for ann in gt["annotations"]:
        k = np.asarray(ann["keypoints"], np.float64).reshape(21, 3)
        k[:, :2] += rng.normal(0, 2.5, (21, 2))
        k[:, 2] = rng.uniform(0.3, 1.0, 21)
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "keypoints": k.reshape(-1).tolist(), "score": float(rng.uniform(0.5, 1))})
    (tmp_path / "results.json").write_text(json.dumps(results))
    sigmas = HAND.sigmas
    task = hand_task(root, **{"data.keypoint_info": "hand21", "evaluation.eval_backend": "pycocotools"})
    ours = task.evaluate_file(tmp_path / "results.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "annotations" / "val.json"))
        ev = COCOeval(coco, coco.loadRes(str(tmp_path / "results.json")), "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert 0.05 < ours["AP"] < 0.99
    assert [ours[k] for k in ("AP", "AP50", "AP75", "AR")] == pytest.approx(
        [ev.stats[0], ev.stats[1], ev.stats[2], ev.stats[5]], abs=1e-12)
    # without sigmas the metric still runs, with the stated default and a note in the table
    plain = hand_task(root, **{"evaluation.eval_backend": "pycocotools"})
    assert "not comparable to published figures" in plain.format_metrics(plain.evaluate_file(tmp_path / "results.json"))


def test_a_file_that_differs_from_the_configured_skeleton_is_an_error(tmp_path):
    task = hand_task(write_hand_set(tmp_path / "hands"), **{"data.keypoint_info": "crowdpose",
                                                            "model.heads.pose.num_keypoints": None})
    with pytest.raises(DataError, match=r"category 'hand1' does not match the configured keypoint info "
                                        r"\(21 keypoints in the file, 14 in keypoint info 'crowdpose'\)"):
        task.build_dataset("train")


def test_an_explicit_head_size_that_differs_from_the_data_is_one_line(tmp_path):
    task = hand_task(write_hand_set(tmp_path / "hands"), **{"model.heads.pose.num_keypoints": 17})
    with pytest.raises(ConfigError, match=r"model\.heads\.pose\.num_keypoints is 17 but the data set has 21 "
                                          r"keypoints .*set model\.heads\.pose\.num_keypoints=null"):
        task.preflight()


# ----------------------------------------------------------------------------- transfer by joint name

def test_coco_checkpoint_transfers_shared_joints_to_crowdpose_by_name(tmp_path):
    from densepred import save_checkpoint

    coco_task = build_task(load_config(REPO / "tasks" / "pose_demo.yaml"))
    source = coco_task.build_model()
    ckpt = save_checkpoint(tmp_path / "coco.pth", source, meta={"keypoints": list(coco_task.meta.names)})
    crowd = build_task(load_config(REPO / "tasks" / "pose_demo.yaml",
                                   {"data.keypoint_info": "crowdpose", "model.heads.pose.num_keypoints": None}))
    target = crowd.build_model()
    fresh = target.heads["pose"].final_layer.weight.detach().clone()
    report = crowd.load_initial_weights(target, str(ckpt))
    assert "12 of 14 joints transferred by name" in report.summary() and "fresh: top_head, neck" in report.summary()
    src_w, dst_w = source.heads["pose"].final_layer.weight, target.heads["pose"].final_layer.weight
    src_b, dst_b = source.heads["pose"].final_layer.bias, target.heads["pose"].final_layer.bias
    coco_names, crowd_names = list(coco_task.meta.names), list(crowd.meta.names)
    for j, name in enumerate(crowd_names):
        if name in coco_names:
            assert torch.equal(dst_w[j], src_w[coco_names.index(name)]) and torch.equal(dst_b[j], src_b[coco_names.index(name)])
        else:
            assert torch.equal(dst_w[j], fresh[j])  # head top and neck keep their initialisation
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(v, target.backbone.state_dict()[k]), k
    # official and mmpose checkpoints (no joint names) of 17 heatmaps are COCO's
    torch.save(source.official_state_dict(), tmp_path / "official.pth")
    mmpose = {("head." + k[len("heads.pose."):] if k.startswith("heads.pose.") else k): v
              for k, v in source.state_dict().items()}
    torch.save({"state_dict": mmpose}, tmp_path / "mmpose.pth")
    for name, fmt in (("official.pth", "official"), ("mmpose.pth", "mmpose")):
        report = crowd.load_initial_weights(crowd.build_model(), str(tmp_path / name))
        assert report.format == fmt and "12 of 14 joints transferred" in report.summary(), report.summary()
