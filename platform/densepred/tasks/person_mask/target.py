"""The person mask as an extra crop target: the COCO ``segmentation`` of the record's annotation,
rasterised in image pixels, warped with the crop, and downsampled to the heatmap grid."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ...errors import DataError
from ..pose.dataset import PersonRecord

#: a parsed segmentation: polygons (float arrays of x, y, ...), an RLE dict, or why it is unusable
Segmentation = Union[list, dict, str]
MaskTable = dict[int, tuple[Segmentation, int, int]]


def _parse_segmentation(seg: Any) -> Optional[Segmentation]:
    """Polygons as float32 arrays (compact: the train2017 table is kept by every loader process),
    an RLE dict as given, None for no mask, or a message saying what is wrong."""
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
                and isinstance(counts, (str, list))):
            return "an RLE segmentation needs 'size' [height, width] and 'counts'"
        return seg
    if not isinstance(seg, list):
        return None if seg is None else f"segmentation of type {type(seg).__name__}"
    polys = []
    for poly in seg:
        try:
            arr = np.asarray(poly, dtype=np.float32)
        except (TypeError, ValueError):
            return "a polygon that is not a list of numbers"
        if arr.ndim != 1 or not np.isfinite(arr).all():
            return "a polygon that is not a flat list of finite numbers"
        if len(arr) >= 6 and len(arr) % 2 == 0:  # shorter ones enclose no area (pycocotools reads 4 as a box)
            polys.append(arr)
    return polys or None


def _is_size(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 2**31


def load_mask_table(ann_file: Path) -> MaskTable:
    """``{ann_id: (segmentation, image height, image width)}`` of the non-crowd persons."""
    try:
        data = json.loads(Path(ann_file).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{ann_file}: cannot read the annotation file for person masks: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{ann_file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: expected a COCO annotation object with 'images' and 'annotations'")
    sizes = {img.get("id"): (int(img["height"]), int(img["width"])) for img in data.get("images") or []
             if isinstance(img, dict) and _is_size(img.get("height")) and _is_size(img.get("width"))}
    table: MaskTable = {}
    for ann in data.get("annotations") or []:
        if not isinstance(ann, dict) or ann.get("category_id") != 1 or ann.get("iscrowd", 0):
            continue
        ann_id, seg = ann.get("id"), _parse_segmentation(ann.get("segmentation"))
        if type(ann_id) is int and seg is not None and ann.get("image_id") in sizes:
            table[ann_id] = (seg, *sizes[ann["image_id"]])
    if not table:
        raise DataError(f"{ann_file}: no person annotation has a 'segmentation'; PersonMaskTask needs "
                        "COCO person masks (polygons or RLE) in the annotation file")
    return table


def rasterise(seg: Segmentation, image_hw: tuple[int, int]) -> np.ndarray:
    """A parsed segmentation as a 0/255 uint8 ``(H, W)`` mask of the image (polygons are drawn at
    the image's size; an RLE, fixed to its own size, is cut or padded to it)."""
    h, w = int(image_hw[0]), int(image_hw[1])
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, *seg["size"])
    else:
        rle = {"size": seg["size"], "counts": seg["counts"].encode("ascii")}
    mask = mask_utils.decode(rle)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    out = np.zeros((h, w), np.uint8)
    mh, mw = min(h, mask.shape[0]), min(w, mask.shape[1])
    out[:mh, :mw] = mask[:mh, :mw] * 255
    return out


class PersonMaskTarget:
    """Crop target ``mask``: the record's ground-truth person mask.

    ``encode`` gives ``mask`` ``(1, h, w)`` float32 in [0, 1] at the heatmap size (area-averaged,
    so edge pixels are fractional) and ``mask_weight`` ``(1,)``: 1, or 0 for a record without a
    mask (a detected box, an annotation without ``segmentation``) and for a faulty sample.
    The annotation file is read on first use in each process (DataLoader workers read their own).
    """

    key = "mask"

    def __init__(self, ann_file: str | Path, heatmap_size: Sequence[int]):
        self.ann_file = Path(ann_file)
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self._table: Optional[MaskTable] = None

    def __getstate__(self) -> dict:
        # Spawned workers get the file name, not a copy of the (large) table.
        return {**self.__dict__, "_table": None}

    @property
    def table(self) -> MaskTable:
        if self._table is None:
            self._table = load_mask_table(self.ann_file)
        return self._table

    def render(self, record: PersonRecord, image_hw: tuple[int, int]) -> Optional[np.ndarray]:
        """The 0/255 mask in image pixels, or None (weight 0) when the record has none."""
        if record.ann_id < 0 or record.ann_id not in self.table:
            return None
        seg, h, w = self.table[record.ann_id]
        if isinstance(seg, str):
            raise DataError(f"{self.ann_file}: annotation {record.ann_id} has {seg}; fix or drop its "
                            "'segmentation'")
        return rasterise(seg, image_hw)

    def encode(self, warped: np.ndarray) -> dict[str, np.ndarray]:
        small = cv2.resize(warped, self.heatmap_size, interpolation=cv2.INTER_AREA)
        return {"mask": (small.astype(np.float32) / 255.0)[None], "mask_weight": np.ones(1, np.float32)}

    def empty(self) -> dict[str, np.ndarray]:
        w, h = self.heatmap_size
        return {"mask": np.zeros((1, h, w), np.float32), "mask_weight": np.zeros(1, np.float32)}
