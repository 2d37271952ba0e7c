"""Sweep timing: a 4-trial, 2-epoch Ray Tune sweep of the demo pose model, on whatever this machine has.

Prints the wall time of the whole sweep, each trial's start-up overhead (trial start to its first
training step) and its training time, and the overhead as a share of the wall time, so the figures
read as ratios on a shared, noisy machine. Writes the numbers to --out (JSON).

    python benchmarks/sweep_bench.py [--trials-per-key 2] [--epochs 2] [--out benchmarks/results/sweep.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_space(folder: Path, epochs: int, concurrent: int) -> Path:
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = folder / "coco"
    make_pose_demo(root, num_train_images=40, num_val_images=10, seed=3, progress=False)
    space = {"task": str(REPO / "tasks" / "pose_demo.yaml"), "metric": "AP", "mode": "max",
             "overrides": {"data_root": str(root), "work_dir": str(folder / "work"), "train.epochs": epochs,
                           "data.loader_workers": 0, "train.log_interval": 100},
             "space": {"model.backbone.width": {"grid": [8, 12]}, "optimizer.lr": {"grid": [1.0e-3, 3.0e-3]}},
             "search": {"type": "grid"}, "scheduler": {"type": "none"},
             "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "concurrent": concurrent}}
    path = folder / "bench_sweep.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--concurrent", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sweep.json"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from densepred.tuning.runner import run_sweep
    from densepred.tuning.space import load_space

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_space(make_space(Path(tmp), args.epochs, args.concurrent))
        t0 = time.time()
        out = run_sweep(spec)
        wall = time.time() - t0
        rows = list(csv.DictReader(open(out["dir"] / "results.csv")))
    startup = [float(r["startup_s"]) for r in rows if r.get("startup_s")]
    seconds = [float(r["seconds"]) for r in rows]
    result = {"trials": len(rows), "epochs": args.epochs, "concurrent": args.concurrent, "cpus": os.cpu_count(),
              "wall_s": round(wall, 1), "trial_seconds_mean": round(statistics.mean(seconds), 1),
              "startup_s_mean": round(statistics.mean(startup), 1) if startup else None,
              "startup_share_of_trial": round(statistics.mean(startup) / statistics.mean(seconds), 2) if startup else None,
              "trials_seconds_over_wall": round(sum(seconds) / wall, 2)}
    print(f"sweep of {len(rows)} trials x {args.epochs} epochs, {args.concurrent} at once, {os.cpu_count()} CPUs:")
    print(f"  wall time {wall:.1f} s; per trial {result['trial_seconds_mean']} s on average")
    print(f"  start-up per trial (trial start -> first training step): {result['startup_s_mean']} s "
          f"= {result['startup_share_of_trial']:.0%} of a trial's time")
    print(f"  sum of trial times / wall time: {result['trials_seconds_over_wall']} (concurrency achieved)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
