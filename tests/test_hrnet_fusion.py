"""HRNet architecture choices a sweep can search: stage count, exchange units per stage, fusion
upsampling and the aggregation the heads see, at any width, for pose and segmentation heads, while
the official layouts keep their parameter names and outputs."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO
from densepred import ConfigError, build_model, load_checkpoint, load_config
from densepred.tasks.pose.task import JointsMSELoss

MODELS = REPO / "configs" / "models"
POSE = MODELS / "pose_hrnet_w32.yaml"
SEG_SMALL = MODELS / "seg_hrnetv2_w18_small_v1.yaml"


def tiny_backbone(width: int = 8, **extra) -> dict:
    """The standard layout at ``width`` with one module of one block per branch (fast on CPU)."""
    return {"type": "HRNet", "width": width,
            "stage1": {"num_blocks": 1, "num_channels": 16},
            "stage2": {"num_modules": 1, "num_blocks": [1, 1]},
            "stage3": {"num_modules": 1, "num_blocks": [1, 1, 1]},
            "stage4": {"num_modules": 1, "num_blocks": [1, 1, 1, 1]}, **extra}


def pose_and_seg(**backbone) -> dict:
    return {"backbone": tiny_backbone(**backbone),
            "heads": {"pose": {"type": "HeatmapHead", "num_keypoints": 17},
                      "seg": {"type": "HRNetV2SegHead", "num_classes": 5}}}


def branch_widths(width: int, num_stages: int) -> list[int]:
    return [width * 2 ** b for b in range(num_stages)]


@pytest.mark.parametrize("upsample_mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("aggregation", ["v1", "v2"])
@pytest.mark.parametrize("num_stages", [3, 4])
def test_forward_shapes_for_every_combination(num_stages, aggregation, upsample_mode):
    model = build_model(pose_and_seg(num_stages=num_stages, aggregation=aggregation,
                                     upsample_mode=upsample_mode)).eval()
    widths = branch_widths(8, num_stages)
    expected = widths[0] if aggregation == "v1" else sum(widths)
    bb = model.backbone
    assert bb.branch_channels == widths and bb.out_channels == [expected]
    assert model.heads["pose"].final_layer.in_channels == expected
    assert model.heads["seg"].last_layer[0].in_channels == expected
    last = getattr(bb, f"stage{num_stages}")[-1]
    assert len(last.fuse_layers) == (1 if aggregation == "v1" else num_stages)   # multiscale_output follows
    assert hasattr(bb, "stage4") == hasattr(bb, "transition3") == (num_stages == 4)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 48))
    assert out["pose"].shape == (2, 17, 16, 12) and out["seg"].shape == (2, 5, 16, 12)


def test_three_stages_end_after_stage_three():
    model = build_model(pose_and_seg(num_stages=3, aggregation="v2"))
    keys = list(model.backbone.state_dict())
    assert not any(k.startswith(("stage4.", "transition3.")) for k in keys)
    assert any(k.startswith("stage3.0.fuse_layers.2.") for k in keys)
    assert model.backbone.arch.keys() == {"stage1", "stage2", "stage3"}


@pytest.mark.parametrize("width", [8, 12, 16, 24])
@pytest.mark.parametrize("num_stages,aggregation", [(4, "v2"), (3, "v1")])
def test_any_width_fits_both_heads(width, num_stages, aggregation):
    model = build_model(pose_and_seg(width=width, num_stages=num_stages, aggregation=aggregation))
    widths = branch_widths(width, num_stages)
    assert model.backbone.out_channels == ([widths[0]] if aggregation == "v1" else [sum(widths)])
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 32, 32))
    assert out["pose"].shape == (1, 17, 8, 8) and out["seg"].shape == (1, 5, 8, 8)


def test_upsample_mode_changes_the_pose_computation():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 48)
    outs = []
    for mode in ("nearest", "bilinear"):
        model = build_model({"backbone": tiny_backbone(aggregation="v1", upsample_mode=mode),
                             "heads": {"pose": {"type": "HeatmapHead"}}})
        if outs:
            model.load_state_dict(state)
        else:
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.5)
            state = model.state_dict()
        with torch.no_grad():
            outs.append(model.eval()(x)["pose"])
    assert (outs[0] - outs[1]).abs().max().item() > 1e-4


@pytest.mark.parametrize("sets,stage3_channels", [
    ([], [32, 64, 128]),
    (["model.backbone.arch=null", "model.backbone.width=12"], [12, 24, 48]),
])
def test_per_stage_override_merges_with_the_preset(sets, stage3_channels):
    cfg = load_config(POSE, [*sets, "model.backbone.stage3.num_modules=2"])
    model = build_model(cfg)
    stage3 = model.backbone.stage3
    assert len(stage3) == 2                                           # from --set
    assert model.backbone.arch["stage3"]["num_blocks"] == [4, 4, 4]   # from the preset
    assert [len(b) for b in stage3[0].branches] == [4, 4, 4]
    assert stage3[-1].out_channels == stage3_channels
    assert len(model.backbone.stage4) == 3 and len(model.backbone.stage2) == 1


def test_sweep_keys_as_set_overrides_on_the_official_recipes():
    cfg = load_config(REPO / "tasks" / "pose_coco.yaml",
                      ["model.backbone.arch=null", "model.backbone.width=8", "model.backbone.num_stages=3",
                       "model.backbone.aggregation=v2", "model.backbone.upsample_mode=bilinear"])
    model = build_model(cfg)
    assert model.backbone.out_channels == [8 + 16 + 32]
    assert model(torch.zeros(1, 3, 64, 48))["pose"].shape == (1, 17, 16, 12)
    seg = build_model(load_config(REPO / "tasks" / "seg_demo.yaml",
                                  ["model.backbone.aggregation=v1", "model.backbone.num_stages=3"]))
    assert seg.backbone.out_channels == [16] and len(seg.backbone.stage3[-1].fuse_layers) == 1
    assert seg(torch.zeros(1, 3, 64, 64))["seg"].shape == (1, 19, 16, 16)


@pytest.mark.parametrize("aggregation", ["v1", "v2"])
def test_pose_model_trains_one_step(aggregation):
    torch.manual_seed(0)
    cfg = load_config(REPO / "tasks" / "pose_coco.yaml",
                      ["model.backbone.arch=null", "model.backbone.width=8",
                       f"model.backbone.aggregation={aggregation}",
                       "model.backbone.stage3.num_modules=1", "model.backbone.stage4.num_modules=1"])
    model = build_model(cfg).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target, weight = torch.rand(2, 17, 16, 12), torch.ones(2, 17, 1)
    loss = JointsMSELoss()(model(torch.randn(2, 3, 64, 48))["pose"], target, weight)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert not unused, f"parameters outside the graph (DDP would fail): {unused[:3]}"
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert "heads.pose.final_layer.weight" in changed and "backbone.conv1.weight" in changed


@pytest.mark.parametrize("config,manifest,sets", [
    ("pose_hrnet_w32.yaml", "pose_hrnet_w32_keys.json",
     ["model.backbone.aggregation=null", "model.backbone.multiscale_output=false"]),
    ("seg_hrnetv2_w48.yaml", "seg_hrnetv2_w48_keys.json",
     ["model.backbone.aggregation=null", "model.backbone.multiscale_output=true"]),
])
def test_explicit_multiscale_output_keeps_the_official_keys(reference_dir, config, manifest, sets):
    """Configs written before `aggregation` (multiscale_output only) build the same official model."""
    ref = json.loads((reference_dir / manifest).read_text())
    model = build_model(MODELS / config, sets)
    assert [[k, list(v.shape)] for k, v in model.official_state_dict().items()] == \
           [[k, list(s)] for k, s in ref["state_dict"]]


@pytest.mark.parametrize("sets", [[], ["model.backbone.aggregation=null", "model.backbone.multiscale_output=true"]])
def test_v2_in_the_backbone_equals_the_official_head_concat(reference_dir, sets):
    ref = torch.load(reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    model = build_model(SEG_SMALL, sets).eval()
    load_checkpoint(model, reference_dir / "seg_hrnetv2_w18_small_v1.pt")
    with torch.no_grad():
        out = model(ref["input"])["seg"]
    assert (out - ref["output"]).abs().max().item() < 1e-4


@pytest.mark.parametrize("setting,message", [
    ("num_stages=2", r"^--set: model\.backbone\.num_stages must be 3 or 4, got 2"),
    ("num_stages=5", r"^--set: model\.backbone\.num_stages must be 3 or 4, got 5"),
    ("aggregation=v3", r"^--set: model\.backbone\.aggregation must be v1, v2 or null, got 'v3'"),
    ("upsample_mode=area", r"^--set: model\.backbone\.upsample_mode must be one of nearest, bilinear"),
    ("multiscale_output=true",
     r"^--set: model\.backbone\.multiscale_output=true contradicts aggregation v1 .*remove "
     r"model\.backbone\.multiscale_output \(it follows aggregation\) or set it to false"),
    ("stage3.num_modules=0", r"^--set: model\.backbone\.stage3\.num_modules must be a positive integer, got 0"),
    ("stage3.num_channels=[8, 16]",
     r"^--set: model\.backbone\.stage3\.num_channels must list 3 positive integers .*got \[8, 16\]"),
    ("width=8", r"^--set: give either 'arch' or 'model\.backbone\.width', not both"),
    ("stem_channels=0", r"^--set: model\.backbone\.stem_channels must be a positive integer, got 0"),
])
def test_invalid_values_are_one_line_config_errors(setting, message):
    cfg = load_config(POSE, [f"model.backbone.{setting}"])
    with pytest.raises(ConfigError, match=message) as e:
        build_model(cfg)
    assert "\n" not in str(e.value)


def test_errors_name_the_file_that_set_the_key(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("_base_: " + str(POSE) + "\nmodel:\n  backbone:\n    num_stages: 5\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: model\.backbone\.num_stages must be 3 or 4, got 5"):
        build_model(path)
    path.write_text("_base_: " + str(POSE) + "\nmodel:\n  backbone:\n    num_stages: three\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: model\.backbone\.num_stages must be int, got str 'three'"):
        build_model(path)


def test_explicit_head_channels_must_match_the_backbone():
    cfg = load_config(POSE, ["model.backbone.arch=null", "model.backbone.width=8",
                             "model.heads.pose.in_channels=[32]"])
    with pytest.raises(ConfigError, match=r"--set: model\.heads\.pose\.in_channels is \[32\] but the backbone "
                                          r"outputs \[8\] channels; remove it"):
        build_model(cfg)


def test_stem_channels_narrow_the_stem_only():
    """The demo's 32-channel stem: the stem and layer1's input change, every branch keeps its width,
    and the official default stays 64 (its checkpoints keep loading)."""
    official = build_model({"backbone": tiny_backbone(), "heads": {"pose": {"type": "HeatmapHead"}}})
    narrow = build_model({"backbone": tiny_backbone(stem_channels=32), "heads": {"pose": {"type": "HeatmapHead"}}})
    assert official.backbone.conv1.out_channels == 64 and narrow.backbone.conv1.out_channels == 32
    assert narrow.backbone.conv2.in_channels == 32 and narrow.backbone.layer1[0].conv1.in_channels == 32
    assert narrow.backbone.out_channels == official.backbone.out_channels
    assert narrow(torch.zeros(1, 3, 64, 48))["pose"].shape == (1, 17, 16, 12)



def test_model_init_scales_the_convolutions():
    """``model.init``: the official N(0, 0.001) by default (parity), Kaiming-normal (fan_out) for
    runs from scratch; BatchNorm starts at 1 / 0 either way."""
    spec = {"backbone": tiny_backbone(), "heads": {"pose": {"type": "HeatmapHead"}}}
    official = build_model(spec)
    kaiming = build_model({**spec, "init": "kaiming"})
    conv = kaiming.backbone.conv2
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(float(conv.weight.detach().std()) - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5
    assert abs(float(official.backbone.conv2.weight.detach().std()) - 0.001) < 1e-4
    assert float(kaiming.backbone.bn1.weight.detach().min()) == 1.0 and float(kaiming.backbone.bn1.bias.detach().abs().max()) == 0.0


def test_unknown_model_init_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^--set: model\.init must be one of official, kaiming .*got 'xavier'"):
        load_config(POSE, ["model.init=xavier"])
