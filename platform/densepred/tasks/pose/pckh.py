"""PCKh on MPII, as the official HRNet evaluation computes it (``lib/dataset/mpii.py::evaluate``).

Ground truth: ``annot/gt_<split>.mat`` with MPII's fields ``jnt_missing`` (16 x N, 1 = not
labelled), ``pos_gt_src`` (16 x 2 x N, 1-based pixels), ``headboxes_src`` (2 x 2 x N, the head
rectangle's corners ``[[x1, y1], [x2, y2]]``) and optionally ``dataset_joints`` (joint codes, which
must then be in the standard order of ``JOINT_CODES``). Persons are in the order of
``annot/<split>.json``.

A joint is correct when its distance to the ground truth is at most ``threshold`` head sizes, the
head size being ``0.6 * ||(x2 - x1, y2 - y1)||`` of the head box. Predictions are compared in
1-based pixels (the official code adds 1 to its 0-based predictions). Reported, in percent:

* ``Head`` (head top), ``Shoulder``, ``Elbow``, ``Wrist``, ``Hip``, ``Knee``, ``Ankle``: PCKh@0.5 of
  the joint, or the mean of the left and right joint's;
* ``PCKh``: the official ``Mean``, the labelled joints' PCKh@0.5 weighted by their counts, without
  pelvis and thorax (written as the pooled fraction of correct joints, which is the same number);
* ``PCKh@0.1``: the official ``Mean@0.1``. The official code takes row 11 of
  ``np.arange(0, 0.51, 0.01)``, which is the threshold 0.11, not 0.1; it is reproduced here
  (``LOW_THRESHOLD``) so that the figures compare with published ones.

A joint that no person has labelled gets NaN (the official code divides by zero there).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ...errors import DataError
#: MPII's short joint codes (``dataset_joints`` of gt_valid.mat), the order of configs/datasets/keypoints/mpii.yaml
JOINT_CODES = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
               "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri")
NUM_KEYPOINTS = len(JOINT_CODES)

SC_BIAS = 0.6            # head size = 0.6 * head box diagonal
THRESHOLD = 0.5
LOW_THRESHOLD = float(np.arange(0, 0.5 + 0.01, 0.01)[11])  # official "Mean@0.1" row: 0.11
MEAN_EXCLUDED = ("pelv", "thor")
GROUPS = {"Head": ("head",), "Shoulder": ("lsho", "rsho"), "Elbow": ("lelb", "relb"),
          "Wrist": ("lwri", "rwri"), "Hip": ("lhip", "rhip"), "Knee": ("lkne", "rkne"),
          "Ankle": ("lank", "rank")}
PCKH_NAMES = ("PCKh", "PCKh@0.1", *GROUPS)


@dataclass
class PckhGroundTruth:
    """The fields of ``gt_<split>.mat`` (official shapes, 1-based pixels)."""

    jnt_missing: np.ndarray     # (16, N), 1 where the joint is not labelled
    pos_gt_src: np.ndarray      # (16, 2, N)
    headboxes_src: np.ndarray   # (2, 2, N): [corner][x/y][person]

    @property
    def num_persons(self) -> int:
        return int(self.jnt_missing.shape[1])


def _joint_codes(value: Any) -> list[str]:
    """The names in a MATLAB cell array of strings as loadmat returns it."""
    return [str(np.asarray(v).ravel()[0]) if np.asarray(v).size else "" for v in np.asarray(value).ravel()]


def load_gt(path: str | Path) -> PckhGroundTruth:
    """Read and check ``gt_<split>.mat``; DataError naming the file when it cannot be used."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: PCKh ground truth not found (official annot/gt_<val_split>.mat); "
                        "check data_root and data.val_split")
    try:
        mat = loadmat(str(path))
    except Exception as e:  # noqa: BLE001  (scipy raises several types for a damaged file)
        raise DataError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("jnt_missing", "pos_gt_src", "headboxes_src") if k not in mat]
    if missing:
        raise DataError(f"{path}: lacks {', '.join(missing)}; a PCKh ground truth needs jnt_missing, "
                        "pos_gt_src and headboxes_src")
    if "dataset_joints" in mat and _joint_codes(mat["dataset_joints"]) != list(JOINT_CODES):
        raise DataError(f"{path}: dataset_joints {_joint_codes(mat['dataset_joints'])} are not the standard "
                        f"MPII order {list(JOINT_CODES)}")
    missing_, pos, boxes = (np.asarray(mat[k], np.float64) for k in ("jnt_missing", "pos_gt_src", "headboxes_src"))
    if pos.ndim == 2 and missing_.ndim == 2 and missing_.shape[1] == 1:  # MATLAB drops a trailing 1
        pos, boxes = pos[..., None], boxes[..., None]
    n = missing_.shape[1] if missing_.ndim == 2 else -1
    if (missing_.shape != (NUM_KEYPOINTS, n) or pos.shape != (NUM_KEYPOINTS, 2, n)
            or boxes.shape != (2, 2, n)):
        raise DataError(f"{path}: jnt_missing {missing_.shape}, pos_gt_src {pos.shape} and headboxes_src "
                        f"{boxes.shape} do not fit; expected (16, N), (16, 2, N) and (2, 2, N)")
    return PckhGroundTruth(missing_, pos, boxes)


def save_gt(path: str | Path, gt: PckhGroundTruth) -> None:
    """Write ``gt`` in the official layout (with ``dataset_joints``, readable by the official code)."""
    from scipy.io import savemat

    savemat(str(path), {"dataset_joints": np.array([list(JOINT_CODES)], dtype=object),
                        "jnt_missing": gt.jnt_missing, "pos_gt_src": gt.pos_gt_src,
                        "headboxes_src": gt.headboxes_src})


def head_sizes(gt: PckhGroundTruth) -> np.ndarray:
    """``(N,)`` PCKh normaliser: 0.6 x the head box diagonal."""
    return np.linalg.norm(gt.headboxes_src[1] - gt.headboxes_src[0], axis=0) * SC_BIAS


def scaled_errors(preds_1based: np.ndarray, gt: PckhGroundTruth) -> np.ndarray:
    """``(16, N)`` distances in head sizes of ``preds_1based`` ``(N, 16, 2)`` to the ground truth."""
    pos_pred = np.transpose(np.asarray(preds_1based)[:, :, :2], (1, 2, 0))
    with np.errstate(divide="ignore", invalid="ignore"):  # a NaN prediction or an empty head box: a miss
        return np.linalg.norm(pos_pred - gt.pos_gt_src, axis=1) / head_sizes(gt)


def pckh_from_errors(errors: np.ndarray, visible: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per joint: the labelled count and the correct count (error <= ``threshold``)."""
    with np.errstate(invalid="ignore"):
        correct = ((errors <= threshold) & visible).sum(axis=1)
    return visible.sum(axis=1), correct


def pckh(preds_1based: np.ndarray, gt: PckhGroundTruth, threshold: float = THRESHOLD,
         low_threshold: float = LOW_THRESHOLD) -> dict[str, float]:
    """The official PCKh figures (see the module docstring) of ``(N, 16, 2)`` 1-based predictions."""
    preds = np.asarray(preds_1based)
    if preds.ndim != 3 or preds.shape[0] != gt.num_persons or preds.shape[1] != NUM_KEYPOINTS or preds.shape[2] < 2:
        raise ValueError(f"PCKh needs predictions of shape ({gt.num_persons}, {NUM_KEYPOINTS}, 2), "
                         f"got {preds.shape}")
    errors = scaled_errors(preds, gt)
    visible = gt.jnt_missing == 0
    count, correct = pckh_from_errors(errors, visible, threshold)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_joint = 100.0 * correct / count
    idx = {code: i for i, code in enumerate(JOINT_CODES)}
    in_mean = np.array([code not in MEAN_EXCLUDED for code in JOINT_CODES])
    _, correct_low = pckh_from_errors(errors, visible, low_threshold)
    total = count[in_mean].sum()
    stats = {"PCKh": 100.0 * correct[in_mean].sum() / total if total else float("nan"),
             "PCKh@0.1": 100.0 * correct_low[in_mean].sum() / total if total else float("nan")}
    for name, codes in GROUPS.items():
        stats[name] = float(np.mean([per_joint[idx[c]] for c in codes]))
    return {k: float(v) for k, v in stats.items()}


# --------------------------------------------------------------------------------------------
# Prediction files
# --------------------------------------------------------------------------------------------
def save_pred_mat(path: str | Path, preds: np.ndarray) -> None:
    """Write 0-based ``(N, 16, 2+)`` predictions as the official ``pred.mat``: ``preds`` (N, 16, 2)
    in 1-based pixels."""
    from scipy.io import savemat

    savemat(str(path), {"preds": np.asarray(preds)[:, :, :2] + 1.0})


def _expected(n: int) -> str:
    return (f"({n}, {NUM_KEYPOINTS}, 2) or ({n}, {NUM_KEYPOINTS}, 3): one entry per validation person, "
            "in val order")


def _read_mat_preds(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as e:  # noqa: BLE001  (scipy raises several types for a damaged file)
        raise DataError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    if "preds" not in mat:
        raise DataError(f"{path}: no 'preds' array; expected the official pred.mat (preds: N x 16 x 2, 1-based)")
    try:
        return np.asarray(mat["preds"], np.float64) - 1.0  # official files are 1-based
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'preds' is not a numeric array") from None


def _read_json_preds(path: Path) -> np.ndarray:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the predictions file ({e})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of 16x2 (or 16x3) arrays, got {type(data).__name__}")
    try:
        return np.asarray(data, np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: the predictions are not all 16 [x, y] (or [x, y, score]) number lists") from None


def load_predictions(path: str | Path, num_persons: int) -> np.ndarray:
    """0-based ``(N, 16, 2)`` predictions from the official ``pred.mat`` (1-based) or a JSON list
    of 16x2 / 16x3 arrays (0-based); DataError naming the file on a wrong count or shape."""
    path = Path(path)
    if path.is_dir():
        inside = [f.name for f in (path / "pred.mat", path / "pred.json") if f.is_file()]
        hint = f" (this folder has {', '.join(inside)})" if inside else ""
        raise DataError(f"{path}: is a folder, not a predictions file; give the official pred.mat (preds N x 16 x 2, "
                        f"1-based) or a JSON list of 16x2 arrays (0-based) in val order{hint}")
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found; check the path")
    if path.suffix.lower() == ".mat":
        preds = _read_mat_preds(path)
    elif path.suffix.lower() == ".json":
        preds = _read_json_preds(path)
    else:
        raise DataError(f"{path}: MPII predictions must be a .mat (official pred.mat) or a .json file")
    if preds.ndim != 3 or preds.shape[1] != NUM_KEYPOINTS or preds.shape[2] not in (2, 3):
        raise DataError(f"{path}: predictions have shape {preds.shape}; expected {_expected(num_persons)}")
    if preds.shape[0] != num_persons:
        raise DataError(f"{path}: {preds.shape[0]} predictions for {num_persons} validation persons; "
                        f"expected {_expected(num_persons)}")
    return preds[:, :, :2]


def evaluate_pckh(preds: np.ndarray, gt: PckhGroundTruth | str | Path, out_dir: Optional[Path] = None,
                  gt_name: str | Path = "") -> dict[str, float]:
    """PCKh of 0-based ``(N, 16, 2)`` predictions against ``gt`` (or the file it names; ``gt_name``
    names it in errors otherwise); with ``out_dir`` also writes the official ``pred.mat`` there."""
    if not isinstance(gt, PckhGroundTruth):
        gt_name = gt_name or gt
        gt = load_gt(gt)
    preds = np.asarray(preds)
    if len(preds) != gt.num_persons:
        raise DataError(f"{gt_name or 'PCKh ground truth'}: holds {gt.num_persons} persons but there are "
                        f"{len(preds)} predictions; "
                        "the ground truth must list the persons of the validation annotation file, in order")
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_pred_mat(out_dir / "pred.mat", preds)
    return pckh(preds[:, :, :2] + 1.0, gt)


def format_pckh_table(stats: Mapping[str, float], title: str = "MPII PCKh (official HRNet evaluation)") -> str:
    """The official one-row table (Head .. Ankle, Mean, Mean@0.1) plus any other figures below it."""
    columns = [*GROUPS, "PCKh", "PCKh@0.1"]
    shown = [c for c in columns if c in stats]
    width = max(8, *(len(c) for c in shown)) if shown else 8
    lines = [title] if title else []
    lines.append("| " + " | ".join(f"{c:>{width}}" for c in shown) + " |")
    lines.append("|" + "|".join("-" * (width + 2) for _ in shown) + "|")
    lines.append("| " + " | ".join(f"{float(stats[c]):>{width}.3f}" for c in shown) + " |")
    lines += [f"{k}: {float(v):.3f}" for k, v in stats.items() if k not in columns]
    return "\n".join(lines)
