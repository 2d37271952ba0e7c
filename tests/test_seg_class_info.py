"""Class lists as data: the shipped class_info files, their validation, stored values <-> class ids
(reduce_zero_label, label id tables), left/right swaps on flip, and mIoU against a direct numpy
computation on a reduce_zero_label set and on a LIP-style set with flip pairs."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from densepred import load_config
from densepred.errors import ConfigError, DataError
from densepred.tasks.base import build_task
from densepred.tasks.segmentation.class_info import load_class_info, parse_class_info, shipped_names
from densepred.tasks.segmentation.transforms import SegAugment, augment

CLASSES = REPO / "configs" / "datasets" / "classes"


def _info(**kw):
    return parse_class_info({"names": ["a", "b", "c", "d"], **kw}, "test")


# ----------------------------------------------------------------------------- shipped files

def test_cityscapes_file_equals_the_cityscapesscripts_label_table():
    from cityscapesscripts.helpers.labels import labels

    info = load_class_info("cityscapes")
    train = sorted((lab for lab in labels if 0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    assert info.names == tuple(lab.name for lab in train)
    assert info.palette == tuple(tuple(lab.color) for lab in train)
    assert info.label_ids == tuple(lab.id for lab in train)
    assert set(info.ignored_label_ids) == {lab.id for lab in labels
                                           if 0 <= lab.id < 256 and not 0 <= lab.trainId < 255}
    assert info.ignore_index == 255 and not info.reduce_zero_label and not info.flip_pairs


@pytest.mark.parametrize("name,n,reduce,pairs", [
    ("cityscapes", 19, False, ()),
    ("pascal_context", 59, True, ()),
    ("lip", 20, False, ((14, 15), (16, 17), (18, 19))),
    ("ade20k", 150, True, ()),
])
def test_shipped_class_lists(name, n, reduce, pairs):
    info = load_class_info(name)
    assert name in shipped_names()
    assert info.num_classes == n == len(set(info.names)) == len(info.palette)
    assert info.reduce_zero_label is reduce and info.flip_pairs == pairs and info.ignore_index == 255
    if name == "lip":
        assert [info.names[a] + "/" + info.names[b] for a, b in pairs] == [
            "Left-arm/Right-arm", "Left-leg/Right-leg", "Left-shoe/Right-shoe"]
    if name == "pascal_context":
        assert info.names[0] == "aeroplane" and info.names[-1] == "wood"
    if name == "ade20k":
        assert info.names[:3] == ("wall", "building", "sky") and info.names[-1] == "flag"


def test_a_class_info_file_by_path_and_inline(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("names: [background, cat, dog]\nlabel_flip_pairs: []\n")
    by_file = load_class_info(str(path))
    inline = load_class_info({"names": ["background", "cat", "dog"]}, "x: data.class_info")
    assert by_file.names == inline.names == ("background", "cat", "dog")
    assert by_file.palette == inline.palette and len(set(by_file.palette)) == 3  # generated, distinct


# ----------------------------------------------------------------------------- validation

@pytest.mark.parametrize("data,message", [
    ({"names": ["a", "b"], "palette": [[0, 0, 0]]}, r"palette has 1 colours for 2 classes"),
    ({"names": ["a", "b"], "palette": [[0, 0, 0], [1, 2]]}, r"palette entry 1 is \[1, 2\]"),
    ({"names": ["a", "b", "a"]}, r"class name 'a' appears twice in names \(ids 0 and 2\)"),
    ({"names": ["a"]}, r"names lists 1 class; a class list needs at least 2"),
    ({"palette": [[0, 0, 0]]}, r"no 'names'; list the class names"),
    ({"names": "a, b"}, r"names must be a list of non-empty class names"),
    ({"names": ["a", "b"], "ignore_index": 1}, r"ignore_index 1 is a class id .*use a value >= 2, usually 255"),
    ({"names": ["a", "b"], "ignore_index": -1}, r"ignore_index must be a whole number 0\.\.65535, got -1"),
    ({"names": ["a", "b"], "label_flip_pairs": [[0, 5]]}, r"label_flip_pairs holds 5, outside the class ids 0\.\.1"),
    ({"names": ["a", "b"], "label_flip_pairs": [["a", "bb"]]}, r"label_flip_pairs names 'bb', which is not in "
                                                              r"names \(did you mean 'b'\?\)"),
    ({"names": ["a", "b", "c"], "label_flip_pairs": [[0, 1], [1, 2]]}, r"already in another pair"),
    ({"names": ["a", "b"], "label_flip_pairs": [[0]]}, r"label_flip_pairs entry \[0\] is not a pair"),
    ({"names": ["a", "b"], "reduce_zero_label": "yes"}, r"reduce_zero_label must be true or false, got 'yes'"),
    ({"names": ["a", "b"], "pallete": []}, r"unknown class_info key 'pallete' \(did you mean 'palette'\?\)"),
    ({"names": ["a", "b"], "label_ids": [7]}, r"label_ids has 1 ids for 2 classes"),
    ({"names": ["a", "b"], "label_ids": [7, 8], "reduce_zero_label": True}, r"label_ids and reduce_zero_label "
                                                                            r"exclude each other"),
    ({"names": ["a", "b"], "label_ids": [7, 8], "ignored_label_ids": [8]}, r"id 8 is in both"),
])
def test_class_info_mistakes_are_one_line_config_errors(data, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_class_info(data, "mine.yaml")
    assert str(err.value).startswith("mine.yaml: ") and "\n" not in str(err.value)


def test_file_and_name_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"no shipped class list named 'pascal_contxt' \(did you mean "
                                          r"'pascal_context'\?\); shipped: ade20k, cityscapes, lip, pascal_context"):
        load_class_info("pascal_contxt")
    with pytest.raises(ConfigError, match=r"class_info file .*absent\.yaml not found"):
        load_class_info(str(tmp_path / "absent.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("names: [a, b\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+ invalid YAML"):
        load_class_info(str(bad))
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: a class_info file must be a mapping"):
        load_class_info(str(tmp_path / "list.yaml"))


# ----------------------------------------------------------------------------- stored values <-> class ids

def test_reduce_zero_label_decodes_as_mmsegmentation_does():
    info = _info(reduce_zero_label=True)
    raw = np.array([[0, 1, 2, 3, 4, 255]], np.uint8)
    # mmsegmentation's rule: 0 -> 255, then -1, and 254 (from 255) back to 255
    expected = raw.astype(np.int64)
    expected[expected == 0] = 255
    expected = expected - 1
    expected[expected == 254] = 255
    assert np.array_equal(info.decode(raw), expected)
    assert np.array_equal(info.decode(info.encode(info.decode(raw))), info.decode(raw))
    with pytest.raises(DataError, match=r"f\.png: label value\(s\) 5 outside the class list of test "
                                        r"\(4 classes: values 1\.\.4; 0 and 255 are ignored \(reduce_zero_label\)\)"):
        info.decode(np.array([5], np.uint8), "f.png")


def test_plain_and_label_id_tables():
    plain = _info()
    assert np.array_equal(plain.decode(np.array([0, 3, 255], np.uint8)), [0, 3, 255])
    with pytest.raises(DataError, match=r"label value\(s\) 4, 7 outside the class list .*values 0\.\.3; 255 is "
                                        r"ignored"):
        plain.decode(np.array([4, 7, 0], np.uint8))
    table = _info(label_ids=[10, 20, 30, 40], ignored_label_ids=[0, 5])
    assert np.array_equal(table.decode(np.array([10, 40, 0, 5], np.uint16)), [0, 3, 255, 255])
    assert np.array_equal(table.encode(np.array([0, 3, 255])), [10, 40, 0])
    with pytest.raises(DataError, match=r"unknown label id\(s\) 11 \(valid labelIds are 0, 5, 10, 20, 30, 40\)"):
        table.decode(np.array([11], np.uint8))
    wide = parse_class_info({"names": [f"c{i}" for i in range(300)], "ignore_index": 65535}, "wide")
    assert wide.decode(np.array([299, 65535], np.uint16)).dtype == np.uint16


# ----------------------------------------------------------------------------- flips

def test_training_flip_swaps_left_and_right_classes():
    info = load_class_info("lip")
    rng_seed = next(s for s in range(100) if _flips(s))
    label = np.zeros((16, 16), np.uint8)
    label[:, :8] = 14   # left arm on the left half
    label[:, 8:] = 19   # right shoe on the right half
    label[0, 0] = 255
    image = np.zeros((16, 16, 3), np.uint8)
    aug = SegAugment(scale_range=[1.0, 1.0], base_size=None, crop_size=[16, 16], flip=True)
    _, out = augment(image, label, aug, np.random.default_rng(rng_seed), 255, info.flip_lut)
    expected = label[:, ::-1].copy()   # mirrored, then each left class becomes its right class
    for a, b in info.flip_pairs:
        expected = np.where(label[:, ::-1] == a, b, np.where(label[:, ::-1] == b, a, expected))
    assert np.array_equal(out, expected)
    assert set(np.unique(out)) == {15, 18, 255}
    _, kept = augment(image, label, aug, np.random.default_rng(rng_seed), 255, None)
    assert np.array_equal(kept, label[:, ::-1])  # without pairs the ids stay


def _flips(seed: int) -> bool:
    """Whether augment's draws from this seed mirror the crop (scale, crop y, crop x, then flip)."""
    rng = np.random.default_rng(seed)
    rng.uniform(1.0, 1.0)
    rng.integers(0, 1)
    rng.integers(0, 1)
    return rng.random() < 0.5


class _PixelModel(torch.nn.Module):
    """A fixed 'segmentation model': a 1x1 conv of the 4x4-average-pooled image (logits at 1/4)."""

    def __init__(self, n: int):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, n, 1)
        self.conv.weight.data *= 4

    def forward(self, x):
        return {"seg": self.conv(F.avg_pool2d(x, 4))}


def _write_lip_style_set(root):
    """A folders set of random images and labels over 6 classes (255 = ignore)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "img" / split).mkdir(parents=True)
        (root / "ann" / split).mkdir(parents=True)
        for i in range(3):
            label = rng.integers(0, 6, (32, 48)).astype(np.uint8)
            label[:3] = 255
            cv2.imwrite(str(root / "img" / split / f"{i}.png"), rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "ann" / split / f"{i}.png"), label)


def _lip_style_task(root, flip_pairs):
    """Its task: classes 2/3 and 4/5 are left/right pairs (``flip_pairs``), flip test on."""
    return build_task(load_config(REPO / "tasks" / "custom_seg_demo.yaml", [
        f"data_root={root}", "data.format=folders", "data.train_images=img/train", "data.train_labels=ann/train",
        "data.val_images=img/val", "data.val_labels=ann/val", "data.image_suffix=.png",
        f"data.class_info={{names: [bg, face, l_arm, r_arm, l_leg, r_leg], label_flip_pairs: {flip_pairs}}}",
        "task.loss.class_weights=null", "data.loader_workers=0", "inference.flip=true"]))


def _numpy_miou(preds, gts, n, ignore=255):
    """mIoU from per-class intersection and union counted with numpy (classes with an empty union left out)."""
    ious = []
    for c in range(n):
        inter = union = 0
        for p, g in zip(preds, gts):
            valid = g != ignore
            inter += np.sum((p == c) & (g == c) & valid)
            union += np.sum(((p == c) | (g == c)) & valid)
        if union:
            ious.append(inter / union)
    return float(np.mean(ious)), ious


def test_lip_style_flip_test_miou_equals_numpy(tmp_path):
    """Flip test swaps the mirrored prediction's left/right channels back; the task's mIoU equals
    intersection over union counted directly with numpy on those predictions."""
    _write_lip_style_set(tmp_path)
    task = _lip_style_task(tmp_path, "[[l_arm, r_arm], [l_leg, r_leg]]")
    model = _PixelModel(6).eval()
    stats = task.evaluate(model, None, torch.device("cpu"))
    preds, gts = [], []
    ds = task.build_dataset("val")
    for i in range(len(ds)):
        x = ds[i]["image"][None]
        with torch.no_grad():
            out = F.interpolate(model(x)["seg"], size=x.shape[-2:], mode="bilinear").softmax(1)
            mirrored = model(x.flip(3))["seg"].flip(3)[:, [0, 1, 3, 2, 5, 4]]
            out = (out + F.interpolate(mirrored, size=x.shape[-2:], mode="bilinear").softmax(1)) / 2
        preds.append(out.argmax(1)[0].numpy())
        gts.append(ds[i]["label"].numpy())
    miou, ious = _numpy_miou(preds, gts, 6)
    assert stats["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert [stats[f"IoU.{n}"] for n in task.class_info.names] == pytest.approx(ious, abs=1e-12)
    no_swap = _lip_style_task(tmp_path, "[]")   # the same flip test without the swap scores otherwise
    assert no_swap.evaluate(model, None, torch.device("cpu"))["mIoU"] != pytest.approx(miou, abs=1e-9)


def test_reduce_zero_label_miou_equals_numpy(tmp_path):
    """Predictions written in the stored convention (+1, 0 = ignore) score like numpy counts."""
    from densepred.tasks.segmentation.class_info import load_class_info as load

    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    (tmp_path / "pred").mkdir()
    preds, gts = [], []
    for i in range(4):
        gt = rng.integers(0, 6, (20, 30)).astype(np.uint8)       # 0 = ignored, 1..5 = classes 0..4
        gt[0, :5] = 255
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(1, 6, gt.shape)).astype(np.uint8)
        pred[gt == 255] = 3
        pred[gt == 0] = rng.integers(1, 6)
        cv2.imwrite(str(tmp_path / "img" / f"{i}.jpg"), np.zeros((20, 30, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "ann" / f"{i}.png"), gt)
        cv2.imwrite(str(tmp_path / "pred" / f"{i}.png"), pred)
        g = gt.astype(np.int64) - 1
        g[(gt == 0) | (gt == 255)] = 255
        gts.append(g)
        preds.append(pred.astype(np.int64) - 1)
    overrides = [f"data_root={tmp_path}", "data.format=folders", "data.train_images=img", "data.train_labels=ann",
                 "data.val_images=img", "data.val_labels=ann",
                 "data.class_info={names: [a, b, c, d, e], reduce_zero_label: true}", "task.loss.class_weights=null"]
    task = build_task(load_config(REPO / "tasks" / "custom_seg_demo.yaml", overrides))
    assert task.class_info == load({"names": ["a", "b", "c", "d", "e"], "reduce_zero_label": True},
                                   "x", inline_name=task.class_info.source)
    stats = task.evaluate_file(tmp_path / "pred")
    miou, ious = _numpy_miou(preds, gts, 5)
    assert stats["mIoU"] == pytest.approx(miou, abs=1e-12) and stats["num_images"] == 4
    assert [stats[f"IoU.{n}"] for n in "abcde"] == pytest.approx(ious, abs=1e-12)
    correct = sum(np.sum((p == g) & (g != 255)) for p, g in zip(preds, gts))
    assert stats["aAcc"] == pytest.approx(correct / sum(np.sum(g != 255) for g in gts))
    table = task.format_metrics(stats)
    assert re.search(r"^a\s+\d\.\d{4}$", table, re.M) and "(5 classes)" in table
