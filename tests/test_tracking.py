"""Runs tracked in MLflow (a real SQLite store read back with MlflowClient) and `platform runs`:
a 2-epoch Ray Train run, its resume, and a 2-trial sweep as a parent run with child runs."""
from __future__ import annotations

import json
import os
import time

import yaml
from mlflow.tracking import MlflowClient

from densepred import load_config
from densepred.cli import main
from densepred.engine.run_state import STATUS, read_status
from densepred.tracking.mlflow_run import metric_name, params_of
from test_tune import TASK, TINY, write_space


def _records(run_dir):
    """metrics.jsonl, one record per epoch."""
    return [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]


def _assert_epochs_match(client, run_id, run_dir):
    """Every number of every metrics.jsonl record is the MLflow metric of that epoch."""
    records = _records(run_dir)
    assert records
    keys = {k for r in records for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "time")}
    assert {"loss", "lr", "epoch_time_s"} <= keys
    for key in keys:
        history = {m.step: m.value for m in client.get_metric_history(run_id, metric_name(key))}
        expected = {r["epoch"]: float(r[key]) for r in records if key in r}
        assert history.keys() == expected.keys(), key
        for epoch, value in expected.items():
            assert history[epoch] == value or (value != value and history[epoch] != history[epoch]), (key, epoch)


def _one_run(client, experiment="PoseTask"):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs([exp.experiment_id])


def test_a_tracked_run_logs_config_epochs_and_pictures_and_a_resume_continues_it(ray_local, tiny_pose_demo, tmp_path):
    from densepred.engine.launch import train

    work = tmp_path / "work"
    sets = {**TINY, "data_root": str(tiny_pose_demo), "work_dir": str(work), "run_name": "tracked",
            "train.epochs": 2, "evaluation.interval": 1, "tracking.mlflow": True}
    train(load_config(TASK, sets))
    run_dir = work / "tracked"
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = _one_run(client)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    assert run.data.tags["task"] == "PoseTask" and run.data.tags["backbone"] == "HRNet w8"
    assert run.data.tags["run_dir"] == str(run_dir)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert run.data.params == params_of(saved)
    assert run.data.params["model.backbone.width"] == "8" and run.data.params["train.epochs"] == "2"
    _assert_epochs_match(client, run.info.run_id, run_dir)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "AP")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert artifacts == {"config.yaml", "pictures"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "pictures")] == ["pictures/curves.png"]
    assert (work / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()

    # Resuming the run with one more epoch continues the same MLflow run.
    train(load_config(TASK, {**sets, "train.epochs": 3}), resume=True)
    runs = _one_run(client)
    assert len(runs) == 1 and runs[0].info.run_id == run.info.run_id and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    _assert_epochs_match(client, run.info.run_id, run_dir)
    status = read_status(run_dir)
    assert status["status"] == "finished" and status["metric"] == "AP" and status["elapsed_s"] > 0


def test_a_tracked_sweep_is_a_parent_run_with_one_child_run_per_trial(ray_local, tiny_pose_demo, tmp_path, capsys):
    from densepred.tuning.runner import run_sweep
    from densepred.tuning.space import load_space

    space = write_space(tmp_path, tiny_pose_demo, space={"optimizer.lr": {"grid": [3.0e-3, 1.0e-3]}},
                        scheduler={"type": "none"})
    spec = load_space(space, ["tracking.mlflow=true", "train.epochs=2"])
    out = run_sweep(spec)
    work = tmp_path / "work"
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = _one_run(client)
    parents = [r for r in runs if r.data.tags.get("sweep") == "sweep"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["space.optimizer.lr"].startswith("grid")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and len(runs) == 3
    trials = {r.trial_id: r for r in out["records"]}
    assert {c.info.run_name for c in children} == set(trials)
    for child in children:
        run_dir = out["dir"] / "trials" / child.info.run_name
        assert child.info.status == "FINISHED"
        assert child.data.params["optimizer.lr"] == json.dumps(trials[child.info.run_name].params["optimizer.lr"])
        _assert_epochs_match(client, child.info.run_id, run_dir)
        assert read_status(run_dir)["status"] == "finished"
    best_loss = min(r["loss"] for t in trials.values() for r in _records(out["dir"] / "trials" / t.trial_id))
    assert parent.data.metrics["best_loss"] == best_loss and parent.data.metrics["trials"] == 2
    assert {"results.csv", "summary.md", "best.yaml", "pictures"} <= {a.path for a in
                                                                      client.list_artifacts(parent.info.run_id)}

    # `platform runs` lists both trials as finished; two of them side by side show the searched key.
    capsys.readouterr()
    assert main(["runs", str(work)]) == 0
    table = capsys.readouterr().out
    for trial_id in trials:
        line = next(line for line in table.splitlines() if trial_id in line)
        assert "PoseTask" in line and "HRNet w8" in line and " 2/2 " in line and "finished" in line
    a, b = (str(out["dir"] / "trials" / t) for t in sorted(trials))
    assert main(["runs", a, b]) == 0
    side = capsys.readouterr().out
    assert "optimizer.lr" in side and "config differences (1 key(s))" in side
    assert "loss" in side.split("final metrics")[1]


def _fake_run(folder, status=None, epochs=(1, 2), planned=3, log_tail=""):
    """A run folder as a run leaves it: config.yaml, logs/metrics.jsonl, logs/train.log, status.json."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": {"type": "SegmentationTask"}, "run_name": folder.name,
                                                        "model": {"backbone": {"type": "HRNet", "arch": "w18"}},
                                                        "optimizer": {"lr": 0.01}}))
    (folder / "logs").mkdir()
    now = time.time()
    (folder / "logs" / "metrics.jsonl").write_text("".join(
        json.dumps({"step": e * 10, "time": now, "epoch": e, "loss": 1.0 / e, "mIoU": 0.1 * e, "best": 0.1 * e,
                    "planned_epochs": planned, "epoch_time_s": 5.0}) + "\n" for e in epochs))
    (folder / "logs" / "train.log").write_text(log_tail)
    if status is not None:
        (folder / STATUS).write_text(json.dumps(status))


def test_runs_table_reads_states_from_status_files_and_old_logs(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work_dirs"
    _fake_run(work / "done", {"status": "finished", "metric": "mIoU", "first_started": 1.0e9, "elapsed_s": 75.0},
              epochs=(1, 2, 3))
    # marked running by a process of this machine that is gone (killed hard): interrupted
    _fake_run(work / "killed", {"status": "running", "metric": "mIoU", "host": os.uname().nodename,
                                "pid": 2 ** 22 + 12345, "started": time.time() - 30, "first_started": 1.1e9})
    _fake_run(work / "broken", {"status": "failed", "reason": "training stopped: the weights are no longer finite",
                                "metric": "mIoU", "first_started": 1.2e9, "elapsed_s": 4000.0})
    _fake_run(work / "old", None, log_tail="2026-01-01 00:00:00 [train] interrupted: stopping the workers\n")
    monkeypatch.chdir(tmp_path)  # the default folder is work_dirs in the current one
    assert main(["runs"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "3/3" in lines["done"] and "mIoU 0.3000" in lines["done"] and "finished" in lines["done"]
    assert "1m15s" in lines["done"] and "HRNet w18" in lines["done"]
    assert "interrupted" in lines["killed"] and "2/3" in lines["killed"]
    assert "failed" in lines["broken"] and "1h06m" in lines["broken"]
    assert "interrupted" in lines["old"]
    assert "broken: failed: training stopped: the weights are no longer finite" in lines["broken:"]
    assert main(["runs", "done", "broken"]) == 0  # names inside work_dirs
    side = capsys.readouterr().out
    assert "config: identical (apart from run_name)" in side
    assert "mIoU" in side and "-0.1000" in side
