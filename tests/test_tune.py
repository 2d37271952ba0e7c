"""Ray Tune sweeps (`platform tune`): real sweeps of tiny pose models on the shared Ray instance,
their results, resuming an interrupted sweep, and every error a space file can have."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, pose_demo_stride4
from densepred import ConfigError, PlatformError, load_config
from densepred.tuning.space import check_against_task, load_space

TASK = REPO / "tasks" / "pose_demo.yaml"
TINY = {"bbox_file": None, "data.input_size": [48, 64], "data.heatmap_size": [24, 32], "data.batch_size": 2,
        "data.val_batch_size": 16, "data.loader_workers": 0, "evaluation.flip_test": False,
        "train.log_interval": 5, "train.channels_last": False, "model.backbone.width": 8}


def write_space(folder: Path, root: Path, name: str = "sweep", **fields) -> Path:
    """A space file for the tiny demo set; ``fields`` replace the defaults below."""
    space = {"task": str(TASK), "metric": "loss", "mode": "min",
             "overrides": {**TINY, "data_root": str(root), "work_dir": str(folder / "work"), "train.epochs": 3},
             "space": {"optimizer.lr": {"grid": [3.0e-3, 1.0e-5]}, "model.backbone.width": {"grid": [8, 12]}},
             "search": {"type": "grid"}, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2},
             "resources": {"workers_per_trial": 1, "cpus_per_worker": 1, "concurrent": 1}}
    space.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader(open(sweep / "results.csv")))


def _first_loss(run_dir: Path) -> float:
    return json.loads(open(run_dir / "logs" / "metrics.jsonl").readline())["loss"]


def _placement_groups_alive(ray) -> list:
    return [pg for pg in ray.util.placement_group_table().values() if pg.get("state") != "REMOVED"]


def test_asha_sweep_stops_weak_trials_and_its_best_config_trains_unchanged(ray_local, tiny_pose_demo, tmp_path):
    from densepred.engine.launch import train
    from densepred.tuning.runner import run_sweep

    # The good trial (lr 3e-3) runs first and sets the bar at each rung; the weak one falls below it.
    # On the stride-4 recipe: with stride-2 heatmaps lr 3e-3 has the higher loss after one tiny epoch.
    stride4 = {**TINY, "data_root": str(tiny_pose_demo), "work_dir": str(tmp_path / "work"), "train.epochs": 3,
               **pose_demo_stride4([12, 16])}
    spec = load_space(write_space(tmp_path, tiny_pose_demo, overrides=stride4,
                                  space={"optimizer.lr": {"grid": [3.0e-3, 1.0e-5]}}))
    out = run_sweep(spec)
    rows = _rows(out["dir"])
    assert len(rows) == 2
    states = {float(r["optimizer.lr"]): (r["state"], r["epochs"]) for r in rows}
    assert states == {3.0e-3: ("TERMINATED", "3"), 1.0e-5: ("STOPPED", "1")}, states  # ASHA cut the weak trial
    assert all(r["params"] and r["gflops"] and r["latency_ms"] for r in rows)
    best = rows[0]
    assert best["rank"] == "1" and float(best["optimizer.lr"]) == 3.0e-3
    for name in ("summary.md", "best.yaml", "best_checkpoint.txt", "metric_per_epoch.png", "metric_vs_gflops.png"):
        assert (out["dir"] / name).is_file(), name
    # Early-stopped trials released their workers and placement groups.
    deadline = time.time() + 60
    while _placement_groups_alive(ray_local) and time.time() < deadline:
        time.sleep(1)
    assert _placement_groups_alive(ray_local) == []
    # best.yaml is a complete task file: `platform train best.yaml` reproduces the trial's first epoch.
    cfg = load_config(out["dir"] / "best.yaml", ["train.epochs=1"])
    summary = train(cfg)
    trial_dir = out["dir"] / "trials" / best["trial_id"]
    assert _first_loss(Path(summary["run_dir"])) == pytest.approx(_first_loss(trial_dir), rel=1e-4)


@pytest.mark.slow
def test_multi_objective_sweep_marks_the_pareto_front(ray_local, tiny_pose_demo, tmp_path):
    from densepred.tuning.runner import run_sweep

    space = write_space(tmp_path, tiny_pose_demo, metric=["loss", "gflops"], mode=["min", "min"],
                        space={"model.backbone.width": {"choice": [8, 12, 16]}},
                        search={"type": "optuna", "samples": 3, "seed": 0}, scheduler={"type": "none"})
    out = run_sweep(load_space(space, ["train.epochs=1"]))
    rows = _rows(out["dir"])
    assert len(rows) == 3 and {r["pareto"] for r in rows} <= {"true", "false"}
    front = [r for r in rows if r["pareto"] == "true"]
    assert front, rows
    for r in rows:  # no front member is dominated by any trial
        if r["pareto"] == "true":
            assert not any(float(o["loss"]) <= float(r["loss"]) and float(o["gflops"]) <= float(r["gflops"])
                           and (float(o["loss"]), float(o["gflops"])) != (float(r["loss"]), float(r["gflops"]))
                           for o in rows)
    assert (out["dir"] / "metric_vs_gflops.png").stat().st_size > 0


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_local, tiny_pose_demo, tmp_path):
    space = write_space(tmp_path, tiny_pose_demo, scheduler={"type": "none"},
                        space={"optimizer.lr": {"grid": [1.0e-3, 2.0e-3, 3.0e-3]}},
                        overrides={**TINY, "data_root": str(tiny_pose_demo), "work_dir": str(tmp_path / "work"),
                                   "train.epochs": 2})
    cmd = [sys.executable, "-m", "densepred.cli", "tune", str(space), "--address",
           ray_local.get_runtime_context().gcs_address]
    env = dict(os.environ, PYTHONPATH=str(REPO / "platform"), RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "finished after" in line:
                proc.send_signal(signal.SIGINT)
                break
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(lines) + out
    assert proc.returncode == 130, text
    assert f"continue with: platform tune {space} --resume" in text
    sweep = tmp_path / "work" / "tune" / "sweep"
    first = [r for r in _rows(sweep) if r["state"] == "TERMINATED"]
    assert len(first) == 1
    done = first[0]["trial_id"]
    before = (sweep / "trials" / done / "logs" / "metrics.jsonl").read_text()
    res = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = _rows(sweep)
    assert len(rows) == 3 and all(r["state"] == "TERMINATED" for r in rows), rows
    assert (sweep / "trials" / done / "logs" / "metrics.jsonl").read_text() == before  # not run again


# ----------------------------------------------------------------------------- bad spaces

BAD_SPACES = [
    ("unknown_top_key", {"serach": {"type": "random"}}, r"sweep.yaml: serach: unknown key \(did you mean 'search'\?\)"),
    ("missing_task_file", {"task": "nowhere.yaml"}, r"sweep.yaml: task: task file .*nowhere.yaml not found"),
    ("bad_mode", {"mode": "maximise"}, r"sweep.yaml: mode: must be max or min, got 'maximise'"),
    ("modes_do_not_match", {"metric": ["AP", "gflops"], "mode": ["max"]},
     r"sweep.yaml: mode: 1 mode\(s\) for 2 metric\(s\)"),
    ("unknown_distribution", {"space": {"optimizer.lr": {"logarithmic": [1, 2]}}},
     r"sweep.yaml: space.optimizer.lr: unknown distribution 'logarithmic'"),
    ("loguniform_from_zero", {"space": {"optimizer.lr": {"loguniform": [0, 1.0e-3]}}},
     r"space.optimizer.lr.loguniform: bounds must be > 0 for a log scale"),
    ("uniform_reversed", {"space": {"optimizer.lr": {"uniform": [0.1, 0.01]}}},
     r"space.optimizer.lr.uniform: low must be below high"),
    ("randint_floats", {"space": {"model.backbone.width": {"randint": [8.5, 16]}}},
     r"space.model.backbone.width.randint: bounds must be integers"),
    ("grid_search_with_uniform", {"space": {"optimizer.lr": {"uniform": [1.0e-4, 1.0e-3]}}},
     r"space.optimizer.lr: search.type grid needs choice/grid values"),
    ("bad_search_type", {"search": {"type": "bayes"}}, r"sweep.yaml: search.type: must be one of random, grid, optuna"),
    ("bad_scheduler", {"scheduler": {"type": "hyperband"}}, r"scheduler.type: must be one of asha, median, none"),
    ("asha_with_two_metrics", {"metric": ["loss", "gflops"], "mode": ["min", "min"]},
     r"scheduler.type: asha stops trials by one metric"),
    ("zero_concurrent", {"resources": {"concurrent": 0}}, r"resources.concurrent: must be a whole number >= 1"),
    ("key_not_in_config", {"space": {"model.backbone.widht": {"grid": [8, 12]}}},
     r"sweep.yaml: .*unknown key 'model.backbone.widht' for HRNet \(did you mean 'width'\?\)"),
    ("value_the_task_rejects", {"space": {"data.batch_size": {"grid": [4, 0]}}},
     r"sweep.yaml: data.batch_size: the task rejects a sampled trial \(data.batch_size=0\): .*must be >= 1"),
    ("optimizer_value_rejected", {"space": {"optimizer.lr": {"grid": [1.0e-3, -1.0]}}},
     r"optimizer.lr: the task rejects a sampled trial \(optimizer.lr=-1.0\)"),
    ("metric_not_reported", {"metric": "APX"}, r"sweep.yaml: metric: 'APX' is not reported by PoseTask \(did you mean 'AP'\?\)"),
    ("grace_longer_than_a_trial", {"scheduler": {"type": "asha", "grace_period": 4}},
     r"sweep.yaml: scheduler.grace_period: 4 evaluation round\(s\), but a trial makes only 3 evaluation round\(s\) "
     r"per trial \(3 epoch\(s\), evaluated every epoch\); lower scheduler.grace_period to at most 3"),
    ("median_grace_longer_than_a_trial", {"scheduler": {"type": "median", "grace_period": 9}},
     r"scheduler.grace_period: 9 evaluation round\(s\), but a trial makes only 3"),
]


@pytest.mark.parametrize("case,fields,message", BAD_SPACES, ids=[c[0] for c in BAD_SPACES])
def test_bad_space_is_one_line_naming_file_and_key(tiny_pose_demo, tmp_path, case, fields, message):
    from densepred.tuning.runner import check_sweep

    path = write_space(tmp_path, tiny_pose_demo, **fields)
    with pytest.raises(ConfigError, match=message) as info:
        check_sweep(load_space(path))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "work").exists()


def test_more_cpus_per_trial_than_the_cluster_has(ray_local, tiny_pose_demo, tmp_path):
    from densepred.tuning.runner import run_sweep

    spec = load_space(write_space(tmp_path, tiny_pose_demo,
                                  resources={"workers_per_trial": 2, "cpus_per_worker": 2, "concurrent": 1}))
    with pytest.raises(PlatformError, match=r"sweep.yaml: resources: a trial needs 4 CPUs \(2 worker\(s\) x 2\); "
                                            r"the Ray cluster has 2"):
        run_sweep(spec)


def test_shipped_spaces_are_valid():
    """Their keys, values and metrics fit their tasks (the demo data may not exist in a fresh clone)."""
    for path in sorted((REPO / "tuning").glob("*.yaml")):
        check_against_task(load_space(path), files=False)


def test_missing_data_is_found_before_the_sweep_starts(tmp_path):
    path = write_space(tmp_path, tmp_path / "no_coco")
    with pytest.raises(PlatformError, match=r"data_root .*no_coco does not exist"):
        check_against_task(load_space(path))


def test_iteration_schedule_budget_counts_evaluation_rounds(tmp_path):
    """Segmentation trains for train.iters steps: its trials' epochs follow from the training set,
    and the schedulers' budget from its evaluation interval."""
    from densepred.tasks.segmentation.demo_data import make_seg_demo
    from densepred.tuning.runner import check_sweep

    root = tmp_path / "cityscapes"
    make_seg_demo(root, num_train=16, num_val=2, image_size=(64, 32), seed=3, progress=False)
    space = REPO / "tuning" / "seg_hrnet_width_fusion.yaml"
    sets = [f"data_root={root}", "data.batch_size=8"]  # 2 steps per epoch
    budget = check_sweep(load_space(space, sets))       # train.iters 200
    assert (budget.epochs, budget.rounds, budget.iteration_based) == (100, 100, True)
    budget = check_sweep(load_space(space, sets + ["evaluation.interval=4"]))
    assert (budget.epochs, budget.rounds) == (100, 25)
    with pytest.raises(ConfigError, match=r"scheduler.grace_period: 2 evaluation round\(s\), but a trial makes only 1 "
                                          r"evaluation round\(s\) per trial \(3 epoch\(s\) for the iteration schedule"):
        check_sweep(load_space(space, sets + ["train.iters=6", "evaluation.interval=4"]))


def test_a_sweep_without_a_finished_trial_fails_and_resume_retries_its_errors(ray_local, tiny_pose_demo, tmp_path,
                                                                              capsys):
    """Exit status 2 naming the error; a broken first start is no obstacle; --resume runs failed
    trials again, --resume --keep-errors leaves them."""
    from densepred.cli import main

    space = write_space(tmp_path, tiny_pose_demo, space={"model.backbone.width": {"grid": [8]}},
                        overrides={**TINY, "data_root": str(tiny_pose_demo), "work_dir": str(tmp_path / "work"),
                                   "train.epochs": 1, "optimizer.lr": 1.0e+30},   # the loss diverges at once
                        resources={"workers_per_trial": 1, "cpus_per_worker": 1, "concurrent": 4})
    sweep = tmp_path / "work" / "tune" / "sweep"
    (sweep / "ray_tune").mkdir(parents=True)
    (sweep / "ray_tune" / "tuner.pkl").write_bytes(b"")  # what a start cut off during start-up leaves
    assert main(["tune", str(space)]) == 2
    out, err = capsys.readouterr()
    err = err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sweep 'sweep': no trial finished (1 of 1 failed); first "
                                               "error: training stopped: loss is"), err
    (row,) = _rows(sweep)
    assert row["state"] == "ERROR" and row["error"].startswith("training stopped: loss is")
    assert f"[tune] {row['trial_id']} failed after 0 epoch(s): training stopped: loss is" in out
    assert "[tune] 4 trials at once need 4 CPUs; the Ray cluster has 2: running 2 at a time" in out  # no deadlock
    log = sweep / "trials" / row["trial_id"] / "logs"
    assert (log / "error.txt").read_text().startswith(row["error"])
    runs = (log / "train.log").read_text().count("worker(s) on cpu")

    assert main(["tune", str(space), "--resume", "--keep-errors"]) == 2
    assert (log / "train.log").read_text().count("worker(s) on cpu") == runs == 1  # not run again
    capsys.readouterr()
    assert main(["tune", str(space), "--resume"]) == 2
    assert (log / "train.log").read_text().count("worker(s) on cpu") == 2  # run again, failed again
    out = capsys.readouterr().out
    assert f"[tune] {row['trial_id']} failed after 0 epoch(s): training stopped: loss is" in out, out
