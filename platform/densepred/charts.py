"""Figures drawn off-screen (matplotlib on an Agg canvas: no display, no pyplot state) and saved
atomically, for every picture the platform writes (run curves, sweeps, benchmarks)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .atomicfile import write_atomic


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1, dpi: int = 110,
               **subplot_kw: Any) -> tuple[Any, Any]:
    """A figure on an Agg canvas and its axes (a flat array of ``nrows * ncols``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw).reshape(-1)
    return fig, axes


def save_png(fig: Any, path: Path) -> Path:
    """Save ``fig`` as PNG, atomically (a reader never sees half a file)."""
    write_atomic(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    return Path(path)
