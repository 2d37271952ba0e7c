"""What a sweep prints: one line per trial epoch, one line per trial that ends (with its reason when
it failed) and the ranked table; Ray's own log lines (trial tracebacks, controller and cleaner
messages) go to the sweep's ``tune.log`` instead of the console."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .report import TrialRecord, format_table
from .space import SweepSpec
from .trial import error_file, read_error


class ConsoleTable:
    """A Tune callback that prints one short line per trial event and the ranked table whenever a
    trial ends, instead of Ray's own progress output."""

    def __init__(self, spec: SweepSpec, trials_dir: Path):
        from ray.tune import Callback

        self.spec, self.trials_dir = spec, trials_dir
        self.records: dict[str, TrialRecord] = {}
        outer = self

        class _Callback(Callback):
            def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ARG002
                outer.result(trial, result)

            def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ARG002
                outer.ended(trial, failed=False)

            def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ARG002
                outer.ended(trial, failed=True)

        self.callback = _Callback()

    def _record(self, trial: Any) -> TrialRecord:
        if trial.trial_id not in self.records:
            params = {k: trial.config.get(k) for k in self.spec.space}
            self.records[trial.trial_id] = TrialRecord(trial.trial_id, "RUNNING", params, [])
        return self.records[trial.trial_id]

    def result(self, trial: Any, result: dict) -> None:
        rec = self._record(trial)
        rec.seconds = float(result.get("time_total_s", rec.seconds))
        if "stopped" in result:  # the last word of a run that stopped: not an epoch (its reason follows)
            return
        rec.history.append({k: v for k, v in result.items() if isinstance(v, (int, float))})
        shown = ", ".join(f"{m} {result[m]:.4g}" for m in self.spec.metrics if isinstance(result.get(m), (int, float)))
        values = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                           for k, v in rec.params.items())
        print(f"[tune] {trial.trial_id} epoch {result.get('epoch')}: {shown or 'no metric yet'}, "
              f"loss {result.get('loss', float('nan')):.4g} ({values})", flush=True)

    def ended(self, trial: Any, failed: bool) -> None:
        rec = self._record(trial)
        epochs = len(rec.history)
        planned = int(rec.history[-1].get("planned_epochs", epochs)) if rec.history else 0
        if failed:
            rec.state = "ERROR"
            rec.error = read_error(self.trials_dir, trial.trial_id) or "failed (see tune.log)"
            print(f"[tune] {trial.trial_id} failed after {epochs} epoch(s): {rec.error} "
                  f"(details: {error_file(self.trials_dir, trial.trial_id)})", flush=True)
        else:
            rec.state = "STOPPED" if epochs < planned else "TERMINATED"
            how = f"stopped early by the scheduler after {epochs} of {planned}" if epochs < planned \
                else f"finished after {epochs}"
            print(f"[tune] {trial.trial_id} {how} epoch(s)", flush=True)
        print(format_table(list(self.records.values()), self.spec.objectives, list(self.spec.space)), flush=True)


class TuneLogWatch(logging.Filter):
    """While a sweep runs: Ray's log records go to ``log_file`` instead of the console; Tune's own
    interrupt advice (the platform prints `platform tune ... --resume`) and its warnings about
    trials that never reported are dropped; whether the sweep was interrupted is noted."""

    WATCHED = ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")

    def __init__(self, log_file: Path) -> None:
        super().__init__()
        self.interrupted = False
        self.log_file = log_file
        self._saved: list[logging.Handler] = []
        self._file: logging.Handler | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Stop signal received" in text or "has been interrupted" in text:
            self.interrupted = True
            return False
        return "Failed to fetch metrics" not in text

    def __enter__(self) -> "TuneLogWatch":
        for name in self.WATCHED:
            logging.getLogger(name).addFilter(self)
        ray_logger = logging.getLogger("ray")
        self._saved = list(ray_logger.handlers)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._file = logging.FileHandler(self.log_file)
        self._file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
        for h in self._saved:
            ray_logger.removeHandler(h)
        ray_logger.addHandler(self._file)
        return self

    def __exit__(self, *exc: Any) -> None:
        for name in self.WATCHED:
            logging.getLogger(name).removeFilter(self)
        ray_logger = logging.getLogger("ray")
        if self._file is not None:
            ray_logger.removeHandler(self._file)
            self._file.close()
        for h in self._saved:
            ray_logger.addHandler(h)
