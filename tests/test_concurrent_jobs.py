"""Several platform jobs on one machine, each with its own local Ray: a sweep and a training started
at the same time, beside the test session's shared Ray instance, all finish; neither prints Ray's
"Found multiple active Ray instances" traceback (the placement-group cleaner dying) and nothing of
theirs is left behind: no Ray process, no placement group in the shared instance."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import REPO, _proc_ids, _session_processes

TINY = {"bbox_file": None, "data.input_size": [48, 64], "data.heatmap_size": [24, 32], "data.batch_size": 2,
        "data.val_batch_size": 16, "data.loader_workers": 0, "evaluation.flip_test": False,
        "train.channels_last": False, "model.backbone.width": 8, "train.epochs": 2}


def _ray_processes() -> set[int]:
    """Ray daemons and workers on the machine (their command lines say so)."""
    found = set()
    for pid in _proc_ids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"ray/" in cmd or cmd.startswith(b"ray::") or b"raylet" in cmd or b"gcs_server" in cmd:
            found.add(pid)
    return found


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(PYTHONPATH=str(REPO / "platform"), RAY_AUTH_MODE="disabled")
    return subprocess.Popen([sys.executable, "-m", "densepred.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def test_a_sweep_and_a_training_at_once_beside_the_suites_ray(ray_local, tiny_pose_demo, tmp_path):
    before = _ray_processes()
    space = tmp_path / "sweep.yaml"
    space.write_text(yaml.safe_dump({
        "task": str(REPO / "tasks" / "pose_demo.yaml"), "metric": "loss", "mode": "min",
        "overrides": {**TINY, "data_root": str(tiny_pose_demo), "work_dir": str(tmp_path / "sweeps"),
                      "train.epochs": 1},
        "space": {"optimizer.lr": {"grid": [1.0e-3, 2.0e-3]}}, "search": {"type": "grid"},
        "scheduler": {"type": "none"}, "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "concurrent": 1}}))
    sets = [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in TINY.items()]
    tune = _start(["tune", str(space)], tmp_path)
    time.sleep(3)  # the second job starts while the first brings its Ray up
    train = _start(["train", str(REPO / "tasks" / "pose_demo.yaml"), "--set", f"data_root={tiny_pose_demo}",
                    f"work_dir={tmp_path / 'runs'}", "ray.cpus_per_worker=1", *sets], tmp_path)
    outs = {}
    for name, proc in (("train", train), ("tune", tune)):
        try:
            outs[name] = proc.communicate(timeout=420)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
    for name, proc in (("train", train), ("tune", tune)):
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{outs[name][-3000:]}"
        assert "Found multiple active Ray instances" not in outs[name], outs[name][-3000:]
    assert "[train] finished: epoch 2" in outs["train"]
    assert outs["tune"].count("finished after 1 epoch(s)") == 2, outs["tune"][-3000:]
    session = ray_local._private.worker._global_node.get_session_dir_path()

    def left() -> set[int]:  # new Ray processes that are not the shared instance's own
        return _ray_processes() - before - set(_session_processes(session))

    deadline = time.time() + 60
    while left() and time.time() < deadline:
        time.sleep(0.5)
    assert not left(), "Ray processes of the two jobs outlived them"
    alive = [pg for pg in ray_local.util.placement_group_table().values() if pg.get("state") != "REMOVED"]
    assert alive == [], alive
