"""Cityscapes label tables, read from the shipped class_info file
``configs/datasets/classes/cityscapes.yaml`` (whose numbers are cityscapesscripts' label table; a
test checks that they are equal).

* ``labelId`` (0..33) is what the ground-truth ``*_gtFine_labelIds.png`` files and benchmark
  submissions store.
* ``trainId`` (0..18) is what the network predicts; every labelId listed as ignored (void and
  "ignoreInEval" classes) maps to :data:`IGNORE_INDEX`.
* Ids that are not in the table at all (34..255 for 8-bit images) are marked with
  :data:`UNKNOWN_MARK` in :data:`LABEL_ID_TO_TRAIN_ID` so that :func:`label_ids_to_train_ids`
  can report them.
"""
from __future__ import annotations

import numpy as np

from .class_info import ClassInfo, describe_ids, load_class_info

#: The Cityscapes class list (names, palette, labelId table).
CITYSCAPES: ClassInfo = load_class_info("cityscapes")

NUM_CLASSES = CITYSCAPES.num_classes
IGNORE_INDEX = CITYSCAPES.ignore_index
#: Value of :data:`LABEL_ID_TO_TRAIN_ID` for label ids absent from the Cityscapes table.
UNKNOWN_MARK = 254

#: The 19 evaluated class names in trainId order.
CLASS_NAMES: tuple[str, ...] = CITYSCAPES.names
#: RGB colour of each train class (trainId order).
PALETTE: tuple[tuple[int, int, int], ...] = CITYSCAPES.palette
#: labelId of each train class (trainId order).
TRAIN_LABEL_IDS: tuple[int, ...] = tuple(CITYSCAPES.label_ids or ())


def _build_label_to_train() -> np.ndarray:
    lut = np.full(256, UNKNOWN_MARK, dtype=np.uint8)
    lut[list(CITYSCAPES.ignored_label_ids)] = IGNORE_INDEX
    lut[list(TRAIN_LABEL_IDS)] = np.arange(NUM_CLASSES)
    return lut


def _build_train_to_label() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)  # 0 = "unlabeled" (void) for trainId 255 and anything else
    lut[:NUM_CLASSES] = TRAIN_LABEL_IDS
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


def unknown_label_error(path: str, ids: np.ndarray):
    """The DataError raised for label ids that are not in the Cityscapes table."""
    return CITYSCAPES.unknown_error(path, ids)


def label_ids_to_train_ids(label: np.ndarray, path: str = "") -> np.ndarray:
    """Map a labelId image to trainIds (uint8; ignore = 255).

    Raises :class:`DataError` naming ``path`` and the offending ids when the image holds ids that
    are not in the Cityscapes table (or is not an integer image).
    """
    return CITYSCAPES.decode(label, path)


def train_ids_to_label_ids(pred: np.ndarray) -> np.ndarray:
    """Map a trainId prediction (0..18, 255 = ignore) to labelIds (uint8) for a submission PNG.

    trainId 255 becomes labelId 0 ("unlabeled"); any other id outside 0..18 is an error.
    """
    from ...errors import DataError

    pred = np.asarray(pred)
    if not np.issubdtype(pred.dtype, np.integer):
        raise DataError(f"prediction has dtype {pred.dtype}, expected integer trainIds")
    if pred.size:
        bad_mask = (pred < 0) | ((pred >= NUM_CLASSES) & (pred != IGNORE_INDEX))
        if bad_mask.any():
            raise DataError(f"prediction holds trainIds {describe_ids(np.unique(pred[bad_mask]))} "
                            f"outside 0..{NUM_CLASSES - 1} and {IGNORE_INDEX}")
    return TRAIN_ID_TO_LABEL_ID[pred.astype(np.uint8, copy=False)]
