"""A sweep in MLflow: one parent run (the space, the search, the best result and the sweep's files)
and one child run per trial (each trial logs like `platform train`). The trials' end states come
from the sweep: a trial its scheduler stopped early, or one cut short by an interrupt, never closes
its own run, so the sweep closes it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..engine.run_record import RunRecord, end_run
from ..engine.run_state import read_status
from ..tracking.mlflow_run import RECORD, close_run, open_run
from ..tracking.settings import MlflowTarget, tracking_target
from .report import TrialRecord
from .space import SweepSpec
from .trial import ERROR_FILE

#: Tune's trial states (as the sweep reports them) as the platform's run states
TRIAL_END = {"TERMINATED": "finished", "STOPPED": "stopped", "ERROR": "failed", "RUNNING": "interrupted",
             "PENDING": "interrupted"}


@dataclass
class SweepTracking:
    """The store every trial logs to and the parent run of their child runs."""

    target: MlflowTarget

    def trial_overrides(self) -> dict[str, Any]:
        """What each trial's config gets so that its child run lands in the sweep's store."""
        return {"tracking.mlflow": True, "tracking.tracking_uri": self.target.uri,
                "tracking.experiment": self.target.experiment}

    @property
    def parent_run_id(self) -> Optional[str]:
        return self.target.run_id


def sweep_params(spec: SweepSpec) -> dict[str, str]:
    """The parent run's params: what was searched and how."""
    params = {f"space.{k}": str(d) for k, d in spec.space.items()}
    params.update({f"search.{k}": str(v) for k, v in spec.search.items()})
    params.update({f"scheduler.{k}": str(v) for k, v in spec.scheduler.items()})
    params.update({f"overrides.{k}": str(v) for k, v in spec.overrides.items()})
    params.update({"task": str(spec.task), "metric": ", ".join(f"{m} ({d})" for m, d in spec.objectives),
                   "workers_per_trial": str(spec.workers_per_trial), "cpus_per_worker": str(spec.cpus_per_worker)})
    return params


def sweep_target(spec: SweepSpec, out: Path) -> Optional[MlflowTarget]:
    """The sweep's MLflow store when its task turns tracking on (or ``--mlflow``), checked before
    Ray starts; it defaults to ``<work_dir or --storage>/mlflow.db``, beside the ``tune/`` folder."""
    return tracking_target(spec.task_config(spec.overrides), out.parent.parent)


def open_sweep(spec: SweepSpec, out: Path, target: MlflowTarget) -> Optional[SweepTracking]:
    """Open (or reopen, for ``--resume``) the sweep's parent run; None if the store refused."""
    task_type = str((spec.task_config(spec.overrides).get("task") or {}).get("type", "?"))
    opened = open_run(target, out, f"sweep {spec.name}", sweep_params(spec),
                      {"task": task_type, "sweep": spec.name, "sweep_dir": str(out)}, record_dir="")
    return SweepTracking(opened) if opened is not None else None


def close_sweep(tracking: SweepTracking, out: Path, records: Sequence[TrialRecord],
                objectives: Sequence[tuple[str, str]], interrupted: bool) -> None:
    """End the parent run with the best value of each objective and the sweep's files and pictures."""
    files = [(out / name, None) for name in ("results.csv", "summary.md", "best.yaml")]
    files += [(p, "pictures") for p in sorted(out.glob("*.png"))]
    close_run(tracking.target, "KILLED" if interrupted else "FINISHED", files, _best_values(records, objectives))


def settle_trials(records: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]], sweep: str) -> None:
    """Make each trial's recorded end (status, curves, child run) what the sweep saw. A trial often
    cannot record it itself: Tune ends the trial's process when its scheduler stops it early, when
    it reached the sweep's budget (its Ray Train call then raises, though every epoch finished: the
    stale ``error.txt`` is removed) and on an interrupt."""
    primary = objectives[0][0] if objectives else None
    for r in records:
        run_dir = Path(r.run_dir) if r.run_dir else None
        if run_dir is None or r.state not in TRIAL_END or not run_dir.is_dir():
            continue
        state = TRIAL_END[r.state]
        status = read_status(run_dir)
        if r.state == "TERMINATED":
            (run_dir / "logs" / ERROR_FILE).unlink(missing_ok=True)
        if status is not None and status["status"] == state:
            continue
        reason = {"stopped": "stopped early by the sweep's scheduler", "interrupted": "the sweep was interrupted",
                  "failed": (r.error or "").splitlines()[0][:300] if r.error else None}.get(state)
        end_run(RunRecord(run_dir, primary, f"{run_dir.name}: trial of sweep {sweep}", child_target(run_dir)),
                state, reason)


def child_target(run_dir: Path) -> Optional[MlflowTarget]:
    """The MLflow run a trial's folder logged to, if any."""
    import json

    try:
        record = json.loads((run_dir / "logs" / RECORD).read_text())
        return MlflowTarget(record["tracking_uri"], record["experiment"], record["run_id"])
    except (OSError, ValueError, KeyError):
        return None


def _best_values(records: Sequence[TrialRecord], objectives: Sequence[tuple[str, str]]) -> dict[str, float]:
    """The parent run's metrics: trial counts and the best value of each objective over all epochs."""
    out = {"trials": float(len(records)), "trials_failed": float(sum(r.state == "ERROR" for r in records))}
    for metric, mode in objectives:
        values = [float(h[metric]) for r in records for h in r.history
                  if isinstance(h.get(metric), (int, float)) and h[metric] == h[metric]]
        if values:
            out[f"best_{metric}"] = max(values) if mode == "max" else min(values)
    return out
