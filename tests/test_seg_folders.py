"""The generic `folders` segmentation layout on the custom demo set: reading (listing, split files,
colour labels), the head following the class list, the data check, predict/eval round trip,
convert-labels, the demo generator and the benchmark presets (PASCAL-Context, LIP, ADE20K)."""
from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from densepred import load_config
from densepred.cli import main
from densepred.datacheck import DataReport
from densepred.errors import ConfigError, DataError
from densepred.tasks.base import build_task
from densepred.tasks.segmentation.custom_demo import NAMES, PALETTE, make_custom_seg_demo

TASK = REPO / "tasks" / "custom_seg_demo.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("custom_seg") / "custom_seg"
    make_custom_seg_demo(root, num_train=6, num_val=3, image_size=64, seed=2, progress=False)
    return root


@pytest.fixture
def copy(demo, tmp_path):
    return shutil.copytree(demo, tmp_path / "set")


def _task(root, *overrides):
    return build_task(load_config(TASK, [f"data_root={root}", "data.loader_workers=0", *overrides]))


def _check(task, full=True):
    report = DataReport()
    task.check_data(report, full=full)
    return report


# ----------------------------------------------------------------------------- the demo and its reading

def test_demo_layout_and_class_list(demo):
    assert len(list((demo / "images" / "train").glob("*.jpg"))) == 6
    assert len(list((demo / "labels" / "val").glob("*.png"))) == 3
    written = yaml.safe_load((demo / "classes.yaml").read_text())
    inline = load_config(TASK)["data"]["class_info"]
    assert written["names"] == inline["names"] == list(NAMES)
    assert [tuple(c) for c in written["palette"]] == [tuple(c) for c in inline["palette"]] == list(PALETTE)
    label = cv2.imread(str(demo / "labels" / "train" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert label.dtype == np.uint8 and label.ndim == 2 and set(np.unique(label)) <= {0, 1, 2, 3, 4, 255}
    again = demo.parent / "again"
    make_custom_seg_demo(again, num_train=6, num_val=3, image_size=64, seed=2, progress=False)
    assert (again / "labels" / "train" / "000004.png").read_bytes() == \
        (demo / "labels" / "train" / "000004.png").read_bytes()


def test_dataset_reads_class_ids_and_the_file_form_of_the_class_list(demo):
    task = _task(demo, f"data.class_info={demo / 'classes.yaml'}")
    assert task.class_info.names == NAMES and task.metric_names[2:] == tuple(f"IoU.{n}" for n in NAMES)
    ds = task.build_dataset("val")
    sample = ds[0]
    raw = cv2.imread(str(demo / "labels" / "val" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(sample["label"].numpy(), raw) and sample["image"].shape == (3, 64, 64)
    train = task.build_dataset("train")[0]
    assert train["label"].shape == (128, 128) and train["fault"] == ""   # the 128x128 crop of the recipe


def test_split_files_and_nested_stems(copy):
    (copy / "images" / "train" / "sub").mkdir()
    shutil.move(copy / "images" / "train" / "000001.jpg", copy / "images" / "train" / "sub" / "000001.jpg")
    (copy / "labels" / "train" / "sub").mkdir()
    shutil.move(copy / "labels" / "train" / "000001.png", copy / "labels" / "train" / "sub" / "000001.png")
    task = _task(copy)
    assert [s.stem for s in task.samples("train")][:2] == ["000000", "000002"]
    assert "sub/000001" in [s.stem for s in task.samples("train")]
    (copy / "train.txt").write_text("# two of them\nsub/000001\n\n000003.jpg\n")
    picked = _task(copy, "data.train_split=train.txt").samples("train")
    assert [s.stem for s in picked] == ["sub/000001", "000003"]


@pytest.mark.parametrize("setup,overrides,message", [
    (lambda r: (r / "labels" / "train" / "000002.png").unlink(), [],
     r"000002\.jpg: no label file .*000002\.png \(1 of 6 train images lack one"),
    (None, ["data.image_suffix=.png"],
     r"no images in .*images/train ending in '\.png' .*it holds 6 '\.jpg' file\(s\): set data\.image_suffix=\.jpg"),
    (None, ["data.train_images=imgs"], r"data\.train_images: image folder .*imgs not found"),
    (lambda r: (r / "t.txt").write_text("\n# nothing\n"), ["data.train_split=t.txt"],
     r"t\.txt: the split file lists no file stems"),
    (None, ["data.val_split=none.txt"], r"data\.val_split: split file .*none\.txt not found"),
    (lambda r: (r / "t.txt").write_text("000000\nghost\n"), ["data.train_split=t.txt"],
     r"t\.txt line 2: stem 'ghost' has no image and no label"),
])
def test_listing_errors_name_the_file(copy, setup, overrides, message):
    if setup:
        setup(copy)
    with pytest.raises(DataError, match=message):
        _task(copy, *overrides).preflight()


@pytest.mark.parametrize("overrides,message", [
    (["data.class_info=null"], r"data\.format=folders needs data\.class_info: a shipped class list \(ade20k, "
                               r"cityscapes, lip, pascal_context\)"),
    (["data.val_labels=null"], r"data\.format=folders needs data\.val_labels"),
    (["data.format=cityscapes", "data.class_info=null"], r"data\.train_images belongs to the folders layout; set "
                                                         r"data\.format=folders"),
    (["model.heads.seg.num_classes=19"], r"--set: model\.heads\.seg\.num_classes is 19 but the class list "
                                         r"data\.class_info of .* has 5 classes; set it to null"),
    (["task.loss.class_weights=official"], r"task\.loss\.class_weights=official are the Cityscapes class weights"),
    (["task.loss.class_weights=[1, 2]"], r"task\.loss\.class_weights has 2 weights for the 5 classes"),
    (["data.class_info.palette=[[1, 2, 3]]"], r"^--set: data\.class_info: palette has 1 colours for 5 classes"),
    (["data.class_info={names: [a, b], ignore_index: 0}"], r"^--set: data\.class_info: ignore_index 0 is a class id"),
    (["data.class_info=lip", "data.format=cityscapes", "data.train_images=null", "data.train_labels=null",
      "data.val_images=null", "data.val_labels=null"], r"data\.format=cityscapes reads gtFine labelIds, which "
                                                       r"needs a class list with a label_ids table"),
])
def test_config_mistakes(demo, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        _task(demo, *overrides)
    assert "\n" not in str(err.value)


def test_head_follows_the_class_list(demo):
    task = _task(demo)
    model = task.build_model()
    assert model.heads["seg"].last_layer[-1].out_channels == 5
    assert _task(demo, "model.heads.seg.num_classes=5").build_model().heads["seg"].last_layer[-1].out_channels == 5
    lip = _task(demo, "data.class_info=lip")
    assert lip.build_model().heads["seg"].last_layer[-1].out_channels == 20


# ----------------------------------------------------------------------------- labels that are wrong

def test_colour_label_is_refused_with_the_conversion_command(copy):
    label = copy / "labels" / "val" / "000001.png"
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    colour = np.asarray(PALETTE, np.uint8)[np.minimum(ids, 4)]
    cv2.imwrite(str(label), colour[:, :, ::-1])
    task = _task(copy)
    with pytest.raises(DataError, match=r"label file .*000001\.png has 3 channels; expected a single-channel index "
                                        r"PNG \(colour-coded labels: convert them with `platform data "
                                        r"convert-labels SRC OUT --palette CLASS_INFO`\)"):
        task.build_dataset("val").load(1)
    assert any("has 3 channels" in e for e in _check(task).errors)


def test_palette_png_labels_read_as_their_indices(copy):
    from PIL import Image

    label = copy / "labels" / "val" / "000002.png"
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    im = Image.fromarray(ids, mode="P")
    im.putpalette([v for c in PALETTE for v in c] + [0] * (768 - 15))
    im.save(label)
    assert np.array_equal(_task(copy).build_dataset("val")[2]["label"].numpy(), ids)


def test_data_check_full_report(copy):
    report = _check(_task(copy))
    assert not report.errors, report.errors
    assert report.info[0] == "train: 6 images with labels"
    line = next(x for x in report.info if x.startswith("train pixels per class: "))
    assert re.fullmatch(r"train pixels per class: sky [\d.]+%, ground [\d.]+%, box [\d.]+%, ball [\d.]+%, "
                        r"cone [\d.]+%, ignored [\d.]+%", line), line
    (copy / "labels" / "val" / "extra.png").write_bytes((copy / "labels" / "val" / "000000.png").read_bytes())
    report = _check(_task(copy))
    assert any("val: 1 label file(s) in data.val_labels have no image" in w for w in report.warnings)


def test_data_check_errors(copy):
    label = copy / "labels" / "train" / "000003.png"
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    ids[:2, :2] = 7
    cv2.imwrite(str(label), ids)
    report = _check(_task(copy), full=False)
    assert len(report.errors) == 1
    assert re.search(r"000003\.png: label value\(s\) 7 outside the class list of data\.class_info of .*"
                     r"\(5 classes: values 0\.\.4; 255 is ignored\)", report.errors[0])
    for path in (copy / "labels").rglob("*.png"):
        cv2.imwrite(str(path), np.zeros_like(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))
    report = _check(_task(copy, "data.class_info.reduce_zero_label=true"))
    assert any(re.search(r"6 of 6 train label files read hold only ignored pixels.*reduce_zero_label: true "
                         r"ignores 0 and 255", e) for e in report.errors), report.errors


def test_missing_images_behind_a_split_file_are_counted(copy):
    (copy / "train.txt").write_text("\n".join(f"{i:06d}" for i in range(6)))
    (copy / "images" / "train" / "000005.jpg").unlink()
    report = DataReport(max_fault_fraction=0.5)
    _task(copy, "data.train_split=train.txt").check_data(report, full=True)
    assert not report.errors and re.search(r"1 of 6 train image files missing or unreadable", report.warnings[0])
    ds = _task(copy, "data.train_split=train.txt").build_dataset("train")
    assert "000005.jpg not found" in ds[5]["fault"]   # in training: a counted fault
    report = DataReport(max_fault_fraction=0.01)
    _task(copy, "data.train_split=train.txt").check_data(report, full=False)
    assert re.search(r"more than train\.max_fault_fraction=0\.01", report.errors[0])


# ----------------------------------------------------------------------------- predict, eval, browse

def test_predict_writes_index_pngs_and_eval_reads_them_back(demo, tmp_path, capsys):
    from densepred import load_checkpoint, save_checkpoint

    args = ["--set", f"data_root={demo}", "data.loader_workers=0"]
    task = _task(demo)
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pth", task.build_model())
    assert main(["predict", str(TASK), *args, "--checkpoint", str(ckpt), "--input", str(demo / "images" / "val"),
                 "--out", str(tmp_path / "p"), "--eager"]) == 0
    assert "wrote 3 label PNG(s)" in capsys.readouterr().out
    preds = sorted((tmp_path / "p" / "labels").glob("*.png"))
    assert [p.name for p in preds] == ["000000.png", "000001.png", "000002.png"]
    assert cv2.imread(str(preds[0]), cv2.IMREAD_UNCHANGED).max() < 5
    assert len(list((tmp_path / "p" / "vis").glob("*.jpg"))) == 3
    assert main(["eval", str(TASK), *args, "--predictions", str(tmp_path / "p" / "labels"),
                 "--out", str(tmp_path / "e")]) == 0
    from_files = json.loads((tmp_path / "e" / "metrics.json").read_text())
    model = task.build_model()
    load_checkpoint(model, ckpt)
    direct = task.evaluate(model, None, torch.device("cpu"))
    assert from_files["mIoU"] == pytest.approx(direct["mIoU"], abs=1e-9)
    out = capsys.readouterr().out
    assert "sky" in out and "cone" in out and "(5 classes)" in out
    assert main(["eval", str(TASK), *args, "--predictions", str(demo / "labels" / "val")]) == 0
    assert re.search(r"mIoU\s+1\.0000", capsys.readouterr().out)   # ground truth scores 1


def test_eval_predictions_errors(demo, tmp_path, capsys):
    (tmp_path / "preds").mkdir()
    shutil.copy(demo / "labels" / "val" / "000000.png", tmp_path / "preds")
    assert main(["eval", str(TASK), "--set", f"data_root={demo}", "--predictions", str(tmp_path / "preds")]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: .*000001\.png: no prediction found for it in .*preds \(expected 000001\.png\)", err)


def test_browse_writes_overlays_and_class_ids(demo, tmp_path):
    assert main(["data", "browse", str(TASK), "--set", f"data_root={demo}", "--split", "val",
                 "--out", str(tmp_path / "b")]) == 0
    z = np.load(tmp_path / "b" / "000000.npz")
    raw = cv2.imread(str(demo / "labels" / "val" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(z["label"], raw) and (tmp_path / "b" / "000000.jpg").is_file()


# ----------------------------------------------------------------------------- convert-labels, demo command

def test_convert_labels_round_trip(demo, tmp_path, capsys):
    src = tmp_path / "colour"
    src.mkdir()
    for path in sorted((demo / "labels" / "val").glob("*.png")):
        ids = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        colour = np.zeros(ids.shape + (3,), np.uint8)
        colour[ids < 5] = np.asarray(PALETTE, np.uint8)[ids[ids < 5]]
        colour[ids == 255] = (1, 2, 3)   # a colour that is not in the palette
        cv2.imwrite(str(src / path.name), colour[:, :, ::-1])
    assert main(["data", "convert-labels", str(src), str(tmp_path / "index"), "--palette",
                 str(demo / "classes.yaml")]) == 0
    out = capsys.readouterr().out
    ignored = sum(int((cv2.imread(str(p), cv2.IMREAD_UNCHANGED) == 255).sum())
                  for p in (demo / "labels" / "val").glob("*.png"))
    assert ignored and f"{ignored} pixel(s) in" in out and "[1, 2, 3]" in out, out
    for path in sorted((demo / "labels" / "val").glob("*.png")):
        assert np.array_equal(cv2.imread(str(tmp_path / "index" / path.name), cv2.IMREAD_UNCHANGED),
                              cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_convert_labels_writes_the_stored_convention(tmp_path):
    """With reduce_zero_label the output stores class + 1, and unknown colours as 0 (ignored); a
    palette with one colour for two classes cannot be converted."""
    from densepred.tasks.segmentation.class_info import load_class_info, parse_class_info
    from densepred.tasks.segmentation.convert_labels import convert_folder

    info = parse_class_info({"names": ["a", "b", "c"], "palette": [[9, 9, 9], [0, 200, 0], [5, 5, 250]],
                             "reduce_zero_label": True}, "mine")
    (tmp_path / "src").mkdir()
    rgb = np.array([[info.palette[0], info.palette[2], (1, 1, 1)]], np.uint8)
    cv2.imwrite(str(tmp_path / "src" / "a.png"), rgb[:, :, ::-1])
    summary = convert_folder(tmp_path / "src", tmp_path / "out", info)
    stored = cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED)
    assert stored.tolist() == [[1, 3, 0]] and summary.unknown_pixels == 1
    assert info.decode(stored).tolist() == [[0, 2, 255]]
    with pytest.raises(DataError, match=r"--palette ADE20K: classes 'road' and 'skyscraper' share the colour "
                                        r"\[140, 140, 140\]"):
        convert_folder(tmp_path / "src", tmp_path / "out2", load_class_info("ade20k"))


def test_demo_command_writes_the_custom_set(tmp_path, capsys):
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--task", "custom-seg", "--seg-train", "2",
                 "--seg-val", "1"]) == 0
    assert (tmp_path / "d" / "custom_seg" / "classes.yaml").is_file()
    assert len(list((tmp_path / "d" / "custom_seg" / "images" / "train").glob("*.jpg"))) == 2
    assert not (tmp_path / "d" / "cityscapes").exists()
    assert "folders layout" in capsys.readouterr().out


# ----------------------------------------------------------------------------- presets

@pytest.mark.parametrize("name,classes,crop,lr,batch,published", [
    ("seg_pascal_context", 59, [480, 480], 0.004, 4, "54.1"),
    ("seg_lip", 20, [473, 473], 0.007, 10, "56.04"),
    ("seg_ade20k", 150, [512, 512], 0.01, 4, "42.02"),
])
def test_benchmark_presets(name, classes, crop, lr, batch, published):
    path = REPO / "tasks" / f"{name}.yaml"
    cfg = load_config(path)
    task = build_task(cfg)
    assert task.class_info.num_classes == classes and task.data.format == "folders"
    assert task.augment.crop_size == crop and cfg["optimizer"]["lr"] == lr and task.data.batch_size == batch
    assert cfg["model"]["backbone"]["arch"] == "w48" and cfg["model"]["heads"]["seg"]["num_classes"] is None
    assert published in path.read_text() and "mIoU" in path.read_text()
    assert task.criterion.ignore_index == 255 and task.criterion.weight is None
    if name == "seg_lip":
        assert task.infer_cfg.flip and task.class_info.flip_permutation[14:] == [15, 14, 17, 16, 19, 18]
        assert cfg["train"]["epochs"] == 150 and cfg["optimizer"]["weight_decay"] == 0.0005
    if name == "seg_pascal_context":
        assert cfg["train"]["epochs"] == 200 and cfg["train"]["iters"] is None and task.class_info.reduce_zero_label
    if name == "seg_ade20k":
        assert cfg["train"]["iters"] == 160000 and task.class_info.reduce_zero_label


def test_training_steps_lower_the_loss_without_ray(demo):
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = _task(demo, "data.augment.crop_size=[64, 64]")
        model = task.build_model().train()
        batch = torch.utils.data.default_collate([task.build_dataset("train")[i] for i in range(4)])
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.002)
        losses = []
        for _ in range(12):
            loss = task.loss(model(batch["image"]), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0], losses


def test_custom_classes_train_on_ray(ray_local, demo, tmp_path):
    """The engine trains a folders set with its own 5 classes through Ray Train: the metrics name
    those classes and the checkpoint's head has 5 outputs."""
    from densepred.engine.launch import train

    cfg = load_config(TASK, [f"data_root={demo}", f"work_dir={tmp_path}", "run_name=custom", "data.batch_size=2",
                             "data.loader_workers=0", "data.augment.crop_size=[64, 64]", "train.iters=6",
                             "train.log_interval=1", "evaluation.interval=1", "ray.workers=1",
                             "ray.cpus_per_worker=1"])
    summary = train(cfg)
    m = summary["metrics"]
    assert m["epoch"] == 2 and 0.0 <= m["mIoU"] <= 1.0      # 6 images at batch 2: 3 iterations an epoch
    assert {f"IoU.{n}" for n in NAMES} <= set(m) and "IoU.road" not in m
    from densepred import load_checkpoint

    model = build_task(cfg).build_model()   # num_classes: null -> 5 from the class list
    assert load_checkpoint(model, summary["best_checkpoint"]).format == "densepred"
    assert model.heads["seg"].last_layer[-1].out_channels == 5
