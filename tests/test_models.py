"""HRNet family: parameter counts, official key manifests and reference outputs."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO, TINY_POSE_MODEL
from densepred import ConfigError, build_model, load_checkpoint
from densepred.model import num_parameters

MODELS = REPO / "configs" / "models"


@pytest.mark.parametrize("config,expected", [
    ("pose_hrnet_w32.yaml", 28_536_113),
    ("pose_hrnet_w48.yaml", 63_595_745),
    ("seg_hrnetv2_w48.yaml", 65_859_379),
    ("seg_hrnetv2_w18_small_v1.yaml", 1_540_819),
    ("seg_hrnetv2_w18_small_v2.yaml", 3_939_579),
])
def test_parameter_counts_equal_official(config, expected):
    assert num_parameters(build_model(MODELS / config)) == expected


@pytest.mark.parametrize("config,manifest", [
    ("pose_hrnet_w32.yaml", "pose_hrnet_w32_keys.json"),
    ("seg_hrnetv2_w48.yaml", "seg_hrnetv2_w48_keys.json"),
])
def test_state_dict_matches_official_manifest(reference_dir, config, manifest):
    ref = json.loads((reference_dir / manifest).read_text())
    model = build_model(MODELS / config)
    mine = [[k, list(v.shape)] for k, v in model.official_state_dict().items()]
    assert mine == [[k, list(s)] for k, s in ref["state_dict"]]
    assert num_parameters(model) == ref["num_params"]


def _reference(reference_dir, name):
    return torch.load(reference_dir / name)


def test_pose_reference_output(reference_dir):
    ref = _reference(reference_dir, "pose_hrnet_tiny.pt")
    model = build_model(TINY_POSE_MODEL).eval()
    load_checkpoint(model, reference_dir / "pose_hrnet_tiny.pt")
    with torch.no_grad():
        out = model(ref["input"])["pose"]
    assert out.shape == ref["output"].shape == (2, 17, 32, 24)
    assert (out - ref["output"]).abs().max().item() < 1e-4


def test_segmentation_reference_output(reference_dir):
    ref = _reference(reference_dir, "seg_hrnetv2_w18_small_v1.pt")
    model = build_model(MODELS / "seg_hrnetv2_w18_small_v1.yaml").eval()
    load_checkpoint(model, reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    with torch.no_grad():
        out = model(ref["input"])["seg"]
    assert out.shape == ref["output"].shape == (1, 19, 32, 64)
    assert (out - ref["output"]).abs().max().item() < 1e-4


def test_training_folds_the_seg_head_conv_before_upsampling_with_official_outputs(reference_dir):
    """In training the HRNetV2 head maps each branch through its slice of the first 1x1 conv before
    the upsampling (no 240-channel concatenation): the same function, so the official weights give
    the official logits (BatchNorm on running statistics, as in the reference) and the same gradients."""
    ref = _reference(reference_dir, "seg_hrnetv2_w18_small_v1.pt")
    model = build_model(MODELS / "seg_hrnetv2_w18_small_v1.yaml")
    load_checkpoint(model, reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    assert model._heads_fold_concat()
    folded = model(ref["input"])["seg"]
    assert (folded - ref["output"]).abs().max().item() < 1e-4
    folded.square().mean().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model._heads_fold_concat = lambda: False      # the concatenation, as in the official code
    plain = model(ref["input"])["seg"]
    plain.square().mean().backward()
    assert (folded - plain).abs().max().item() < 1e-4
    for g, p in zip(grads, model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-3, atol=1e-6)
    # A head that needs the concatenated feature (3x3 conv) keeps it for every head.
    mixed = build_model({"backbone": {"type": "HRNet", "width": 8, "aggregation": "v2"},
                         "heads": {"seg": {"type": "HRNetV2SegHead", "num_classes": 5},
                                   "mask": {"type": "MaskHead"}}})
    assert not mixed._heads_fold_concat() and mixed(torch.zeros(2, 3, 64, 64))["mask"].shape == (2, 1, 16, 16)


def test_fusion_settings_change_the_computation(reference_dir):
    """align_corners and upsample mode are real settings, not decoration."""
    ref = _reference(reference_dir, "seg_hrnetv2_w18_small_v1.pt")
    model = build_model(MODELS / "seg_hrnetv2_w18_small_v1.yaml", ["model.backbone.align_corners=true"]).eval()
    load_checkpoint(model, reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    with torch.no_grad():
        out = model(ref["input"])["seg"]
    assert (out - ref["output"]).abs().max().item() > 1e-3


def test_width_and_fusion_are_configurable():
    model = build_model(MODELS / "pose_hrnet_w32.yaml",
                        ["model.backbone.arch=null", "model.backbone.width=8",
                         "model.backbone.upsample_mode=bilinear"])
    assert model.backbone.out_channels == [8]
    assert model.backbone.stage4[-1].fuse_layers is not None and len(model.backbone.stage4[-1].fuse_layers) == 1
    out = model(torch.zeros(1, 3, 64, 48))
    assert out["pose"].shape == (1, 17, 16, 12)


def test_multi_head_model_returns_named_outputs():
    cfg = {"backbone": {"type": "HRNet", "width": 8, "multiscale_output": True},
           "heads": {"pose": {"type": "HeatmapHead"}, "seg": {"type": "HRNetV2SegHead", "num_classes": 5}}}
    out = build_model(cfg)(torch.zeros(2, 3, 64, 64))
    assert out["pose"].shape == (2, 17, 16, 16)
    assert out["seg"].shape == (2, 5, 16, 16)


def test_seg_head_channels_narrow_the_hidden_conv_only():
    """``channels: null`` keeps the official head (concatenated width, its checkpoints load);
    a number narrows the hidden 1x1 conv and the logits keep their shape."""
    backbone = {"type": "HRNet", "width": 8, "aggregation": "v2"}
    official = build_model({"backbone": backbone, "heads": {"seg": {"type": "HRNetV2SegHead", "num_classes": 5}}})
    lean = build_model({"backbone": backbone,
                        "heads": {"seg": {"type": "HRNetV2SegHead", "num_classes": 5, "channels": 16}}})
    assert official.heads["seg"].last_layer[0].out_channels == 8 + 16 + 32 + 64
    assert lean.heads["seg"].last_layer[0].out_channels == 16 and lean.heads["seg"].last_layer[3].in_channels == 16
    assert lean(torch.zeros(1, 3, 64, 64))["seg"].shape == official(torch.zeros(1, 3, 64, 64))["seg"].shape == (1, 5, 16, 16)
    with pytest.raises(ConfigError, match=r"model\.heads\.seg\.channels must be a positive integer or null, got 0"):
        build_model({"backbone": backbone, "heads": {"seg": {"type": "HRNetV2SegHead", "num_classes": 5, "channels": 0}}})
