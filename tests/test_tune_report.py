"""Sweep results: trial values, the Pareto front, ranking, and the files write_report leaves."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from densepred.tuning.plots import axis_plan, figure_vs_key, has_front, plot_figures
from densepred.tuning.report import (TrialRecord, best_checkpoint, error_line, format_table, pareto_front,
                                     rank_trials, trial_value, write_report)

KEYS = ["model.backbone.width", "model.backbone.upsample_mode", "optimizer.lr"]
TWO = [("AP", "max"), ("gflops", "min")]


def _history(aps: list, losses: list, gflops: float, params: int, latency: float) -> list[dict]:
    out = []
    for i, (ap, loss) in enumerate(zip(aps, losses)):
        h = {"epoch": i + 1, "loss": loss, "lr": 0.001, "params": params, "gflops": gflops, "latency_ms": latency}
        if ap is not None:  # evaluated only in some epochs
            h["AP"] = ap
        out.append(h)
    return out


def _sweep(tmp: Path) -> list[TrialRecord]:
    """Five trials: three finished (t1, t2, t5 on the AP/GFLOPs front), one early-stopped, one failed."""
    def rec(tid, state, width, mode, lr, hist, **kw):
        run_dir = tmp / "runs" / tid
        run_dir.mkdir(parents=True)
        return TrialRecord(tid, state, {KEYS[0]: width, KEYS[1]: mode, KEYS[2]: lr}, hist, run_dir=str(run_dir), **kw)
    return [
        rec("sweep_00001", "TERMINATED", 16, "nearest", 1e-4,
            _history([0.1, 0.2, 0.3, 0.35], [0.9, 0.7, 0.6, 0.55], 0.5, 1000, 2.0), seconds=40.0),
        rec("sweep_00002", "TERMINATED", 32, "bilinear", 1e-3,
            _history([None, 0.3, None, 0.5], [0.8, 0.5, 0.4, 0.3], 1.5, 4000, 5.0), seconds=60.0),
        rec("sweep_00003", "STOPPED", 24, "nearest", 3e-4,
            _history([0.1, 0.15], [0.95, 0.9], 1.0, 2000, 3.0), seconds=15.0),
        rec("sweep_00004", "ERROR", 16, "bilinear", 3e-3,
            _history([None], [2.5], 0.5, 1000, 2.0), seconds=5.0, error="RuntimeError: out of memory"),
        rec("sweep_00005", "TERMINATED", 24, "bilinear", 3e-3,
            _history([0.2, 0.3, 0.4, 0.42], [0.8, 0.6, 0.5, 0.45], 1.0, 2000, 3.0), seconds=50.0),
    ]


def _config(width: int, lr: float) -> dict:
    return {"task": "pose", "model": {"backbone": {"type": "HRNet", "width": width}, "heads": {"pose": {}}},
            "optimizer": {"type": "AdamW", "lr": lr}, "train": {"epochs": 4, "seed": 1}}


def _point(tid: str, **values: float) -> TrialRecord:
    return TrialRecord(tid, "TERMINATED", {}, [dict(epoch=1, **values)] if values else [])


def test_trial_value_max_min_and_missing(tmp_path):
    t1, t2, _, t4, _ = _sweep(tmp_path)
    assert trial_value(t1, "AP", "max") == pytest.approx(0.35)
    assert trial_value(t1, "AP", "min") == pytest.approx(0.1)
    assert trial_value(t2, "AP", "max") == pytest.approx(0.5)  # epochs without evaluation skipped
    assert trial_value(t2, "loss", "min") == pytest.approx(0.3)
    assert trial_value(t4, "AP", "max") is None
    assert trial_value(_point("x", AP=float("nan")), "AP", "max") is None
    assert trial_value(_point("y", AP=np.float32(0.25)), "AP", "max") == pytest.approx(0.25)


def test_pareto_front_hand_checked():
    trials = [_point("A", acc=0.5, cost=1.0), _point("B", acc=0.5, cost=1.0),  # a tie: both on the front
              _point("C", acc=0.7, cost=2.0), _point("D", acc=0.4, cost=1.5),  # D dominated by A
              _point("E", acc=0.7, cost=3.0),  # equal accuracy, higher cost than C: dominated
              _point("F", acc=0.9), _point("G")]  # missing an objective: never on the front
    assert pareto_front(trials, [("acc", "max"), ("cost", "min")]) == {"A", "B", "C"}
    # cost maximised instead: E dominates C, and D (cost 1.5) is beaten by E on both
    assert pareto_front(trials, [("acc", "max"), ("cost", "max")]) == {"E"}
    assert pareto_front(trials, [("acc", "max")]) == {"F"}
    assert pareto_front([], [("acc", "max"), ("cost", "min")]) == set()


def test_rank_single_and_multi_objective(tmp_path):
    trials = _sweep(tmp_path)
    ids = [t.trial_id[-1] for t in rank_trials(trials, [("AP", "max")])]
    assert ids == ["2", "5", "1", "3", "4"]  # failed trial without AP last
    assert [t.trial_id[-1] for t in rank_trials(trials, [("loss", "min")])] == ["2", "5", "1", "3", "4"]
    assert [t.trial_id[-1] for t in rank_trials(trials, TWO)] == ["2", "5", "1", "3", "4"]
    # front members outrank better-scoring trials that are off the front
    points = [_point("A", acc=0.5, cost=1.0), _point("B", acc=0.5, cost=1.0), _point("C", acc=0.7, cost=2.0),
              _point("D", acc=0.4, cost=1.5), _point("E", acc=0.7, cost=3.0), _point("F", acc=0.9), _point("G")]
    ranked = [t.trial_id for t in rank_trials(points, [("acc", "max"), ("cost", "min")])]
    assert ranked == ["C", "A", "B", "F", "E", "D", "G"]


def test_format_table(tmp_path):
    trials = _sweep(tmp_path)
    text = format_table(trials, TWO, KEYS)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["rank", "trial", "state"]
    assert "width" in lines[0] and "upsample_mode" in lines[0] and "lr" in lines[0]
    assert "AP (max)" in lines[0] and "gflops (min)" in lines[0]
    assert lines[2].split()[:3] == ["1*", "sweep_00002", "TERMINATED"]
    assert lines[-3].split()[:3] == ["-", "sweep_00004", "ERROR"]
    assert lines[-2:] == ["errors:", "  sweep_00004: RuntimeError: out of memory"]
    short = format_table(trials, TWO, KEYS, limit=2).splitlines()
    assert len(short) == 5 and short[-1] == "... 3 more trial(s)"


def test_write_report_two_objectives(tmp_path):
    trials = _sweep(tmp_path)
    (Path(trials[1].run_dir) / "best.pth").write_bytes(b"weights")
    configs = {t.trial_id: _config(t.params[KEYS[0]], np.float64(t.params[KEYS[2]])) for t in trials}
    out = write_report(tmp_path / "tune" / "pose_sweep", trials, TWO, KEYS, configs)
    for key in ("results", "summary", "best_config", "best_checkpoint"):
        assert out[key].is_file(), key
    with open(out["results"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == [t.trial_id for t in rank_trials(trials, TWO)]
    by_id = {r["trial_id"]: r for r in rows}
    for column in KEYS + ["AP", "loss", "lr", "params", "gflops", "latency_ms", "epochs", "seconds", "error",
                          "pareto", "rank"]:
        assert column in rows[0], column
    assert by_id["sweep_00002"]["rank"] == "1" and float(by_id["sweep_00002"]["AP"]) == pytest.approx(0.5)
    assert float(by_id["sweep_00002"]["loss"]) == pytest.approx(0.3)  # not an objective: last value
    assert {r["trial_id"] for r in rows if r["pareto"] == "true"} == {"sweep_00001", "sweep_00002", "sweep_00005"}
    assert by_id["sweep_00003"]["epochs"] == "2" and by_id["sweep_00003"]["state"] == "STOPPED"
    assert by_id["sweep_00004"]["error"] == "RuntimeError: out of memory" and by_id["sweep_00004"]["rank"] == ""
    assert by_id["sweep_00001"][KEYS[1]] == "nearest" and float(by_id["sweep_00001"][KEYS[2]]) == 1e-4

    text = out["best_config"].read_text()
    assert text.startswith("# Best trial of sweep pose_sweep: sweep_00002") and "AP 0.5 (max)" in text
    assert yaml.safe_load(text) == configs["sweep_00002"]
    assert list(yaml.safe_load(text)) == list(configs["sweep_00002"])  # key order kept
    assert Path(out["best_checkpoint"].read_text().strip()) == (Path(trials[1].run_dir) / "best.pth").resolve()

    summary = out["summary"].read_text()
    assert "3 TERMINATED, 1 STOPPED, 1 ERROR" in summary and "`sweep_00002`" in summary
    assert "RuntimeError: out of memory" in summary

    names = sorted(p.name for p in out["plots"])
    assert names == sorted([f"metric_vs_{k}.png" for k in KEYS] + ["metric_vs_gflops.png", "metric_per_epoch.png"])
    for p in out["plots"]:
        image = cv2.imread(str(p))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 300, p
    assert sorted(p.name for p in out["results"].parent.glob("*.png")) == names  # no temp files left


def test_best_checkpoint_falls_back_to_newest_epoch(tmp_path):
    trial = _sweep(tmp_path)[0]
    assert best_checkpoint(trial) is None
    for epoch in (2, 10, 4):
        p = Path(trial.run_dir) / "checkpoints" / f"epoch_{epoch:04d}" / "model.pth"
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
    assert best_checkpoint(trial) == Path(trial.run_dir) / "checkpoints" / "epoch_0010" / "model.pth"
    out = write_report(tmp_path / "out", [trial], [("AP", "max")], KEYS, {trial.trial_id: _config(16, 1e-4)})
    assert out["best_checkpoint"].read_text().strip().endswith("epoch_0010/model.pth")


def test_no_gflops_skips_that_picture(tmp_path):
    trials = _sweep(tmp_path)
    for t in trials:
        for h in t.history:
            h.pop("gflops")
    out = write_report(tmp_path / "out", trials, [("AP", "max")], KEYS, {})
    names = {p.name for p in out["plots"]}
    assert "metric_vs_gflops.png" not in names and "metric_per_epoch.png" in names
    assert out["best_config"] is None  # the best trial's config is unknown
    with open(out["results"], newline="") as f:
        assert "pareto" not in next(csv.DictReader(f))


def test_no_trial_reported_the_metric(tmp_path):
    trials = [TrialRecord(f"t{i}", state, {"optimizer.lr": 1e-3 * (i + 1)},
                          [{"epoch": 1, "loss": 1.0 / (i + 1)}], error="boom" if state == "ERROR" else None)
              for i, state in enumerate(["ERROR", "TERMINATED", "RUNNING"])]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "best.yaml").write_text("stale: true\n")  # from an earlier report of this sweep
    out = write_report(out_dir, trials, [("AP", "max")], ["optimizer.lr"], {t.trial_id: {"a": 1} for t in trials})
    assert out["results"].is_file() and out["summary"].is_file()
    assert out["best_config"] is None and not (out_dir / "best.yaml").exists()
    assert out["plots"] == []
    assert "no checkpoint" in out["best_checkpoint"].read_text()
    with open(out["results"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["rank"] == "" and r["AP"] == "" for r in rows)
    assert "Best trial: none" in out["summary"].read_text()


# ------------------------------------------------------------------ pictures follow the search space

def _width_trials(widths: list, lrs: list) -> list[TrialRecord]:
    return [TrialRecord(f"s_{i:05d}", "TERMINATED", {"model.backbone.width": w, "optimizer.lr": lr},
                        [{"epoch": 1, "AP": 0.1 * (i + 1), "gflops": 0.5 + i, "mIoU": 0.9 - 0.1 * i}])
            for i, (w, lr) in enumerate(zip(widths, lrs))]


def _ticks(ax) -> tuple[list[float], list[str]]:
    return [float(t) for t in ax.get_xticks()], [t.get_text() for t in ax.get_xticklabels()]


def test_choice_key_is_drawn_as_categories_even_when_numeric():
    """width {choice: [8, 16, 24]}: one evenly spaced tick per value, in numeric order."""
    trials = _width_trials([24, 8, 16, 8], [1e-4] * 4)
    ax = figure_vs_key(trials, ("AP", "max"), "model.backbone.width", "choice").axes[0]
    assert _ticks(ax) == ([0.0, 1.0, 2.0], ["8", "16", "24"])
    # a single sampled value: one tick "8", not a continuous axis from 7.6 to 8.4
    ax = figure_vs_key(trials[1:2], ("AP", "max"), "model.backbone.width", "grid").axes[0]
    assert _ticks(ax) == ([0.0], ["8"])
    assert axis_plan([24, 8, 16], "choice").labels == ["8", "16", "24"]
    assert axis_plan([24, 8, 16], "randint").scale == "linear"


def test_loguniform_key_is_on_a_log_axis_even_over_a_short_range():
    trials = _width_trials([8, 8, 8], [1e-4, 2e-4, 5e-4])  # max/min 5: the guess would be linear
    assert figure_vs_key(trials, ("AP", "max"), "optimizer.lr", "loguniform").axes[0].get_xscale() == "log"
    assert figure_vs_key(trials, ("AP", "max"), "optimizer.lr", "uniform").axes[0].get_xscale() == "linear"
    assert figure_vs_key(trials, ("AP", "max"), "optimizer.lr", None).axes[0].get_xscale() == "linear"


def test_pareto_front_only_over_searched_objectives(tmp_path):
    trials = _width_trials([8, 16, 24], [1e-4, 2e-4, 5e-4])
    keys = ["model.backbone.width"]
    one = plot_figures(trials, [("AP", "max")], keys, {"model.backbone.width": "choice"})
    assert "metric_vs_gflops.png" in one and not has_front(one["metric_vs_gflops.png"])  # gflops not searched
    assert not any(name.startswith("pareto_") for name in one)
    with_gflops = plot_figures(trials, TWO, keys)
    assert has_front(with_gflops["metric_vs_gflops.png"])
    for t, ap, miou in zip(trials, (0.5, 0.3, 0.1), (0.5, 0.7, 0.6)):
        t.history[0].update({"pose/AP": ap, "mask/mIoU": miou})
    objectives = [("pose/AP", "max"), ("mask/mIoU", "max")]
    out = write_report(tmp_path / "out", trials, objectives, keys, {}, kinds={"model.backbone.width": "choice"})
    names = {p.name for p in out["plots"]}
    assert "pareto_pose_AP_vs_mask_mIoU.png" in names and "metric_vs_gflops.png" in names
    figures = plot_figures(trials, objectives, keys)
    assert has_front(figures["pareto_pose_AP_vs_mask_mIoU.png"])
    assert not has_front(figures["metric_vs_gflops.png"])


def test_error_full_in_csv_one_line_in_table_and_summary(tmp_path):
    traceback = ("ray.exceptions.RayTaskError(TrainingFailedError): ray::_Inner.train() (pid=1, ip=10.0.0.1)\n"
                 "Traceback (most recent call last):\n  File \"/x/loop.py\", line 12, in step\n    loss.backward()\n"
                 "RuntimeError: " + "out of memory: tried to allocate 2.00 GiB " * 10)
    trials = _sweep(tmp_path)
    trials[3].error = traceback
    out = write_report(tmp_path / "out", trials, TWO, KEYS, {})
    with open(out["results"], newline="") as f:
        rows = {r["trial_id"]: r for r in csv.DictReader(f)}
    assert rows["sweep_00004"]["error"] == traceback   # the whole text, lines and all
    line = error_line(traceback)
    assert line.startswith("RuntimeError: out of memory") and line.endswith("...") and len(line) <= 160
    summary = out["summary"].read_text().splitlines()
    assert [s for s in summary if "sweep_00004`:" in s] == [f"- `sweep_00004`: {line}"]
    assert not any("loss.backward()" in s for s in summary)
    table = format_table(trials, TWO, KEYS).splitlines()
    assert table[-1] == f"  sweep_00004: {line}" and "Traceback" not in "\n".join(table)
    assert error_line("boom\nsecond line") == "boom"
    assert error_line("x" * 200, width=20) == "x" * 17 + "..."
