"""The multi-target layouts of the dense multi-task benchmarks (NYUD-v2, PASCAL-Context MT) as data,
their readers on hand-made files, the joint augmentation of an image with several targets, the
data check, and config mistakes found before anything runs."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from conftest import REPO
from dense_fixtures import BOX_N, make_nyud_like, make_pascal_like
from densepred import load_config
from densepred.cli import main
from densepred.datacheck import DataReport
from densepred.errors import ConfigError, DataError
from densepred.tasks.base import build_task
from densepred.tasks.dense.augment import DenseAugment, augment_sample
from densepred.tasks.dense.decode import label_map_boundaries
from densepred.tasks.dense.layout import layout_names, load_layout, parse_layout
from densepred.tasks.dense.samples import find_dense_samples
from densepred.tasks.dense.targets import DenseTarget
from densepred.tasks.segmentation.class_info import load_class_info

DEPTH = str(REPO / "tasks" / "depth_scenes_demo.yaml")
SEG = str(REPO / "tasks" / "seg_scenes_demo.yaml")


@pytest.fixture(scope="module")
def nyud(tmp_path_factory):
    return make_nyud_like(tmp_path_factory.mktemp("dense") / "nyud")


@pytest.fixture(scope="module")
def pascal(tmp_path_factory):
    return make_pascal_like(tmp_path_factory.mktemp("dense") / "pascal")


def _copy(root, tmp_path):
    return shutil.copytree(root, tmp_path / root.name)


def _dense(root, cfg=DEPTH, *sets):
    return build_task(load_config(cfg, [f"data_root={root}", "data.loader_workers=0", *sets]))


# ----------------------------------------------------------------------------- layouts as data

def test_shipped_layouts_are_the_published_ones():
    assert set(layout_names()) >= {"nyud_mt", "pascal_mt"}
    nyud = load_layout("nyud_mt")
    assert (nyud.image_folder, nyud.image_suffix) == ("images", ".jpg")
    assert dict(nyud.splits) == {"train": "gt_sets/train.txt", "val": "gt_sets/val.txt"}
    got = {n: (t.kind, t.folders, t.suffixes) for n, t in nyud.targets.items()}
    assert got == {"segmentation": ("label", ("segmentation",), (".png",)), "depth": ("depth", ("depth",), (".npy",)),
                   "normals": ("normals", ("normals",), (".npy", ".png")),
                   "edge": ("boundary", ("edge",), (".npy", ".png"))}
    assert nyud.targets["segmentation"].offset == 1 and nyud.boundary_tolerance == 0.011
    pascal = load_layout("pascal_mt")
    assert pascal.targets["semseg"].folders == ("semseg/VOC12", "semseg/pascal-context")
    assert pascal.targets["edge"].folders == ("pascal-context/trainval",) and pascal.boundary_tolerance == 0.0075
    assert len(pascal.targets["normals"].valid_where["labels"]) == 170
    assert set(pascal.targets["human_parts"].parts_mat["groups"].values()) == {1, 2, 3, 4, 5, 6}
    counts = {n: load_class_info(str(lay.class_info_path(n))).num_classes
              for lay in (nyud, pascal) for n, t in lay.targets.items() if t.class_info}
    assert counts == {"segmentation": 40, "semseg": 21, "human_parts": 7, "saliency": 2}


@pytest.mark.parametrize("raw, words", [
    ({"images": {"folder": "i", "suffix": ".jpg"}, "splits": {"train": "a"}, "targets": {}}, "splits.val must be"),
    ({"images": {"folder": "i", "suffix": ".jpg"}, "splits": {"train": "a", "val": "b"},
      "targets": {"d": {"kind": "depth", "folder": "d", "suffixes": [".png"]}}},
     "targets.d.suffixes: a depth target is read from .npy files"),
    ({"images": {"folder": "i", "suffix": ".jpg"}, "splits": {"train": "a", "val": "b"},
      "targets": {"d": {"kind": "heat", "folder": "d", "suffixes": [".npy"]}}}, "targets.d.kind must be one of"),
    ({"images": {"folder": "i", "suffix": ".jpg"}, "splits": {"train": "a", "val": "b"}, "targets": {},
      "colour": 1}, "unknown key(s) ['colour']"),
])
def test_layout_mistakes_name_file_and_key(raw, words):
    with pytest.raises(ConfigError) as e:
        parse_layout(raw, "mine", "mine.yaml")
    assert str(e.value).startswith("mine.yaml: ") and words in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- readers

def _targets(layout, classes):
    lay = load_layout(layout)
    return [DenseTarget(n, t, num_classes=classes.get(n)) for n, t in lay.targets.items()], lay


@pytest.mark.parametrize("npy", [False, True])
def test_nyud_reader_decodes_every_target(tmp_path, npy):
    root = make_nyud_like(tmp_path / "n", n_train=2, n_val=1, npy=npy, seed=3)
    targets, lay = _targets("nyud_mt", {"segmentation": 3})
    sample = find_dense_samples(root, lay, "train", [t.spec for t in targets])[0]
    arrays = {t.key: t.read(sample, (48, 64)) for t in targets}
    stored = cv2.imread(str(root / "segmentation" / "0000.png"), cv2.IMREAD_UNCHANGED)
    seg = arrays["segmentation"]
    assert np.array_equal(seg[stored == 0], np.full((stored == 0).sum(), 255))   # 0 = void
    assert np.array_equal(seg[stored > 0], stored[stored > 0] - 1)               # 1..N -> 0..N-1
    depth = arrays["depth"]
    assert depth.dtype == np.float32 and (depth[:3, :3] == 0).all() and depth.max() == pytest.approx(4.0)
    normals = arrays["normals"]
    assert np.allclose(np.linalg.norm(normals[seg != 255], axis=1), 1.0, atol=1e-5)
    assert np.allclose(normals[seg == 2].mean(0), BOX_N, atol=0.01)
    assert (normals[seg == 255] == 0).all()                                     # no normal where void
    assert set(np.unique(arrays["edge"])) <= {0, 1} and arrays["edge"].sum() > 0


def test_pascal_reader_decodes_the_astmt_files(pascal):
    targets, lay = _targets("pascal_mt", {"semseg": 21, "human_parts": 7, "saliency": 2})
    samples = find_dense_samples(pascal, lay, "train", [t.spec for t in targets])
    assert samples[0].files["semseg"].parent.name == "VOC12"                       # first folder that has it
    assert samples[1].files["semseg"].parent.name == "pascal-context"
    a = {t.key: t.read(samples[0], (30, 40)) for t in targets}
    b = {t.key: t.read(samples[1], (30, 40)) for t in targets}
    assert a["human_parts"][2:6, 10:14].tolist() == [[1] * 4] * 4                  # head
    assert (a["human_parts"][6:16, 9:15] == 2).all() and a["human_parts"][20, 30] == 0   # torso, background
    assert (b["human_parts"] == 255).all()                                        # no person parts: ignored
    assert (a["saliency"][5:15, 5:15] == 1).all() and (a["saliency"][20:25, 5:15] == 0).all()
    assert (a["semseg"][0] == 255).all() and a["semseg"][15, 15] == 15
    wall = a["normals"][:, :20]
    assert np.allclose(wall[..., 2], 1.0, atol=1e-3) and (a["normals"][:, 20:] == 0).all()   # valid_where
    edge = a["edge"]
    assert set(np.nonzero(edge)[1]) <= {19, 20} and (edge.sum(axis=1) >= 1).all()    # the line at x = 20,
    assert edge[1:-1].sum() == 28                                                   # one pixel wide


def test_label_map_boundaries_are_one_pixel_wide():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:15] = 7
    edge = label_map_boundaries(labels)
    assert edge.sum() > 0 and edge[8:12, 8:12].sum() == 0 and edge[0].sum() == 0
    assert (edge.sum(axis=1)[6:14] <= 2).all()                                     # thinned: both sides once


def test_pascal_parts_of_another_annotator_are_refused(pascal, tmp_path):
    from dense_fixtures import parts_mat

    root = _copy(pascal, tmp_path)
    mask = np.zeros((30, 40), bool)
    mask[1:3, 1:3] = True
    parts_mat(root / "human_parts" / "a.mat", [(15, mask, [("tail", mask)])])
    targets, lay = _targets("pascal_mt", {"human_parts": 7})
    parts = next(t for t in targets if t.key == "human_parts")
    sample = find_dense_samples(root, lay, "train", [parts.spec])[0]
    with pytest.raises(DataError, match=r"a\.mat: person part 'tail' is not in the layout's parts_mat\.groups"):
        parts.read(sample, (30, 40))


# ----------------------------------------------------------------------------- joint augmentation

class FixedRng:
    """A generator stand-in: a given zoom, the top-left crop, and a flip."""

    def __init__(self, zoom: float, flip: bool):
        self.zoom, self.flip = zoom, flip

    def uniform(self, lo, hi):
        return self.zoom

    def integers(self, lo, hi):
        return 0

    def random(self):
        return 0.0 if self.flip else 0.9


def _sample(nyud):
    targets, lay = _targets("nyud_mt", {"segmentation": 3})
    sample = find_dense_samples(nyud, lay, "train", [t.spec for t in targets])[0]
    image = cv2.imread(str(sample.image))[:, :, ::-1]
    return image, {t.key: t.read(sample, image.shape[:2]) for t in targets}, {t.key: t for t in targets}


def test_flip_mirrors_every_target_and_negates_normals_x(nyud):
    image, arrays, targets = _sample(nyud)
    aug = DenseAugment(scale_range=[1.0, 1.0], base_size=None, crop_size=[64, 48], flip=True)
    out_img, out = augment_sample(image, arrays, targets, aug, FixedRng(1.0, flip=True))
    assert np.array_equal(out_img, image[:, ::-1])
    for key in ("segmentation", "depth", "edge"):
        assert np.array_equal(out[key], arrays[key][:, ::-1]), key
    assert np.allclose(out["normals"][..., 0], -arrays["normals"][:, ::-1, 0])
    assert np.allclose(out["normals"][..., 1:], arrays["normals"][:, ::-1, 1:])
    box = out["segmentation"] == 2
    assert np.allclose(out["normals"][box].mean(0), (-BOX_N[0], BOX_N[1], BOX_N[2]), atol=0.01)


def test_scaling_keeps_classes_and_depth_values_and_pads_with_ignore(nyud):
    image, arrays, targets = _sample(nyud)
    aug = DenseAugment(scale_range=[0.5, 0.5], base_size=None, crop_size=[64, 48], flip=False)
    _, out = augment_sample(image, arrays, targets, aug, FixedRng(0.5, flip=False))
    inside, outside = (slice(0, 24), slice(0, 32)), (slice(24, 48), slice(32, 64))
    assert set(np.unique(out["segmentation"][inside])) <= set(np.unique(arrays["segmentation"]))   # nearest
    assert set(np.unique(out["depth"][inside])) <= set(np.unique(arrays["depth"]))                 # not rescaled
    assert (out["segmentation"][outside] == 255).all() and (out["edge"][outside] == 255).all()      # padding ignored
    assert (out["depth"][outside] == 0).all() and (out["normals"][outside] == 0).all()
    norms = np.linalg.norm(out["normals"][inside], axis=-1)
    assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))                                     # renormalised


def test_depth_follows_the_zoom_only_when_asked(nyud):
    image, arrays, targets = _sample(nyud)
    targets["depth"] = DenseTarget("depth", targets["depth"].spec, rescale_depth=True)
    aug = DenseAugment(scale_range=[2.0, 2.0], base_size=None, crop_size=[64, 48], flip=False)
    _, out = augment_sample(image, arrays, targets, aug, FixedRng(2.0, flip=False))
    assert set(np.unique(out["depth"])) <= set(np.unique(arrays["depth"] / 2.0))


# ----------------------------------------------------------------------------- listing and the data check

def test_a_missing_target_file_is_found_before_training(nyud, tmp_path):
    root = _copy(nyud, tmp_path)
    (root / "depth" / "0001.npy").unlink()
    with pytest.raises(DataError, match=r"train\.txt: stem '0001' has no depth file \(.*depth/0001\.npy\); 1 of 4 "
                                        r"train stems lack one"):
        _dense(root).preflight()


def _check(task, full=True):
    report = DataReport()
    task.check_data(report, full=full)
    return report


BOUNDARY = str(REPO / "tasks" / "boundary_scenes_demo.yaml")


@pytest.mark.parametrize("cfg, damage, words", [
    (DEPTH, lambda r: np.save(r / "depth" / "0002.npy", np.full((48, 64), -1.0, np.float32)),
     r"0002\.npy: 3072 pixel\(s\) hold negative or non-finite depth"),
    (BOUNDARY, lambda r: cv2.imwrite(str(r / "edge" / "0002.png"), np.full((48, 64), 128, np.uint8)),
     r"0002\.png: 3072 pixel\(s\) hold values other than 0 and 255"),
    (DEPTH, lambda r: (r / "depth" / "0002.npy").write_bytes(b"not an array"), r"0002\.npy: not a readable \.npy array"),
    (DEPTH, lambda r: np.save(r / "depth" / "0002.npy", np.ones((10, 10), np.float32)),
     r"0002\.npy is 10x10 but its image is 64x48"),
])
def test_data_check_names_files_with_invalid_values(nyud, tmp_path, cfg, damage, words):
    root = _copy(nyud, tmp_path)
    damage(root)
    report = _check(_dense(root, cfg))
    assert any(__import__("re").search(words, e) for e in report.errors), report.errors


def test_data_check_of_labels_and_normals(nyud, tmp_path):
    root = _copy(nyud, tmp_path)
    cv2.imwrite(str(root / "segmentation" / "0001.png"), np.full((48, 64), 9, np.uint8))
    seg = _check(_dense(root, SEG, f"data.class_info={root}/classes.yaml"))
    assert any("0001.png: stored label value(s) 9 outside the 3 classes" in e for e in seg.errors)
    npy = make_nyud_like(tmp_path / "npy", n_train=2, n_val=1, npy=True)
    normals = np.load(npy / "normals" / "0000.npy")
    np.save(npy / "normals" / "0000.npy", normals * 3)
    report = _check(_dense(npy, str(REPO / "tasks" / "normals_scenes_demo.yaml")))
    assert any("0000.npy" in e and "normals of length neither 1 nor 0" in e for e in report.errors)


def test_quick_and_full_check_on_good_data(nyud):
    quick, full = _check(_dense(nyud), full=False), _check(_dense(nyud))
    assert not quick.errors and not full.errors
    assert "train: 4 samples (4 read)" in quick.info and "val: 2 samples" in full.info
    assert any(line.startswith("train depth: ") and " m" in line for line in full.info)


# ----------------------------------------------------------------------------- config mistakes

@pytest.mark.parametrize("sets, words", [
    (["data.target=heights"], r"data\.target 'heights' is not a target of the nyud_mt layout; its targets: "
                              r"segmentation, depth, normals, edge"),
    (["data.target=segmentation"], r"data\.target 'segmentation' is a label target, but this task reads depth "
                                   r"targets \(depth\)"),
    (["data.format=nyud"], r"data\.format must be one of nyud_mt, pascal_mt"),
    (["model.heads.depth.out_channels=3"], r"model\.heads\.depth\.out_channels is 3 but DepthTask needs 1"),
    (["task.rescale_with_zoom=2"], r"task\.rescale_with_zoom must be true or false, got 2"),
    (["task.loss.mode=l2"], r"task\.loss\.mode: must be one of l1, log_l1, got 'l2' \(DepthLoss\)"),
    (["task.head=deep"], r"model\.heads has no 'deep' head, which DepthTask trains \(task\.head\)"),
])
def test_config_mistakes_are_one_line_errors(nyud, sets, words):
    with pytest.raises(ConfigError) as e:
        _dense(nyud, DEPTH, *sets).build_model()
    assert __import__("re").search(words, str(e.value)) and "\n" not in str(e.value)


def test_segmentation_target_only_for_multi_target_layouts(nyud):
    with pytest.raises(ConfigError, match=r"data\.target picks a target of a multi-target layout; "
                                          r"data\.format=cityscapes has one label per image"):
        build_task(load_config(REPO / "tasks" / "seg_demo.yaml", ["data.target=segmentation"]))
    task = _dense(nyud, SEG, f"data.class_info={nyud}/classes.yaml")
    assert task.label_key == "segmentation" and task.class_info.names == ("wall", "floor", "box")
    default = _dense(nyud, SEG, "data.class_info=null")        # the layout's NYUD-v2 40-class list
    assert default.class_info.num_classes == 40


def test_cli_data_check_exit_status(nyud, tmp_path, capsys):
    assert main(["data", "check", DEPTH, "--set", f"data_root={nyud}"]) == 0
    root = _copy(nyud, tmp_path)
    np.save(root / "depth" / "0000.npy", np.full((48, 64), np.nan, np.float32))
    assert main(["data", "check", DEPTH, "--set", f"data_root={root}"]) == 2
    captured = capsys.readouterr()
    assert "0000.npy: 3072 pixel(s) hold negative or non-finite depth" in captured.out + captured.err
