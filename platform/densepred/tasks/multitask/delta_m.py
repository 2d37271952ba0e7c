"""The multi-task performance figure Δm: mean relative change of each metric against its
single-task baseline, signed so that an improvement is positive (Maninis et al., CVPR 2019;
Vandenhende et al., TPAMI 2021).

    Δm = (100 / T) Σ_i (-1)^{l_i} (M_mt,i - M_st,i) / M_st,i,   l_i = 1 when lower is better.
"""
from __future__ import annotations

import math
from typing import Mapping

from ...errors import PlatformError


def _checked(metrics: Mapping[str, float], baselines: Mapping[str, float],
             greater_is_better: Mapping[str, bool]) -> list[tuple[str, float, float, bool]]:
    """(key, baseline, multi-task value, higher better) per baseline key; raises on bad input."""
    if not baselines:
        raise PlatformError("delta_m: no single-task baselines given")
    rows = []
    for key, base in baselines.items():
        if key not in metrics:
            raise PlatformError(f"delta_m: metric {key!r} has a single-task baseline but no multi-task "
                                f"value; got metrics: {', '.join(sorted(metrics)) or '(none)'}")
        if key not in greater_is_better:
            raise PlatformError(f"delta_m: direction of metric {key!r} unknown; add it to greater_is_better")
        base_f, value_f = float(base), float(metrics[key])
        if not math.isfinite(base_f) or base_f == 0:
            raise PlatformError(f"delta_m: baseline of {key!r} is {base!r}; it must be finite and non-zero")
        if not math.isfinite(value_f):
            raise PlatformError(f"delta_m: multi-task value of {key!r} is {metrics[key]!r}; it must be finite")
        rows.append((key, base_f, value_f, bool(greater_is_better[key])))
    return rows


def _relative_change(base: float, value: float) -> float:
    """Unsigned relative change in percent: 100 (M_mt - M_st) / M_st."""
    return 100.0 * (value - base) / base


def delta_m(metrics: Mapping[str, float], baselines: Mapping[str, float],
            greater_is_better: Mapping[str, bool]) -> float:
    """Δm in percent over the keys of ``baselines`` (e.g. ``pose/AP``, ``mask/mIoU``); > 0 is better."""
    rows = _checked(metrics, baselines, greater_is_better)
    signed = [(1.0 if higher else -1.0) * _relative_change(base, value) for _, base, value, higher in rows]
    return sum(signed) / len(signed)


def format_delta_table(metrics: Mapping[str, float], baselines: Mapping[str, float],
                       greater_is_better: Mapping[str, bool]) -> str:
    """Aligned text table: metric | single-task | multi-task | relative change %, then ``Δm = ±x.xx %``."""
    rows = _checked(metrics, baselines, greater_is_better)
    header = ("metric", "single-task", "multi-task", "change %")
    cells = [(f"{key} ({'higher' if higher else 'lower'} better)", f"{base:.4f}", f"{value:.4f}",
              f"{_relative_change(base, value):+.2f}") for key, base, value, higher in rows]
    widths = [max(len(r[c]) for r in [header, *cells]) for c in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        # First column left-aligned (names), numbers right-aligned so the decimals line up.
        return " | ".join(r[0].ljust(widths[0]) if c == 0 else r[c].rjust(widths[c]) for c in range(len(r)))

    out = [line(header), "-+-".join("-" * w for w in widths), *(line(r) for r in cells)]
    out.append(f"Δm = {delta_m(metrics, baselines, greater_is_better):+.2f} %")
    return "\n".join(out)
