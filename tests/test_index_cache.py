"""Annotation index cache of the pose dataset: a prepared index on disk, keyed by the files' content
hashes, serves every later run with exactly the records the first parse built."""
from __future__ import annotations

import json
import logging
import shutil
import time

import numpy as np
import pytest

from conftest import REPO
from densepred import DataError, load_config
from densepred.tasks.base import build_task
from densepred.tasks.pose.dataset import CocoPoseDataset, file_sha256, index_cache_dir
from densepred.tasks.pose.demo_data import DET_FILE, make_pose_demo

TASK = str(REPO / "tasks" / "pose_demo.yaml")
TRAIN_ANN = "annotations/person_keypoints_train2017.json"


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache_demo") / "coco"
    make_pose_demo(root, num_train_images=10, num_val_images=8, seed=5, progress=False)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DENSEPRED_CACHE", str(folder))
    return folder / "index"


@pytest.fixture(scope="module")
def codec():
    return build_task(load_config(TASK)).codec


def _dataset(root, codec, split="train2017", **kw):
    return CocoPoseDataset(root, split, codec, train=split.startswith("train"), **kw)


def _assert_same_records(a, b):
    assert len(a) == len(b) > 0
    for ra, rb in zip(a, b):
        assert type(ra.image_id) is type(rb.image_id) and ra.image_id == rb.image_id
        assert type(ra.image_file) is str and ra.image_file == rb.image_file
        for name in ("center", "scale", "joints", "joints_vis"):
            x, y = getattr(ra, name), getattr(rb, name)
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
        assert type(ra.score) is type(rb.score) and ra.score == rb.score
        assert type(ra.area) is type(rb.area) and ra.area == rb.area


def test_default_folder_and_switch(monkeypatch, tmp_path):
    monkeypatch.delenv("DENSEPRED_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert index_cache_dir() == tmp_path / "xdg" / "densepred" / "index"
    monkeypatch.setenv("DENSEPRED_CACHE", str(tmp_path / "c"))
    assert index_cache_dir() == tmp_path / "c" / "index"
    monkeypatch.setenv("DENSEPRED_CACHE", "off")
    assert index_cache_dir() is None


@pytest.mark.parametrize("boxes", ["gt", "detections"])
def test_a_cache_hit_gives_exactly_the_parsed_records(demo_root, codec, cache, boxes):
    kw = {"bbox_file": DET_FILE, "det_score_thr": 0.3} if boxes == "detections" else {}
    split = "val2017" if boxes == "detections" else "train2017"
    first = _dataset(demo_root, codec, split, **kw)
    assert first.index_source == "parsed" and first.index_file.is_file()
    assert first.index_file.parent == cache
    assert first._coco is None, "the pycocotools index is built only when asked for"
    second = _dataset(demo_root, codec, split, **kw)
    assert second.index_source == "cache" and second.index_file == first.index_file
    assert second._coco is None
    _assert_same_records(first.records, second.records)
    assert second.image_dir == first.image_dir
    assert second.coco.imgs.keys() == first.coco.imgs.keys()  # still there when asked for
    # and a sample loads the same way from both
    s1, s2 = first[0], second[0]
    assert all(np.array_equal(s1[k], s2[k]) for k in ("image", "target", "target_weight", "center", "scale"))


def test_what_changes_the_records_changes_the_key(demo_root, codec, cache, tmp_path):
    base = _dataset(demo_root, codec, "val2017", bbox_file=DET_FILE, det_score_thr=0.3)
    other_thr = _dataset(demo_root, codec, "val2017", bbox_file=DET_FILE, det_score_thr=0.8)
    gt = _dataset(demo_root, codec, "val2017")
    wide = _dataset(demo_root, build_task(load_config(TASK, ["data.input_size=[128,128]",
                                                             "data.heatmap_size=[64,64]"])).codec, "val2017")
    files = {base.index_file, other_thr.index_file, gt.index_file, wide.index_file}
    assert len(files) == 4 and all(d.index_source == "parsed" for d in (base, other_thr, gt, wide))
    assert len(other_thr) < len(base)
    assert not np.array_equal(wide.records[0].scale, gt.records[0].scale)
    # an edited annotation file is a new key: its edit is seen, not the stale index
    root = tmp_path / "edited"
    shutil.copytree(demo_root, root)
    ann = root / TRAIN_ANN
    data = json.loads(ann.read_text())
    original = _dataset(root, codec)
    person = next(a for a in data["annotations"] if not a.get("iscrowd") and max(a["keypoints"]) > 0)
    person["bbox"][0] += 3.0
    ann.write_text(json.dumps(data))
    edited = _dataset(root, codec)
    assert edited.index_source == "parsed" and edited.index_file != original.index_file
    moved = [i for i, (a, b) in enumerate(zip(original.records, edited.records)) if a.center[0] != b.center[0]]
    assert len(moved) == 1 and edited.records[moved[0]].image_id == person["image_id"]


def test_the_index_serves_another_copy_of_the_same_data(demo_root, codec, cache, tmp_path):
    """File names are stored relative to the image folder: a copy elsewhere (another worker's
    mount, another work dir) hits the same index and gets its own paths."""
    first = _dataset(demo_root, codec)
    copy = tmp_path / "copy"
    shutil.copytree(demo_root, copy)
    second = _dataset(copy, codec)
    assert second.index_source == "cache"
    assert all(r.image_file.startswith(str(copy / "images" / "train2017")) for r in second.records)
    assert [r.image_file.replace(str(copy), str(demo_root)) for r in second.records] == \
        [r.image_file for r in first.records]


def test_bad_annotations_are_still_reported_on_the_first_parse(demo_root, codec, cache, tmp_path):
    _dataset(demo_root, codec)  # an index of the good file exists
    root = tmp_path / "bad"
    shutil.copytree(demo_root, root)
    ann = root / TRAIN_ANN
    data = json.loads(ann.read_text())
    next(a for a in data["annotations"] if a.get("keypoints"))["keypoints"][4] = "12"
    ann.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"person_keypoints_train2017\.json: annotation \d+ has the keypoint value '12'"):
        _dataset(root, codec)
    ann.write_text("{broken")
    with pytest.raises(DataError, match=r"person_keypoints_train2017\.json: invalid JSON at line 1"):
        _dataset(root, codec)
    assert len(list(cache.glob("*.npz"))) == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other_key", "wrong_shape"])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(demo_root, codec, cache, caplog, damage):
    good = _dataset(demo_root, codec)
    path = good.index_file
    blob = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "other_key":
            key = json.loads(str(arrays["key"][()]))
            key["annotations"] = "0" * 64
            arrays["key"] = np.array(json.dumps(key, sort_keys=True))
        else:
            arrays["joints"] = arrays["joints"][:, :5]
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING, logger="densepred.tasks.pose.dataset"):
        rebuilt = _dataset(demo_root, codec)
    assert rebuilt.index_source == "parsed"
    assert any("ignoring the annotation index cache" in r.getMessage() for r in caplog.records)
    _assert_same_records(good.records, rebuilt.records)
    again = _dataset(demo_root, codec)
    assert again.index_source == "cache"
    _assert_same_records(good.records, again.records)


def test_an_unwritable_cache_costs_speed_not_the_run(demo_root, codec, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("DENSEPRED_CACHE", str(blocker))
    with caplog.at_level(logging.WARNING, logger="densepred.tasks.pose.dataset"):
        ds = _dataset(demo_root, codec)
    assert len(ds) > 0 and ds.index_source == "parsed"
    assert any("cannot write the annotation index cache" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("DENSEPRED_CACHE", "off")
    ds = _dataset(demo_root, codec)
    assert ds.index_source == "parsed" and ds.index_file is None


def _tiled(root, dst, copies):
    """A larger annotation file over the same images: the train set repeated with new ids."""
    shutil.copytree(root, dst)
    data = json.loads((root / TRAIN_ANN).read_text())
    images, anns = [], []
    for c in range(copies):
        offset = (c + 1) * 10**7
        images += [{**im, "id": im["id"] + offset} for im in data["images"]]
        anns += [{**a, "id": a["id"] + offset, "image_id": a["image_id"] + offset} for a in data["annotations"]]
    data["images"], data["annotations"] = images, anns
    (dst / TRAIN_ANN).write_text(json.dumps(data))
    return dst


def test_parse_versus_cache_hit_time(demo_root, codec, cache, tmp_path):
    """Timings are printed (run with -s), not asserted: the machines are shared and noisy."""
    root = _tiled(demo_root, tmp_path / "big", copies=200)
    ann = root / TRAIN_ANN
    mb = ann.stat().st_size / 1e6
    t0 = time.perf_counter()
    file_sha256(ann)
    hash_s = time.perf_counter() - t0
    parsed = _dataset(root, codec)
    hits = [_dataset(root, codec) for _ in range(3)]
    assert parsed.index_source == "parsed" and all(h.index_source == "cache" for h in hits)
    _assert_same_records(parsed.records, hits[-1].records)
    hit_s = min(h.index_seconds for h in hits)
    print(f"\nannotation index: {len(parsed.coco.imgs)} images, {len(parsed)} persons, {mb:.1f} MB JSON; "
          f"parse {parsed.index_seconds:.3f} s, cache hit {hit_s:.3f} s (x{parsed.index_seconds / hit_s:.1f} "
          f"faster); index file {parsed.index_file.stat().st_size / 1e6:.2f} MB; "
          f"sha256 {mb / hash_s:.0f} MB/s")
