"""Optimizer and schedule arguments checked against what they really accept, before Ray starts.

Types come from the constructor's signature (a ``False`` default takes a bool, ``0``/``0.9`` a
number, ``(0.9, 0.999)`` a pair of numbers, ``None`` a bool or null); ranges and shapes from what
each argument means (``RANGES``, ``MILESTONE_RULES``). Torch accepts some wrong values without a
word and trains with a silently different schedule (unsorted or repeated milestones, a milestone
past the end, a momentum of 1.5): here each is one line naming the key.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping, Optional

from ..errors import ConfigError

#: what a value of each argument means, as a check and its wording
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "> 0"),
    "eps": (lambda v: v > 0, "> 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "dampening": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "betas": (lambda v: 0 <= v < 1, "each in [0, 1)"),
    "lr_decay": (lambda v: v >= 0, ">= 0"),
    "initial_accumulator_value": (lambda v: v >= 0, ">= 0"),
    "gamma": (lambda v: v > 0, "> 0"),
    "eta_min": (lambda v: v >= 0, ">= 0"),
    "T_max": (lambda v: v >= 1, ">= 1"),
    "power": (lambda v: v > 0, "> 0"),
    "min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
}
#: arguments the platform sets itself (resuming restores the schedule's position)
MANAGED = {"params", "optimizer", "last_epoch", "verbose"}
#: the platform's own schedules: argument -> default (the type follows from it)
OWN_SCHEDULES = {"PolyLR": {"power": 0.9, "min_lr_ratio": 0.0}, "ConstantLR": {}}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: arguments that count epochs or iterations
INTEGERS = {"T_max", "step_size", "total_iters"}


def _type_problem(value: Any, default: Any, required: bool, key: str = "") -> Optional[str]:
    """Why ``value`` does not have the type the default (or the documented meaning) implies."""
    if key in INTEGERS:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be a whole number"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if default is None and not required:
        return None if value is None or isinstance(value, bool) else "must be true, false or null"
    if isinstance(default, (int, float)):
        return None if _is_number(value) else "must be a number"
    if isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and len(value) == len(default) and all(_is_number(v) for v in value)
        return None if ok else f"must be a list of {len(default)} numbers"
    return None


def check_arguments(section: str, name: str, args: Mapping[str, Any], defaults: Mapping[str, Any],
                    required: tuple[str, ...] = ()) -> None:
    """Every argument is one ``defaults`` knows, of its type, in its range."""
    for key, value in args.items():
        where = f"{section}.{key}"
        if key in MANAGED:
            raise ConfigError(f"{where}: set by the platform (it restores the schedule when a run resumes); remove it")
        if key not in defaults:
            import difflib

            allowed = [k for k in defaults if k not in MANAGED]
            close = difflib.get_close_matches(key, allowed, n=1)
            raise ConfigError(f"{where}: {name} has no argument {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; it takes: {', '.join(allowed) or 'none'}")
        problem = _type_problem(value, defaults[key], key in required, key)
        if problem:
            raise ConfigError(f"{where}: {problem}, got {value!r} ({name})")
        if key in RANGES and value is not None and not isinstance(value, bool):
            test, text = RANGES[key]
            values = value if isinstance(value, (list, tuple)) else [value]
            if not all(_is_number(v) and test(v) for v in values):
                raise ConfigError(f"{where}: must be {text}, got {value!r} ({name})")


def signature_defaults(cls: type, skip: int = 1) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The constructor's arguments after the first ``skip`` (params / optimizer): their defaults and
    the required ones (no default)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1 + skip:]
    params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    defaults = {p.name: (None if p.default is p.empty else p.default) for p in params}
    return defaults, tuple(p.name for p in params if p.default is p.empty)


def check_milestones(value: Any, unit: str) -> None:
    """``milestones``: increasing whole numbers >= 1 (unsorted or repeated ones are accepted by torch
    and apply gamma at other times, or twice)."""
    ints = isinstance(value, (list, tuple)) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in value)
    if not ints:
        raise ConfigError(f"scheduler.milestones: must be a list of whole numbers ({unit}), got {value!r}")
    if any(b <= a for a, b in zip(value, value[1:])) or value[0] < 1:
        raise ConfigError(f"scheduler.milestones: must increase strictly from >= 1, got {list(value)} (a repeated "
                          "milestone would apply gamma twice)")


def milestones_past_end(cfg: Mapping[str, Any], total: int, unit: str) -> Optional[str]:
    """A warning when milestones lie at or after the end of the schedule: the learning rate never
    drops there (often a shortened run of a long recipe)."""
    sched = cfg or {}
    late = [m for m in sched.get("milestones") or [] if isinstance(m, int) and m >= total]
    if sched.get("type") != "MultiStepLR" or not late:
        return None
    return (f"scheduler.milestones {late} are not before the end of the schedule ({total} {unit}): the learning "
            "rate does not drop there")
