"""Segmentation samples and their reading: the Cityscapes layout (below), the generic ``folders``
layout (``folders.py``), label PNGs decoded through the task's class list, and the dataset.

Cityscapes, the official layout::

    <data_root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <data_root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Its labels are mapped labelId -> trainId with the Cityscapes class_info's label_ids table (19
classes, 255 ignore); ``*_gtFine_labelTrainIds.png`` files are used directly where present.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ...epoch import EpochAware
from ...errors import DataError
from ...imagenorm import normalize
from ...imageio import read_rgb
from .class_info import ClassInfo
from .transforms import SegAugment, augment

NAME_RE = re.compile(r"^([A-Za-z0-9\-]+)_(\d{6})_(\d{6})_leftImg8bit\.png$")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"


@dataclass
class SegSample:
    image: Path
    label: Optional[Path]      # None for the test split
    train_ids: bool = False    # the label file already holds class ids (Cityscapes *_labelTrainIds.png)
    stem: str = ""             # the sample's name in outputs (Cityscapes: <city>_<seq>_<frame>)


def find_samples(data_root: Path, split: str, need_labels: bool = True) -> list[SegSample]:
    """Pair every ``leftImg8bit`` image of ``split`` with its ``gtFine`` label file."""
    img_root = data_root / "leftImg8bit" / split
    if not data_root.is_dir():
        raise DataError(f"data_root {data_root} does not exist; set data_root to your Cityscapes folder "
                        "(--set data_root=...) or make the demo set with `platform data demo`")
    if not img_root.is_dir():
        raise DataError(f"no image folder {img_root} (Cityscapes layout: leftImg8bit/{split}/<city>/*.png); for "
                        "an image folder and a label folder per split set data.format=folders")
    samples = []
    for path in sorted(img_root.glob("*/*.png")):
        m = NAME_RE.match(path.name)
        if not m:
            raise DataError(f"{path}: not a Cityscapes file name (expected <city>_<seq>_<frame>_leftImg8bit.png)")
        label = None
        train_ids = False
        stem = path.name[: -len(CITYSCAPES_IMAGE_SUFFIX)]
        if need_labels:
            rel = path.parent.relative_to(img_root) / stem
            gt = data_root / "gtFine" / split / f"{rel}_gtFine_labelIds.png"
            gt_train = data_root / "gtFine" / split / f"{rel}_gtFine_labelTrainIds.png"
            if gt_train.is_file():
                label, train_ids = gt_train, True
            elif gt.is_file():
                label = gt
            else:
                raise DataError(f"{path}: no label file {gt} (every image needs its gtFine labelIds PNG)")
        samples.append(SegSample(path, label, train_ids, stem))
    if not samples:
        raise DataError(f"no images in {img_root}/<city>/ (Cityscapes layout)")
    return samples


def read_label_png(path: Path, kind: str = "index") -> np.ndarray:
    """A label PNG as stored (uint8/uint16); palette PNGs give their indices. A colour (RGB) label
    is refused with the command that converts it."""
    from ..dense.decode import read_index_png

    return read_index_png(path, kind, hint=" (colour-coded labels: convert them with `platform data convert-labels "
                                           "SRC OUT --palette CLASS_INFO`)")


def read_label(sample: SegSample, image_shape: tuple[int, ...], info: ClassInfo, kind: str = "index") -> np.ndarray:
    """Class-id label map of ``sample`` (``info.ignore_index`` = ignore); checks size and values."""
    assert sample.label is not None
    raw = read_label_png(sample.label, kind)
    if raw.shape[:2] != tuple(image_shape[:2]):
        raise DataError(f"label file {sample.label} is {raw.shape[1]}x{raw.shape[0]} but its image is "
                        f"{image_shape[1]}x{image_shape[0]}")
    if sample.train_ids:
        return info.check_class_ids(raw, str(sample.label))
    return info.decode(raw, str(sample.label))


class SegDataset(EpochAware, Dataset):
    """Returns dicts: ``image`` (3xHxW float32 normalised), ``label`` (HxW int64 class ids), ``name``,
    ``index`` and ``fault`` (a per-sample fault message; the sample is then all-ignore)."""

    def __init__(self, samples: list[SegSample], info: ClassInfo, train: bool, augment_cfg: SegAugment,
                 seed: int = 0, strict_images: bool = False, label_kind: str = "index"):
        self.samples = samples
        self.info = info
        self.train = train
        self.aug = augment_cfg
        self.label_kind = label_kind
        self._init_epoch(seed)
        self.strict_images = strict_images

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB image and class-id label at full resolution, augmented when training."""
        s = self.samples[index]
        image = read_rgb(s.image)
        label = read_label(s, image.shape, self.info, self.label_kind)
        if self.train:
            image, label = augment(image, label, self.aug, self.rng(index), self.info.ignore_index,
                                   self.info.flip_lut)
        return image, label

    def __getitem__(self, index: int) -> dict[str, Any]:
        fault = ""
        try:
            image, label = self.load(index)
        except DataError as e:
            if self.strict_images or not self.train:
                raise
            fault = str(e)
            h, w = self.aug.crop_size[1], self.aug.crop_size[0]
            image = np.zeros((h, w, 3), np.uint8)
            label = np.full((h, w), self.info.ignore_index, self.info.label_dtype)
        return {"image": torch.from_numpy(normalize(image)), "label": torch.from_numpy(label.astype(np.int64)),
                "name": self.samples[index].image.name, "index": index, "fault": fault}
