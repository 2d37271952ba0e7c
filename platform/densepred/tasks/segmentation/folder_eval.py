"""`platform eval --predictions FOLDER` for a task outside the Cityscapes benchmark: a folder of label
PNGs named like the validation labels (``<stem><label_suffix>``, as `platform predict` writes them),
stored the way the dataset stores its labels, scored image by image in one confusion matrix."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

from ...errors import DataError
from .class_info import ClassInfo
from .dataset import SegSample, read_label_png
from .metric import ConfusionMatrix, _write_metrics


def _check_pred_dir(pred_dir: Path, suffix: str) -> None:
    if pred_dir.is_file():
        raise DataError(f"{pred_dir}: is a file, not a folder; segmentation predictions are a folder of label "
                        f"PNGs named like the validation labels (<stem>{suffix})")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} not found")


def find_prediction(pred_dir: Path, sample: SegSample, suffix: str) -> Path:
    """``pred_dir/<stem><suffix>``, or the file name alone at the top (`platform predict` writes flat)."""
    stem = sample.stem
    for candidate in (pred_dir / f"{stem}{suffix}", pred_dir / f"{Path(stem).name}{suffix}"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{sample.label}: no prediction found for it in {pred_dir} (expected {stem}{suffix})")


def confusion_of_folder(pred_dir: Path, samples: list[SegSample], info: ClassInfo, suffix: str) -> ConfusionMatrix:
    """The confusion matrix of every validation label against its prediction."""
    cm = ConfusionMatrix(info.num_classes, info.ignore_index, info.names)
    for sample in samples:
        pred_path = find_prediction(pred_dir, sample, suffix)
        gt = read_label_png(sample.label)
        pred = read_label_png(pred_path)
        if pred.shape != gt.shape:
            raise DataError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but its ground "
                            f"truth {sample.label} is {gt.shape[1]}x{gt.shape[0]}")
        gt_ids = info.check_class_ids(gt, str(sample.label)) if sample.train_ids else info.decode(gt, str(sample.label))
        cm.update(info.decode(pred, str(pred_path)), gt_ids)
    return cm


def evaluate_label_folder(pred_dir: str | os.PathLike, samples: Callable[[], list[SegSample]], info: ClassInfo,
                          suffix: str, out_dir: Optional[str | os.PathLike] = None) -> dict[str, float]:
    """``{"mIoU", "aAcc", "IoU.<class>"..., "num_images"}`` of a prediction folder. ``samples`` lists
    the validation split (called after the folder itself is checked: the user's argument first)."""
    pred_dir = Path(pred_dir)
    _check_pred_dir(pred_dir, suffix)
    listed = samples()
    result: dict = confusion_of_folder(pred_dir, listed, info, suffix).summary()
    result["num_images"] = len(listed)
    if out_dir is not None:
        _write_metrics(out_dir, result)
    return result
