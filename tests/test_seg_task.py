"""Segmentation task on the Cityscapes-layout demo data: reference parity through the task,
inference modes, loss, browse/predict/eval round trip, bad input."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from densepred import DataError, load_checkpoint, load_config
from densepred.cli import main
from densepred.tasks.base import build_task
from densepred.tasks.segmentation.demo_data import make_seg_demo
from densepred.tasks.segmentation.labels import label_ids_to_train_ids
from densepred.tasks.segmentation.task import SegCrossEntropy

TASK = str(REPO / "tasks" / "seg_cityscapes.yaml")
SMALL = "model.backbone.arch=w18_small_v1"


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "cityscapes"
    make_seg_demo(root, num_train=3, num_val=2, image_size=(256, 128), seed=1, progress=False)
    return root


def _task(root, *overrides):
    return build_task(load_config(TASK, [f"data_root={root}", SMALL, "data.loader_workers=0",
                                         "inference.crop_size=[128, 64]", *overrides]))


def _copy(root, tmp_path):
    dst = tmp_path / "cs"
    shutil.copytree(root, dst)
    return dst


@pytest.mark.parametrize("align_corners", [False, True])
def test_reference_triple_through_the_task(reference_dir, seg_root, align_corners):
    """The official W18-small-v1 output reproduces through the task; full-resolution probabilities
    are the logits upsampled with the configured align_corners."""
    ref = torch.load(reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    task = _task(seg_root, f"inference.align_corners={str(align_corners).lower()}")
    model = task.build_model().eval()
    load_checkpoint(model, reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    with torch.no_grad():
        assert (model(ref["input"])["seg"] - ref["output"]).abs().max() < 1e-4
    probs = task.predict_probs(model, ref["input"])
    expected = F.interpolate(ref["output"], size=(128, 256), mode="bilinear", align_corners=align_corners).softmax(1)
    assert probs.shape == (1, 19, 128, 256)
    assert (probs - expected).abs().max() < 1e-4


def test_slide_and_multiscale_inference(seg_root):
    task = _task(seg_root, "inference.mode=slide")
    model = task.build_model().eval()
    x = torch.randn(1, 3, 128, 256)
    slide = task.predict_probs(model, x)
    assert slide.shape == (1, 19, 128, 256)
    torch.testing.assert_close(slide.sum(1), torch.ones(1, 128, 256))  # every pixel covered
    whole_task = _task(seg_root, "inference.mode=slide", "inference.crop_size=[256, 128]")
    torch.testing.assert_close(whole_task.predict_probs(model, x), _task(seg_root).predict_probs(model, x))
    ms = _task(seg_root, "inference.mode=multiscale", "inference.scales=[0.5, 1.0]", "inference.flip=true")
    assert ms.predict_probs(model, x).shape == (1, 19, 128, 256)


def test_ohem_keeps_only_hard_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 19, 8, 8) * 3
    label = torch.randint(0, 19, (1, 32, 32))
    label[0, :4] = 255
    plain = SegCrossEntropy()(logits, label)
    ohem = SegCrossEntropy(ohem=True, ohem_thresh=0.9, ohem_min_kept=10)(logits, label)
    assert ohem > plain  # easy pixels dropped -> mean over harder ones
    weighted = SegCrossEntropy(class_weights="official")(logits, label)
    assert weighted != plain
    assert torch.isfinite(SegCrossEntropy(ohem=True)(logits, torch.full((1, 32, 32), 255)))


def test_loss_and_gradients_do_not_depend_on_the_logits_memory_layout():
    """Channels-last logits (training) take a faster path through the loss: same values, same gradients."""
    torch.manual_seed(1)
    base = torch.randn(2, 19, 8, 16) * 3
    label = torch.randint(0, 19, (2, 32, 64))
    label[:, :5] = 255
    for loss in (SegCrossEntropy(), SegCrossEntropy(class_weights="official"),
                 SegCrossEntropy(ohem=True, ohem_thresh=0.7, ohem_min_kept=100)):
        results = []
        for layout in (torch.contiguous_format, torch.channels_last):
            logits = base.clone().contiguous(memory_format=layout).requires_grad_()
            value = loss(logits, label)
            value.backward()
            results.append((value.detach(), logits.grad))
        (v0, g0), (v1, g1) = results
        assert torch.allclose(v0, v1, rtol=1e-6) and torch.allclose(g0, g1, rtol=1e-5, atol=1e-8), loss


def test_browse_predict_and_eval_round_trip(seg_root, tmp_path):
    args = ["--set", f"data_root={seg_root}", "--set", SMALL, "--set", "data.loader_workers=0"]
    assert main(["data", "browse", TASK, *args, "--split", "val", "--out", str(tmp_path / "b")]) == 0
    npz = sorted((tmp_path / "b").glob("*.npz"))
    assert len(npz) == 2 and len(list((tmp_path / "b").glob("*.jpg"))) == 2
    z = np.load(npz[0])
    city = npz[0].stem.split("_")[0]
    label_file = seg_root / "gtFine" / "val" / city / f"{npz[0].stem}_gtFine_labelIds.png"
    expected = label_ids_to_train_ids(cv2.imread(str(label_file), cv2.IMREAD_UNCHANGED))
    assert z["image"].dtype == np.uint8 and z["image"].shape == (128, 256, 3)
    assert z["label"].dtype == np.uint8 and np.array_equal(z["label"], expected)

    # ground truth labelIds submitted as predictions score mIoU 1.0
    gt_as_pred = tmp_path / "gt_pred"
    for f in (seg_root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"):
        gt_as_pred.mkdir(exist_ok=True)
        shutil.copy(f, gt_as_pred / f.name)
    assert main(["eval", TASK, *args, "--predictions", str(gt_as_pred), "--out", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["mIoU"] == pytest.approx(1.0)

    # a model's predictions are written in the submission format and evaluate
    from densepred import build_model, save_checkpoint
    ckpt = save_checkpoint(tmp_path / "m.pth", build_model(load_config(TASK, [SMALL])))
    assert main(["predict", TASK, *args, "--checkpoint", str(ckpt), "--input",
                 str(seg_root / "leftImg8bit" / "val"), "--out", str(tmp_path / "p")]) == 0
    preds = sorted((tmp_path / "p" / "labelIds").glob("*_labelIds.png"))
    assert len(preds) == 2 and len(list((tmp_path / "p" / "vis").glob("*.jpg"))) == 2
    assert main(["eval", TASK, *args, "--predictions", str(tmp_path / "p" / "labelIds")]) == 0


def test_missing_label(seg_root, tmp_path):
    root = _copy(seg_root, tmp_path)
    victim = sorted((root / "gtFine" / "train").rglob("*_gtFine_labelIds.png"))[0]
    victim.unlink()
    with pytest.raises(DataError, match=r"no label file .*" + victim.name):
        _task(root).build_dataset("train")


def test_label_of_different_size(seg_root, tmp_path):
    root = _copy(seg_root, tmp_path)
    victim = sorted((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))[0]
    cv2.imwrite(str(victim), np.zeros((64, 64), np.uint8))
    with pytest.raises(DataError, match=rf"{victim.name} is 64x64 but its image is 256x128"):
        _task(root).build_dataset("val").load(0)


def test_unknown_label_ids(seg_root, tmp_path):
    root = _copy(seg_root, tmp_path)
    victim = sorted((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))[0]
    lab = cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    lab[0, 0] = 99
    cv2.imwrite(str(victim), lab)
    with pytest.raises(DataError, match=rf"{victim.name}.*99"):
        _task(root).build_dataset("val").load(0)


def test_non_cityscapes_file_name(seg_root, tmp_path):
    root = _copy(seg_root, tmp_path)
    city = next((root / "leftImg8bit" / "train").iterdir())
    shutil.copy(next(city.glob("*.png")), city / "holiday_photo.png")
    with pytest.raises(DataError, match=r"holiday_photo.png: not a Cityscapes file name"):
        _task(root).build_dataset("train")


def test_seg_training_on_ray(ray_local, seg_root, tmp_path):
    """The same engine trains segmentation, iteration based with the poly schedule."""
    from densepred.engine.launch import train

    cfg = load_config(TASK, [f"data_root={seg_root}", SMALL, f"work_dir={tmp_path}", "run_name=seg",
                             "data.batch_size=2", "data.loader_workers=0", "data.augment.crop_size=[128, 64]",
                             "data.augment.base_size=null", "train.iters=3", "train.log_interval=1",
                             "ray.workers=1", "ray.cpus_per_worker=1"])
    summary = train(cfg)
    m = summary["metrics"]
    # 3 train images at batch 2 with drop_last: 1 iteration per epoch, so 3 iterations = 3 epochs
    assert m["epoch"] == 3 and 0.0 <= m["mIoU"] <= 1.0
    lines = [json.loads(x) for x in open(tmp_path / "seg" / "logs" / "metrics.jsonl")]
    assert lines[-1]["lr"] < 0.01  # poly decay by iteration
