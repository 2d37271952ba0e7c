"""Shared test fixtures: paths to the reference data and the repository."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE}")
    return REFERENCE


# The architecture of shared/reference/pose_hrnet_tiny.pt (see its README).
TINY_POSE_MODEL = {
    "backbone": {
        "type": "HRNet",
        "stage1": {"block": "BOTTLENECK", "num_blocks": 4, "num_channels": 64},
        "stage2": {"num_modules": 1, "block": "BASIC", "num_blocks": [1, 1], "num_channels": [8, 16]},
        "stage3": {"num_modules": 2, "block": "BASIC", "num_blocks": [1, 1, 2], "num_channels": [8, 16, 32]},
        "stage4": {"num_modules": 2, "block": "BASIC", "num_blocks": [1, 2, 1, 1],
                   "num_channels": [8, 16, 32, 64]},
        "multiscale_output": False,
    },
    "heads": {"pose": {"type": "HeatmapHead", "num_keypoints": 17}},
}


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance shared by every test that trains (ray.init costs seconds)."""
    import ray

    from densepred.engine.launch import ensure_ray

    ensure_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_pose_demo(tmp_path_factory):
    """A very small COCO-format demo set for training tests."""
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = tmp_path_factory.mktemp("tiny_demo") / "coco"
    make_pose_demo(root, num_train_images=6, num_val_images=3, seed=5, progress=False)
    return root
