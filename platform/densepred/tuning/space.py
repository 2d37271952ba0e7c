"""A sweep's search-space YAML -> a checked ``SweepSpec`` and the Ray Tune search space.

Schema (paths relative to the space file)::

    task: ../tasks/pose_demo.yaml
    metric: AP                      # or a list (multi-objective)
    mode: max                       # max | min, or a list matching `metric`
    overrides: {train.epochs: 6}    # fixed --set values for every trial
    space: {model.backbone.width: {choice: [16, 24, 32]}, optimizer.lr: {loguniform: [1.0e-4, 3.0e-3]}}
    search: {type: random, samples: 8}          # random | grid | optuna
    scheduler: {type: asha, grace_period: 2, reduction_factor: 2}   # asha | median | none
    resources: {workers_per_trial: 1, cpus_per_worker: 1, concurrent: 2}

Everything is checked before Ray starts: the keys exist in the task config, sampled values pass
the task's own validation, the metric is one the task reports, the distributions are well formed.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..config import _read_yaml, _suggest, load_config, parse_override, parse_section
from ..errors import ConfigError

TOP_KEYS = ("task", "metric", "mode", "overrides", "space", "search", "scheduler", "resources")
SEARCHES = ("random", "grid", "optuna")
SCHEDULERS = ("asha", "median", "none")
# Reported by every training run besides the task's own evaluation metrics.
COMMON_METRICS = ("loss", "params", "gflops", "latency_ms")


@dataclass
class Distribution:
    """One searched key: ``kind`` (choice, grid, uniform, quniform, loguniform, randint) and its args."""

    kind: str
    args: list

    def corners(self) -> list:
        """Values that exercise the range: every option, or both bounds."""
        if self.kind in ("choice", "grid"):
            return list(self.args)
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return [self.args[0], self.args[1]]

    def __str__(self) -> str:
        """As written in a space file: ``grid [0.001, 0.003]``, ``loguniform [1e-05, 0.01]``."""
        return f"{self.kind} {list(self.args)}"

    def to_tune(self, grid_search: bool) -> Any:
        from ray import tune

        if self.kind == "grid" or (self.kind == "choice" and grid_search):
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return {"uniform": tune.uniform, "quniform": tune.quniform, "loguniform": tune.loguniform,
                "randint": tune.randint}[self.kind](*self.args)


@dataclass
class SweepSpec:
    """A checked search space."""

    path: Path
    task: Path
    metrics: list[str]
    modes: list[str]
    overrides: dict[str, Any]
    space: dict[str, Distribution]
    search: dict = field(default_factory=lambda: {"type": "random", "samples": 8})
    scheduler: dict = field(default_factory=lambda: {"type": "asha"})
    workers_per_trial: int = 1
    cpus_per_worker: int = 1
    concurrent: int = 1
    #: the folder relative config paths are resolved against: the working directory of the
    #: `platform tune` command (trials run elsewhere: Tune gives each its own working directory)
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def objectives(self) -> list[tuple[str, str]]:
        return list(zip(self.metrics, self.modes))

    def trial_overrides(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The --set values of one trial: the fixed overrides, then the sampled values."""
        return {**self.overrides, **{k: values[k] for k in self.space if k in values}}

    def task_config(self, sets: Mapping[str, Any]) -> Any:
        """The task config with ``sets`` applied, its paths resolved against ``base_dir``."""
        return load_config(self.task, sets, base_dir=self.base_dir)


def _err(path: Path, key: str, text: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {text}")


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_distribution(path: Path, key: str, raw: Any) -> Distribution:
    """``{choice: [...]}``, ``{uniform: [lo, hi]}``, ... -> Distribution; one-line errors."""
    kinds = ("choice", "grid", "uniform", "quniform", "loguniform", "randint")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise _err(path, f"space.{key}", f"expected one distribution, e.g. {{choice: [16, 32]}}; "
                                         f"one of {', '.join(kinds)}")
    (kind, args), = raw.items()
    if kind not in kinds:
        raise _err(path, f"space.{key}", f"unknown distribution {kind!r}{_suggest(str(kind), kinds)}; "
                                         f"use one of {', '.join(kinds)}")
    if not isinstance(args, list) or not args:
        raise _err(path, f"space.{key}.{kind}", f"expected a non-empty list, got {args!r}")
    if kind in ("choice", "grid"):
        return Distribution(kind, args)
    need = 3 if kind == "quniform" else 2
    if len(args) != need or not all(_number(a) for a in args):
        shape = "[low, high, step]" if kind == "quniform" else "[low, high]"
        raise _err(path, f"space.{key}.{kind}", f"expected {shape} numbers, got {args!r}")
    lo, hi = args[0], args[1]
    if not lo < hi:
        raise _err(path, f"space.{key}.{kind}", f"low must be below high, got {args!r}")
    if kind == "loguniform" and lo <= 0:
        raise _err(path, f"space.{key}.{kind}", f"bounds must be > 0 for a log scale, got {args!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise _err(path, f"space.{key}.{kind}", f"bounds must be integers (high excluded), got {args!r}")
    if kind == "quniform" and not args[2] > 0:
        raise _err(path, f"space.{key}.{kind}", f"step must be > 0, got {args[2]!r}")
    return Distribution(kind, args)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_objectives(path: Path, raw: dict) -> tuple[list[str], list[str]]:
    metrics = _as_list(raw.get("metric"))
    modes = _as_list(raw.get("mode", ["max"] * len(metrics)))
    if not metrics or not all(isinstance(m, str) and m for m in metrics):
        raise _err(path, "metric", f"give the metric to optimise (e.g. metric: AP) or a list, got {raw.get('metric')!r}")
    if len(modes) != len(metrics):
        raise _err(path, "mode", f"{len(modes)} mode(s) for {len(metrics)} metric(s); give one max|min per metric")
    for m in modes:
        if m not in ("max", "min"):
            raise _err(path, "mode", f"must be max or min, got {m!r}")
    return metrics, modes


def _section(path: Path, raw: dict, key: str, default: dict, allowed: Iterable[str]) -> dict:
    value = raw.get(key, default)
    if not isinstance(value, Mapping):
        raise _err(path, key, f"must be a mapping, got {value!r}")
    allowed = tuple(allowed)
    for k in value:
        if k not in allowed:
            raise _err(path, f"{key}.{k}", f"unknown key{_suggest(str(k), allowed)}; allowed: {', '.join(allowed)}")
    return {**default, **value}


def _positive(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _err(path, key, f"must be a whole number >= 1, got {value!r}")
    return value


def load_space(path: str | Path, sets: Iterable[str] = (), samples: Optional[int] = None,
               concurrent: Optional[int] = None) -> SweepSpec:
    """Read and check a space file; ``sets`` (``--set k=v``) add fixed overrides for every trial."""
    path = Path(path).resolve()
    raw = _read_yaml(path)
    for k in raw:
        if k not in TOP_KEYS:
            raise _err(path, str(k), f"unknown key{_suggest(str(k), TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}")
    for k in ("task", "metric", "space"):
        if k not in raw:
            raise _err(path, k, "missing (see tuning/README.md for the schema)")
    task = (path.parent / str(raw["task"])).resolve()
    if not task.is_file():
        raise _err(path, "task", f"task file {task} not found")
    metrics, modes = _parse_objectives(path, raw)
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, Mapping):
        raise _err(path, "overrides", f"must map config keys to values, got {overrides!r}")
    overrides = {**overrides, **dict(parse_override(s) for s in sets)}
    if not isinstance(raw["space"], Mapping) or not raw["space"]:
        raise _err(path, "space", "must map dotted config keys to distributions, e.g. "
                                  "model.backbone.width: {choice: [16, 32]}")
    space = {str(k): parse_distribution(path, str(k), v) for k, v in raw["space"].items()}
    search = _section(path, raw, "search", {"type": "random"}, ("type", "samples", "seed"))
    search.setdefault("samples", 1 if search["type"] == "grid" else 8)  # grid: each combination once
    scheduler = _section(path, raw, "scheduler", {"type": "asha" if len(metrics) == 1 else "none"},
                         ("type", "grace_period", "reduction_factor"))
    resources = _section(path, raw, "resources", {"workers_per_trial": 1, "cpus_per_worker": 1, "concurrent": 1},
                         ("workers_per_trial", "cpus_per_worker", "concurrent"))
    if samples is not None:
        search["samples"] = samples
    if concurrent is not None:
        resources["concurrent"] = concurrent
    spec = SweepSpec(path, task, metrics, modes, dict(overrides), space, search, scheduler,
                     _positive(path, "resources.workers_per_trial", resources["workers_per_trial"]),
                     _positive(path, "resources.cpus_per_worker", resources["cpus_per_worker"]),
                     _positive(path, "resources.concurrent", resources["concurrent"]))
    _check_search(spec)
    return spec


def _check_search(spec: SweepSpec) -> None:
    path, search, sched = spec.path, spec.search, spec.scheduler
    if search["type"] not in SEARCHES:
        raise _err(path, "search.type", f"must be one of {', '.join(SEARCHES)}, got {search['type']!r}")
    _positive(path, "search.samples", search["samples"])
    if sched["type"] not in SCHEDULERS:
        raise _err(path, "scheduler.type", f"must be one of {', '.join(SCHEDULERS)}, got {sched['type']!r}")
    for k in ("grace_period", "reduction_factor"):
        if k in sched:
            _positive(path, f"scheduler.{k}", sched[k])
    if len(spec.metrics) > 1 and sched["type"] != "none":
        raise _err(path, "scheduler.type", f"{sched['type']} stops trials by one metric; a multi-objective sweep "
                                           "needs scheduler: {type: none}")
    if search["type"] == "grid":
        bad = [k for k, d in spec.space.items() if d.kind not in ("choice", "grid")]
        if bad:
            raise _err(path, f"space.{bad[0]}", "search.type grid needs choice/grid values for every key, "
                                                f"got {spec.space[bad[0]].kind}")
    if search["type"] == "optuna":
        bad = [k for k, d in spec.space.items() if d.kind == "grid"]
        if bad:
            raise _err(path, f"space.{bad[0]}", "search.type optuna samples its own values: use choice instead of grid")


def sample_points(spec: SweepSpec, limit: int = 6) -> list[dict[str, Any]]:
    """A few points that exercise every key's range: the first value of each key, then each key's
    other corner values one at a time."""
    base = {k: d.corners()[0] for k, d in spec.space.items()}
    points = [base]
    for k, d in spec.space.items():
        for v in d.corners()[1:]:
            points.append({**base, k: v})
    return list(itertools.islice(points, limit))


def check_against_task(spec: SweepSpec, files: bool = True) -> None:
    """Every searched key exists in (or is accepted by) the task config, sampled values pass the
    task's validation, every metric is one the task reports and (``files``) the data exists."""
    from ..engine.launch import RaySettings
    from ..engine.loop import TrainSettings
    from ..engine.preflight import check_task_config

    for point in sample_points(spec):
        sets = spec.trial_overrides(point)
        where = ", ".join(f"{k}={v!r}" for k, v in point.items())
        try:
            cfg = spec.task_config(sets)
            parse_section(cfg, "train", TrainSettings)
            parse_section(cfg, "ray", RaySettings)
            task = check_task_config(cfg)
        except Exception as e:  # the task's own validation, or a constructor refusing a value
            msg = " ".join(str(e).split())
            key = next((k for k in sets if k in msg), None)
            raise ConfigError(f"{spec.path}: " + (f"{key}: " if key else "") + f"the task rejects a sampled "
                              f"trial ({where or 'the fixed overrides'}): {msg}") from None
    if files:
        task.preflight()  # data_root, annotations, images: one check serves every trial
    reported = set(COMMON_METRICS) | set(task.metric_names) | {task.primary_metric}
    for m in spec.metrics:
        if m not in reported:
            raise _err(spec.path, "metric", f"{m!r} is not reported by {type(task).__name__}"
                                            f"{_suggest(m, reported)}; choose from {', '.join(sorted(reported))}")


def tune_param_space(spec: SweepSpec) -> dict[str, Any]:
    """The Ray Tune param_space: one entry per searched key (dotted names are kept as they are)."""
    grid = spec.search["type"] == "grid"
    return {k: d.to_tune(grid) for k, d in spec.space.items()}
