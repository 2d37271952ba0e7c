"""How long a sweep's trials run, in the unit its schedulers compare them by: evaluation rounds.

A trial evaluates every ``evaluation.interval`` epochs and after its last one. For an epoch-based
task that is ``train.epochs``; for an iteration schedule (``train.iters``, segmentation) the epochs
follow from the training set's size, so the budget is computed here, on the driver, from the task's
own batch source. ASHA and the median rule count ``eval_round`` (reported by every evaluating
epoch), so their grace period and ``max_t`` mean the same thing for both kinds of task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import parse_section
from ..errors import ConfigError
from .space import SweepSpec, sample_points


@dataclass(frozen=True)
class Budget:
    """The longest trial of a sweep: its epochs and evaluation rounds."""

    epochs: int
    rounds: int
    interval: int           # epochs between evaluations
    iteration_based: bool   # train.iters set: epochs derived from the data

    def describe(self) -> str:
        per = "every epoch" if self.interval == 1 else f"every {self.interval} epochs"
        return (f"{self.rounds} evaluation round(s) per trial ({self.epochs} epoch(s)"
                + (" for the iteration schedule" if self.iteration_based else "") + f", evaluated {per})")


def _trial_epochs(spec: SweepSpec, cfg: Any, cache: dict) -> tuple[int, int, bool]:
    """(epochs, evaluation interval, iteration-based) of one trial config."""
    from ..engine.loop import TrainSettings, planned_epochs
    from ..engine.preflight import check_task_config

    settings = parse_section(cfg, "train", TrainSettings)
    task = check_task_config(cfg, build_model=False)
    if not settings.iters and not settings.max_iters:
        return settings.epochs, task.eval_interval, False
    batch = int((cfg.get("data") or {}).get("batch_size") or 0)
    key = (batch, settings.accumulate)
    if key not in cache:  # the training set is listed once per batch size, not once per point
        batches = task.build_train_batches(int(cfg.get("seed", 0)), 0, spec.workers_per_trial)
        cache[key] = len(batches)
    return planned_epochs(settings, cache[key]), task.eval_interval, bool(settings.iters)


def sweep_budget(spec: SweepSpec) -> Budget:
    """The budget of the longest trial among the sample points that span the searched ranges."""
    from ..engine.loop import eval_rounds

    cache: dict = {}
    best = None
    for point in sample_points(spec):
        cfg = spec.task_config({"evaluation.interval": 1, **spec.trial_overrides(point)})
        epochs, interval, by_iter = _trial_epochs(spec, cfg, cache)
        budget = Budget(epochs, eval_rounds(epochs, interval, True), interval, by_iter)
        if best is None or budget.rounds > best.rounds:
            best = budget
    assert best is not None
    return best


def check_grace_period(spec: SweepSpec, budget: Budget) -> None:
    """A scheduler whose grace period outlasts every trial would never compare them (and Ray's ASHA
    refuses it with an assertion): one line before Ray starts."""
    sched = spec.scheduler
    if sched["type"] not in ("asha", "median"):
        return
    grace = int(sched.get("grace_period", 1))
    if grace > budget.rounds:
        raise ConfigError(f"{spec.path}: scheduler.grace_period: {grace} evaluation round(s), but a trial makes only "
                          f"{budget.describe()}; lower scheduler.grace_period to at most {budget.rounds}, or "
                          "train longer (train.epochs or train.iters in overrides / --set)")
