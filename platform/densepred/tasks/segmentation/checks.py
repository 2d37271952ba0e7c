"""The segmentation data check (`platform data check`, and its quick form before `platform train`
starts Ray): per split the images listed, files missing or unreadable, label files that are colour
images, of another size or hold values outside the class list, labels with nothing but ignored
pixels, and (full form) the pixels per class.

Errors would break or void the run (a label outside the class list, every label empty, more
missing images than ``train.max_fault_fraction``); warnings weaken it (a few missing images,
classes never seen, label files without an image)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...imageio import read_rgb
from .dataset import read_label

#: labels read per split by the quick form
QUICK_LABELS = 8
#: classes named one by one in the pixels-per-class line; more are summarised
LISTED_CLASSES = 20


@dataclass
class SplitTally:
    """What reading one split found."""

    total: int
    faulty_images: list[str] = field(default_factory=list)
    labels_read: int = 0
    empty_labels: list[str] = field(default_factory=list)   # every pixel ignored
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per class, then ignore


def check_split(task: Any, split: str, report: Any, full: bool) -> None:
    """Read ``split`` (every file when ``full``, else a few labels) and put the findings in ``report``."""
    try:
        samples = task.samples(split)
    except DataError as e:
        report.error(str(e))
        return
    info = task.class_info
    tally = SplitTally(len(samples), pixels=np.zeros(info.num_classes + 1, np.int64))
    tally.faulty_images = [str(s.image) for s in samples if not s.image.is_file()]
    for sample in samples if full else samples[:QUICK_LABELS]:
        _read_sample(task, sample, tally, report)
    report.say(f"{split}: {len(samples)} images with labels" + ("" if full else f" ({tally.labels_read} labels read)"))
    report.faulty_files(f"{split} image files", tally.faulty_images, tally.total,
                        "restore the files, or remove them (and their stems from the split file)"
                        if task.data.format == "folders"
                        else "restore the files")
    _report_empty_labels(task, split, tally, report)
    if full and tally.labels_read:
        report.say(f"{split} pixels per class: {_pixel_shares(info.names, tally.pixels)}")
        _report_unseen(info.names, split, tally.pixels, report)
    _report_orphans(task, split, samples, report)


def _read_sample(task: Any, sample: Any, tally: SplitTally, report: Any) -> None:
    if not sample.image.is_file():
        return  # counted with the faulty images
    try:
        image = read_rgb(sample.image)
    except DataError:
        tally.faulty_images.append(str(sample.image))
        return
    try:
        label = read_label(sample, image.shape, task.class_info, task.label_kind)
    except DataError as e:
        report.error(str(e))
        return
    tally.labels_read += 1
    info = task.class_info
    counts = np.bincount(label.ravel(), minlength=max(info.ignore_index, info.num_classes) + 1)
    tally.pixels[: info.num_classes] += counts[: info.num_classes]
    tally.pixels[-1] += counts[info.ignore_index]
    if counts[: info.num_classes].sum() == 0:
        tally.empty_labels.append(str(sample.label))


def _report_empty_labels(task: Any, split: str, tally: SplitTally, report: Any) -> None:
    """Labels whose every pixel is ignored teach nothing; all of them means a wrong convention."""
    if not tally.empty_labels:
        return
    info = task.class_info
    hint = (f" (reduce_zero_label: true ignores 0 and {info.ignore_index}; if 0 is a class of yours, set "
            "reduce_zero_label: false in the class list)" if info.reduce_zero_label
            else f" (every pixel is {info.ignore_index}, the ignore_index)")
    text = f"{len(tally.empty_labels)} of {tally.labels_read} {split} label files read hold only ignored pixels"
    if len(tally.empty_labels) == tally.labels_read:
        report.error(f"{text}, e.g. {tally.empty_labels[0]}{hint}: there is nothing to learn or score")
    else:
        report.warn(f"{text} (e.g. {tally.empty_labels[0]}): those images add nothing")


def _pixel_shares(names: tuple[str, ...], pixels: np.ndarray) -> str:
    total = max(int(pixels.sum()), 1)
    shares = [(names[i], pixels[i] / total) for i in range(len(names))]
    if len(names) > LISTED_CLASSES:
        absent = sum(1 for _, s in shares if s == 0)
        shares = sorted(shares, key=lambda x: -x[1])[:10]
        rest = f", ... ({absent} of {len(names)} classes absent)"
    else:
        rest = ""
    text = ", ".join(f"{n} {100 * s:.1f}%" for n, s in shares)
    return f"{text}{rest}, ignored {100 * pixels[-1] / total:.1f}%"


def _report_unseen(names: tuple[str, ...], split: str, pixels: np.ndarray, report: Any) -> None:
    unseen = [names[i] for i in range(len(names)) if pixels[i] == 0]
    if unseen:
        shown = ", ".join(unseen[:8]) + (f", ... ({len(unseen)} in all)" if len(unseen) > 8 else "")
        report.warn(f"{split}: {len(unseen)} of {len(names)} classes never appear in the labels ({shown})"
                    + ("; the model cannot learn them" if split == "train" else "; their IoU is not scored"))


def _report_orphans(task: Any, split: str, samples: list, report: Any) -> None:
    if task.data.format != "folders":
        return
    from .folders import orphan_labels

    orphans = orphan_labels(Path(task.data_root), task.data, split, samples)
    if orphans:
        report.warn(f"{split}: {orphans} label file(s) in data.{split}_labels have no image in "
                    f"data.{split}_images (check data.image_suffix={task.data.image_suffix!r}); they are not used")
