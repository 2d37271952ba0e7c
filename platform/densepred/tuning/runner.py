"""Run a sweep with Ray Tune: one Tune function trial per sampled config, each an ordinary Ray Train
run (the platform's engine) reported back to Tune with ``TuneReportCallback``.

Layout under ``<work_dir or --storage>/tune/<space name>/``: Tune's experiment state, ``trials/<trial
id>/`` (each trial's run folder: checkpoints, logs, config.yaml) and the results (``report.py``).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from ..config import load_config
from ..errors import PlatformError
from .report import TrialRecord, format_table, write_report
from .space import SweepSpec, check_against_task, tune_param_space

TRIALS = "trials"


def sweep_dir(spec: SweepSpec, storage: Optional[str]) -> Path:
    """``<storage or the task's work_dir>/tune/<space name>``."""
    if storage:
        base = Path(storage)
    else:
        base = Path(load_config(spec.task, spec.overrides).get("work_dir") or "work_dirs")
    return base.expanduser().resolve() / "tune" / spec.name


def trial_config(spec: SweepSpec, values: dict, trials_dir: Path, trial_id: str) -> Any:
    """The complete config of one trial: task recipe + fixed overrides + sampled values, run in
    its own run folder, reporting its cost and evaluating every epoch (schedulers compare epochs)."""
    sets = {"evaluation.interval": 1, **spec.trial_overrides(values), "run_name": trial_id,
            "work_dir": str(trials_dir), "train.report_cost": True,
            "ray.workers": spec.workers_per_trial, "ray.cpus_per_worker": spec.cpus_per_worker}
    return load_config(spec.task, sets)


def make_trial_fn(spec: SweepSpec, trials_dir: Path):
    """The Tune function trainable: build and fit one TorchTrainer for the sampled ``config``."""

    def run_trial(config: dict) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from ..engine.launch import build_trainer, open_run_folder, plan_run
        from ..engine.run_state import read_stopped

        t_start = time.time()
        trial_id = tune.get_context().get_trial_id()
        cfg = trial_config(spec, config, trials_dir, trial_id)
        plan, changes = plan_run(cfg, None, None, None, False, None, False)
        open_run_folder(plan, changes)
        trainer = build_trainer(plan, spec.cpus_per_worker, callbacks=[TuneReportCallback()],
                                extra={"t_start": t_start})
        trainer.fit()
        stopped = read_stopped(plan.run_dir)
        if stopped:
            raise RuntimeError(stopped["reason"])

    return run_trial


def _scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule

    s = spec.scheduler
    if s["type"] == "asha":
        epochs = int(load_config(spec.task, spec.overrides).get("train", {}).get("epochs", 1))
        return ASHAScheduler(time_attr="training_iteration", max_t=max(1, epochs),
                             grace_period=int(s.get("grace_period", 1)), reduction_factor=s.get("reduction_factor", 2))
    if s["type"] == "median":
        return MedianStoppingRule(time_attr="training_iteration", grace_period=int(s.get("grace_period", 1)),
                                  min_samples_required=2)
    return FIFOScheduler()


def _search(spec: SweepSpec) -> Any:
    if spec.search["type"] != "optuna":
        return None
    from ray.tune.search.optuna import OptunaSearch

    multi = len(spec.metrics) > 1
    sampler = None
    if multi:
        import optuna
        sampler = optuna.samplers.NSGAIISampler(seed=spec.search.get("seed"))
    return OptunaSearch(metric=spec.metrics if multi else spec.metrics[0],
                        mode=spec.modes if multi else spec.modes[0], sampler=sampler, seed=spec.search.get("seed"))


def _tune_config(spec: SweepSpec) -> Any:
    from ray.tune import TuneConfig

    single = len(spec.metrics) == 1
    samples = 1 if spec.search["type"] == "grid" and "samples" not in spec.search else spec.search["samples"]
    return TuneConfig(metric=spec.metrics[0] if single else None, mode=spec.modes[0] if single else None,
                      search_alg=_search(spec), scheduler=_scheduler(spec), num_samples=samples,
                      max_concurrent_trials=spec.concurrent)


class ConsoleTable:
    """A Tune callback that prints one short line per trial event and the ranked table whenever a
    trial ends, instead of Ray's own progress output."""

    def __init__(self, spec: SweepSpec):
        from ray.tune import Callback

        self.spec = spec
        self.records: dict[str, TrialRecord] = {}
        outer = self

        class _Callback(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ARG002
                outer.result(trial, result)

            def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ARG002
                outer.ended(trial, "finished")

            def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ARG002
                outer.ended(trial, "failed")

        self.callback = _Callback()

    def _record(self, trial: Any) -> TrialRecord:
        if trial.trial_id not in self.records:
            params = {k: trial.config.get(k) for k in self.spec.space}
            self.records[trial.trial_id] = TrialRecord(trial.trial_id, "RUNNING", params, [])
        return self.records[trial.trial_id]

    def result(self, trial: Any, result: dict) -> None:
        rec = self._record(trial)
        rec.history.append({k: v for k, v in result.items() if isinstance(v, (int, float))})
        rec.seconds = float(result.get("time_total_s", rec.seconds))
        shown = ", ".join(f"{m} {result[m]:.4g}" for m in self.spec.metrics if isinstance(result.get(m), (int, float)))
        values = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in rec.params.items())
        print(f"[tune] {trial.trial_id} epoch {result.get('epoch')}: {shown or 'no metric yet'}, "
              f"loss {result.get('loss', float('nan')):.4g} ({values})", flush=True)

    def ended(self, trial: Any, how: str) -> None:
        rec = self._record(trial)
        rec.state = "ERROR" if how == "failed" else "TERMINATED"
        print(f"[tune] {trial.trial_id} {how} after {len(rec.history)} epoch(s)", flush=True)
        print(format_table(list(self.records.values()), self.spec.objectives, list(self.spec.space)), flush=True)


def best_config(spec: SweepSpec, params: dict) -> dict:
    """The complete config of a trial as a task file that `platform train` runs unchanged: bases
    resolved, searched values filled in, paths absolute, a fresh run name."""
    from ..engine.launch import plain, resolve_paths

    cfg = load_config(spec.task, {**spec.trial_overrides(params), "run_name": f"{spec.name}_best",
                                  # the trial's scaling: the same threads give the same numbers
                                  "ray.workers": spec.workers_per_trial, "ray.cpus_per_worker": spec.cpus_per_worker})
    return resolve_paths(plain(cfg))


def _trial_info(grid: Any) -> dict[str, tuple[str, dict]]:
    """trial id -> (Tune status, sampled config), also for trials that never reported."""
    analysis = getattr(grid, "_experiment_analysis", None)
    return {t.trial_id: (str(t.status), dict(t.config or {})) for t in getattr(analysis, "trials", [])}


class TuneLogWatch(logging.Filter):
    """Drops Tune's own interrupt advice (the platform prints `platform tune ... --resume`) and its
    warnings about trials that never reported, and notes whether the sweep was interrupted."""

    LOGGERS = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Stop signal received" in text or "has been interrupted" in text:
            self.interrupted = True
            return False
        return "Failed to fetch metrics" not in text

    def __enter__(self) -> "TuneLogWatch":
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


def collect_trials(spec: SweepSpec, grid: Any, out: Path, running: set[str] = frozenset()) -> list[TrialRecord]:
    """One TrialRecord per trial from Tune's results (their histories survive a resume); trials in
    ``running`` were cut short by an interrupt, not stopped by the scheduler."""
    info = _trial_info(grid)
    records = []
    for result in grid:
        frame = result.metrics_dataframe
        history = [] if frame is None else [
            {k: v for k, v in row.items() if isinstance(v, (int, float)) and v == v and not k.startswith("config/")}
            for row in frame.to_dict("records")]
        # Tune names trial folders run_trial_<experiment>_<index>_...; the trial id is the middle.
        trial_id = (result.metrics or {}).get("trial_id") or "_".join(Path(result.path).name.split("_")[2:4])
        state, sampled = info.get(trial_id, ("TERMINATED", {}))
        params = {k: (result.config or sampled).get(k) for k in spec.space}
        planned = int(trial_config(spec, params, out / TRIALS, trial_id).get("train", {}).get("epochs", 0))
        last_epoch = int(history[-1].get("epoch", 0)) if history else 0
        if result.error is not None:
            state = "ERROR"
        elif trial_id in running:
            state = "RUNNING" if history else "PENDING"
        elif state == "TERMINATED" and last_epoch < planned:
            state = "STOPPED"
        error = None if result.error is None else " ".join(str(result.error).split())[-300:]
        seconds = float(history[-1].get("time_total_s", 0.0)) if history else 0.0
        records.append(TrialRecord(trial_id, state, params, history, error, seconds, str(out / TRIALS / trial_id)))
    return records


def run_sweep(spec: SweepSpec, address: Optional[str] = None, storage: Optional[str] = None,
              resume: bool = False) -> dict[str, Any]:
    """Check, run (or resume) the sweep, write the results; returns the report paths and records.
    Raises KeyboardInterrupt after writing partial results if the sweep was interrupted."""
    from ray import tune

    from ..engine.launch import ensure_ray

    check_against_task(spec)
    out = sweep_dir(spec, storage)
    exists = (out / "tuner.pkl").exists()
    if resume and not exists:
        raise PlatformError(f"--resume: no sweep '{spec.name}' to resume in {out.parent} (check --storage)")
    if exists and not resume:
        raise PlatformError(f"sweep '{spec.name}' already ran in {out}: add --resume to continue it, or give "
                            "--storage DIR (or copy the space file under a new name) for a new sweep")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the platform prints its own trial table
    if not address:  # no preemption notices on a local instance; its watcher only logs an error line
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ensure_ray(address)
    _check_cluster_fits(spec)
    trainable = tune.with_resources(make_trial_fn(spec, out / TRIALS), {"cpu": 0.01})
    console = ConsoleTable(spec)
    if resume:
        tuner = tune.Tuner.restore(str(out), trainable, resume_unfinished=True, resume_errored=False)
    else:
        run_config = tune.RunConfig(name=spec.name, storage_path=str(out.parent), callbacks=[console.callback],
                                    verbose=0, failure_config=tune.FailureConfig(max_failures=0))
        tuner = tune.Tuner(trainable, param_space=tune_param_space(spec), tune_config=_tune_config(spec),
                           run_config=run_config)
    print(f"[tune] sweep '{spec.name}': {len(spec.space)} searched key(s), {spec.search['type']} search, "
          f"{spec.scheduler['type']} scheduler, up to {spec.concurrent} trial(s) at once; results in {out}", flush=True)
    with TuneLogWatch() as watch:
        grid = tuner.fit()
    running = {t for t, r in console.records.items() if r.state == "RUNNING"} if watch.interrupted else set()
    if watch.interrupted:  # trials that had not started yet
        running |= {tid for tid, (status, _) in _trial_info(grid).items() if tid not in console.records}
    records = collect_trials(spec, grid, out, running)
    configs = {r.trial_id: best_config(spec, r.params) for r in records}
    paths = write_report(out, records, spec.objectives, list(spec.space), configs)
    print(format_table(records, spec.objectives, list(spec.space)), flush=True)
    for name, path in paths.items():
        if path:
            print(f"[tune] {name}: {', '.join(map(str, path)) if isinstance(path, list) else path}")
    if watch.interrupted:
        raise KeyboardInterrupt
    return {"dir": out, "paths": paths, "records": records}


def _check_cluster_fits(spec: SweepSpec) -> None:
    import ray

    total = int(ray.cluster_resources().get("CPU", 0))
    need = spec.workers_per_trial * spec.cpus_per_worker
    if need > total:
        raise PlatformError(f"{spec.path}: resources: a trial needs {need} CPUs ({spec.workers_per_trial} worker(s) "
                            f"x {spec.cpus_per_worker}); the Ray cluster has {total}. Lower "
                            "resources.workers_per_trial or cpus_per_worker, or add nodes")
