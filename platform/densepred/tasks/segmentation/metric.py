"""Cityscapes semantic segmentation metric: a bounded-memory confusion matrix whose class IoU and
mean IoU equal those of cityscapesscripts' ``evalPixelLevelSemanticLabeling`` (the official
benchmark script), computed much faster.

How cityscapesscripts scores classes (``evaluateImgLists`` / ``getIouScoreForLabel``, 2.3.0)
------------------------------------------------------------------------------------------
It fills a 34x34 confusion matrix ``C[gt_labelId, pred_labelId]`` with *every* pixel (void ones
included) and then, for each label ``l`` with ``ignoreInEval`` False (the 19 train classes):

* ``tp = C[l, l]``
* ``fn = C[l, :].sum() - tp``: the whole GT row, so a pixel of an evaluated GT class predicted
  as *any* other id, a void / ignored one (0..6, 9, 10, 14..16, 18, 29, 30) included, is a false
  negative for that GT class, and counts nowhere else;
* ``fp = C[r, l]`` summed over evaluated GT labels ``r != l`` only: a prediction of ``l`` on a
  pixel whose GT is void / ignored is not a false positive;
* ``IoU = tp / (tp + fp + fn)``; NaN when the denominator is 0, i.e. when the class has no GT
  pixel *and* was never predicted on a pixel with an evaluated GT. A class without GT pixels but
  with false positives gets IoU 0 and counts in the mean.
* ``averageScoreClasses`` (the "Score Average" it prints) is the plain mean of the non-NaN class
  IoUs, summed in label order.

Unknown GT ids make it stop ("Unknown label with id"); unknown predicted ids (> 33) crash it.

Equivalent trainId formulation used here
----------------------------------------
The evaluated labelIds map one-to-one onto trainIds 0..18 and every other labelId maps to 255, so
the same numbers come from an ``(n, n + 1)`` matrix over pixels whose GT trainId is not 255: rows =
GT trainId, columns = predicted trainId, and one extra last column for "predicted an ignored /
void id" (trainId 255 or anything outside ``0..n-1``). Then ``tp`` = diagonal, ``fn`` = row sum
(extra column included) minus ``tp``, ``fp`` = column sum of the square part minus ``tp``.
``aAcc`` (pixel accuracy) = diagonal sum / number of pixels with an evaluated GT.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from densepred.errors import DataError
from densepred.registry import METRICS

from .labels import (
    CLASS_NAMES,
    IGNORE_INDEX,
    KNOWN_LABEL_IDS,
    LABEL_ID_TO_TRAIN_ID,
    NUM_CLASSES,
    unknown_label_error,
)

__all__ = [
    "ConfusionMatrix",
    "CityscapesMIoU",
    "evaluate_prediction_folder",
    "match_predictions",
    "folder_confusion_matrix",
]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class ConfusionMatrix:
    """Accumulated ``num_classes x num_classes`` confusion matrix (rows = GT, columns = prediction,
    int64) over pixels whose GT is not ``ignore_index``, plus one count per GT class of pixels
    predicted as ``ignore_index`` / out of range (false negatives only, as cityscapesscripts counts
    predictions of void labels). Memory does not grow with the number of images.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX,
                 class_names: Sequence[str] | None = None) -> None:
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        if class_names is None:
            class_names = CLASS_NAMES if self.num_classes == NUM_CLASSES else [
                f"class_{i}" for i in range(self.num_classes)]
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        self.class_names = tuple(str(c) for c in class_names)
        # last column: pixels of an evaluated GT class predicted as ignored/void
        self.counts = np.zeros((self.num_classes, self.num_classes + 1), dtype=np.int64)

    # -- accumulation ---------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """The square ``(num_classes, num_classes)`` part (GT rows, predicted columns)."""
        return self.counts[:, : self.num_classes]

    @property
    def ignored_predictions(self) -> np.ndarray:
        """Per GT class: pixels predicted as ignore / void (false negatives only)."""
        return self.counts[:, self.num_classes]

    @property
    def total(self) -> int:
        """Number of pixels with an evaluated GT seen so far."""
        return int(self.counts.sum())

    def reset(self) -> None:
        self.counts[...] = 0

    def update(self, pred_train_ids: Any, gt_train_ids: Any) -> None:
        """Add a prediction / GT pair of trainId maps (any equal shapes, batches included; numpy
        arrays or torch tensors). GT pixels equal to ``ignore_index`` are skipped; predicted values
        outside ``0..num_classes-1`` count as "predicted ignore" (a false negative for the GT
        class). A GT value that is neither a class nor ``ignore_index`` is a ValueError."""
        pred = _to_numpy(pred_train_ids)
        gt = _to_numpy(gt_train_ids)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
        for name, a in (("prediction", pred), ("ground truth", gt)):
            if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
                raise ValueError(f"{name} must hold integer trainIds, got dtype {a.dtype}")
        n = self.num_classes
        g = gt.reshape(-1)
        p = pred.reshape(-1)
        valid = g != self.ignore_index
        if not valid.all():
            g = g[valid]
            p = p[valid]
        if g.size == 0:
            return
        if g.min() < 0 or g.max() >= n:
            bad = np.unique(g[(g < 0) | (g >= n)])
            raise ValueError(f"ground truth holds trainIds {bad[:10].tolist()} that are neither "
                             f"0..{n - 1} nor the ignore index {self.ignore_index}")
        g = g.astype(np.int64)
        p = p.astype(np.int64)  # a copy: safe to modify
        p[(p < 0) | (p >= n)] = n
        codes = g * (n + 1)
        codes += p
        self.counts += np.bincount(codes, minlength=n * (n + 1)).reshape(n, n + 1)

    def update_from_counts(self, counts: np.ndarray) -> None:
        """Add an ``(n, n + 1)`` count matrix laid out like :attr:`counts`."""
        counts = np.asarray(counts)
        if counts.shape != self.counts.shape:
            raise ValueError(f"counts of shape {counts.shape}, expected {self.counts.shape}")
        self.counts += counts.astype(np.int64)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (e.g. from another worker) into this one; returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge a {other.num_classes}-class matrix into a "
                             f"{self.num_classes}-class one")
        self.counts += other.counts
        return self

    # -- scores ---------------------------------------------------------------------------------
    def iou(self) -> np.ndarray:
        """Per-class IoU (float64); NaN for a class with no GT pixel that was never predicted on
        a pixel with an evaluated GT (cityscapesscripts' rule, see the module docstring)."""
        sq = self.matrix
        tp = np.diag(sq).astype(np.int64)
        fn = self.counts.sum(axis=1) - tp
        fp = sq.sum(axis=0) - tp
        denom = tp + fp + fn
        out = np.full(self.num_classes, np.nan, dtype=np.float64)
        ok = denom > 0
        out[ok] = tp[ok].astype(np.float64) / denom[ok].astype(np.float64)
        return out

    def miou(self) -> float:
        """Mean of the non-NaN class IoUs (NaN if there are none), summed in class order exactly
        as cityscapesscripts' ``getScoreAverage`` does."""
        valid = [float(v) for v in self.iou() if not math.isnan(v)]
        if not valid:
            return float("nan")
        total = 0.0
        for v in valid:
            total += v
        return total / len(valid)

    def pixel_accuracy(self) -> float:
        """Correct pixels / pixels with an evaluated GT (NaN if there are none)."""
        total = self.total
        if total == 0:
            return float("nan")
        return float(np.trace(self.matrix)) / total

    def summary(self) -> dict[str, float]:
        """``{"mIoU", "aAcc", "IoU.<class name>"...}`` as fractions in [0, 1] (NaN where undefined)."""
        out: dict[str, float] = {"mIoU": self.miou(), "aAcc": self.pixel_accuracy()}
        for name, v in zip(self.class_names, self.iou()):
            out[f"IoU.{name}"] = float(v)
        return out

    def table(self) -> str:
        """Per-class IoU table in the layout cityscapesscripts prints, plus the mean and aAcc."""
        rule = "-" * 32
        lines = ["classes          IoU", rule]
        for name, v in zip(self.class_names, self.iou()):
            lines.append(f"{name:<14}: {v:>5.3f}")
        lines += [rule, f"Score Average : {self.miou():5.3f}", f"Pixel Acc.    : {self.pixel_accuracy():5.3f}",
                  rule]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Folder evaluation (benchmark submission format: labelId PNGs)
# ----------------------------------------------------------------------------------------------
_GT_SUFFIX = "_gtFine_labelIds.png"
# <city>_<seq>_<frame>[_anything].png, as cityscapesscripts' getCsFileInfo / getPrediction read it
_CS_NAME = re.compile(r"^(?P<city>[^_]+)_(?P<seq>\d{6})_(?P<frame>\d{6})(?:_[^/]*)?\.png$")


def _cs_key(name: str) -> str | None:
    m = _CS_NAME.match(name)
    return f"{m['city']}_{m['seq']}_{m['frame']}" if m else None


def _resolve_gt_dir(gt_dir: str | os.PathLike | None, data_root: str | os.PathLike | None,
                    split: str) -> Path:
    if gt_dir is None:
        if data_root is None:
            raise DataError("evaluate_prediction_folder: give gt_dir (gtFine/<split>) or data_root and split")
        gt_dir = Path(data_root) / "gtFine" / split
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise DataError(f"ground-truth folder {gt_dir} not found")
    return gt_dir


def _check_pred_dir(pred_dir: Path) -> None:
    """DataError unless ``pred_dir`` is a folder; a file gets told what to give instead."""
    if pred_dir.is_file():
        raise DataError(f"{pred_dir}: is a file, not a folder; segmentation predictions are a folder of "
                        "Cityscapes labelId PNGs named <city>_<seq>_<frame>*.png (searched recursively)")
    if not pred_dir.is_dir():
        raise DataError(f"prediction folder {pred_dir} not found")


def match_predictions(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """Pair each ``gt_dir/<city>/*_gtFine_labelIds.png`` with the prediction PNG found anywhere
    under ``pred_dir`` whose name starts with the same ``<city>_<seq>_<frame>`` (like
    cityscapesscripts' ``getPrediction``). Returns ``[(pred_path, gt_path)]`` sorted by GT path.
    Non-PNG files are skipped; a PNG that is not named like a Cityscapes file, two predictions for
    one GT image, or a GT image without prediction raise DataError naming the file."""
    pred_dir = Path(pred_dir)
    gt_dir = Path(gt_dir)
    _check_pred_dir(pred_dir)
    gt_files = sorted(str(p) for p in gt_dir.glob(f"*/*{_GT_SUFFIX}"))
    if not gt_files:
        raise DataError(f"no ground truth found: {gt_dir}/*/*{_GT_SUFFIX} matches nothing")
    preds: dict[str, str] = {}
    for root, _dirs, files in os.walk(pred_dir):
        for fname in sorted(files):
            if not fname.endswith(".png"):
                continue
            path = os.path.join(root, fname)
            key = _cs_key(fname)
            if key is None:
                raise DataError(f"{path}: not a Cityscapes file name "
                                f"(expected <city>_<seq>_<frame>[_suffix].png, e.g. frankfurt_000000_000294_pred.png)")
            if key in preds:
                raise DataError(f"{path}: second prediction for {key} (also {preds[key]})")
            preds[key] = path
    pairs = []
    for gt in gt_files:
        key = _cs_key(os.path.basename(gt))
        if key is None:
            raise DataError(f"{gt}: not a Cityscapes ground-truth file name")
        if key not in preds:
            raise DataError(f"{gt}: no prediction found for it in {pred_dir} (expected {key}*.png)")
        pairs.append((preds[key], gt))
    return pairs


def _read_label_png(path: str) -> np.ndarray:
    """Read a single-channel label PNG as stored (uint8 / uint16); palette PNGs give indices."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        if not os.path.isfile(path):
            raise DataError(f"{path}: file not found")
        raise DataError(f"{path}: cannot decode the PNG")
    if img.ndim == 3:
        # OpenCV expands palette PNGs to colour; their labels are the palette indices.
        from PIL import Image

        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I", "I;16"):
                raise DataError(f"{path}: image has {img.shape[2]} channels ({im.mode}); "
                                "expected a single-channel labelId PNG")
            img = np.asarray(im)
    if img.dtype != np.uint8:
        if not np.issubdtype(img.dtype, np.integer):
            raise DataError(f"{path}: label image has dtype {img.dtype}, expected integer labelIds")
        if img.size and (img.min() < 0 or img.max() > 255):
            raise unknown_label_error(path, np.unique(img[(img < 0) | (img > 255)]))
        img = img.astype(np.uint8)
    return img


def _joint_histogram_u16(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """256x256 int64 ``H[gt, pred]`` of two equal-shape 2-D uint8 maps (fewer than 2**24 pixels).

    Why not ``cv2.calcHist`` in 2-D: it costs about 40% of the two PNG decodes. Interleaving the maps
    into one multi-channel image (one cheap pass) and reading it as uint16 gives one code per pixel,
    so a 1-D 65536-bin histogram does the same count. The top and bottom halves go into alternate
    codes because a histogram is slow on long runs of one value (each increment waits for the
    previous one to the same bin), and label maps are made of such runs.
    """
    half = gt.shape[0] // 2
    if gt.shape[0] % 2 == 0 and half > 0:
        parts = [gt[:half], pred[:half], gt[half:], pred[half:]]
    else:
        parts = [gt, pred]
    codes = cv2.merge(parts).view(np.uint16).reshape(parts[0].shape[0], -1)
    flat = cv2.calcHist([codes], [0], None, [1 << 16], [0, 1 << 16]).reshape(256, 256)
    # little-endian: code = pred * 256 + gt, so rows are pred; big-endian: rows are gt
    hist = flat.T if sys.byteorder == "little" else flat
    return hist.astype(np.int64, order="C")


def _pair_histogram(pred_path: str, gt_path: str) -> np.ndarray:
    """256x256 int64 joint histogram ``H[gt_labelId, pred_labelId]`` of one image pair, after
    checking sizes and label ids."""
    gt = _read_label_png(gt_path)
    pred = _read_label_png(pred_path)
    if pred.shape != gt.shape:
        raise DataError(f"{pred_path}: prediction is {pred.shape[1]}x{pred.shape[0]} (WxH) but its "
                        f"ground truth {gt_path} is {gt.shape[1]}x{gt.shape[0]}")
    if gt.size < (1 << 24):  # float32 bins stay exact below 2**24 counts
        hist = _joint_histogram_u16(gt, pred)
    else:
        codes = gt.astype(np.intp) << 8
        codes |= pred
        hist = np.bincount(codes.ravel(), minlength=1 << 16).reshape(256, 256)
    unknown = ~KNOWN_LABEL_IDS
    gt_present = hist.sum(axis=1) > 0
    if (gt_present & unknown).any():
        raise unknown_label_error(gt_path, np.flatnonzero(gt_present & unknown))
    pred_present = hist.sum(axis=0) > 0
    if (pred_present & unknown).any():
        raise unknown_label_error(pred_path, np.flatnonzero(pred_present & unknown))
    return hist


def _label_hist_to_counts(hist: np.ndarray) -> np.ndarray:
    """Fold a 256x256 labelId joint histogram into the (19, 20) trainId counts of ConfusionMatrix."""
    n = NUM_CLASSES
    train = LABEL_ID_TO_TRAIN_ID.astype(np.int64)
    train[train >= n] = n  # ignored / void (and unknown, which were rejected before) -> index n
    # Sort the labelIds by trainId so that each trainId is one run of rows (and of columns), then
    # sum the runs: exact int64 sums, without the dense (n+1)x256 products of a one-hot fold. Every
    # trainId 0..n has at least one labelId, so no run is empty (reduceat needs that).
    order = np.argsort(train, kind="stable")
    starts = np.searchsorted(train[order], np.arange(n + 1))
    rows = np.add.reduceat(np.asarray(hist, dtype=np.int64)[order], starts, axis=0)
    folded = np.add.reduceat(rows[:, order], starts, axis=1)  # (n+1, n+1): [gt train, pred train]
    return folded[:n]  # drop the ignored-GT row


def folder_confusion_matrix(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike | None = None, *,
                            data_root: str | os.PathLike | None = None, split: str = "val",
                            num_workers: int | None = None) -> tuple[ConfusionMatrix, int]:
    """Confusion matrix of a folder of labelId prediction PNGs against Cityscapes gtFine; returns
    ``(matrix, number of images)``. See :func:`evaluate_prediction_folder`."""
    _check_pred_dir(Path(pred_dir))  # the user's own argument first, before the dataset's GT
    gt_root = _resolve_gt_dir(gt_dir, data_root, split)
    pairs = match_predictions(pred_dir, gt_root)
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    total = np.zeros((256, 256), dtype=np.int64)
    if num_workers <= 1 or len(pairs) == 1:
        for pred, gt in pairs:
            total += _pair_histogram(pred, gt)
    else:
        # Decoding and cv2.calcHist release the GIL. Keep at most 2 * workers pairs in flight so
        # that memory stays bounded (each task holds two decoded images, and returns 512 KiB).
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            pending: list = []
            it: Iterable[tuple[str, str]] = iter(pairs)
            try:
                for pred, gt in it:
                    pending.append(pool.submit(_pair_histogram, pred, gt))
                    if len(pending) >= 2 * num_workers:
                        total += pending.pop(0).result()
                for fut in pending:
                    total += fut.result()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    cm = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX)
    cm.update_from_counts(_label_hist_to_counts(total))
    return cm, len(pairs)


def _json_value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _write_metrics(out_dir: str | os.PathLike, metrics: dict) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps({k: _json_value(v) for k, v in metrics.items()}, indent=2) + "\n")
    return path


def evaluate_prediction_folder(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike | None = None, *,
                               data_root: str | os.PathLike | None = None, split: str = "val",
                               num_workers: int | None = None,
                               out_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """Score a folder of Cityscapes benchmark-format predictions (single-channel PNGs of
    *labelIds*, named ``<city>_<seq>_<frame>*.png``, searched recursively) against
    ``gt_dir/<city>/*_gtFine_labelIds.png``; ``gt_dir`` defaults to ``data_root/gtFine/<split>``.

    Returns ``{"mIoU", "aAcc", "IoU.<class>"..., "num_images"}``; ``mIoU`` and the class IoUs equal
    cityscapesscripts' ``averageScoreClasses`` / ``classScores``. Raises DataError naming the file
    for a GT image without prediction, a prediction of another size, a PNG that is not named like
    a Cityscapes file, several predictions for one image, or label ids not in the Cityscapes table.
    ``num_workers`` threads decode images (default ``min(4, cpu count)``); with ``out_dir`` the
    result is also written to ``out_dir/metrics.json``.
    """
    cm, n_images = folder_confusion_matrix(pred_dir, gt_dir, data_root=data_root, split=split,
                                           num_workers=num_workers)
    result: dict[str, Any] = cm.summary()
    result["num_images"] = n_images
    if out_dir is not None:
        _write_metrics(out_dir, result)
    return result


# ----------------------------------------------------------------------------------------------
# Registered metric
# ----------------------------------------------------------------------------------------------
@METRICS.register_module()
class CityscapesMIoU:
    """Cityscapes mIoU over trainId maps, accumulated in a fixed-size confusion matrix.

    ``process(pred, gt)`` takes predicted and GT trainId maps of equal shape (one image or a
    batch; numpy or torch); GT pixels equal to ``ignore_index`` are skipped and predictions of
    ``ignore_index`` count as misses. ``compute()`` returns ``{"mIoU", "aAcc", "IoU.<class>"...}``
    as fractions; the IoUs follow cityscapesscripts' rules (see this module's docstring).
    """

    def __init__(self, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.confusion = ConfusionMatrix(self.num_classes, self.ignore_index)

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.confusion.reset()

    def process(self, pred: Any, gt: Any) -> None:
        """Accumulate one prediction / GT pair (or batch) of trainId maps."""
        self.confusion.update(pred, gt)

    def compute(self, out_dir: str | os.PathLike | None = None) -> dict[str, float]:
        """The metrics; with ``out_dir`` also writes them to ``out_dir/metrics.json`` (NaN -> null)."""
        result = self.confusion.summary()
        if out_dir is not None:
            _write_metrics(out_dir, result)
        return result

    def table(self) -> str:
        return self.confusion.table()
