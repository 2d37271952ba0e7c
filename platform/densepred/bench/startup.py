"""Section ``startup``: how long ``platform train`` takes from its launch to the first training
step, with a local Ray instance (started by the command itself, as a user would see it).

It runs ``python -m densepred.cli train tasks/pose_demo.yaml --set train.max_iters=1 ...`` on a
tiny demo set in a subprocess and reads the line ``[train] first training step X s after the
launch`` (from the output, else from the run's ``logs/train.log``). Skipped in quick mode.

Next to it, in the same run, Ray's own floor: a fresh Python process that imports Ray, starts a
local instance with the platform's settings and runs a ``TorchTrainer`` whose training function
does nothing but note the time (``FLOOR_SCRIPT``). The platform's own share of the start-up is the
difference: config checks, the run folder, importing torch and the task in the worker, the model,
the thread probe, the data index and the first batch.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .timing import rounded

REPO = Path(__file__).resolve().parents[3]
FIRST_STEP = re.compile(r"first training step ([0-9.]+) s after the launch")
TIMEOUT_S = 300
FLOOR_LINE = re.compile(r"RAY_FLOOR ([0-9.]+)")
FLOOR_SCRIPT = """
import time
t0 = time.time()
import tempfile
from densepred.engine.launch import ensure_ray
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
ensure_ray()
def noop(cfg):
    print("RAY_FLOOR %.3f" % (time.time() - cfg["t0"]), flush=True)
TorchTrainer(noop, train_loop_config={"t0": t0}, scaling_config=ScalingConfig(num_workers=1),
             run_config=RunConfig(storage_path=tempfile.mkdtemp(), name="floor")).fit()
"""


def train_command(root: Path) -> list[str]:
    overrides = [f"data_root={root / 'coco'}", f"work_dir={root / 'work'}", "run_name=bench_startup",
                 "train.max_iters=1", "train.epochs=1", "data.loader_workers=0", "data.batch_size=4",
                 "data.val_batch_size=4", "ray.workers=1"]
    return [sys.executable, "-m", "densepred.cli", "train", str(REPO / "tasks" / "pose_demo.yaml"),
            "--set", *overrides]


def first_step_seconds(output: str, run_dir: Path) -> Optional[float]:
    log = run_dir / "logs" / "train.log"
    for text in (output, log.read_text() if log.is_file() else ""):
        m = FIRST_STEP.search(text)
        if m:
            return float(m.group(1))
    return None


def run_startup(quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    if quick:
        return {"skipped": "quick mode (starting Ray and a training run takes tens of seconds)"}
    from ..tasks.pose.demo_data import make_pose_demo

    with tempfile.TemporaryDirectory(prefix="densepred-bench-startup-") as tmp:
        root = Path(tmp)
        make_pose_demo(root / "coco", num_train_images=8, num_val_images=2, seed=7, progress=False)
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "DENSEPRED_CACHE": "off"}
        t0 = time.perf_counter()
        proc = subprocess.run(train_command(root), cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        wall = time.perf_counter() - t0
        output = proc.stdout + proc.stderr
        seconds = first_step_seconds(output, root / "work" / "bench_startup")
    if proc.returncode != 0 or seconds is None:
        tail = " | ".join(output.strip().splitlines()[-3:])[:400]
        raise RuntimeError(f"platform train exited {proc.returncode} without a first-step line: {tail}")
    floor = ray_floor_seconds(env)
    log(f"  startup: first training step {seconds:.1f} s after the launch (whole command {wall:.1f} s); "
        f"Ray's floor (a no-op TorchTrainer) {floor if floor is None else round(floor, 1)} s")
    return {"first_step_s": rounded(seconds), "command_s": rounded(wall), "task": "tasks/pose_demo.yaml",
            "ray": "local instance started by the command", "workers": 1,
            "ray_floor_s": None if floor is None else rounded(floor),
            "platform_share_s": None if floor is None else rounded(seconds - floor)}


def ray_floor_seconds(env: dict[str, str]) -> Optional[float]:
    """Seconds from a fresh Python's start to a no-op Ray Train worker function (None if it fails)."""
    proc = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    m = FLOOR_LINE.search(proc.stdout + proc.stderr)
    return float(m.group(1)) if m else None
