"""Checkpoints in every format users bring load strictly, and bad files fail clearly."""
from __future__ import annotations

import argparse

import pytest
import torch

from conftest import REPO, TINY_POSE_MODEL
from densepred import CheckpointError, build_model, load_checkpoint, save_checkpoint

SEG_SMALL = REPO / "configs" / "models" / "seg_hrnetv2_w18_small_v1.yaml"


@pytest.fixture(scope="module")
def pose_ref(reference_dir):
    return torch.load(reference_dir / "pose_hrnet_tiny.pt")


@pytest.fixture(scope="module")
def seg_ref(reference_dir):
    return torch.load(reference_dir / "seg_hrnetv2_w18_small_v1.pt")


def _pose_output(path):
    model = build_model(TINY_POSE_MODEL).eval()
    report = load_checkpoint(model, path)
    return model, report


def _max_diff(model, ref, head):
    with torch.no_grad():
        return (model(ref["input"])[head] - ref["output"]).abs().max().item()


@pytest.mark.parametrize("wrap", ["bare", "state_dict", "module_prefix"])
def test_official_pose_wrappers(tmp_path, pose_ref, wrap):
    sd = pose_ref["state_dict"]
    if wrap == "state_dict":
        obj = {"state_dict": sd, "epoch": 3}
    elif wrap == "module_prefix":
        obj = {"module." + k: v for k, v in sd.items()}
    else:
        obj = dict(sd)
    torch.save(obj, tmp_path / "ckpt.pth")
    model, report = _pose_output(tmp_path / "ckpt.pth")
    assert report.format == "official" and report.loaded == len(sd)
    assert _max_diff(model, pose_ref, "pose") < 1e-4


def test_official_segmentation_fullmodel_prefix(tmp_path, seg_ref):
    obj = {"model." + k: v for k, v in seg_ref["state_dict"].items()}
    obj["loss.criterion.weight"] = torch.ones(19)  # the official FullModel also saves the loss
    torch.save(obj, tmp_path / "seg.pth")
    model = build_model(SEG_SMALL).eval()
    report = load_checkpoint(model, tmp_path / "seg.pth")
    assert report.format == "official"
    assert "loss.criterion.weight" in report.skipped
    assert _max_diff(model, seg_ref, "seg") < 1e-4


def test_imagenet_classification_checkpoint_loads_backbone(tmp_path, seg_ref):
    sd = {k: v for k, v in seg_ref["state_dict"].items() if not k.startswith("last_layer")}
    sd["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 16, 1, 1)
    sd["downsamp_modules.0.0.weight"] = torch.zeros(256, 128, 3, 3)
    sd["final_layer.0.weight"] = torch.zeros(2048, 1024, 1, 1)  # clashes with the pose head name
    sd["classifier.weight"] = torch.zeros(1000, 2048)
    sd["classifier.bias"] = torch.zeros(1000)
    torch.save(sd, tmp_path / "imagenet.pth")
    model = build_model(SEG_SMALL).eval()
    report = load_checkpoint(model, tmp_path / "imagenet.pth")
    assert report.format == "imagenet"
    assert set(report.skipped) == {"incre_modules.0.0.conv1.weight", "downsamp_modules.0.0.weight",
                                   "final_layer.0.weight", "classifier.weight", "classifier.bias"}
    assert all(v == "classification-only" for v in report.skipped.values())
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, seg_ref["state_dict"][k]), k


@pytest.mark.parametrize("head_prefix", ["keypoint_head.", "head."])
def test_mmpose_checkpoint_with_metadata(tmp_path, pose_ref, head_prefix):
    from mmengine.logging.history_buffer import HistoryBuffer

    sd = {}
    for k, v in pose_ref["state_dict"].items():
        sd[(head_prefix if k.startswith("final_layer") else "backbone.") + k] = v
    # mmengine checkpoints carry Python objects in their metadata; they must not block loading.
    obj = {"meta": {"epoch": 210, "buffer": HistoryBuffer([1.0, 2.0], [1, 1])}, "state_dict": sd}
    torch.save(obj, tmp_path / "mmpose.pth")
    model, report = _pose_output(tmp_path / "mmpose.pth")
    assert report.format == "mmpose" and not report.skipped
    assert _max_diff(model, pose_ref, "pose") < 1e-4


def test_mmseg_checkpoint_loads_backbone_and_reports_head(tmp_path, seg_ref):
    sd = {"backbone." + k: v for k, v in seg_ref["state_dict"].items() if not k.startswith("last_layer")}
    sd["decode_head.conv_seg.weight"] = torch.zeros(19, 240, 1, 1)
    sd["decode_head.conv_seg.bias"] = torch.zeros(19)
    torch.save({"state_dict": sd}, tmp_path / "mmseg.pth")
    model = build_model(SEG_SMALL)
    report = load_checkpoint(model, tmp_path / "mmseg.pth")
    assert report.format == "mmseg"
    assert set(report.skipped) == {"decode_head.conv_seg.weight", "decode_head.conv_seg.bias"}
    assert torch.equal(model.backbone.conv1.weight, seg_ref["state_dict"]["conv1.weight"])


def test_own_format_round_trip(tmp_path, pose_ref, reference_dir):
    model, _ = _pose_output(reference_dir / "pose_hrnet_tiny.pt")
    path = save_checkpoint(tmp_path / "own.pth", model, meta={"epoch": 1})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "densepred" and raw["meta"]["epoch"] == 1
    fresh, report = _pose_output(path)
    assert report.format == "densepred"
    assert _max_diff(fresh, pose_ref, "pose") < 1e-4


def test_checkpoint_for_wrong_model_lists_keys(reference_dir):
    model = build_model(SEG_SMALL)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(model, reference_dir / "pose_hrnet_tiny.pt")
    msg = str(e.value)
    assert "does not fit this model" in msg and "missing" in msg and "unexpected" in msg
    assert "shape mismatches" in msg and "\n" not in msg


def test_wrong_number_of_keypoints_is_a_shape_mismatch(reference_dir):
    cfg = {**TINY_POSE_MODEL, "heads": {"pose": {"type": "HeatmapHead", "num_keypoints": 14}}}
    with pytest.raises(CheckpointError, match=r"final_layer.weight checkpoint \[17, 8, 1, 1\] vs model \[14, 8, 1, 1\]"):
        load_checkpoint(build_model(cfg), reference_dir / "pose_hrnet_tiny.pt")


def test_non_strict_loads_what_fits(reference_dir):
    cfg = {**TINY_POSE_MODEL, "heads": {"pose": {"type": "HeatmapHead", "num_keypoints": 14}}}
    model = build_model(cfg)
    report = load_checkpoint(model, reference_dir / "pose_hrnet_tiny.pt", strict=False)
    assert len(report.mismatched) == 2 and report.loaded == 564


def test_truncated_checkpoint(tmp_path, reference_dir):
    data = (reference_dir / "pose_hrnet_tiny.pt").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pth is truncated or not a PyTorch checkpoint"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "cut.pth")


@pytest.mark.parametrize("content,match", [
    (b"", "is empty"),
    (b"this is not a checkpoint", r"bad.pth is not a PyTorch checkpoint \(it is a text file\)"),
])
def test_foreign_files(tmp_path, content, match):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "bad.pth")


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "nope.pth")


def test_folder_given_as_checkpoint_names_the_file_inside(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"run is a folder, not a file; give the .pth file inside it"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "run")
    save_checkpoint(tmp_path / "run" / "best.pth", build_model(TINY_POSE_MODEL))
    with pytest.raises(CheckpointError, match=r"is a folder, not a file; did you mean .*run/best.pth\?"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "run")


def test_arbitrary_python_objects_are_refused(tmp_path, pose_ref):
    torch.save({"state_dict": pose_ref["state_dict"], "extra": argparse.Namespace(lr=0.1)}, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not loaded for safety"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "x.pth")


def test_damaged_checkpoint_fails_its_checksum(tmp_path):
    model = build_model(TINY_POSE_MODEL)
    path = save_checkpoint(tmp_path / "own.pth", model, meta={"epoch": 3})
    assert len(torch.load(path, weights_only=True)["checksum"]) == 64
    load_checkpoint(build_model(TINY_POSE_MODEL), path)  # intact: loads

    # One flipped bit inside a weight tensor: torch.load does not notice, the checksum does.
    data = bytearray(path.read_bytes())
    weight = model.state_dict()["backbone.conv1.weight"].numpy().tobytes()
    at = data.find(weight)
    assert at > 0
    data[at + 7] ^= 0x04
    (tmp_path / "flipped.pth").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"flipped.pth fails its checksum \(stored [0-9a-f]{12}\.\.\., content "
                                              r"[0-9a-f]{12}\.\.\.\): the file was damaged or edited after saving"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "flipped.pth")

    # Edited and re-saved with the old checksum kept: also refused.
    raw = torch.load(path, weights_only=True)
    raw["meta"]["epoch"] = 4
    torch.save(raw, tmp_path / "edited.pth")
    with pytest.raises(CheckpointError, match="edited.pth fails its checksum"):
        load_checkpoint(build_model(TINY_POSE_MODEL), tmp_path / "edited.pth")
