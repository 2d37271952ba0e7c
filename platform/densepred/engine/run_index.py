"""`platform runs`: the run folders under a folder as one table, and two runs side by side.

A run folder is recognised by its ``config.yaml`` and ``logs/``; sweep trials
(``tune/<sweep>/trials/<id>``) are run folders too. What a row shows comes from the files every
run writes: ``status.json`` (state, times, the task's metric), ``logs/metrics.jsonl`` (epochs,
metrics, best) and ``config.yaml``. Runs from before ``status.json`` existed get their state from
``logs/train.log``."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import PlatformError
from .run_config import CONFIG_FILE, backbone_label, config_diff, read_run_config
from .run_state import read_status
from .runlog import read_metrics

#: folders inside a run folder, or Ray's, that never hold run folders
_SKIP = {"checkpoints", "logs", "eval", "final_eval", "predictions", "pictures", "ray_tune", "tensorboard",
         "__pycache__", ".git", "node_modules"}
#: metrics.jsonl keys that describe the epoch's bookkeeping, not how good the model is
BOOKKEEPING = {"step", "time", "epoch", "eval_round", "planned_epochs", "faults", "faults_total", "skipped_batches",
               "samples", "startup_s", "data_wait_ms_per_step", "data_wait_fraction", "epoch_time_s", "eval_time_s",
               "lr", "weight_fingerprints"}
_KNOWN_METRICS = ("AP", "mIoU", "PCKh", "mask_AP", "delta_m")  # runs older than status.json's "metric"


@dataclass
class RunSummary:
    """One row of the table."""

    path: Path
    task: str
    backbone: str
    status: str
    epochs_done: int = 0
    epochs_planned: Optional[int] = None
    metric: Optional[str] = None
    best: Optional[float] = None
    seconds: Optional[float] = None
    started: Optional[float] = None
    reason: Optional[str] = None
    config: dict = field(default_factory=dict)
    final: dict = field(default_factory=dict)   # the last value of every metric


def is_run_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / "logs").is_dir()


def find_runs(root: Path) -> list[Path]:
    """Every run folder at or under ``root`` (a run folder's own sub-folders are not searched)."""
    found = []
    for folder, dirs, _ in os.walk(root):
        here = Path(folder)
        if is_run_dir(here):
            found.append(here)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
    return found


def _status_from_log(run_dir: Path, done: int, planned: Optional[int]) -> tuple[str, Optional[str]]:
    """The state of a run that has no status.json: its last [train] verdict, else its epochs."""
    if (run_dir / "logs" / "error.txt").is_file():
        return "failed", (run_dir / "logs" / "error.txt").read_text().splitlines()[0][:200]
    try:
        lines = (run_dir / "logs" / "train.log").read_text().splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        for state in ("finished", "failed", "interrupted"):
            if f"[train] {state}" in line:
                return state, line.split(f"[train] {state}", 1)[1].lstrip(": ")[:200] or None
    return ("finished" if planned and done >= planned else "interrupted"), None


def _final_metrics(records: list[dict]) -> dict[str, float]:
    """The last value of each numeric metric over the epochs (evaluations are not every epoch)."""
    out: dict[str, float] = {}
    for r in records:
        for k, v in r.items():
            if k not in BOOKKEEPING and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = float(v)
    return out


def summarize_run(run_dir: Path) -> RunSummary:
    """Read one run folder's files into a table row (never raises for a damaged folder)."""
    cfg = read_run_config(run_dir) or {}
    records = read_metrics(run_dir)
    last = records[-1] if records else {}
    done = int(last.get("epoch", 0))
    planned = last.get("planned_epochs") or (cfg.get("train") or {}).get("epochs")
    planned = int(planned) if isinstance(planned, (int, float)) else None
    status = read_status(run_dir)
    final = _final_metrics(records)
    row = RunSummary(run_dir, str((cfg.get("task") or {}).get("type", "?")), backbone_label(cfg), "?", done,
                     planned, config=cfg, final=final)
    row.best = last.get("best") if isinstance(last.get("best"), (int, float)) else None
    if status:
        row.status, row.reason, row.metric = status["status"], status.get("reason"), status.get("metric")
        row.started = status.get("first_started")
        row.seconds = float(status.get("elapsed_s", 0.0))
        if status["status"] == "running":
            row.seconds += max(0.0, time.time() - float(status.get("started", time.time())))
    else:
        row.status, row.reason = _status_from_log(run_dir, done, planned)
        row.metric = next((k for k in _KNOWN_METRICS if k in final), None)
        row.started = records[0]["time"] - records[0].get("epoch_time_s", 0.0) if records else None
        row.seconds = sum(float(r.get("epoch_time_s", 0.0)) + float(r.get("eval_time_s", 0.0)) for r in records) \
            or None
    return row


def _fmt_seconds(s: Optional[float]) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"
    return "-" if v is None else str(v)


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    rows = [header] + list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def runs_table(root: Path) -> str:
    """The table `platform runs` prints for the runs under ``root``, oldest first."""
    if not root.is_dir():
        raise PlatformError(f"{root}: no such folder; give the folder that holds your run folders "
                            "(the task's work_dir, e.g. platform runs work_dirs)")
    rows = sorted((summarize_run(p) for p in find_runs(root)), key=lambda r: (r.started or 0.0, str(r.path)))
    if not rows:
        return f"no run folders under {root} (a run folder holds config.yaml and logs/)"
    body = [[_display(r.path, root), r.task, r.backbone,
             f"{r.epochs_done}/{r.epochs_planned}" if r.epochs_planned else str(r.epochs_done),
             f"{r.metric or 'best'} {r.best:.4f}" if r.best is not None else "-", r.status,
             _fmt_seconds(r.seconds), time.strftime("%Y-%m-%d %H:%M", time.localtime(r.started)) if r.started else "-"]
            for r in rows]
    text = _table(["run", "task", "backbone", "epochs", "best", "status", "time", "started"], body)
    notes = [f"  {_display(r.path, root)}: {r.status}: {r.reason}" for r in rows
             if r.status in ("failed", "interrupted") and r.reason]
    return text + (f"\n\n{len(rows)} run(s) under {root}" + ("\n" + "\n".join(notes) if notes else ""))


def resolve_run(arg: str, work_dir: Path = Path("work_dirs")) -> Path:
    """A run folder given as a path, or as a name inside ``work_dirs``."""
    for cand in (Path(arg), work_dir / arg):
        if is_run_dir(cand):
            return cand
    raise PlatformError(f"{arg}: not a run folder (it needs config.yaml and logs/); list them with: platform runs")


def compare_runs(a: Path, b: Path) -> str:
    """Two runs side by side: what they are, the config keys that differ, their final metrics."""
    ra, rb = summarize_run(a), summarize_run(b)
    head = [["", str(a), str(b)],
            ["task", ra.task, rb.task], ["backbone", ra.backbone, rb.backbone], ["status", ra.status, rb.status],
            ["epochs", f"{ra.epochs_done}/{ra.epochs_planned or '?'}", f"{rb.epochs_done}/{rb.epochs_planned or '?'}"],
            ["time", _fmt_seconds(ra.seconds), _fmt_seconds(rb.seconds)],
            ["best", _fmt_value(ra.best) + (f" ({ra.metric})" if ra.metric else ""),
             _fmt_value(rb.best) + (f" ({rb.metric})" if rb.metric else "")]]
    out = [_table(head[0], head[1:])]
    skip = ("run_name",)
    diff = [(k, x, y) for k, x, y in config_diff(ra.config, rb.config) if k not in skip]
    out.append(f"\nconfig differences ({len(diff)} key(s)):" if diff else "\nconfig: identical (apart from run_name)")
    if diff:
        out.append(_table(["key", "A", "B"], [[k, _short(x), _short(y)] for k, x, y in diff]))
    keys = [k for k in sorted(set(ra.final) | set(rb.final))]
    if keys:
        out.append("\nfinal metrics (the last value of each):")
        out.append(_table(["metric", "A", "B", "B - A"],
                          [[k, _fmt_value(ra.final.get(k)), _fmt_value(rb.final.get(k)), _delta(ra.final.get(k),
                                                                                              rb.final.get(k))]
                           for k in _ordered(keys, ra.metric or rb.metric)]))
    return "\n".join(out)


def _short(v: Any, limit: int = 60) -> str:
    text = "-" if v is None else str(v)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _delta(x: Optional[float], y: Optional[float]) -> str:
    if x is None or y is None or x != x or y != y:
        return ""
    return f"{y - x:+.4f}"


def _ordered(keys: list[str], metric: Optional[str]) -> list[str]:
    """The task's metric, best and loss first, then the rest in name order."""
    first = [k for k in (metric, "best", "loss") if k and k in keys]
    return first + [k for k in keys if k not in first]
