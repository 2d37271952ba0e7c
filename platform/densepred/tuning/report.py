"""Results of a sweep: ranking, the Pareto front, and the files written into ``tune/<space name>/``.

``write_report`` writes ``results.csv`` (one row per trial), ``summary.md`` (ranked table),
``best.yaml`` (the complete task config of the best trial), ``best_checkpoint.txt`` and PNG pictures
(matplotlib, Agg canvas: no display and no pyplot state is touched). ``format_table`` gives the same
ranked table for the console.

Pictures follow how each key was searched (``kinds``: key -> distribution kind): ``choice`` and
``grid`` keys are categories (one evenly spaced tick per value, numbers included), ``loguniform``
keys a log axis. A Pareto front is drawn only over the sweep's own objectives: with two or more,
the first objective against each other one (``metric_vs_gflops.png`` when that is gflops, else
``pareto_<m1>_vs_<m2>.png``); GFLOPs that are not an objective are shown without a front.
Errors: ``results.csv`` keeps each failed trial's full text; the console table and ``summary.md``
show one line of it.
"""
from __future__ import annotations

import csv
import io
import math
import numbers
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from ..atomicfile import write_text_atomic

Objective = tuple[str, str]  # (metric name, "max" | "min")

COST_KEYS = ("params", "gflops", "latency_ms")
# Bookkeeping that Ray or the training loop adds to every report: not metrics of the model.
_NOT_METRICS = frozenset({"epoch", "training_iteration", "time_this_iter_s", "time_total_s", "timestamp",
                          "time_since_restore", "iterations_since_restore", "done", "trial_id", "date",
                          "hostname", "node_ip", "pid", "config", "experiment_tag", "checkpoint_dir_name",
                          "should_checkpoint", "already_finished", "weight_fingerprints"})
_STATE_COLORS = {"TERMINATED": "tab:green", "STOPPED": "tab:orange", "ERROR": "tab:red",
                 "RUNNING": "tab:blue", "PENDING": "tab:gray"}
_STATE_ORDER = ("TERMINATED", "STOPPED", "ERROR", "RUNNING", "PENDING")
ERROR_WIDTH = 160  # characters of a failed trial's error in the console table and summary.md


@dataclass
class TrialRecord:
    """One trial of a sweep as the runner saw it."""
    trial_id: str
    state: str                     # TERMINATED | STOPPED (early-stopped) | ERROR | RUNNING | PENDING
    params: dict[str, Any]         # searched dotted key -> value
    history: list[dict[str, Any]]  # one dict per reported epoch, in order
    error: Optional[str] = None    # the failed trial's error, full text (may span lines)
    seconds: float = 0.0           # wall time of the trial
    run_dir: Optional[str] = None  # the trial's run folder


# ----------------------------------------------------------------------------------------- values

def _number(value: Any) -> Optional[float]:
    """``value`` as a finite-or-infinite float, None for missing, NaN, booleans and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    v = float(value)
    return None if math.isnan(v) else v


def trial_value(trial: TrialRecord, metric: str, mode: str) -> Optional[float]:
    """The trial's best ``metric`` over its history (largest for mode max, smallest for min), or None."""
    values = [v for v in (_number(h.get(metric)) for h in trial.history) if v is not None]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _last_value(trial: TrialRecord, metric: str) -> Optional[float]:
    """The last reported numeric value of ``metric`` (integers stay integers), or None."""
    for h in reversed(trial.history):
        v = _number(h.get(metric))
        if v is not None:
            return int(h[metric]) if isinstance(h[metric], numbers.Integral) else v
    return None


def _metric_value(trial: TrialRecord, metric: str, objectives: Sequence[Objective]) -> Optional[float]:
    """Best value for an objective (per its mode), else the last reported value."""
    mode = dict(objectives).get(metric)
    return trial_value(trial, metric, mode) if mode else _last_value(trial, metric)


def _epochs(trial: TrialRecord) -> int:
    """Epochs run: the last reported epoch number, else the number of reports."""
    epochs = [int(e) for e in (_number(h.get("epoch")) for h in trial.history) if e is not None]
    return max(epochs) if epochs else len(trial.history)


def _epoch_of(index: int, entry: dict[str, Any]) -> float:
    """The epoch number of the ``index``-th history entry (1-based when the entry carries none)."""
    e = _number(entry.get("epoch"))
    return e if e is not None else float(index + 1)


# ------------------------------------------------------------------------------------ ranking

def _scores(trial: TrialRecord, objectives: Sequence[Objective]) -> Optional[tuple[float, ...]]:
    """The objective values as "larger is better" scores, None unless all are reported."""
    scores = []
    for metric, mode in objectives:
        v = trial_value(trial, metric, mode)
        if v is None:
            return None
        scores.append(v if mode == "max" else -v)
    return tuple(scores)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def pareto_front(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> set[str]:
    """Ids of the trials that no other trial dominates (only trials with every objective reported).

    Trials with identical values do not dominate each other: both are on the front."""
    scored = [(t.trial_id, s) for t in trials if (s := _scores(t, objectives)) is not None]
    return {tid for tid, s in scored if not any(_dominates(o, s) for _, o in scored)}


def rank_trials(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Trials best first.

    One objective: by its best value. Several: the Pareto front first (ordered by the first
    objective), then the others by the first objective. Trials without a value of the first objective
    come last, in their given order. Ties keep the given order (the sort is stable)."""
    if not objectives:
        return list(trials)
    metric, mode = objectives[0]
    front = pareto_front(trials, objectives) if len(objectives) > 1 else set()
    valued = [(t, v) for t in trials if (v := trial_value(t, metric, mode)) is not None]
    missing = [t for t in trials if trial_value(t, metric, mode) is None]
    sign = -1.0 if mode == "max" else 1.0
    valued.sort(key=lambda tv: (tv[0].trial_id not in front, sign * tv[1]))
    return [t for t, _ in valued] + missing


def _ranks(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> dict[str, Optional[int]]:
    """1-based rank of every trial with a value of the first objective; None for the others."""
    ranked = rank_trials(trials, objectives)
    out: dict[str, Optional[int]] = {t.trial_id: None for t in trials}
    if objectives:
        metric, mode = objectives[0]
        for i, t in enumerate(ranked):
            if trial_value(t, metric, mode) is not None:
                out[t.trial_id] = i + 1
    return out


def _best(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> Optional[TrialRecord]:
    """The best-ranked trial, None when no trial reported the first objective."""
    if not objectives:
        return None
    ranked = rank_trials(trials, objectives)
    return ranked[0] if ranked and trial_value(ranked[0], *objectives[0]) is not None else None


# ------------------------------------------------------------------------------------- tables

def _fmt(value: Any) -> str:
    """A cell: floats with 4 significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Column labels for dotted keys: the shortest dotted suffix that is unique among ``keys``."""
    labels = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            label = ".".join(parts[-n:])
            if sum(1 for k in keys if k == label or k.endswith("." + label)) == 1:
                break
        labels[key] = label
    return labels


def _table_rows(trials: Sequence[TrialRecord], objectives: Sequence[Objective], searched_keys: Sequence[str],
                limit: Optional[int]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the ranked table (shared by the console and summary.md)."""
    labels = _short_keys(list(searched_keys))
    front = pareto_front(trials, objectives) if len(objectives) > 1 else set()
    header = (["rank", "trial", "state"] + [labels[k] for k in searched_keys]
              + [f"{m} ({mode})" for m, mode in objectives] + ["epochs", "seconds"])
    ranks = _ranks(trials, objectives)
    rows = []
    for t in rank_trials(trials, objectives)[:limit]:
        rank = _fmt(ranks[t.trial_id]) + ("*" if t.trial_id in front else "")
        rows.append([rank, t.trial_id, t.state] + [_fmt(t.params.get(k)) for k in searched_keys]
                    + [_fmt(trial_value(t, m, mode)) for m, mode in objectives]
                    + [str(_epochs(t)), f"{t.seconds:.0f}"])
    return header, rows


def format_table(trials: Sequence[TrialRecord], objectives: Sequence[Objective], searched_keys: Sequence[str],
                 limit: Optional[int] = None) -> str:
    """The ranked table as aligned plain text (a ``*`` after the rank marks the Pareto front)."""
    header, rows = _table_rows(trials, objectives, searched_keys, limit)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    shown = {r[1] for r in rows}
    failed = [t for t in trials if t.error and t.trial_id in shown]
    if failed:
        lines += ["errors:"] + [f"  {t.trial_id}: {error_line(t.error)}" for t in failed]
    if limit is not None and len(trials) > limit:
        lines.append(f"... {len(trials) - limit} more trial(s)")
    return "\n".join(lines)


def error_line(text: str, width: int = ERROR_WIDTH) -> str:
    """One line of an error for tables: the first non-empty line, or for a Python traceback its
    final ``SomeError: message`` line (the first line of a traceback says nothing); whitespace
    collapsed and cut at the end with ``...`` (the start names the error, so it is kept)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[0]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        line = next((x for x in reversed(lines) if not x[:1].isspace()), line)
    line = " ".join(line.split())
    return line if len(line) <= width else line[:max(0, width - 3)].rstrip() + "..."


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (pipes in cells escaped)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


# ---------------------------------------------------------------------------------- the files

def _metric_names(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[str]:
    """Objectives first, then every other numeric metric any trial reported (first-seen order)."""
    names = [m for m, _ in objectives]
    for t in trials:
        for h in t.history:
            for k, v in h.items():
                if k not in names and k not in _NOT_METRICS and k not in COST_KEYS and _number(v) is not None:
                    names.append(k)
    return names


def _results_csv(trials: Sequence[TrialRecord], objectives: Sequence[Objective],
                 searched_keys: Sequence[str]) -> str:
    """results.csv: one row per trial in rank order."""
    fixed = ["trial_id", "state", "epochs", "seconds", "error", "pareto", "rank"]
    metrics = [m for m in _metric_names(trials, objectives) if m not in fixed and m not in searched_keys]
    costs = [c for c in COST_KEYS if c not in metrics and c not in searched_keys]
    columns = (["trial_id", "state"] + list(searched_keys) + metrics + costs + ["epochs", "seconds", "error"]
               + (["pareto"] if len(objectives) > 1 else []) + ["rank"])
    front = pareto_front(trials, objectives)
    ranks = _ranks(trials, objectives)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for t in rank_trials(trials, objectives):
        row: dict[str, Any] = {"trial_id": t.trial_id, "state": t.state, "epochs": _epochs(t),
                               "seconds": round(t.seconds, 3), "error": t.error or "", "rank": ranks[t.trial_id] or ""}
        row.update({k: _csv_cell(t.params.get(k)) for k in searched_keys})
        row.update({m: _csv_cell(_metric_value(t, m, objectives)) for m in metrics + costs})
        if len(objectives) > 1:
            row["pareto"] = "true" if t.trial_id in front else "false"
        writer.writerow(row)
    return buf.getvalue()


def _csv_cell(value: Any) -> Any:
    """None as an empty cell; floats at full precision; everything else as its text."""
    return "" if value is None else value if isinstance(value, (int, float, str)) else str(value)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and paths turned into what yaml.safe_dump accepts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        try:
            return value.item()  # numpy / torch scalars
        except (TypeError, ValueError):
            return str(value)
    return value


def _values_text(trial: TrialRecord, objectives: Sequence[Objective]) -> str:
    """"AP 0.512 (max), gflops 0.43 (min)" for a trial."""
    return ", ".join(f"{m} {_fmt(trial_value(trial, m, mode))} ({mode})" for m, mode in objectives)


def _best_yaml(best: TrialRecord, config: dict, objectives: Sequence[Objective], sweep: str) -> str:
    """best.yaml: a header comment and the complete task config of the best trial."""
    params = ", ".join(f"{k}={v}" for k, v in best.params.items())
    header = (f"# Best trial of sweep {sweep}: {best.trial_id} ({best.state}, {_epochs(best)} epochs)\n"
              f"# {_values_text(best, objectives)}\n"
              + (f"# searched values: {params}\n" if params else "")
              + "# Train it again with: platform train best.yaml\n")
    return header + yaml.safe_dump(_plain(config), sort_keys=False)


def best_checkpoint(trial: TrialRecord) -> Optional[Path]:
    """``run_dir/best.pth`` if it exists, else the newest ``checkpoints/epoch_*/model.pth``, else None."""
    if not trial.run_dir:
        return None
    run_dir = Path(trial.run_dir)
    if (run_dir / "best.pth").is_file():
        return run_dir / "best.pth"

    def epoch(p: Path) -> tuple[int, float]:
        digits = re.sub(r"\D", "", p.parent.name)
        return (int(digits) if digits else -1, p.stat().st_mtime)
    found = [p for p in (run_dir / "checkpoints").glob("epoch_*/model.pth") if p.is_file()]
    return max(found, key=epoch) if found else None


def _summary_md(trials: Sequence[TrialRecord], objectives: Sequence[Objective], searched_keys: Sequence[str],
                sweep: str, best: Optional[TrialRecord], pictures: Sequence[Path]) -> str:
    """summary.md: objectives, trials per state, the best trial, the ranked table, errors, pictures."""
    states = Counter(t.state for t in trials)
    counts = ", ".join(f"{states[s]} {s}" for s in sorted(states, key=_state_rank))
    lines = [f"# Sweep {sweep}", "",
             "- Objectives: " + (", ".join(f"{m} ({mode})" for m, mode in objectives) or "none"),
             f"- Trials: {len(trials)}" + (f" ({counts})" if counts else ""),
             "- Searched: " + (", ".join(f"`{k}`" for k in searched_keys) or "nothing"),
             "- Best trial: " + (f"`{best.trial_id}`: {_values_text(best, objectives)}" if best
                                 else "none (no trial reported " + (objectives[0][0] if objectives else "a metric")
                                 + ")")]
    if len(objectives) > 1:
        lines.append("- `*` after the rank: on the Pareto front (not dominated by any other trial)")
    lines += ["", _markdown_table(*_table_rows(trials, objectives, searched_keys, None))]
    failed = [t for t in trials if t.error]
    if failed:
        lines += ["", "## Errors", "", "One line each; `results.csv` has the full text.", ""]
        lines += [f"- `{t.trial_id}`: {error_line(t.error)}" for t in failed]
    if pictures:
        lines += ["", "## Pictures", ""] + [f"![{p.stem}]({p.name})" for p in pictures]
    return "\n".join(lines) + "\n"


def _state_rank(state: str) -> int:
    return _STATE_ORDER.index(state) if state in _STATE_ORDER else len(_STATE_ORDER)


def write_report(out_dir: Path, trials: Sequence[TrialRecord], objectives: Sequence[Objective],
                 searched_keys: list[str], configs: dict[str, dict],
                 kinds: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Write every result file into ``out_dir`` (created) and return their paths. ``kinds`` maps
    searched keys to their distribution kind (``choice``, ``grid``, ``uniform``, ``quniform``,
    ``loguniform``, ``randint``) for the pictures' axes; a key without one is guessed from its values.

    Returns {"results", "summary", "best_config" (None when no trial has a value or its config is
    unknown), "best_checkpoint", "plots" (the pictures written)}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep = out_dir.name
    paths: dict[str, Any] = {"results": out_dir / "results.csv", "summary": out_dir / "summary.md",
                             "best_config": None, "best_checkpoint": out_dir / "best_checkpoint.txt"}
    write_text_atomic(paths["results"], _results_csv(trials, objectives, searched_keys))
    best = _best(trials, objectives)
    if best is not None and best.trial_id in configs:
        paths["best_config"] = out_dir / "best.yaml"
        write_text_atomic(paths["best_config"], _best_yaml(best, configs[best.trial_id], objectives, sweep))
    elif (out_dir / "best.yaml").exists():  # a stale one from an earlier run of this sweep
        (out_dir / "best.yaml").unlink()
    ckpt = best_checkpoint(best) if best is not None else None
    write_text_atomic(paths["best_checkpoint"], f"{ckpt.resolve()}\n" if ckpt else
                      "no checkpoint: " + (f"trial {best.trial_id} left none in {best.run_dir}\n" if best
                                           else "no trial reported the metric\n"))
    from .plots import write_plots

    paths["plots"] = write_plots(out_dir, trials, objectives, searched_keys, kinds)  # after the text files
    write_text_atomic(paths["summary"], _summary_md(trials, objectives, searched_keys, sweep, best, paths["plots"]))
    return paths
