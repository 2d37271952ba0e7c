"""One trial of a sweep: an ordinary Ray Train run of the task with the sampled values, in its own
run folder ``trials/<trial id>/``. A trial that fails leaves its reason in ``logs/error.txt`` there
(first line: the one-line reason the console and results.csv show; then the traceback)."""
from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Optional

from ..atomicfile import write_text_atomic
from .space import SweepSpec

ERROR_FILE = "error.txt"


def trial_config(spec: SweepSpec, values: dict, trials_dir: Path, trial_id: str,
                 tracking: Optional[dict] = None) -> Any:
    """The complete config of one trial: task recipe + fixed overrides + sampled values, run in
    its own run folder, reporting its cost and evaluating every epoch (schedulers compare rounds),
    logging to the sweep's MLflow store when it has one (``tracking``: the overrides).
    Paths are resolved against the folder `platform tune` ran in, not the trial's own."""
    sets = {"evaluation.interval": 1, **spec.trial_overrides(values), "run_name": trial_id,
            "work_dir": str(trials_dir), "train.report_cost": True,
            "ray.workers": spec.workers_per_trial, "ray.cpus_per_worker": spec.cpus_per_worker, **(tracking or {})}
    return spec.task_config(sets)


def error_file(trials_dir: Path, trial_id: str) -> Path:
    return trials_dir / trial_id / "logs" / ERROR_FILE


def record_error(trials_dir: Path, trial_id: str, e: BaseException) -> str:
    """Write the trial's reason and traceback to its ``logs/error.txt``; returns the reason."""
    from ..engine.launch import user_error

    reason = " ".join(str(user_error(e)).split())
    path = error_file(trials_dir, trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, reason + "\n\n" + "".join(traceback.format_exception(e)))
    return reason


def read_error(trials_dir: Path, trial_id: str) -> Optional[str]:
    """The one-line reason a trial recorded, None when it recorded none."""
    try:
        return error_file(trials_dir, trial_id).read_text().splitlines()[0].strip() or None
    except (OSError, IndexError):
        return None


def make_trial_fn(spec: SweepSpec, trials_dir: Path, tracking: Any = None):
    """The Tune function trainable: build and fit one TorchTrainer for the sampled ``config``;
    with ``tracking`` (the sweep's ``SweepTracking``) it logs a child run of the sweep's run."""
    overrides = tracking.trial_overrides() if tracking is not None else None
    parent = tracking.parent_run_id if tracking is not None else None

    def run_trial(config: dict) -> None:
        from ray import tune
        from ray.tune.integration.ray_train import TuneReportCallback

        from ..engine.launch import build_trainer, open_run_folder, plan_run
        from ..engine.run_record import begin_run, end_run
        from ..engine.run_state import read_stopped
        from ..errors import PlatformError

        t_start = time.time()
        trial_id = tune.get_context().get_trial_id()
        record = None
        try:
            cfg = trial_config(spec, config, trials_dir, trial_id, overrides)
            plan, changes = plan_run(cfg, None, None, None, False, None, False, check_data=False)
            open_run_folder(plan, changes)
            error_file(trials_dir, trial_id).unlink(missing_ok=True)  # a retried trial starts clean
            record = begin_run(plan, parent)
            trainer = build_trainer(plan, spec.cpus_per_worker, callbacks=[TuneReportCallback()],
                                    extra={"t_start": t_start, **record.worker_config()})
            trainer.fit()
            stopped = read_stopped(plan.run_dir)
            if stopped:
                raise PlatformError(f"training stopped: {stopped['reason']}")
        except Exception as e:
            reason = record_error(trials_dir, trial_id, e)
            if record is not None:
                end_run(record, "failed", reason)
            raise PlatformError(reason) from None
        end_run(record, "finished")

    return run_trial
