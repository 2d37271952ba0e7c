"""Box-centre jitter (``data.augment.shift_factor`` / ``shift_prob``, mmpose's RandomBBoxTransform):
off in the official recipe, on in the demo recipe, where the detector's boxes are off-centre."""
from __future__ import annotations

import numpy as np

from densepred.tasks.pose.geometry import PIXEL_STD
from densepred.tasks.pose.transforms import AugmentConfig, augment

STILL = dict(flip=False, scale_factor=0.0, rotation_factor=0.0, rotation_prob=0.0, half_body_prob=0.0)


def _centres(aug: AugmentConfig, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.zeros((64, 48, 3), np.uint8)
    joints, vis = np.zeros((17, 3), np.float32), np.zeros((17, 3), np.float32)
    centre, scale = np.array([24.0, 32.0], np.float32), np.array([0.2, 0.3], np.float32)
    return np.stack([augment(image, joints, vis, centre, scale, aug, 0.75, rng)[3] for _ in range(n)])


def test_shift_moves_the_centre_within_its_fraction_of_the_box():
    got = _centres(AugmentConfig(**STILL, shift_factor=0.16, shift_prob=1.0)) - [24.0, 32.0]
    box = np.array([0.2, 0.3]) * PIXEL_STD
    assert (np.abs(got) <= 0.16 * box + 1e-4).all()
    # uniform in [-1, 1] x factor x box size: both directions, spread over most of the range
    assert (got.min(0) < -0.12 * box).all() and (got.max(0) > 0.12 * box).all()


def test_shift_happens_with_its_probability_and_never_when_off():
    moved = np.abs(_centres(AugmentConfig(**STILL, shift_factor=0.16, shift_prob=0.3)) - [24.0, 32.0]).sum(1) > 0
    assert 0.2 < moved.mean() < 0.4
    for off in (AugmentConfig(**STILL), AugmentConfig(**STILL, shift_factor=0.0, shift_prob=1.0)):
        assert np.array_equal(_centres(off, 50), np.tile([24.0, 32.0], (50, 1)))


def test_official_recipe_has_no_shift_and_the_demo_recipe_has():
    from conftest import REPO
    from densepred import load_config

    assert load_config(REPO / "tasks" / "pose_coco.yaml")["data"]["augment"].get("shift_factor", 0.0) == 0.0
    demo = load_config(REPO / "tasks" / "pose_demo.yaml")["data"]["augment"]
    assert demo["shift_factor"] == 0.16 and demo["shift_prob"] == 0.3
