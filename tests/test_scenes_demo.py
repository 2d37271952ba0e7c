"""Tests of the synthetic indoor scenes in the NYUD-v2 multi-task layout
(densepred.tasks.dense.scenes_demo): the files, the ray caster against closed-form depth and
normals, the boundaries, determinism and the class list."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from densepred.cli import main
from densepred.tasks.dense import scenes_demo as sd
from densepred.tasks.segmentation.class_info import load_class_info

W, H = 160, 120
NUM_TRAIN, NUM_VAL = 6, 3
SEED = 4
FOLDERS = {"images": ".jpg", "segmentation": ".png", "depth": ".npy", "normals": ".png", "edge": ".png"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scenes") / "scenes"
    summary = sd.make_scenes_demo(root, num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=(W, H), seed=SEED,
                                  progress=False)
    return root, summary


def _read(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    arr = cv2.imread(str(path), flags)
    assert arr is not None, path
    return arr


def _stems(root: Path, split: str) -> list[str]:
    return (root / "gt_sets" / f"{split}.txt").read_text().split()


def _decode_normals(png_bgr: np.ndarray) -> np.ndarray:
    return png_bgr[:, :, ::-1].astype(np.float64) / 255 * 2 - 1


def _flat(colour=(0.5, 0.5, 0.5)) -> sd.Material:
    return sd.Material(colour=np.array(colour))


# ---------------------------------------------------------------------- files


def test_layout_stems_and_dtypes(demo):
    root, summary = demo
    train, val = _stems(root, "train"), _stems(root, "val")
    assert train == [f"{i:06d}" for i in range(NUM_TRAIN)]
    assert val == [f"{i:06d}" for i in range(NUM_TRAIN, NUM_TRAIN + NUM_VAL)]
    for folder, ext in FOLDERS.items():
        assert sorted(p.name for p in (root / folder).iterdir()) == [s + ext for s in train + val], folder
    assert summary["train_images"] == NUM_TRAIN and summary["val_images"] == NUM_VAL
    assert summary["classes"] == len(sd.NAMES) and summary["image_size"] == [W, H]
    assert summary["seconds"] >= 0 and summary["objects"] >= 2 * (NUM_TRAIN + NUM_VAL)
    for stem in train + val:
        image = _read(root / "images" / f"{stem}.jpg")
        seg = _read(root / "segmentation" / f"{stem}.png")
        depth = np.load(root / "depth" / f"{stem}.npy")
        normals = _read(root / "normals" / f"{stem}.png")
        edge = _read(root / "edge" / f"{stem}.png")
        assert image.shape == (H, W, 3) and image.dtype == np.uint8 and image.std() > 10
        assert seg.shape == (H, W) and seg.dtype == np.uint8 and seg.max() <= len(sd.NAMES)
        assert depth.shape == (H, W) and depth.dtype == np.float32 and np.isfinite(depth).all()
        assert normals.shape == (H, W, 3) and normals.dtype == np.uint8
        assert edge.shape == (H, W) and edge.dtype == np.uint8 and set(np.unique(edge)) <= {0, 255}
        hit = seg > 0
        assert np.array_equal(hit, depth > 0)                      # void exactly where nothing was hit
        assert np.array_equal(hit, normals.any(axis=2))
        assert depth[hit].min() > 0.05 and depth.max() < 20
        assert len(np.unique(seg)) >= 3                             # floor, wall and some object at least


def test_camera_yaml_holds_the_intrinsics(demo):
    root, _ = demo
    camera = yaml.safe_load((root / "camera.yaml").read_text())
    assert camera == {"fx": 0.75 * W, "fy": 0.75 * W, "cx": (W - 1) / 2, "cy": (H - 1) / 2, "width": W, "height": H}
    text = (root / "camera.yaml").read_text()
    assert "x right, y down, z forward" in text and "not the ray length" in text


def test_classes_round_trip_through_class_info(demo):
    root, _ = demo
    info = load_class_info(str(root / "classes.yaml"))
    assert info.names == sd.NAMES and info.reduce_zero_label
    assert [list(c) for c in info.palette] == [list(c) for c in sd.PALETTE]
    for stem in _stems(root, "train") + _stems(root, "val"):
        stored = _read(root / "segmentation" / f"{stem}.png")
        ids = info.decode(stored, stem)
        assert np.array_equal(ids[stored > 0], stored[stored > 0] - 1)
        assert (ids[stored == 0] == info.ignore_index).all()
        assert np.array_equal(info.encode(ids), stored)


def test_normals_files_are_unit_vectors_facing_the_camera(demo):
    root, _ = demo
    camera = sd.Camera.looking(W, H, (0, 0, 0), 0, 0)
    rays = camera.camera_rays().reshape(H, W, 3)
    for stem in _stems(root, "val"):
        n = _decode_normals(_read(root / "normals" / f"{stem}.png"))
        hit = _read(root / "segmentation" / f"{stem}.png") > 0
        assert np.abs(np.linalg.norm(n[hit], axis=1) - 1).max() < 0.015   # 8-bit quantisation only
        facing = np.einsum("ij,ij->i", n[hit], rays[hit] / np.linalg.norm(rays[hit], axis=1, keepdims=True))
        assert facing.max() < 0.01


def test_edges_mark_every_class_change(demo):
    root, _ = demo
    for stem in _stems(root, "train"):
        seg = _read(root / "segmentation" / f"{stem}.png")
        edge = _read(root / "edge" / f"{stem}.png") > 0
        for a, b in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                     ((slice(None, -1), slice(None)), (slice(1, None), slice(None)))):
            change = seg[a] != seg[b]
            assert (edge[a] | edge[b])[change].all()
        assert 0.005 < edge.mean() < 0.2


def test_same_seed_same_files_other_seed_other_files(demo, tmp_path):
    root, _ = demo
    sd.make_scenes_demo(tmp_path / "a", num_train=2, num_val=1, image_size=(W, H), seed=SEED, progress=False)
    sd.make_scenes_demo(tmp_path / "b", num_train=2, num_val=1, image_size=(W, H), seed=SEED + 1, progress=False)
    for folder, ext in FOLDERS.items():
        # the train images do not depend on how many there are, so the first two match the fixture's
        for stem in ("000000", "000001"):
            same = (tmp_path / "a" / folder / f"{stem}{ext}").read_bytes()
            assert same == (root / folder / f"{stem}{ext}").read_bytes(), (folder, stem)
            assert same != (tmp_path / "b" / folder / f"{stem}{ext}").read_bytes(), (folder, stem)


def test_demo_command_writes_the_scenes(tmp_path, capsys):
    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--task", "scenes", "--scenes-train", "2",
                 "--scenes-val", "1"]) == 0
    root = tmp_path / "d" / "scenes"
    assert _stems(root, "train") == ["000000", "000001"] and _stems(root, "val") == ["000002"]
    assert (root / "classes.yaml").is_file() and (root / "camera.yaml").is_file()
    assert not (tmp_path / "d" / "coco").exists()
    assert "NYUD-v2 layout" in capsys.readouterr().out


# ---------------------------------------------------------------------- the ray caster


def _room_front(distance: float) -> list[sd.Shape]:
    """A floor at z = 0 and a wall facing the camera at y = distance."""
    return [sd.Plane(sd.FLOOR, 1, _flat(), (0, 0, 1), 0.0),
            sd.Plane(sd.WALL, 2, _flat(), (0, -1, 0), -distance)]


def test_depth_and_normals_of_a_wall_and_the_floor_are_exact():
    height, distance = 1.5, 4.0
    camera = sd.Camera.looking(W, H, (0, 0, height), yaw=0.0, pitch=0.0)
    r = sd.render_scene(sd.Scene(_room_front(distance), light=np.array([0, 1.0, 2.5])), camera)
    v = np.arange(H, dtype=np.float64)[:, None] + np.zeros((1, W))
    with np.errstate(divide="ignore"):
        floor_depth = np.where(v > camera.cy, height * camera.fy / (v - camera.cy), np.inf)
    on_floor = floor_depth < distance
    # z depth, not ray length: a fronto-parallel wall is at the same depth in every pixel
    np.testing.assert_allclose(r.depth, np.minimum(floor_depth, distance), rtol=1e-6)
    assert np.array_equal(r.classes, np.where(on_floor, sd.FLOOR, sd.WALL))
    np.testing.assert_allclose(r.normals[on_floor], np.tile([0, -1, 0], (on_floor.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(r.normals[~on_floor], np.tile([0, 0, -1], ((~on_floor).sum(), 1)), atol=1e-6)
    # the horizon of the wall and the floor is one pixel wide, on the nearer (floor) side
    first_floor_row = int(np.argmax(on_floor[:, 0]))
    expected = np.zeros((H, W), np.uint8)
    expected[first_floor_row] = 255
    assert np.array_equal(r.edges, expected)


def test_floor_seen_by_a_pitched_camera_matches_the_closed_form():
    height, pitch = 1.2, math.radians(20)
    camera = sd.Camera.looking(W, H, (0.3, -0.5, height), yaw=0.4, pitch=pitch)
    r = sd.render_scene(sd.Scene([sd.Plane(sd.FLOOR, 1, _flat(), (0, 0, 1), 0.0)], light=np.array([0, 0, 2.0])),
                        camera)
    y = (np.arange(H)[:, None] - camera.cy) / camera.fy + np.zeros((1, W))
    denom = math.cos(pitch) * y + math.sin(pitch)                 # the floor at Z = h / denom, if in front
    hit = denom > 1e-9
    assert hit.any() and (~hit).any()                             # the sky above the horizon is void
    np.testing.assert_allclose(r.depth[hit], height / denom[hit], rtol=1e-5)
    assert (r.depth[~hit] == 0).all() and (r.classes[~hit] == sd.VOID).all() and (r.normals[~hit] == 0).all()
    np.testing.assert_allclose(r.normals[hit], np.tile([0, -math.cos(pitch), -math.sin(pitch)], (hit.sum(), 1)),
                               atol=1e-9)


def test_sphere_depth_and_normals_match_the_closed_form():
    w, h, radius, ahead = 81, 61, 0.5, 3.0
    camera = sd.Camera.looking(w, h, (0, 0, 1.5), 0.0, 0.0)
    scene = sd.Scene([sd.Sphere(sd.SPHERE, 1, _flat(), (0, ahead, 1.5), radius)], light=np.array([1.0, 0, 2.0]))
    r = sd.render_scene(scene, camera)
    rays = camera.camera_rays().reshape(h, w, 3)
    centre = np.array([0, 0, ahead])                              # the sphere's centre in camera coordinates
    a, b = (rays ** 2).sum(-1), rays @ centre
    disc = b ** 2 - a * (centre @ centre - radius ** 2)
    hit = disc >= 0
    t = (b - np.sqrt(np.maximum(disc, 0))) / a
    assert np.array_equal(r.classes == sd.SPHERE, hit) and 200 < hit.sum() < w * h / 2
    np.testing.assert_allclose(r.depth[hit], t[hit], rtol=1e-6)
    assert r.depth[h // 2, w // 2] == pytest.approx(ahead - radius, abs=1e-6)
    normals = (t[..., None] * rays - centre) / radius
    np.testing.assert_allclose(r.normals[hit], normals[hit], atol=1e-5)
    # boundaries: a closed one-pixel ring on the sphere's silhouette
    assert (r.edges[hit] == 255).sum() == r.edges.astype(bool).sum()
    assert r.edges[h // 2, w // 2] == 0


def test_yawed_box_face_depth_and_normal():
    yaw, half, ahead = math.radians(30), 0.5, 3.0
    w, h = 81, 61
    camera = sd.Camera.looking(w, h, (0, 0, 1.5), 0.0, 0.0)
    box = sd.Box(sd.BOX, 1, _flat(), (0, ahead, 1.5), (half, half, half), yaw)
    r = sd.render_scene(sd.Scene([box], light=np.array([0, 0, 3.0])), camera)
    # the centre ray meets the face whose normal is -(local y) = (sin 30, -cos 30, 0) in the world
    assert r.depth[h // 2, w // 2] == pytest.approx(ahead - half / math.cos(yaw), abs=1e-6)
    np.testing.assert_allclose(r.normals[h // 2, w // 2], [math.sin(yaw), 0, -math.cos(yaw)], atol=1e-6)
    # every pixel of that face lies on its plane: n . X = n . (point on the face) in camera coordinates
    n_cam = np.array([math.sin(yaw), 0, -math.cos(yaw)])
    on_face = np.all(np.abs(r.normals - n_cam) < 1e-6, axis=-1)
    assert on_face.sum() > 100
    points = camera.camera_rays().reshape(h, w, 3) * r.depth[..., None]
    face_point = np.array([0, 0, ahead]) + half * n_cam
    np.testing.assert_allclose(points[on_face] @ n_cam, face_point @ n_cam, atol=1e-5)


def test_random_scenes_are_rooms_with_two_to_six_objects():
    for i in range(12):
        rng = np.random.default_rng([SEED, 0, i])
        scene, camera = sd.random_scene(rng, W, H)
        objects = {s.instance for s in scene.shapes if s.class_id not in (sd.FLOOR, sd.WALL, sd.CEILING)}
        assert 2 <= len(objects) <= 6
        r = sd.render_scene(scene, camera, rng, noise=2.0)
        hit = r.classes != sd.VOID
        assert hit.all()                                          # a closed room: every ray hits something
        assert {sd.FLOOR, sd.WALL} <= set(np.unique(r.classes))
        n = r.normals[hit]
        assert np.abs(np.linalg.norm(n, axis=1) - 1).max() < 1e-5
        rays = camera.camera_rays().reshape(H, W, 3)[hit]
        assert np.einsum("ij,ij->i", n, rays).max() < 0           # facing the camera
        # boundaries sit exactly where instances change between 4-neighbours (and mark one side)
        diff_right = r.instances[:, :-1] != r.instances[:, 1:]
        diff_down = r.instances[:-1] != r.instances[1:]
        near_change = np.zeros((H, W), bool)
        near_change[:, :-1] |= diff_right
        near_change[:, 1:] |= diff_right
        near_change[:-1] |= diff_down
        near_change[1:] |= diff_down
        edges = r.edges > 0
        assert not (edges & ~near_change).any()
        assert (edges[:, :-1] | edges[:, 1:])[diff_right].all() and (edges[:-1] | edges[1:])[diff_down].all()
        assert edges.sum() < near_change.sum()                     # one side only, not both
