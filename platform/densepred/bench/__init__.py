"""``platform bench``: this machine's peak, training and inference throughput, data-pipeline and
evaluation speed, and ``platform train`` start-up, measured in one run and written as a table,
JSON and a chart.

Every figure that is compared is measured in the same run (fractions of the peak measured
minutes before, pipeline time over decode time of the same files), so results read as ratios on
shared, noisy CPUs. Each section is a module of its own; ``report`` formats the outputs::

    from densepred.bench import run_bench
    result, json_path, chart_path = run_bench(quick=True, only=None, out=None)
"""
from __future__ import annotations

import datetime as dt
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

SECTIONS = ("peak", "train", "infer", "paths", "data", "eval", "startup")
NEEDS_PEAK = ("train", "infer")  # their fractions of peak divide by the peak of the same run
REPO = Path(__file__).resolve().parents[3]


def default_out(machine_id: str) -> Path:
    """``benchmarks/results/<YYYY-MM-DD>-<machine id>.json`` in the repository (else the cwd)."""
    base = REPO if (REPO / "benchmarks").is_dir() else Path.cwd()
    return base / "benchmarks" / "results" / f"{dt.date.today().isoformat()}-{machine_id}.json"


def sections_to_run(only: Optional[Sequence[str]]) -> list[str]:
    """The requested sections in their fixed order, with ``peak`` added when a section needs it."""
    wanted = set(only or SECTIONS)
    if wanted & set(NEEDS_PEAK):
        wanted.add("peak")
    return [s for s in SECTIONS if s in wanted]


def _run_section(name: str, quick: bool, result: dict[str, Any], log: Callable[[str], None],
                 official_repo: Optional[Path] = None, checkpoints: Optional[Sequence[Path]] = None) -> Any:
    from . import data, evaluation, infer, paths, peak, startup, train

    if name in NEEDS_PEAK and "error" in result["peak"]:
        raise RuntimeError("the peak section failed, so there is no peak to divide by")
    runners = {"peak": lambda: peak.run_peak(quick, log),
               "train": lambda: train.run_train(quick, result["peak"], log, official_repo),
               "infer": lambda: infer.run_infer(quick, result["peak"], log, official_repo),
               "paths": lambda: paths.run_paths(quick, log, checkpoints),
               "data": lambda: data.run_data(quick, log),
               "eval": lambda: evaluation.run_eval(quick, log),
               "startup": lambda: startup.run_startup(quick, log)}
    return runners[name]()


def run_bench(quick: bool = False, only: Optional[Sequence[str]] = None, out: Optional[Path] = None,
              log: Callable[[str], None] = print,
              official_repo: Optional[Path] = None,
              checkpoints: Optional[Sequence[Path]] = None) -> tuple[dict[str, Any], Path, Optional[Path]]:
    """Run the sections, write the JSON (and the chart next to it, ``.png``); returns
    ``(result, json path, chart path or None)``. A failing section is recorded as
    ``{"error": ...}`` (also under ``errors``) and the others still run. ``official_repo``, a
    checkout of the official HRNet pose code, adds its fp32 training step to ``train`` and its fp32
    eager W32 inference to ``infer`` (``bench.official``); a wrong path is a ``ConfigError`` before
    anything is measured. ``checkpoints`` (run folders or checkpoint files) are the trained models
    whose inference paths ``paths`` compares (default: the demo run folders in work_dirs/)."""
    from .. import __version__
    from .machine import machine_info
    from .report import table, write_chart, write_json
    from .official import check_official_repo
    from .timing import torch_threads, usable_threads

    if official_repo is not None:
        official_repo = check_official_repo(official_repo)
    t0 = time.perf_counter()
    machine = machine_info()
    result: dict[str, Any] = {"benchmark": "densepred platform bench", "densepred": __version__,
                              "date": dt.datetime.now().isoformat(timespec="seconds"), "quick": quick,
                              "device": "cpu", "machine": machine, "sections": sections_to_run(only),
                              "errors": {}}
    with torch_threads(usable_threads()):
        for name in result["sections"]:
            log(f"[bench] {name} ...")
            t_section = time.perf_counter()
            try:
                result[name] = _run_section(name, quick, result, log, official_repo, checkpoints)
            except Exception as e:  # one broken section should not hide the others' numbers
                message = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
                result[name], result["errors"][name] = {"error": message}, message
                log(f"[bench] {name} failed: {message}\n{traceback.format_exc(limit=3)}")
            result.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t_section, 1)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    path = Path(out) if out else default_out(machine["id"])
    write_json(path, result)
    chart = path.with_suffix(".png")
    drawn = write_chart(chart, result)
    log("\n" + table(result))
    log(f"\n[bench] {result['seconds']:.0f} s; wrote {path}" + (f" and {chart}" if drawn else ""))
    return result, path, chart if drawn else None
