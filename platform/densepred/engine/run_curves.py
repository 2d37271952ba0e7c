"""``pictures/curves.png`` of a run folder: loss, the task's metric, learning rate and speed per
epoch, drawn from ``logs/metrics.jsonl`` when a run ends (finished, stopped or interrupted)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ..charts import new_figure, save_png
from .runlog import read_metrics

PICTURES = "pictures"
CURVES = "curves.png"


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], float(r[key])) for r in records
           if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) and r[key] == r[key]]
    return [p[0] for p in pts], [p[1] for p in pts]


def _panel(ax: Any, records: Sequence[dict], key: str, title: str, log: bool = False) -> None:
    xs, ys = _series(records, key)
    ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3)
    if log and ys and min(ys) > 0:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("epoch", fontsize=8)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers


def write_curves(run_dir: Path, primary: Optional[str] = None, title: str = "") -> Optional[Path]:
    """Draw the run's curves into ``<run_dir>/pictures/curves.png``; None when no epoch was logged."""
    records = read_metrics(run_dir)
    if not records:
        return None
    for r in records:
        if r.get("samples") and r.get("epoch_time_s"):
            r["_img_per_s"] = r["samples"] / max(r["epoch_time_s"], 1e-9)
    fig, axes = new_figure(12.0, 3.2, ncols=4)
    _panel(axes[0], records, "loss", "training loss", log=True)
    if primary and _series(records, primary)[0]:
        _panel(axes[1], records, primary, f"{primary} (validation)")
    else:
        axes[1].set_title("no evaluation yet", fontsize=9)
    _panel(axes[2], records, "lr", "learning rate")
    _panel(axes[3], records, "_img_per_s", "training speed (img/s, all workers)")
    fig.suptitle(title or Path(run_dir).name, fontsize=10)
    return save_png(fig, Path(run_dir) / PICTURES / CURVES)
