"""The pictures of a sweep (matplotlib on an Agg canvas: no display and no pyplot state is touched):
the first objective against each searched key (choice/grid keys as categories, loguniform keys on a
log axis), objective pairs with their Pareto front, the objective against GFLOPs (a front only when
GFLOPs is an objective) and the per-epoch curves of every trial."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..charts import new_figure as _figure, save_png as _save
from .report import (_STATE_COLORS, Objective, TrialRecord, _epoch_of, _fmt, _number, _state_rank, pareto_front,
                     trial_value)

CATEGORICAL_KINDS = frozenset({"choice", "grid"})  # a set of values: categories, however numeric
FRONT_GID = "pareto-front"  # the artists that draw a front carry this gid (tests look for it)


def write_plots(out_dir: Path, trials: Sequence[TrialRecord], objectives: Sequence[Objective],
                searched_keys: Sequence[str], kinds: Optional[dict[str, str]] = None) -> list[Path]:
    """Every picture that has data (``plot_figures``) saved as PNG in ``out_dir``; the paths written."""
    figures = plot_figures(trials, objectives, searched_keys, kinds)
    return [_save(fig, Path(out_dir) / name) for name, fig in figures.items()]


def plot_figures(trials: Sequence[TrialRecord], objectives: Sequence[Objective], searched_keys: Sequence[str],
                 kinds: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """File name -> matplotlib Figure of every picture that has data: the first objective against
    each searched key, objective pairs with their Pareto front, GFLOPs, and per-epoch curves."""
    if not objectives:
        return {}
    kinds = kinds or {}
    figures: dict[str, Any] = {}
    for key in searched_keys:
        figures[f"metric_vs_{_safe_name(key)}.png"] = figure_vs_key(trials, objectives[0], key, kinds.get(key))
    figures["metric_vs_gflops.png"] = figure_vs_gflops(trials, objectives)
    for first, other in _objective_pairs(objectives):
        figures[f"pareto_{_safe_name(first[0])}_vs_{_safe_name(other[0])}.png"] = figure_objectives(
            trials, objectives, x=other, y=first, front=True)
    figures["metric_per_epoch.png"] = figure_per_epoch(trials, objectives[0])
    return {name: fig for name, fig in figures.items() if fig is not None}


def _objective_pairs(objectives: Sequence[Objective]) -> list[tuple[Objective, Objective]]:
    """(first objective, another) for every other objective except gflops (metric_vs_gflops.png
    draws that pair); none with a single objective."""
    if len(objectives) < 2:
        return []
    first = next((o for o in objectives if o[0] != "gflops"), None)
    return [(first, o) for o in objectives if first is not None and o != first and o[0] != "gflops"]


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)


def short_ids(trials: Iterable[TrialRecord]) -> dict[str, str]:
    """Short labels of trial ids: the part after the last ``_`` (Ray's ``<sweep>_00003``) when unique."""
    ids = [t.trial_id for t in trials]
    short = {i: i.rsplit("_", 1)[-1] if "_" in i else i[-8:] for i in ids}
    return short if len(set(short.values())) == len(ids) else {i: i for i in ids}


def _state_handles(states: Iterable[str]) -> list[Any]:
    """Legend entries: one coloured dot per trial state present."""
    from matplotlib.lines import Line2D
    return [Line2D([], [], marker="o", linestyle="", markeredgecolor="black", markeredgewidth=0.5,
                   color=_STATE_COLORS.get(s, "black"), label=s) for s in sorted(set(states), key=_state_rank)]


@dataclass
class AxisPlan:
    """How a searched key's values go on the x axis: ``scale`` is ``category``, ``log`` or
    ``linear``; ``labels`` the category ticks in order (placed at 0, 1, 2, ...; empty otherwise)."""
    scale: str
    labels: list[str]

    def position(self, value: Any) -> float:
        """Where ``value`` goes: its category's index, else the number itself."""
        return float(self.labels.index(_category_label(value))) if self.scale == "category" else float(value)


def _category_label(value: Any) -> str:
    return _fmt(value) if _number(value) is not None else str(value)


def axis_plan(values: Sequence[Any], kind: Optional[str] = None) -> AxisPlan:
    """The x axis for ``values`` of a key searched with distribution ``kind``. ``choice``/``grid``:
    categories (numbers in numeric order), since only the listed values exist and a continuous axis
    around one or two of them is meaningless; ``loguniform``: log; other kinds: linear. Without a
    kind: non-numbers or a single value are categories, numbers spanning over 10x a log axis."""
    numeric = bool(values) and all(_number(v) is not None for v in values)
    if kind is None:
        if numeric and len({float(v) for v in values}) > 1:
            xs = [float(v) for v in values]
            return AxisPlan("log" if min(xs) > 0 and max(xs) / min(xs) > 10 else "linear", [])
    elif kind not in CATEGORICAL_KINDS and numeric:
        xs = [float(v) for v in values]
        return AxisPlan("log" if kind == "loguniform" and min(xs) > 0 else "linear", [])
    ordered = sorted(values, key=lambda v: (0, float(v), "") if _number(v) is not None else (1, 0.0, str(v)))
    return AxisPlan("category", list(dict.fromkeys(_category_label(v) for v in ordered)))


def figure_vs_key(trials: Sequence[TrialRecord], objective: Objective, key: str,
                  kind: Optional[str] = None) -> Optional[Any]:
    """The objective of each trial against its value of ``key`` (axis from ``axis_plan``), or None."""
    metric, mode = objective
    points = [(t.params[key], v, t) for t in trials
              if key in t.params and t.params[key] is not None and (v := trial_value(t, metric, mode)) is not None]
    if not points:
        return None
    plan = axis_plan([x for x, _, _ in points], kind)
    fig, (ax,) = _figure(6.4, 4.4)
    xs = [plan.position(x) for x, _, _ in points]
    if plan.scale == "category":  # spread equal values a little so their points stay visible
        total, seen = Counter(xs), Counter()
        for i, x in enumerate(list(xs)):
            xs[i] = x + min(0.08, 0.6 / total[x]) * (seen[x] - (total[x] - 1) / 2)
            seen[x] += 1
        ax.set_xticks(range(len(plan.labels)), plan.labels)
        ax.set_xlim(-0.6, len(plan.labels) - 0.4)
    elif plan.scale == "log":
        ax.set_xscale("log")
    ax.scatter(xs, [v for _, v, _ in points], s=46, edgecolors="black", linewidths=0.5,
               c=[_STATE_COLORS.get(t.state, "black") for _, _, t in points], zorder=3)
    ax.set_xlabel(key + (f" ({kind})" if kind else ""))
    ax.set_ylabel(f"best {metric} ({mode})")
    ax.set_title(f"{metric} vs {key} ({len(points)} trials)")
    ax.grid(True, alpha=0.3)
    ax.legend(handles=_state_handles(t.state for _, _, t in points), title="trial state", loc="best",
              fontsize="small")
    return fig


def figure_vs_gflops(trials: Sequence[TrialRecord], objectives: Sequence[Objective]) -> Optional[Any]:
    """The first non-gflops objective against GFLOPs; the Pareto front only when gflops is one of
    the sweep's objectives (else the points alone), or None without data."""
    y = next(((m, md) for m, md in objectives if m != "gflops"), None)
    if y is None:
        return None
    objective = "gflops" in dict(objectives)
    x = ("gflops", dict(objectives).get("gflops", "min"))
    return figure_objectives(trials, objectives, x=x, y=y, front=objective and len(objectives) > 1)


def figure_objectives(trials: Sequence[TrialRecord], objectives: Sequence[Objective], x: Objective, y: Objective,
                      front: bool) -> Optional[Any]:
    """``y``'s best value against ``x``'s per trial. With ``front`` the trials on the Pareto front
    of the sweep's ``objectives`` are ringed (and joined by a staircase when those are exactly
    ``x`` and ``y``). None when no trial reported both."""
    (xm, xmode), (ym, ymode) = x, y
    points = [(a, b, t) for t in trials if (b := trial_value(t, ym, ymode)) is not None
              and (a := trial_value(t, xm, xmode)) is not None]
    if not points:
        return None
    fig, (ax,) = _figure(7.0, 4.8)
    ax.scatter([a for a, _, _ in points], [b for _, b, _ in points], s=46, edgecolors="black", linewidths=0.5,
               c=[_STATE_COLORS.get(t.state, "black") for _, _, t in points], zorder=3)
    on_front = pareto_front([t for _, _, t in points], objectives) if front else set()
    on = sorted((a, b) for a, b, t in points if t.trial_id in on_front)
    two_d = {m for m, _ in objectives} == {xm, ym} and len(objectives) == 2
    if on:
        if two_d:  # the staircase bounds what the front dominates: flat towards worse x
            ax.step([a for a, _ in on], [b for _, b in on], where="post" if xmode == "min" else "pre",
                    color="black", linewidth=1.2, zorder=2, gid=FRONT_GID)
        what = "" if two_d else f" of all {len(objectives)} objectives"
        ax.scatter([a for a, _ in on], [b for _, b in on], s=150, facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=4, label=f"Pareto front{what} ({len(on)})", gid=FRONT_GID)
    labels = short_ids(t for _, _, t in points)
    for a, b, t in points:
        ax.annotate(labels[t.trial_id], (a, b), xytext=(5, 4), textcoords="offset points", fontsize=8)
    ax.margins(x=0.1, y=0.08)
    ax.set_xlabel(f"forward GFLOPs ({xmode})" if xm == "gflops" else f"best {xm} ({xmode})")
    ax.set_ylabel(f"best {ym} ({ymode})")
    name = "GFLOPs" if xm == "gflops" else xm
    ax.set_title(f"{ym} vs {name}: Pareto front" if front  # the modes are in the axis labels
                 else f"{ym} vs {name} ({name} is not an objective: no Pareto front)")
    ax.grid(True, alpha=0.3)
    handles = _state_handles(t.state for _, _, t in points) + ax.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="outside right upper", fontsize="small", title="trial state")
    return fig


def has_front(fig: Any) -> bool:
    """Whether ``fig`` draws a Pareto front."""
    return any(a.get_gid() == FRONT_GID for ax in fig.axes for a in ax.get_children())


def _series(trial: TrialRecord, metric: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of every history entry that reported ``metric``."""
    pairs = [(_epoch_of(i, h), v) for i, h in enumerate(trial.history) if (v := _number(h.get(metric))) is not None]
    return [e for e, _ in pairs], [v for _, v in pairs]


def figure_per_epoch(trials: Sequence[TrialRecord], objective: Objective) -> Optional[Any]:
    """The objective and the loss per epoch, one line per trial; None without data."""
    metric, mode = objective
    if not any(_series(t, metric)[0] for t in trials):
        return None
    panels = [metric] + (["loss"] if metric != "loss" and any(_series(t, "loss")[0] for t in trials) else [])
    fig, axes = _figure(6.0 * len(panels) + 1.8, 4.6, ncols=len(panels))
    styles = {"STOPPED": "--", "ERROR": ":"}
    labels = short_ids(trials)
    colors = [f"C{i % 10}" for i in range(len(trials))] if len(trials) <= 10 else None
    for ax, name in zip(axes, panels):
        for i, t in enumerate(trials):
            xs, ys = _series(t, name)
            if not xs:
                continue
            color = colors[i] if colors else _STATE_COLORS.get(t.state, "black")
            ax.plot(xs, ys, linestyle=styles.get(t.state, "-"), marker="o", markersize=3.5, color=color,
                    label=f"{labels[t.trial_id]} ({t.state})")
            if t.state in ("STOPPED", "ERROR"):  # mark where the trial ended
                ax.plot(xs[-1], ys[-1], marker="x", markersize=9, markeredgewidth=2, color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name + (f" ({mode})" if name == metric else ""))
        ax.set_title(f"{name} per epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if colors:  # every trial drawn in any panel, in trial order
        named: dict[str, Any] = {}
        for ax in axes:
            for handle, name in zip(*ax.get_legend_handles_labels()):
                named.setdefault(name, handle)
        order = [n for n in (f"{labels[t.trial_id]} ({t.state})" for t in trials) if n in named]
        fig.legend([named[n] for n in order], order, loc="outside right upper", fontsize="small",
                   title="trial (state)")
    else:
        fig.legend(handles=_state_handles(t.state for t in trials), loc="outside right upper", fontsize="small",
                   title="trial state")
    fig.suptitle(f"{' and '.join(panels)} per epoch, {len(trials)} trials "
                 "(dashed, x: stopped early; dotted, x: failed)")
    return fig
