"""The data check of a dense task (`platform data check`, and its quick form before `platform train`
starts Ray): per split the listing (split file, a file of every target for every stem), the image
files, and the targets read back (every sample with ``full``, a few otherwise): unreadable or
wrongly sized files, values outside what the target may hold, targets with nothing to learn.

Errors would break or void the run; warnings weaken it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DataError
from ...imageio import read_rgb
from .targets import DenseTarget

#: samples read per split by the quick form
QUICK_SAMPLES = 8


@dataclass
class TargetTally:
    """What reading one target of a split found."""

    read: int = 0
    valid: int = 0            # pixels with something to learn
    pixels: int = 0
    empty: list[str] = field(default_factory=list)   # files without one valid pixel
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, target: DenseTarget, array: np.ndarray, name: str) -> None:
        valid = valid_mask(target, array)
        self.read += 1
        self.valid += int(valid.sum())
        self.pixels += int(valid.size)
        if not valid.any():
            self.empty.append(name)
        elif target.kind == "depth":
            self.low, self.high = min(self.low, float(array[valid].min())), max(self.high, float(array[valid].max()))

    def describe(self, target: DenseTarget) -> str:
        share = 100.0 * self.valid / max(1, self.pixels)
        extra = f", {self.low:.2f}..{self.high:.2f} m" if target.kind == "depth" and self.valid else ""
        what = {"label": "labelled", "boundary": "boundary", "depth": "with depth", "normals": "with a normal"}
        return f"{target.key}: {share:.1f}% of pixels {what[target.kind]}{extra}"


def valid_mask(target: DenseTarget, array: np.ndarray) -> np.ndarray:
    """Pixels a target teaches something on (boundary maps: every scored pixel; a map with no
    boundary pixel still counts as read but has nothing positive)."""
    if target.kind == "label":
        return array != target.ignore_index
    if target.kind == "boundary":
        return array == 1
    if target.kind == "normals":
        return np.abs(array).sum(axis=2) > 0
    return array > 0


def check_dense_split(task: Any, split: str, report: Any, full: bool, targets: list[DenseTarget]) -> None:
    """Read ``split`` (every sample when ``full``, else a few) and put the findings in ``report``."""
    try:
        samples = task.samples(split, targets)
    except DataError as e:
        report.error(str(e))
        return
    faulty = [str(s.image) for s in samples if not s.image.is_file()]
    tallies = {t.key: TargetTally() for t in targets}
    for sample in samples if full else samples[:QUICK_SAMPLES]:
        if not sample.image.is_file():
            continue
        try:
            hw = read_rgb(sample.image).shape[:2]
        except DataError:
            faulty.append(str(sample.image))
            continue
        for t in targets:
            try:
                tallies[t.key].add(t, t.read(sample, hw, strict=True), sample.stem)
            except DataError as e:
                report.error(str(e))
    read = max((t.read for t in tallies.values()), default=0)
    report.say(f"{split}: {len(samples)} samples" + ("" if full else f" ({read} read)"))
    report.faulty_files(f"{split} image files", faulty, len(samples),
                        "restore the files, or remove their stems from the split file")
    for t in targets:
        _report_tally(t, tallies[t.key], split, report)


def _report_tally(target: DenseTarget, tally: TargetTally, split: str, report: Any) -> None:
    if not tally.read:
        return
    report.say(f"{split} {tally.describe(target)}")
    if not tally.empty or target.kind == "boundary" and len(tally.empty) < tally.read:
        return
    text = f"{len(tally.empty)} of {tally.read} {split} {target.key} files read have nothing to learn"
    if len(tally.empty) == tally.read:
        report.error(f"{text} (e.g. {tally.empty[0]}): check the layout's storage convention and the files")
    else:
        report.warn(f"{text} (e.g. {tally.empty[0]}): those images add nothing to {target.key}")
