"""Tests of the synthetic Cityscapes-format street-scene dataset (densepred.tasks.segmentation.demo_data)."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.labels import labels as cs_labels
from cityscapesscripts.helpers.labels import name2label

from densepred.tasks.segmentation.demo_data import TRAIN_CITIES, VAL_CITIES, make_seg_demo

W, H = 256, 128
NUM_TRAIN, NUM_VAL = 8, 4
SEED = 5
VALID_IDS = {lab.id for lab in cs_labels if lab.id >= 0}
ID2COLOR = {lab.id: lab.color for lab in cs_labels if lab.id >= 0}
STEM = re.compile(r"^(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_demo")
    summary = make_seg_demo(root, num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=(W, H), seed=SEED,
                            progress=False)
    return root, summary


def _read(path: Path) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert arr is not None, path
    return arr


def _png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the PNG IHDR chunk."""
    data = path.read_bytes()[:32]
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"), data[24], data[25])


def _samples(root: Path, split: str) -> list[tuple[str, str]]:
    out = []
    for img in sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        out.append((img.parent.name, img.name[: -len("_leftImg8bit.png")]))
    return out


def test_layout_and_names(demo):
    root, summary = demo
    assert sorted(p.name for p in root.iterdir()) == ["gtFine", "leftImg8bit"]
    for top in ("leftImg8bit", "gtFine"):
        assert sorted(p.name for p in (root / top).iterdir()) == ["train", "val"]
    cities = {}
    for split, num, allowed in (("train", NUM_TRAIN, TRAIN_CITIES), ("val", NUM_VAL, VAL_CITIES)):
        samples = _samples(root, split)
        assert len(samples) == num
        assert summary[split]["images"] == num
        cities[split] = {c for c, _ in samples}
        assert cities[split] <= set(allowed)
        assert sorted(cities[split]) == summary[split]["cities"]
        # leftImg8bit holds only images; gtFine exactly labelIds + color + instanceIds (no trainIds)
        left_files = sorted(p.relative_to(root / "leftImg8bit" / split).as_posix()
                            for p in (root / "leftImg8bit" / split).rglob("*") if p.is_file())
        assert left_files == sorted(f"{c}/{s}_leftImg8bit.png" for c, s in samples)
        gt_files = sorted(p.relative_to(root / "gtFine" / split).as_posix()
                          for p in (root / "gtFine" / split).rglob("*") if p.is_file())
        expected = sorted(f"{c}/{s}_gtFine_{kind}.png" for c, s in samples
                          for kind in ("labelIds", "color", "instanceIds"))
        assert gt_files == expected
        assert not list((root / "gtFine").rglob("*labelTrainIds*"))
        for city, stem in samples:
            m = STEM.match(stem)
            assert m and m["city"] == city, stem
    assert not cities["train"] & cities["val"], "train and val cities must differ, as in Cityscapes"


def test_label_images_are_cityscapes_labelids(demo):
    root, _ = demo
    seen: set[int] = set()
    for split in ("train", "val"):
        for city, stem in _samples(root, split):
            img_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            lab_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            assert _png_header(img_path) == (W, H, 8, 2)          # 8-bit RGB
            assert _png_header(lab_path) == (W, H, 8, 0)          # 8-bit greyscale
            img = _read(img_path)
            lab = _read(lab_path)
            assert img.shape == (H, W, 3) and img.dtype == np.uint8
            assert lab.shape == (H, W) and lab.dtype == np.uint8
            ids = set(np.unique(lab).tolist())
            assert ids <= VALID_IDS, ids - VALID_IDS
            seen |= ids
    major = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
    for name in major:
        assert name2label[name].id in seen, f"class {name!r} never drawn"
    void = {lab.id for lab in cs_labels if lab.category == "void"}
    assert name2label["ego vehicle"].id in seen
    assert name2label["static"].id in seen
    assert seen & {name2label["rectification border"].id, name2label["out of roi"].id}
    assert seen & void and all(name2label[n].trainId == 255 for n in ("ego vehicle", "static"))


def test_color_and_instance_images_match_labelids(demo):
    root, _ = demo
    lut = np.zeros((256, 3), np.uint8)
    for lid, colour in ID2COLOR.items():
        lut[lid] = colour
    instance_classes = {lab.id for lab in cs_labels if lab.hasInstances and lab.id >= 0}
    n_instances = 0
    for split in ("train", "val"):
        for city, stem in _samples(root, split):
            gt = root / "gtFine" / split / city
            lab = _read(gt / f"{stem}_gtFine_labelIds.png")
            colour = _read(gt / f"{stem}_gtFine_color.png")
            assert colour.shape == (H, W, 4) and colour.dtype == np.uint8   # RGBA like Cityscapes
            assert (colour[..., 3] == 255).all()
            rgb = cv2.cvtColor(colour[..., :3], cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(rgb, lut[lab])
            inst = _read(gt / f"{stem}_gtFine_instanceIds.png")
            assert inst.shape == (H, W) and inst.dtype == np.uint16
            is_inst = inst >= 1000
            np.testing.assert_array_equal(np.where(is_inst, inst // 1000, inst), lab)
            assert set(np.unique(lab[is_inst]).tolist()) <= instance_classes
            n_instances += len(np.unique(inst[is_inst]))
    assert n_instances > 0


def test_summary_counts(demo):
    _, s = demo
    assert s["image_size"] == [W, H]
    for split in ("train", "val"):
        assert s[split]["cars"] > 0 and s[split]["persons"] > 0
        assert sum(s[split]["label_pixels"].values()) == s[split]["images"] * W * H
    assert s["seconds"] >= 0


def test_deterministic(demo, tmp_path):
    root, _ = demo
    # each image has its own RNG stream: a smaller run with the same seed reproduces the first files
    make_seg_demo(tmp_path, num_train=2, num_val=1, image_size=(W, H), seed=SEED, progress=False)
    for split in ("train", "val"):
        small = _samples(tmp_path, split)
        assert small and set(small) <= set(_samples(root, split))
        for city, stem in small:
            for rel in (f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png",
                        f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png",
                        f"gtFine/{split}/{city}/{stem}_gtFine_instanceIds.png"):
                np.testing.assert_array_equal(_read(tmp_path / rel), _read(root / rel), err_msg=rel)
    other = tmp_path / "other"
    make_seg_demo(other, num_train=1, num_val=0, image_size=(W, H), seed=SEED + 1, progress=False)
    (city, stem), = _samples(other, "train")
    rel = f"leftImg8bit/train/{city}/{stem}_leftImg8bit.png"
    assert not np.array_equal(_read(other / rel), _read(root / rel))


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_seg_demo(tmp_path, 1, 1, image_size=(16, 8), progress=False)
    with pytest.raises(ValueError):
        make_seg_demo(tmp_path, -1, 1, progress=False)
