"""Run a sweep with Ray Tune: one Tune function trial per sampled config, each an ordinary Ray Train
run (the platform's engine) reported back to Tune with ``TuneReportCallback``.

Layout under ``<work_dir or --storage>/tune/<space name>/``: the results (``report.py``),
``trials/<trial id>/`` (each trial's run folder: checkpoints, logs, config.yaml), ``tune.log``
(Ray's own log lines) and ``ray_tune/`` (Tune's experiment state, used by ``--resume``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Optional

from ..errors import PlatformError
from .budget import Budget, check_grace_period, sweep_budget
from .console import ConsoleTable, TuneLogWatch
from .report import TrialRecord, format_table, write_report
from .space import SweepSpec, check_against_task, tune_param_space
from .tracking import SweepTracking, close_sweep, settle_trials, open_sweep, sweep_target
from .trial import make_trial_fn, read_error

TRIALS = "trials"
TUNE_STATE = "ray_tune"   # Tune's experiment folder inside the sweep folder
TUNE_LOG = "tune.log"


def sweep_dir(spec: SweepSpec, storage: Optional[str]) -> Path:
    """``<storage or the task's work_dir>/tune/<space name>``."""
    if storage:
        base = Path(storage).expanduser().resolve()
    else:
        base = Path(spec.task_config(spec.overrides).get("work_dir") or spec.base_dir / "work_dirs")
    return base / "tune" / spec.name


def _scheduler(spec: SweepSpec, budget: Budget) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    s = spec.scheduler
    grace = int(s.get("grace_period", 1))
    if s["type"] == "asha":
        return ASHAScheduler(time_attr="eval_round", max_t=budget.rounds, grace_period=grace,
                             reduction_factor=s.get("reduction_factor", 2))
    if s["type"] == "median":
        return MedianStoppingRule(time_attr="eval_round", grace_period=grace, min_samples_required=2)
    return FIFOScheduler()


def _search(spec: SweepSpec) -> Any:
    if spec.search["type"] != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" lines on the console
    multi = len(spec.metrics) > 1
    sampler = None
    if multi:
        from .nsga2 import PicklableNSGAIISampler
        sampler = PicklableNSGAIISampler(seed=spec.search.get("seed"))
    return OptunaSearch(metric=spec.metrics if multi else spec.metrics[0],
                        mode=spec.modes if multi else spec.modes[0], sampler=sampler, seed=spec.search.get("seed"))


def _tune_config(spec: SweepSpec, budget: Budget) -> Any:
    from ray.tune import TuneConfig

    single = len(spec.metrics) == 1
    samples = 1 if spec.search["type"] == "grid" and "samples" not in spec.search else spec.search["samples"]
    return TuneConfig(metric=spec.metrics[0] if single else None, mode=spec.modes[0] if single else None,
                      search_alg=_search(spec), scheduler=_scheduler(spec, budget), num_samples=samples,
                      max_concurrent_trials=spec.concurrent)


def best_config(spec: SweepSpec, params: dict) -> dict:
    """The complete config of a trial as a task file that `platform train` runs unchanged: bases
    resolved, searched values filled in, paths absolute, a fresh run name."""
    from ..engine.launch import plain

    cfg = spec.task_config({**spec.trial_overrides(params), "run_name": f"{spec.name}_best",
                            # the trial's scaling: the same threads give the same numbers
                            "ray.workers": spec.workers_per_trial, "ray.cpus_per_worker": spec.cpus_per_worker})
    return plain(cfg)


def _trial_info(grid: Any) -> dict[str, tuple[str, dict]]:
    """trial id -> (Tune status, sampled config), also for trials that never reported."""
    analysis = getattr(grid, "_experiment_analysis", None)
    return {t.trial_id: (str(t.status), dict(t.config or {})) for t in getattr(analysis, "trials", [])}


def collect_trials(spec: SweepSpec, grid: Any, out: Path, running: set[str] = frozenset()) -> list[TrialRecord]:
    """One TrialRecord per trial from Tune's results (their histories survive a resume); trials in
    ``running`` were cut short by an interrupt, not stopped by the scheduler."""
    info = _trial_info(grid)
    records = []
    for result in grid:
        frame = result.metrics_dataframe
        history = [] if frame is None else [
            {k: v for k, v in row.items() if isinstance(v, (int, float)) and v == v and not k.startswith("config/")}
            for row in frame.to_dict("records") if not isinstance(row.get("stopped"), str)]  # a stop is no epoch
        # Tune names trial folders run_trial_<experiment>_<index>_...; the trial id is the middle.
        trial_id = (result.metrics or {}).get("trial_id") or "_".join(Path(result.path).name.split("_")[2:4])
        state, sampled = info.get(trial_id, ("TERMINATED", {}))
        params = {k: (result.config or sampled).get(k) for k in spec.space}
        last = history[-1] if history else {}
        if result.error is not None:
            state = "ERROR"
        elif trial_id in running:
            state = "RUNNING" if history else "PENDING"
        elif state == "TERMINATED" and int(last.get("epoch", 0)) < int(last.get("planned_epochs", 0)):
            state = "STOPPED"
        error = None
        if result.error is not None:
            error = read_error(out / TRIALS, trial_id) or " ".join(str(result.error).split())
        seconds = float(last.get("time_total_s", 0.0))
        records.append(TrialRecord(trial_id, state, params, history, error, seconds, str(out / TRIALS / trial_id)))
    return records


def _tune_state(out: Path, resume: bool) -> bool:
    """Whether to restore Tune's state (``--resume`` of a sweep that has one). A first start that
    was cut off before Tune wrote a usable state leaves nothing to resume and nothing to refuse:
    that folder is cleared and the sweep starts afresh."""
    from ray import tune

    state = out / TUNE_STATE
    usable = state.is_dir() and (state / "tuner.pkl").is_file() and (state / "tuner.pkl").stat().st_size > 0 \
        and tune.Tuner.can_restore(str(state))
    if usable and not resume:
        raise PlatformError(f"sweep '{out.name}' already ran in {out}: add --resume to continue it (it retries failed "
                            "trials; --resume --keep-errors keeps them), or give --storage DIR (or copy the space "
                            "file under a new name) for a new sweep")
    if resume and not usable:
        if not out.is_dir():
            raise PlatformError(f"--resume: no sweep '{out.name}' to resume in {out.parent} (check --storage)")
        print(f"[tune] {out} holds no resumable sweep state (its first start stopped before any trial was "
              "recorded): starting the sweep afresh", flush=True)
    if not usable and state.exists():
        shutil.rmtree(state)
    return usable


def _tuner(spec: SweepSpec, out: Path, budget: Budget, restore: bool, keep_errors: bool, console: ConsoleTable,
           tracking: Optional[SweepTracking] = None) -> Any:
    from ray import tune

    trainable = tune.with_resources(make_trial_fn(spec, out / TRIALS, tracking), {"cpu": 0.01})
    if restore:
        # "resume" keeps a failed trial's id, so it runs again in its own run folder and continues
        # from that run's last checkpoint ("restart" would make it a new trial with a new folder).
        return tune.Tuner.restore(str(out / TUNE_STATE), trainable, resume_unfinished=True,
                                  resume_errored=not keep_errors)
    run_config = tune.RunConfig(name=TUNE_STATE, storage_path=str(out), callbacks=[console.callback], verbose=0,
                                failure_config=tune.FailureConfig(max_failures=0))
    return tune.Tuner(trainable, param_space=tune_param_space(spec), tune_config=_tune_config(spec, budget),
                      run_config=run_config)


def check_sweep(spec: SweepSpec) -> Budget:
    """Every check of a sweep that needs no Ray: the space against the task and its data, and the
    schedulers' grace period against the trials' budget (returned)."""
    check_against_task(spec)
    budget = sweep_budget(spec)
    check_grace_period(spec, budget)
    return budget


def run_sweep(spec: SweepSpec, address: Optional[str] = None, storage: Optional[str] = None,
              resume: bool = False, keep_errors: bool = False) -> dict[str, Any]:
    """Check, run (or resume) the sweep, write the results; returns the report paths and records.
    Raises KeyboardInterrupt after writing partial results if the sweep was interrupted, and
    PlatformError when no trial finished."""
    from ..engine.launch import ensure_ray

    budget = check_sweep(spec)
    out = sweep_dir(spec, storage)
    target = sweep_target(spec, out)
    restore = _tune_state(out, resume)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the platform prints its own trial table
    # Not every report holds the objective: epochs between evaluations (evaluation.interval > 1)
    # and the last report of a run that stopped (non-finite loss); Tune's strict check would end
    # the whole sweep on them.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    if not address:  # no preemption notices on a local instance; its watcher only logs an error line
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ensure_ray(address, log_to_driver=False)  # the workers' lines are in each trial's logs/train.log
    _check_cluster_fits(spec)
    tracking = open_sweep(spec, out, target) if target is not None else None
    console = ConsoleTable(spec, out / TRIALS)
    tuner = _tuner(spec, out, budget, restore, keep_errors, console, tracking)
    print(f"[tune] sweep '{spec.name}': {len(spec.space)} searched key(s), {spec.search['type']} search, "
          f"{spec.scheduler['type']} scheduler, up to {spec.concurrent} trial(s) at once, {budget.describe()}; "
          f"results in {out}", flush=True)
    with TuneLogWatch(out / TUNE_LOG) as watch:
        grid = tuner.fit()
    running: set[str] = set()
    if watch.interrupted:  # trials cut short, and those that had not started yet
        seen = {t for t, r in console.records.items() if r.state != "RUNNING"}
        running = {tid for tid, (status, _) in _trial_info(grid).items()
                   if status in ("RUNNING", "PENDING", "PAUSED") or (console.records and tid not in seen)}
    records = collect_trials(spec, grid, out, running)
    settle_trials(records, spec.objectives, spec.name)
    result = _report(spec, out, records)
    if tracking is not None:
        close_sweep(tracking, out, records, spec.objectives, watch.interrupted)
    if watch.interrupted:
        raise KeyboardInterrupt
    _check_some_finished(spec, out, records)
    return result


def _report(spec: SweepSpec, out: Path, records: list[TrialRecord]) -> dict[str, Any]:
    """Write the result files and print the final table and where they are."""
    configs = {r.trial_id: best_config(spec, r.params) for r in records}
    kinds = {k: d.kind for k, d in spec.space.items()}
    paths = write_report(out, records, spec.objectives, list(spec.space), configs, kinds=kinds)
    print(format_table(records, spec.objectives, list(spec.space)), flush=True)
    for name, path in paths.items():
        if path:
            print(f"[tune] {name}: {', '.join(map(str, path)) if isinstance(path, list) else path}")
    return {"dir": out, "paths": paths, "records": records}


def _check_some_finished(spec: SweepSpec, out: Path, records: list[TrialRecord]) -> None:
    """A sweep none of whose trials finished is a failure (exit status 2), not a result."""
    done = [r for r in records if r.state in ("TERMINATED", "STOPPED")]
    failed = [r for r in records if r.state == "ERROR"]
    if failed and done:
        print(f"[tune] {len(failed)} of {len(records)} trial(s) failed; their reasons are in {out / 'results.csv'} "
              f"and {out / TRIALS}/<trial id>/logs/error.txt", flush=True)
    if not done:
        first = failed[0].error if failed else "no trial ran"
        raise PlatformError(f"sweep '{spec.name}': no trial finished ({len(failed)} of {len(records)} failed); first "
                            f"error: {first}; see {out / 'results.csv'} and {out / TRIALS}/<trial id>/logs/error.txt")


def _check_cluster_fits(spec: SweepSpec) -> None:
    import ray

    total = int(ray.cluster_resources().get("CPU", 0))
    need = spec.workers_per_trial * spec.cpus_per_worker
    if need > total:
        raise PlatformError(f"{spec.path}: resources: a trial needs {need} CPUs ({spec.workers_per_trial} worker(s) "
                            f"x {spec.cpus_per_worker}); the Ray cluster has {total}. Lower "
                            "resources.workers_per_trial or cpus_per_worker, or add nodes")
    fits = total // need
    if spec.concurrent > fits:  # more at once would only wait for workers (and time out): queue them in Tune
        print(f"[tune] {spec.concurrent} trials at once need {spec.concurrent * need} CPUs; the Ray cluster has "
              f"{total}: running {fits} at a time, the others wait their turn", flush=True)
        spec.concurrent = fits
