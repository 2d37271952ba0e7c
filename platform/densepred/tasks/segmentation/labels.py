"""Cityscapes label mapping, derived at import time from ``cityscapesscripts.helpers.labels``.

The official table is the single source of truth: nothing here is hand-copied.

* ``labelId`` (0..33) is what the ground-truth ``*_gtFine_labelIds.png`` files and benchmark
  submissions store.
* ``trainId`` (0..18) is what the network predicts; every label whose ``trainId`` is 255 or -1
  in the table (void and "ignoreInEval" classes, license plate) maps to :data:`IGNORE_INDEX`.
* Ids that do not exist in the table at all (34..255 for 8-bit images) are marked with
  :data:`UNKNOWN_MARK` in :data:`LABEL_ID_TO_TRAIN_ID` so that :func:`label_ids_to_train_ids`
  can report them. The table's id -1 (license plate) cannot occur in an unsigned PNG.
"""
from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS

from densepred.errors import DataError

NUM_CLASSES = 19
IGNORE_INDEX = 255
#: Value of :data:`LABEL_ID_TO_TRAIN_ID` for label ids absent from the Cityscapes table.
UNKNOWN_MARK = 254


def _evaluated_labels() -> list:
    """Labels with a real trainId (0 <= trainId < 255), sorted by trainId."""
    chosen = sorted((lab for lab in _CS_LABELS if 0 <= lab.trainId < IGNORE_INDEX), key=lambda lab: lab.trainId)
    train_ids = [lab.trainId for lab in chosen]
    if train_ids != list(range(NUM_CLASSES)):
        raise RuntimeError(f"unexpected Cityscapes trainIds in cityscapesscripts' table: {train_ids}")
    for lab in chosen:
        if lab.ignoreInEval:
            raise RuntimeError(f"Cityscapes label {lab.name!r} has a trainId but is ignored in evaluation")
    return chosen


_TRAIN_LABELS = _evaluated_labels()

#: The 19 evaluated class names in trainId order.
CLASS_NAMES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
#: RGB colour of each train class (trainId order), from the table.
PALETTE: tuple[tuple[int, int, int], ...] = tuple(tuple(int(c) for c in lab.color) for lab in _TRAIN_LABELS)
#: labelId of each train class (trainId order).
TRAIN_LABEL_IDS: tuple[int, ...] = tuple(int(lab.id) for lab in _TRAIN_LABELS)


def _build_label_to_train() -> np.ndarray:
    lut = np.full(256, UNKNOWN_MARK, dtype=np.uint8)
    for lab in _CS_LABELS:
        if not 0 <= lab.id < 256:
            continue  # license plate (-1): not representable in an unsigned label image
        lut[lab.id] = lab.trainId if 0 <= lab.trainId < IGNORE_INDEX else IGNORE_INDEX
    return lut


def _build_train_to_label() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)  # 0 = "unlabeled" (void) for trainId 255 and anything else
    for train_id, label_id in enumerate(TRAIN_LABEL_IDS):
        lut[train_id] = label_id
    return lut


#: labelId -> trainId (uint8, 256 entries); 255 = ignore, :data:`UNKNOWN_MARK` = not in the table.
LABEL_ID_TO_TRAIN_ID: np.ndarray = _build_label_to_train()
LABEL_ID_TO_TRAIN_ID.setflags(write=False)
#: Boolean mask over 0..255: True where the label id exists in the Cityscapes table.
KNOWN_LABEL_IDS: np.ndarray = LABEL_ID_TO_TRAIN_ID != UNKNOWN_MARK
KNOWN_LABEL_IDS.setflags(write=False)
#: trainId -> labelId (uint8, 256 entries) for writing submission PNGs; 255 -> 0 ("unlabeled").
TRAIN_ID_TO_LABEL_ID: np.ndarray = _build_train_to_label()
TRAIN_ID_TO_LABEL_ID.setflags(write=False)


def _describe_ids(ids: np.ndarray, limit: int = 10) -> str:
    ids = [int(i) for i in ids]
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def unknown_label_error(path: str, ids: np.ndarray) -> DataError:
    """The DataError raised for label ids that are not in the Cityscapes table."""
    where = f"{path}: " if path else ""
    return DataError(f"{where}unknown Cityscapes label id(s) {_describe_ids(ids)} (valid labelIds are 0..33)")


def label_ids_to_train_ids(label: np.ndarray, path: str = "") -> np.ndarray:
    """Map a labelId image to trainIds (uint8; ignore = 255).

    Raises :class:`DataError` naming ``path`` and the offending ids when the image holds ids that
    are not in the Cityscapes table (or is not an integer image).
    """
    label = np.asarray(label)
    where = f"{path}: " if path else ""
    if label.dtype == np.uint8:
        out = LABEL_ID_TO_TRAIN_ID[label]
    else:
        if not np.issubdtype(label.dtype, np.integer):
            raise DataError(f"{where}label image has dtype {label.dtype}, expected integer labelIds")
        if label.size and (label.min() < 0 or label.max() > 255):
            bad = np.unique(label[(label < 0) | (label > 255)])
            raise unknown_label_error(path, bad)
        out = LABEL_ID_TO_TRAIN_ID[label.astype(np.uint8)]
    if label.size and (out == UNKNOWN_MARK).any():
        raise unknown_label_error(path, np.unique(label[out == UNKNOWN_MARK]))
    return out


def train_ids_to_label_ids(pred: np.ndarray) -> np.ndarray:
    """Map a trainId prediction (0..18, 255 = ignore) to labelIds (uint8) for a submission PNG.

    trainId 255 becomes labelId 0 ("unlabeled"); any other id outside 0..18 is an error.
    """
    pred = np.asarray(pred)
    if not np.issubdtype(pred.dtype, np.integer):
        raise DataError(f"prediction has dtype {pred.dtype}, expected integer trainIds")
    if pred.size:
        bad_mask = (pred < 0) | ((pred >= NUM_CLASSES) & (pred != IGNORE_INDEX))
        if bad_mask.any():
            raise DataError(f"prediction holds trainIds {_describe_ids(np.unique(pred[bad_mask]))} "
                            f"outside 0..{NUM_CLASSES - 1} and {IGNORE_INDEX}")
    return TRAIN_ID_TO_LABEL_ID[pred.astype(np.uint8, copy=False)]
