"""SimpleBaseline (ResNet backbone + DeconvHead): official names, parameter count, parity, training.

No reference outputs of the official code exist for this model, so parity is checked against an
independent functional re-implementation of the official ``pose_resnet`` forward
(deep-high-resolution-net.pytorch, lib/models/pose_resnet.py) written below with ``torch.nn.functional``
only, reading the weights by their official names: conv1 7x7/2 + BN + ReLU, max-pool 3x3/2 (pad 1),
Bottlenecks 1x1 -> 3x3 (the stride of a layer's first block is on this 3x3 conv) -> 1x1 with a 1x1/stride
+ BN projection on the first block of each layer, then 4x4/2 transposed convs (padding 1, output padding 0,
no bias) + BN + ReLU three times, and a 1x1 ``final_layer`` with bias. Weights are random (seeded) with
every BatchNorm given random running statistics and affine parameters, so BN is not the identity.
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO
from densepred import ConfigError, build_model, load_checkpoint
from densepred.backbones.resnet import ResNet
from densepred.model import num_parameters

R50 = REPO / "configs" / "models" / "pose_resnet50.yaml"
OFFICIAL_R50_PARAMS = 33_999_697  # official pose_resnet-50, 256x192, 17 joints
BN_EPS = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run this module's convolutions on one thread: on the shared 2-vCPU machines, two OpenMP
    threads with a busy neighbour made these small forwards 10-30x slower (see DESIGN.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(depth=50, num_keypoints=17):
    return build_model({"backbone": {"type": "ResNet", "depth": depth},
                        "heads": {"pose": {"type": "DeconvHead", "num_keypoints": num_keypoints}}})


# ---------------------------------------------------------------- independent reference forward
def _bn(sd, x, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                        sd[p + ".bias"], training=False, momentum=0.0, eps=BN_EPS)


def reference_pose_resnet(sd, x, blocks=(3, 4, 6, 3)):
    """The official pose_resnet forward (Bottleneck depths), from official-name weights."""
    x = F.relu(_bn(sd, F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), "bn1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    for layer, n in enumerate(blocks, start=1):
        for b in range(n):
            p = f"layer{layer}.{b}"
            stride = 2 if (b == 0 and layer > 1) else 1
            out = F.relu(_bn(sd, F.conv2d(x, sd[p + ".conv1.weight"]), p + ".bn1"))
            out = F.relu(_bn(sd, F.conv2d(out, sd[p + ".conv2.weight"], stride=stride, padding=1), p + ".bn2"))
            out = _bn(sd, F.conv2d(out, sd[p + ".conv3.weight"]), p + ".bn3")
            if p + ".downsample.0.weight" in sd:
                res = _bn(sd, F.conv2d(x, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
            else:
                res = x
            x = F.relu(out + res)
    for i in (0, 3, 6):
        x = F.conv_transpose2d(x, sd[f"deconv_layers.{i}.weight"], stride=2, padding=1, output_padding=0)
        x = F.relu(_bn(sd, x, f"deconv_layers.{i + 1}"))
    return F.conv2d(x, sd["final_layer.weight"], sd["final_layer.bias"])


def random_official_weights(manifest, seed=0):
    """Random weights for every (key, shape) of the official manifest: He-normal convs, random BN
    statistics and affine parameters (BN is not the identity)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in manifest:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("running_mean"):
            sd[key] = 0.1 * torch.randn(shape, generator=g)
        elif key.endswith("running_var"):
            sd[key] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 4:  # conv / deconv weight
            fan_in = shape[1] * shape[2] * shape[3]
            if key.startswith("deconv_layers"):  # ConvTranspose2d weight is (in, out, k, k)
                fan_in = shape[0] * shape[2] * shape[3] // 4
            sd[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith(".weight"):  # BN gamma; small on bn3 keeps the residual sums bounded
            lo, hi = (0.1, 0.4) if ".bn3." in key else (0.5, 1.5)
            sd[key] = lo + (hi - lo) * torch.rand(shape, generator=g)
        else:  # BN beta, final_layer bias
            sd[key] = 0.1 * torch.randn(shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return json.loads((reference_dir / "pose_resnet50_keys.json").read_text())


@pytest.fixture(scope="module")
def r50():
    return build_model(R50)


# ---------------------------------------------------------------- names, shapes, counts
def test_parameter_count_equals_official(r50):
    assert num_parameters(r50) == OFFICIAL_R50_PARAMS


def test_state_dict_matches_official_manifest(r50, manifest):
    mine = [[k, list(v.shape)] for k, v in r50.official_state_dict().items()]
    assert mine == [[k, list(s)] for k, s in manifest["state_dict"]]
    assert manifest["num_params"] == OFFICIAL_R50_PARAMS


@pytest.mark.parametrize("depth,blocks", [(101, [3, 4, 23, 3]), (152, [3, 8, 36, 3])])
def test_deeper_resnets_have_the_official_layout(depth, blocks):
    backbone = ResNet(depth=depth)
    assert [len(getattr(backbone, f"layer{i}")) for i in range(1, 5)] == blocks
    assert backbone.out_channels == [2048]


# ---------------------------------------------------------------- parity with the official forward
def test_forward_matches_independent_official_reimplementation(tmp_path, manifest):
    sd = random_official_weights(manifest["state_dict"])
    torch.save(sd, tmp_path / "pose_resnet_50.pth")  # a bare official state dict
    model = build_model(R50).eval()
    report = load_checkpoint(model, tmp_path / "pose_resnet_50.pth")  # strict
    assert report.format == "official" and report.loaded == len(sd)
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(x)["pose"]
        ref = reference_pose_resnet(sd, x)
    assert out.shape == ref.shape == (1, 17, 64, 48)
    assert ref.abs().max().item() > 1e-2  # a non-trivial output
    assert (out - ref).abs().max().item() < 1e-4


def test_torchvision_imagenet_resnet_weights_load_into_backbone():
    src = ResNet(depth=50)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    tv = dict(src.state_dict())  # torchvision layout: the same names, plus the classifier
    tv["fc.weight"] = torch.zeros(1000, 2048)
    tv["fc.bias"] = torch.zeros(1000)
    dst = _model(50).backbone
    backbone_sd = {k: v for k, v in tv.items() if not k.startswith("fc.")}
    assert set(tv) - set(backbone_sd) == {"fc.weight", "fc.bias"}
    result = dst.load_state_dict(backbone_sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in dst.state_dict().items():
        assert torch.equal(v, tv[k]), k


def test_torchvision_imagenet_file_through_load_checkpoint(tmp_path):
    tv = dict(ResNet(depth=50).state_dict())
    tv["fc.weight"] = torch.zeros(1000, 2048)
    tv["fc.bias"] = torch.zeros(1000)
    torch.save(tv, tmp_path / "resnet50-imagenet.pth")
    report = load_checkpoint(_model(50), tmp_path / "resnet50-imagenet.pth")
    assert report.format == "imagenet"
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert report.loaded == len(tv) - 2 and not report.missing


# ---------------------------------------------------------------- head geometry
@pytest.mark.parametrize("kernel", [4, 3, 2])
def test_each_deconv_kernel_doubles_the_resolution(kernel):
    model = build_model({"backbone": {"type": "ResNet", "depth": 18},
                         "heads": {"pose": {"type": "DeconvHead", "num_deconv_kernels": kernel,
                                            "num_deconv_filters": [32, 32, 32]}}}).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 32))["pose"]
    assert out.shape == (1, 17, 16, 8)


# ---------------------------------------------------------------- training and config errors
def test_one_optimizer_step_on_a_small_input():
    torch.manual_seed(0)
    model = _model(50).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 64, 32)  # sides divisible by 32 -> heatmaps exactly 1/4
    out = model(x)["pose"]
    assert out.shape == (2, 17, 16, 8)
    loss = F.mse_loss(out, torch.rand_like(out))
    opt.zero_grad()
    loss.backward()
    before = model.heads.pose.final_layer.weight.detach().clone()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert not torch.equal(before, model.heads.pose.final_layer.weight)


def test_unsupported_depth_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as e:
        _model(depth=42)
    msg = str(e.value)
    assert "model.backbone.depth" in msg and "42" in msg and "50" in msg and "\n" not in msg


def test_unsupported_depth_from_an_override_names_the_override():
    with pytest.raises(ConfigError) as e:
        build_model(R50, ["model.backbone.depth=77"])
    msg = str(e.value)
    assert "model.backbone.depth" in msg and "77" in msg and "\n" not in msg


def test_bad_deconv_kernel_is_a_config_error():
    with pytest.raises(ConfigError, match="num_deconv_kernels"):
        build_model({"backbone": {"type": "ResNet", "depth": 18},
                     "heads": {"pose": {"type": "DeconvHead", "num_deconv_kernels": 5}}})
