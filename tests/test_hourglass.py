"""Stacked Hourglass: parity with the princeton-vl PyTorch port, parameter counts, shapes, config errors.

Reference: ../shared/reference/hourglass_tiny.pt, computed by the port's unmodified
``PoseNet(nstack=2, inp_dim=32, oup_dim=16, bn=False, increase=0)`` on an NHWC input, with random
BatchNorm statistics (see its README).
"""
from __future__ import annotations

import pytest
import torch

from conftest import REPO
from densepred import build_model, load_checkpoint
from densepred.errors import ConfigError
from densepred.model import num_parameters

CONFIG = REPO / "configs" / "models" / "pose_hourglass_8x256.yaml"


def hourglass(nstack=2, inp_dim=32, oup_dim=16, output="stacked", **backbone):
    return {"backbone": {"type": "StackedHourglass", "nstack": nstack, "inp_dim": inp_dim,
                         "oup_dim": oup_dim, **backbone},
            "heads": {"pose": {"type": "StackedHeatmapHead", "output": output}}}


@pytest.fixture(scope="module")
def tiny_ref(reference_dir):
    return torch.load(reference_dir / "hourglass_tiny.pt")


def test_tiny_reference_loads_through_load_checkpoint_and_matches(reference_dir, tiny_ref):
    model = build_model(hourglass())
    assert num_parameters(model) == 280_640
    ref_sd = tiny_ref["state_dict"]
    # Same names (backbone.<port name>), shapes and order as the port's state dict.
    assert [(k, tuple(v.shape)) for k, v in model.official_state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in ref_sd.items()]
    report = load_checkpoint(model, reference_dir / "hourglass_tiny.pt")  # strict, unchanged loader
    assert report.format == "official" and report.loaded == len(ref_sd)
    model.eval()
    with torch.no_grad():
        out = model(tiny_ref["input"].permute(0, 3, 1, 2))["pose"]  # the port takes NHWC
    assert out.shape == tiny_ref["output"].shape == (1, 2, 16, 32, 32)
    assert (out - tiny_ref["output"]).abs().max().item() < 1e-5
    # The last stack is the prediction; `output: last` gives exactly that.
    last = build_model(hourglass(output="last")).eval()
    last.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(last(tiny_ref["input"].permute(0, 3, 1, 2))["pose"], out[:, -1])


def test_port_training_checkpoint_layout(tiny_ref, tmp_path):
    """A checkpoint as the port's train.py saves it (Trainer -> DataParallel -> PoseNet, with
    optimizer state) loads through load_checkpoint unchanged."""
    wrapped = {"model.module." + k: v for k, v in tiny_ref["state_dict"].items()}
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "checkpoint.pt")
    model = build_model(hourglass()).eval()
    report = load_checkpoint(model, tmp_path / "checkpoint.pt")
    assert report.loaded == len(wrapped)
    with torch.no_grad():
        out = model(tiny_ref["input"].permute(0, 3, 1, 2))["pose"]
    assert (out - tiny_ref["output"]).abs().max().item() < 1e-5


def test_full_8x256_parameter_count():
    model = build_model(CONFIG)
    assert num_parameters(model) == 32_819_328
    bb = model.backbone
    assert (bb.nstack, bb.inp_dim, bb.oup_dim) == (8, 256, 16) and bb.out_channels == [16] * 8
    assert len(bb.merge_preds) == len(bb.merge_features) == 7


def test_forward_shape_256_gives_64_and_all_trainable_params_get_gradients():
    model = build_model(hourglass(nstack=2, inp_dim=16, oup_dim=16))
    out = model(torch.randn(1, 3, 256, 256))["pose"]
    assert out.shape == (1, 2, 16, 64, 64)
    out.square().mean().backward()
    # DDP without find_unused_parameters needs a gradient for every trainable parameter: the port's
    # never-used skip convolutions (identity residuals) are frozen, every other parameter is used.
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(".skip_layer." in n for n in frozen)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="multiples of 64"):
        model(torch.randn(1, 3, 96, 96))


@pytest.mark.parametrize("key,value", [("nstack", 0), ("nstack", -2), ("inp_dim", 0), ("inp_dim", 1),
                                       ("oup_dim", 0), ("increase", -1)])
def test_invalid_sizes_are_one_line_config_errors_naming_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        build_model(CONFIG, [f"model.backbone.{key}={value}"])
    msg = str(e.value)
    assert "\n" not in msg and f"model.backbone.{key}" in msg and "--set" in msg


def test_invalid_types_and_head_mismatch():
    for cfg in (hourglass(nstack=True), hourglass(inp_dim=3.5), hourglass(nstack="2")):
        with pytest.raises(ConfigError, match=r"^model\.backbone\.(nstack|inp_dim) "):
            build_model(cfg)
    cfg = hourglass(oup_dim=16)
    cfg["heads"]["pose"]["num_keypoints"] = 17
    with pytest.raises(ConfigError, match="oup_dim"):
        build_model(cfg)
