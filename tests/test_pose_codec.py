"""Parity of the pose geometry / heatmap codec with vectors produced by the official HRNet code,
plus round-trip and consistency checks of the DARK and UDP options."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from densepred.errors import ConfigError
from densepred.registry import CODECS, build
from densepred.tasks.pose.codec import (
    HeatmapCodec,
    default_blur_kernel,
    generate_target,
    get_final_preds,
    get_max_preds,
    refine_dark,
)
from densepred.tasks.pose.keypoint_meta import coco_keypoints

# configs/datasets/keypoints/coco.yaml, checked here against the official code's own values
FLIP_PAIRS, JOINT_WEIGHTS = list(coco_keypoints().flip_pairs), coco_keypoints().joint_weights
from densepred.tasks.pose.geometry import (
    affine_transform,
    box_to_center_scale,
    flip_back,
    fliplr_joints,
    get_affine_transform,
    get_crop_transform,
    get_warp_matrix_udp,
    transform_preds,
)

REF_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "pose_pipeline"
needs_ref = pytest.mark.skipif(not REF_DIR.is_dir(),
                               reason=f"official HRNet reference vectors not found at {REF_DIR}")


def ref(name: str) -> dict[str, np.ndarray]:
    with np.load(REF_DIR / name) as data:
        return {k: data[k] for k in data.files}


# --------------------------------------------------------------------------- reference parity

@needs_ref
def test_generate_target_matches_official_all_sets():
    d = ref("generate_target_192x256_hm48x64_sigma2.npz")
    args = (d["image_size_wh"], d["heatmap_size_wh"], int(d["sigma"]))
    assert d["target"].shape[0] == 5
    target, weight = generate_target(d["joints"], d["joints_vis"], *args)  # all sets at once
    assert target.dtype == np.float32 and weight.dtype == np.float32
    assert target.shape == d["target"].shape and weight.shape == d["target_weight"].shape
    np.testing.assert_allclose(target, d["target"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(weight, d["target_weight"])
    for s in range(target.shape[0]):  # unbatched call, per set
        t, w = generate_target(d["joints"][s], d["joints_vis"][s], *args)
        np.testing.assert_allclose(t, d["target"][s], rtol=0, atol=1e-6, err_msg=f"set {s}")
        np.testing.assert_array_equal(w, d["target_weight"][s], err_msg=f"set {s}")
    np.testing.assert_array_equal(d["coco_joints_weight"].ravel(), JOINT_WEIGHTS)
    _, w_coco = generate_target(d["joints"], d["joints_vis"], *args, joint_weights=JOINT_WEIGHTS)
    np.testing.assert_allclose(w_coco, d["target_weight_with_coco_joint_weights"], rtol=0, atol=1e-7)


@needs_ref
def test_generate_target_official_quirks():
    d = ref("generate_target_192x256_hm48x64_sigma2.npz")
    target, weight = generate_target(d["joints"][2], d["joints_vis"][2], [192, 256], [48, 64], 2)
    assert d["joints"][2, 0, 0] == -30
    assert weight[0, 0] == 1 and not target[0].any()          # x = -30: weight 1, empty map
    assert weight[13, 0] == 0 and weight[15, 0] == 0          # windows entirely outside
    invisible = d["joints_vis"][1, :, 0] == 0
    t1, w1 = generate_target(d["joints"][1], d["joints_vis"][1], [192, 256], [48, 64], 2)
    assert invisible.any() and (w1[invisible] == 0).all() and not t1[invisible].any()


@needs_ref
def test_codec_encode_and_decode_match_official():
    d = ref("generate_target_192x256_hm48x64_sigma2.npz")
    codec = HeatmapCodec([192, 256], [48, 64], sigma=2, use_joint_weights=True)
    t, w = codec.encode(d["joints"], d["joints_vis"])
    np.testing.assert_allclose(t, d["target"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(w, d["target_weight_with_coco_joint_weights"], rtol=0, atol=1e-7)
    f = ref("get_final_preds.npz")
    for kind in ("rand", "blob"):
        preds, maxvals = codec.decode(f[f"heatmaps_{kind}"], f["centers"], f["scales"])
        np.testing.assert_allclose(preds, f[f"final_preds_{kind}_post"], rtol=0, atol=1e-3)
        np.testing.assert_array_equal(maxvals, f[f"final_maxvals_{kind}_post"])
    # torch input is accepted too
    preds_t, _ = codec.decode(torch.from_numpy(f["heatmaps_rand"]), f["centers"], f["scales"])
    np.testing.assert_allclose(preds_t, f["final_preds_rand_post"], rtol=0, atol=1e-3)


@needs_ref
def test_get_affine_transform_and_points_match_official():
    d = ref("get_affine_transform.npz")
    for i in range(len(d["center"])):
        trans = get_affine_transform(d["center"][i], d["scale"][i], d["rot_deg"][i],
                                     d["output_size_wh"][i], shift=d["shift"][i], inv=bool(d["inv"][i]))
        assert trans.shape == (2, 3)
        np.testing.assert_allclose(trans, d["trans"][i], rtol=0, atol=1e-5, err_msg=f"case {i}")
        np.testing.assert_allclose(affine_transform(d["points"], trans), d["points_transformed"][i],
                                   rtol=0, atol=1e-4, err_msg=f"case {i}")


@needs_ref
def test_transform_preds_matches_official():
    d = ref("transform_preds.npz")
    out = transform_preds(d["coords"], d["center"], d["scale"], d["output_size_wh"])
    np.testing.assert_allclose(out, d["result"], rtol=0, atol=1e-5)


@needs_ref
@pytest.mark.parametrize("kind", ["rand", "blob"])
def test_get_max_preds_matches_official(kind):
    d = ref("get_final_preds.npz")
    coords, maxvals = get_max_preds(d[f"heatmaps_{kind}"])
    np.testing.assert_array_equal(coords, d[f"max_preds_{kind}"])
    np.testing.assert_array_equal(maxvals, d[f"max_vals_{kind}"])


@needs_ref
@pytest.mark.parametrize("kind", ["rand", "blob"])
@pytest.mark.parametrize("post", ["nopost", "post"])
def test_get_final_preds_matches_official(kind, post):
    d = ref("get_final_preds.npz")
    preds, maxvals = get_final_preds(d[f"heatmaps_{kind}"], d["centers"], d["scales"],
                                     post_process=post == "post")
    assert preds.shape == d[f"final_preds_{kind}_{post}"].shape
    np.testing.assert_allclose(preds, d[f"final_preds_{kind}_{post}"], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(maxvals, d[f"final_maxvals_{kind}_{post}"])


@needs_ref
def test_post_process_changes_blob_predictions():
    # guards against a no-op quarter-pixel shift passing the parity test by accident
    d = ref("get_final_preds.npz")
    assert np.abs(d["final_preds_blob_post"] - d["final_preds_blob_nopost"]).max() > 0.1
    a, _ = get_final_preds(d["heatmaps_blob"], d["centers"], d["scales"], post_process=True)
    b, _ = get_final_preds(d["heatmaps_blob"], d["centers"], d["scales"], post_process=False)
    np.testing.assert_allclose(a - b, d["final_preds_blob_post"] - d["final_preds_blob_nopost"], atol=1e-3)


@needs_ref
def test_flip_back_matches_official_numpy_and_torch():
    d = ref("flip_back.npz")
    assert [tuple(p) for p in d["flip_pairs"]] == FLIP_PAIRS
    x = d["heatmaps_flipped_input"]
    np.testing.assert_array_equal(flip_back(x, FLIP_PAIRS), d["flip_back"])
    np.testing.assert_array_equal(flip_back(x, FLIP_PAIRS, shift=True), d["flip_back_shifted"])
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = flip_back(xt, FLIP_PAIRS, shift=True)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.detach().numpy(), d["flip_back_shifted"])
    np.testing.assert_array_equal(flip_back(xt, FLIP_PAIRS).detach().numpy(), d["flip_back"])
    out.sum().backward()  # differentiable
    assert xt.grad is not None
    np.testing.assert_array_equal(x, d["heatmaps_flipped_input"])  # input untouched


@needs_ref
def test_fliplr_joints_matches_official():
    d = ref("fliplr_joints.npz")
    joints, vis = d["joints"].copy(), d["joints_vis"].copy()
    out_j, out_v = fliplr_joints(joints, vis, int(d["width"]), d["flip_pairs"])
    np.testing.assert_allclose(out_j, d["joints_flipped"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out_v, d["joints_vis_flipped"])
    np.testing.assert_array_equal(joints, d["joints"])  # input untouched


# --------------------------------------------------------------------------- independent checks

def _loop_generate_target(joints, joints_vis, image_size, heatmap_size, sigma):
    """Straightforward per-joint loop, written from the README description of the official code."""
    k = joints.shape[0]
    w, h = heatmap_size
    target = np.zeros((k, h, w), np.float32)
    weight = joints_vis[:, 0].astype(np.float32).copy()
    radius = sigma * 3
    stride_x, stride_y = image_size[0] / w, image_size[1] / h
    for j in range(k):
        cx = int(joints[j, 0] / stride_x + 0.5)
        cy = int(joints[j, 1] / stride_y + 0.5)
        x0, y0 = int(cx - radius), int(cy - radius)
        x1, y1 = int(cx + radius + 1), int(cy + radius + 1)
        if x0 >= w or y0 >= h or x1 < 0 or y1 < 0:
            weight[j] = 0
            continue
        if weight[j] <= 0.5:
            continue
        for yy in range(max(0, y0), min(y1, h)):
            for xx in range(max(0, x0), min(x1, w)):
                d2 = np.float32((xx - cx) ** 2 + (yy - cy) ** 2)
                target[j, yy, xx] = np.exp(-d2 / np.float32(2 * sigma ** 2))
    return target, weight[:, None]


@pytest.mark.parametrize("image_size,heatmap_size,sigma", [
    ((192, 256), (48, 64), 2), ((288, 384), (72, 96), 3), ((256, 256), (64, 64), 2.0),
])
def test_vectorised_generate_target_matches_loop(image_size, heatmap_size, sigma):
    rng = np.random.default_rng(1)
    for _ in range(3):
        joints = np.zeros((17, 3))
        joints[:, 0] = rng.uniform(-60, image_size[0] + 60, 17)
        joints[:, 1] = rng.uniform(-60, image_size[1] + 60, 17)
        joints[:3, :2] = np.round(joints[:3, :2])  # integers hit the rounding boundaries
        vis = np.repeat(rng.integers(0, 2, (17, 1)), 3, axis=1).astype(np.float64)
        vis[:, 2] = 0
        t, w = generate_target(joints, vis, image_size, heatmap_size, sigma)
        t_ref, w_ref = _loop_generate_target(joints, vis, image_size, heatmap_size, sigma)
        np.testing.assert_allclose(t, t_ref, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(w, w_ref)


def test_box_to_center_scale():
    c, s = box_to_center_scale(10, 20, 100, 100, 192 / 256)  # too wide -> heightened
    np.testing.assert_allclose(c, [60, 70])
    np.testing.assert_allclose(s, np.array([100, 100 / 0.75]) / 200 * 1.25, rtol=1e-6)
    c, s = box_to_center_scale(0, 0, 30, 200, 0.75, padding=1.0)  # too narrow -> widened
    np.testing.assert_allclose(s, [150 / 200, 1.0], rtol=1e-6)
    assert c.dtype == np.float32 and s.dtype == np.float32


def test_udp_warp_geometry():
    center, scale, size = np.array([300.0, 200.0]), np.array([0.96, 1.28]), (192, 256)
    m = get_warp_matrix_udp(center, scale, 0, size)
    box = scale * 200
    pts = np.array([center, center - box / 2, center + box / 2])
    np.testing.assert_allclose(affine_transform(pts, m), [[95.5, 127.5], [0, 0], [191, 255]], atol=1e-9)
    inv = get_warp_matrix_udp(center, scale, 0, size, inv=True)
    np.testing.assert_allclose(affine_transform(affine_transform(pts, m), inv), pts, atol=1e-9)
    # same rotation direction as the official warp
    for rot in (30.0, -75.0):
        a = get_warp_matrix_udp(center, scale, rot, size)[:, :2]
        b = get_affine_transform(center, scale, rot, size)[:, :2]
        np.testing.assert_allclose(a / np.linalg.norm(a[0]), b / np.linalg.norm(b[0]), atol=2e-3)
    np.testing.assert_array_equal(get_crop_transform(center, scale, 10, size, udp=True),
                                  get_warp_matrix_udp(center, scale, 10, size))


def test_udp_flip_is_exact_without_shift():
    codec = HeatmapCodec([192, 256], [48, 64], encoding="udp", decoding="udp")
    assert not codec.flip_shift and HeatmapCodec([192, 256], [48, 64]).flip_shift
    rng = np.random.default_rng(2)
    joints = np.concatenate([rng.uniform([10, 10], [180, 240], (17, 2)), np.zeros((17, 1))], 1)
    vis = np.ones((17, 3))
    t, _ = codec.encode(joints, vis)
    fj, fv = fliplr_joints(joints, vis, 192, FLIP_PAIRS)
    tf, _ = codec.encode(fj, fv)
    np.testing.assert_allclose(flip_back(tf[None], FLIP_PAIRS, shift=False)[0], t, atol=1e-5)


def _round_trip_errors(codec: HeatmapCodec, noise: float = 0.0, seed: int = 0,
                       margin: float = 8.0) -> np.ndarray:
    """Image joints -> crop (codec geometry) -> heatmaps -> decoded image joints; errors in px."""
    rng = np.random.default_rng(seed)
    n, k = 6, 17
    w_in, h_in = codec.input_size
    centers = rng.uniform(150, 450, (n, 2)).astype(np.float32)
    scales = (np.array([w_in, h_in]) / 200.0 * rng.uniform(1.0, 2.0, (n, 1))).astype(np.float32)
    crop = rng.uniform([margin, margin], [w_in - 1 - margin, h_in - 1 - margin], (n, k, 2))
    img = np.stack([affine_transform(crop[i], codec.crop_transform(centers[i], scales[i], inv=True))
                    for i in range(n)])
    crop_again = np.stack([affine_transform(img[i], codec.crop_transform(centers[i], scales[i]))
                           for i in range(n)])
    joints = np.concatenate([crop_again, np.zeros((n, k, 1))], axis=-1)
    heatmaps, weights = codec.encode(joints, np.ones_like(joints))
    assert heatmaps.shape == (n, k, codec.heatmap_size[1], codec.heatmap_size[0])
    assert (weights == 1).all()
    if noise:
        heatmaps = heatmaps + rng.normal(0, noise, heatmaps.shape).astype(np.float32)
    preds, maxvals = codec.decode(heatmaps, centers, scales)
    assert preds.shape == (n, k, 2) and maxvals.shape == (n, k, 1)
    px_per_crop_px = scales[:, None, :1] * 200.0 / w_in  # image pixels per crop pixel
    return np.linalg.norm(preds - img, axis=-1) / px_per_crop_px[..., 0]


@pytest.mark.parametrize("encoding,decoding", [("dark", "dark"), ("udp", "udp"), ("udp", "dark")])
def test_subpixel_round_trip_beats_argmax(encoding, decoding):
    base = _round_trip_errors(HeatmapCodec([192, 256], [48, 64], encoding=encoding, decoding="argmax"))
    err = _round_trip_errors(HeatmapCodec([192, 256], [48, 64], encoding=encoding, decoding=decoding))
    assert base.mean() > 0.5                      # the quarter-pixel shift cannot do sub-pixel
    assert err.mean() < 0.05 and err.max() < 0.5  # in crop pixels (stride 4)
    assert err.mean() < base.mean() / 5


def test_msra_round_trip_argmax_error_is_quantisation_bounded():
    err = _round_trip_errors(HeatmapCodec([192, 256], [48, 64]))
    assert 0.5 < err.mean() < 2.0 and err.max() < 4.0


def test_dark_is_exact_at_the_map_border_and_robust_to_noise():
    codec = HeatmapCodec([192, 256], [48, 64], encoding="dark", decoding="dark")
    err = _round_trip_errors(codec, margin=0.0, seed=3)
    assert err.max() < 0.05
    noisy = _round_trip_errors(codec, noise=0.03, seed=4)
    noisy_argmax = _round_trip_errors(HeatmapCodec([192, 256], [48, 64], encoding="dark"), noise=0.03, seed=4)
    assert noisy.mean() < 0.6 * noisy_argmax.mean()


def test_refine_dark_leaves_empty_maps_alone():
    hm = np.zeros((1, 2, 16, 12), np.float32)
    hm[0, 1, 5, 6] = 1.0
    coords, _ = get_max_preds(hm)
    out = refine_dark(hm, coords, 11)
    np.testing.assert_array_equal(out[0, 0], [0, 0])
    np.testing.assert_allclose(out[0, 1], [6, 5], atol=1e-9)  # symmetric peak: no shift
    assert default_blur_kernel(2) == 11 and default_blur_kernel(3) == 17


def test_codec_is_registered_and_rejects_bad_modes():
    codec = build(CODECS, {"type": "HeatmapCodec", "input_size": [192, 256], "heatmap_size": [48, 64],
                           "encoding": "udp", "decoding": "udp"})
    assert isinstance(codec, HeatmapCodec) and codec.udp
    with pytest.raises(ConfigError, match=r"msra, dark, udp") as e:
        HeatmapCodec([192, 256], [48, 64], encoding="gauss")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"argmax, dark, udp"):
        HeatmapCodec([192, 256], [48, 64], decoding="taylor")
    with pytest.raises(ConfigError, match="udp"):
        HeatmapCodec([192, 256], [48, 64], encoding="msra", decoding="udp")
    with pytest.raises(ConfigError):
        HeatmapCodec([192], [48, 64])
    with pytest.raises(ConfigError):
        HeatmapCodec([192, 256], [48, 64], blur_kernel=4)
