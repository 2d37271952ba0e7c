"""`platform predict` for multi-task runs: one combined picture per input (segmentation overlay,
person masks, pose on top), shared person boxes, and every member's usual result files."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO
from densepred import load_config
from densepred.checkpoint import save_checkpoint
from densepred.cli import main
from densepred.errors import ConfigError, DataError
from densepred.tasks.base import build_task
from densepred.tasks.multitask.predict import check_member_options
from densepred.tasks.segmentation.demo_data import make_seg_demo

SAME = REPO / "tasks" / "multitask_demo.yaml"
MIXED = REPO / "tasks" / "multitask_demo_pose_seg.yaml"


@pytest.fixture(autouse=True)
def one_thread():
    # The full suite may run alongside on two shared cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _crop_member(name: str, root: Path) -> list[str]:
    p = f"task.members.{name}"
    return [f"{p}.data_root={root}", f"{p}.bbox_file=null", f"{p}.data.input_size=[48, 64]",
            f"{p}.data.heatmap_size=[12, 16]"]


def _same_overrides(pose_root: Path) -> list[str]:
    return [*_crop_member("pose", pose_root), *_crop_member("mask", pose_root)]


def _mixed_overrides(pose_root: Path, seg_root: Path) -> list[str]:
    return [*_crop_member("pose", pose_root), f"task.members.seg.data_root={seg_root}",
            "task.members.seg.inference.crop_size=[128, 64]", "task.members.seg.inference.flip=false"]


def _visible_model(task) -> torch.nn.Module:
    """An untrained model whose outputs show in pictures: every keypoint at confidence 0.5 and
    every mask pixel on (a random head would draw nothing or everything by chance)."""
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        model.heads.pose.final_layer.weight.zero_()
        model.heads.pose.final_layer.bias.fill_(0.5)
        if "mask" in model.heads:
            model.heads.mask.mask_layer[-1].weight.zero_()
            model.heads.mask.mask_layer[-1].bias.fill_(5.0)
    return model


def _val_folder(pose_root: Path, dst: Path, n: int = 2) -> Path:
    dst.mkdir(parents=True)
    for f in sorted((pose_root / "images" / "val2017").glob("*.jpg"))[:n]:
        shutil.copy(f, dst / f.name)
    return dst


def _read(path: Path):
    return json.loads(path.read_text())


def _rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[:, :, ::-1].astype(np.float32)


@pytest.fixture(scope="module")
def same_task(tiny_pose_demo):
    task = build_task(load_config(SAME, _same_overrides(tiny_pose_demo)))
    return task, _visible_model(task)


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mt_predict_seg") / "cityscapes"
    make_seg_demo(root, num_train=2, num_val=1, image_size=(128, 64), seed=2, progress=False)
    return root


def _count_forwards(model: torch.nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# --------------------------------------------------------------------------- same input: pose + mask

def test_pose_and_mask_share_boxes_and_one_picture(same_task, tiny_pose_demo, tmp_path, capsys):
    task, model = same_task
    folder = _val_folder(tiny_pose_demo, tmp_path / "imgs")
    calls = _count_forwards(model)
    summary = task.predict(model, str(folder), tmp_path / "multi", detector="whole")
    multi_calls = calls[0]
    assert summary["images"] == 2 and summary["persons"] == 2 and summary["skipped"] == 0
    printed = capsys.readouterr().out
    assert re.search(r"predicted 1/2: \S+\.jpg: 1 person\(s\) \(boxes: whole-image\)", printed), printed

    out = tmp_path / "multi"
    pose_boxes, mask_boxes = _read(out / "pose" / "boxes.json"), _read(out / "mask" / "boxes.json")
    assert len(pose_boxes) == 2 and pose_boxes == mask_boxes           # the same boxes, found once
    masks = _read(out / "mask" / "results.json")
    assert [(m["image_id"], m["bbox"]) for m in masks] == [(b["image_id"], b["bbox"]) for b in pose_boxes]
    assert _read(out / "pose" / "images.json") == _read(out / "mask" / "images.json")

    # Each member's results equal its own predict's; the picture differs from both members' pictures.
    calls[0] = 0
    task.members["pose"].predict(model, str(folder), tmp_path / "pose_only", detector="whole")
    pose_calls, calls[0] = calls[0], 0
    task.members["mask"].predict(model, str(folder), tmp_path / "mask_only", detector="whole")
    assert multi_calls == max(pose_calls, calls[0])     # equal crops: one forward pass feeds both heads
    assert _read(out / "pose" / "results.json") == _read(tmp_path / "pose_only" / "results.json")
    assert masks == _read(tmp_path / "mask_only" / "results.json")
    for f in sorted(folder.iterdir()):
        combined = _rgb(out / "vis" / f"{f.stem}.jpg")
        pose_only = _rgb(tmp_path / "pose_only" / "vis" / f"{f.stem}.jpg")
        mask_only = _rgb(tmp_path / "mask_only" / "vis" / f"{f.stem}.jpg")
        assert combined.shape == pose_only.shape == mask_only.shape
        assert np.abs(combined - pose_only).mean() > 10         # the mask tint pose alone lacks
        assert np.abs(combined - mask_only).max() > 100         # the skeleton mask alone lacks


# --------------------------------------------------------------------------- mixed: pose + segmentation

def test_pose_and_segmentation_draw_on_the_overlay(tiny_pose_demo, seg_root, tmp_path, capsys):
    task = build_task(load_config(MIXED, _mixed_overrides(tiny_pose_demo, seg_root)))
    model = _visible_model(task)
    image = sorted((tiny_pose_demo / "images" / "val2017").glob("*.jpg"))[0]
    summary = task.predict(model, str(image), tmp_path / "multi", detector="whole")
    assert summary["images"] == 1 and summary["persons"] == 1
    assert "1 person(s) (boxes: whole-image), seg overlay" in capsys.readouterr().out

    h, w = cv2.imread(str(image)).shape[:2]
    label_ids = cv2.imread(str(tmp_path / "multi" / "seg" / "labelIds" / f"{image.stem}_labelIds.png"),
                           cv2.IMREAD_UNCHANGED)
    assert label_ids.shape == (h, w)
    assert len(_read(tmp_path / "multi" / "pose" / "results.json")) == 1
    assert not (tmp_path / "multi" / "mask").exists()

    task.members["pose"].predict(model, str(image), tmp_path / "pose_only", detector="whole")
    combined = _rgb(tmp_path / "multi" / "vis" / f"{image.stem}.jpg")
    pose_only = _rgb(tmp_path / "pose_only" / "vis" / f"{image.stem}.jpg")
    assert combined.shape[0] == h and combined.shape[1] > w               # the legend strip on the right
    assert np.abs(combined[:, :w] - pose_only).mean() > 10               # the overlay under the skeleton


def test_bad_files_are_skipped_and_a_video_gives_one_video(same_task, tiny_pose_demo, tmp_path):
    task, model = same_task
    folder = _val_folder(tiny_pose_demo, tmp_path / "imgs")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    summary = task.predict(model, str(folder), tmp_path / "out", detector="whole")
    assert summary["images"] == 2 and summary["skipped"] == 1
    assert (tmp_path / "out" / "skipped.txt").read_text().startswith("broken.jpg\t")

    frames = [cv2.imread(str(f)) for f in sorted(folder.glob("0*.jpg"))] * 2
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (w, h))
    for f in frames:
        writer.write(cv2.resize(f, (w, h)))
    writer.release()
    summary = task.predict(model, str(tmp_path / "clip.mp4"), tmp_path / "video", detector="whole")
    video = cv2.VideoCapture(str(tmp_path / "video" / "clip_multitask.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0) and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    video.release()
    assert summary["images"] == 4 and not (tmp_path / "video" / "vis").exists()
    assert len(_read(tmp_path / "video" / "mask" / "results.json")) == 4


# --------------------------------------------------------------------------- errors before the model

def _refuse_loading():
    raise AssertionError("the model was loaded before the options were checked")


def test_missing_boxes_file_fails_before_the_model(same_task, tiny_pose_demo, tmp_path, capsys):
    task, _ = same_task
    image = sorted((tiny_pose_demo / "images" / "val2017").glob("*.jpg"))[0]
    with pytest.raises(DataError, match=r"^--boxes file .*absent\.json not found$"):
        task.predict(_refuse_loading, str(image), tmp_path / "out", boxes=str(tmp_path / "absent.json"))
    assert main(["predict", str(SAME), "--checkpoint", str(tmp_path / "absent.pth"), "--input", str(image),
                 "--out", str(tmp_path / "out"), "--boxes", str(tmp_path / "absent.json"),
                 "--set", *_same_overrides(tiny_pose_demo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(r"error: --boxes file .*absent\.json not found", err[0]), err


def test_options_for_absent_members_are_refused():
    with pytest.raises(ConfigError, match=r"^--kpt-thr applies to pose members only; .*\(members: mask \(mask\), "
                                          r"seg \(seg\)\)$"):
        check_member_options({"mask": "mask", "seg": "seg"}, None, None, 0.5, None)
    with pytest.raises(ConfigError, match=r"^--det-thr, --detector apply to pose and person-mask members only"):
        check_member_options({"seg": "seg"}, None, 0.5, None, "whole")
    check_member_options({"mask": "mask"}, None, 0.5, None, "whole")    # boxes serve the mask member


# --------------------------------------------------------------------------- through the CLI

def test_cli_predict_with_a_saved_checkpoint(same_task, tiny_pose_demo, tmp_path, capsys):
    task, model = same_task
    ckpt = save_checkpoint(tmp_path / "multi.pth", model)
    image = sorted((tiny_pose_demo / "images" / "val2017").glob("*.jpg"))[0]
    out = tmp_path / "out"
    assert main(["predict", str(SAME), "--checkpoint", str(ckpt), "--input", str(image), "--out", str(out),
                 "--detector", "whole", "--set", *_same_overrides(tiny_pose_demo)]) == 0
    assert (out / "vis" / f"{image.stem}.jpg").is_file()
    assert len(_read(out / "pose" / "results.json")) == len(_read(out / "mask" / "results.json")) == 1
    assert "wrote combined pictures of 1 image(s)" in capsys.readouterr().out
