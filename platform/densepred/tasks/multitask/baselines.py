"""Single-task baseline figures for Δm, from numbers, eval ``metrics.json`` files or run folders.

``--baseline`` items (``platform eval``):
- ``pose/AP=0.62``: a figure;
- ``pose=work_dirs/pose_demo``: a single-task run folder; its best evaluation (by that task's
  primary metric, from ``logs/metrics.jsonl``) gives the figures;
- ``pose=out/metrics.json``: the metrics file ``platform eval --out`` wrote for the single task.
From a run or a file, the member's metrics named in ``task.baselines`` are taken, or else its
primary metric.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ...errors import PlatformError


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _best_record(path: Path, metric: str, greater: bool) -> dict[str, Any]:
    """The evaluated epoch of a run's ``metrics.jsonl`` with the best ``metric``."""
    records = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get(metric), (int, float)):
            records.append(rec)
    if not records:
        raise PlatformError(f"--baseline: {path} holds no evaluation with {metric}; was the run evaluated?")
    return (max if greater else min)(records, key=lambda r: r[metric])


def _figures_of(member: str, target: Path, task: Any) -> dict[str, float]:
    """The single-task figures of ``member`` read from a run folder or a metrics file."""
    own = task.members[member]
    if target.is_dir():
        log = next((p for p in (target / "logs" / "metrics.jsonl", target / "metrics.jsonl") if p.is_file()), None)
        if log is None:
            raise PlatformError(f"--baseline {member}={target}: not a run folder (no logs/metrics.jsonl)")
        figures = _best_record(log, own.primary_metric, own.greater_is_better)
    elif target.is_file():
        try:
            figures = json.loads(target.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PlatformError(f"--baseline {member}={target}: not a metrics JSON file ({e})") from None
    else:
        raise PlatformError(f"--baseline {member}={target}: no such run folder or metrics file")
    wanted = [k.split("/", 1)[1] for k in task.section.baselines if k.startswith(f"{member}/")] \
        or [own.primary_metric]
    out = {}
    for name in wanted:
        value = figures.get(name)
        if not isinstance(value, (int, float)):
            raise PlatformError(f"--baseline {member}={target}: it has no figure {name!r} "
                                f"(has: {', '.join(sorted(k for k in figures if '/' not in k)[:8])})")
        out[f"{member}/{name}"] = float(value)
    return out


def parse_baselines(items: Iterable[str], task: Any) -> dict[str, float]:
    """``--baseline`` items on top of ``task.baselines`` (later items win)."""
    out = dict(task.section.baselines)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise PlatformError(f"--baseline {item!r}: expected MEMBER=RUN_DIR, MEMBER=metrics.json or "
                                "MEMBER/METRIC=NUMBER")
        member = key.split("/", 1)[0]
        if member not in task.members:
            raise PlatformError(f"--baseline {item!r}: no member {member!r}; members: {', '.join(task.members)}")
        if "/" in key:
            number = _number(value)
            if number is None:
                raise PlatformError(f"--baseline {item!r}: {value!r} is not a number")
            out[key] = number
        else:
            out.update(_figures_of(member, Path(value).expanduser(), task))
    return out


def check_baselines(baselines: Mapping[str, float], known: Iterable[str]) -> None:
    """Every baseline names a metric the run reports."""
    names = set(known)
    for key in baselines:
        if key not in names:
            raise PlatformError(f"baseline {key!r} is not a metric of this run; use <member>/<metric>, "
                                f"e.g. {', '.join(sorted(names)[:3])}")
