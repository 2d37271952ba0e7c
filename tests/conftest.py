"""Shared test fixtures: paths to the reference data and the repository."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The annotation index cache of the suite stays out of the user's ~/.cache (Ray workers inherit it).
os.environ.setdefault("DENSEPRED_CACHE", os.path.join(tempfile.gettempdir(), f"densepred-test-cache-{os.getpid()}"))
# `platform eval/predict` measure inference candidates first (10 s by default): a short one is enough here.
os.environ.setdefault("DENSEPRED_INFERENCE_BUDGET_S", "1")


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


def pose_demo_stride4(heatmap_size: list[int]) -> dict:
    """Overrides that turn tasks/pose_demo.yaml back into the stride-4 recipe (official 64-channel
    stem, HeatmapHead, sigma 2, no box shift): the pose member of tasks/multitask_demo.yaml."""
    return {"data.heatmap_size": heatmap_size, "data.sigma": 2.0, "data.augment.shift_factor": 0.0,
            "model.backbone.stem_channels": 64, "model.heads.pose": {"type": "HeatmapHead", "num_keypoints": 17}}


def as_sets(overrides: dict) -> list[str]:
    """``KEY=VALUE`` items (values in YAML flow style) for ``load_config`` lists and ``--set``."""
    import yaml

    return [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in overrides.items()]


@pytest.fixture
def no_ray(monkeypatch):
    """`platform train` must fail before Ray starts; if a check regresses, fail instead of training.
    Also puts back the signal handlers `platform train` installs in this process."""
    import signal

    import densepred.engine.launch as launch

    def refuse(*_args, **_kwargs):
        raise AssertionError("Ray was about to start: the bad input was not caught before training")

    monkeypatch.setattr(launch, "ensure_ray", refuse)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance shared by every test that trains (ray.init costs seconds)."""
    import ray

    from densepred.engine.launch import ensure_ray

    ensure_ray(num_cpus=2)
    session = ray._private.worker._global_node.get_session_dir_path()
    yield ray
    # The suite leaves nothing behind: no placement group of any run (finished, failed, interrupted
    # or killed) is still alive, and no process of this Ray session outlives the shutdown.
    alive = [pg for pg in ray.util.placement_group_table().values() if pg.get("state") != "REMOVED"]
    processes = _session_processes(session)
    ray.shutdown()
    assert not alive, f"placement groups left behind: {alive}"
    deadline = time.time() + 30
    while _running(processes) and time.time() < deadline:
        time.sleep(0.2)
    assert not _running(processes), f"Ray processes left behind: {_running(processes)}"


def _proc_ids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _session_processes(session: str) -> list[int]:
    """Ray's daemons of this session (their command lines name the session folder) and their
    children (the worker processes, renamed ray::...)."""
    daemons, parents = set(), {}
    for pid in _proc_ids():
        try:
            if session.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                daemons.add(pid)
            parents[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return sorted(daemons | {pid for pid, ppid in parents.items() if ppid in daemons})


def _running(pids: list[int]) -> list[int]:
    """Those of ``pids`` still alive (zombies waiting for their parent do not count)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.append(pid)
        except (OSError, IndexError):
            pass
    return alive


@pytest.fixture(scope="session")
def tiny_pose_demo(tmp_path_factory):
    """A very small COCO-format demo set for training tests."""
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = tmp_path_factory.mktemp("tiny_demo") / "coco"
    make_pose_demo(root, num_train_images=6, num_val_images=3, seed=5, progress=False)
    return root


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and extra threads slow a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
