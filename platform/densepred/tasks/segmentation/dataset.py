"""Cityscapes semantic segmentation in the official layout::

    <data_root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <data_root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

Labels are mapped labelId -> trainId with the cityscapesscripts table (19 classes, 255 ignore);
``*_gtFine_labelTrainIds.png`` files are used directly where present.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ...epoch import EpochAware
from ...errors import DataError
from ...imageio import read_rgb
from .labels import IGNORE_INDEX, label_ids_to_train_ids
from ...imagenorm import normalize
from .transforms import SegAugment, augment

NAME_RE = re.compile(r"^([A-Za-z0-9\-]+)_(\d{6})_(\d{6})_leftImg8bit\.png$")


@dataclass
class SegSample:
    image: Path
    label: Optional[Path]      # None for the test split
    train_ids: bool = False    # the label file already holds trainIds


def find_samples(data_root: Path, split: str, need_labels: bool = True) -> list[SegSample]:
    """Pair every ``leftImg8bit`` image of ``split`` with its ``gtFine`` label file."""
    img_root = data_root / "leftImg8bit" / split
    if not data_root.is_dir():
        raise DataError(f"data_root {data_root} does not exist; set data_root to your Cityscapes folder "
                        "(--set data_root=...) or make the demo set with `platform data demo`")
    if not img_root.is_dir():
        raise DataError(f"no image folder {img_root} (Cityscapes layout: leftImg8bit/{split}/<city>/*.png)")
    samples = []
    for path in sorted(img_root.glob("*/*.png")):
        m = NAME_RE.match(path.name)
        if not m:
            raise DataError(f"{path}: not a Cityscapes file name (expected <city>_<seq>_<frame>_leftImg8bit.png)")
        label = None
        train_ids = False
        if need_labels:
            stem = path.parent.relative_to(img_root) / path.name[: -len("_leftImg8bit.png")]
            gt = data_root / "gtFine" / split / f"{stem}_gtFine_labelIds.png"
            gt_train = data_root / "gtFine" / split / f"{stem}_gtFine_labelTrainIds.png"
            if gt_train.is_file():
                label, train_ids = gt_train, True
            elif gt.is_file():
                label = gt
            else:
                raise DataError(f"{path}: no label file {gt} (every image needs its gtFine labelIds PNG)")
        samples.append(SegSample(path, label, train_ids))
    if not samples:
        raise DataError(f"no images in {img_root}/<city>/ (Cityscapes layout)")
    return samples


def read_label(sample: SegSample, image_shape: tuple[int, ...]) -> np.ndarray:
    """trainId label map (uint8, 255 = ignore) of ``sample``; checks size and ids."""
    assert sample.label is not None
    raw = cv2.imread(str(sample.label), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"label file {sample.label} is missing or corrupt")
    if raw.ndim != 2:
        raise DataError(f"label file {sample.label} has {raw.shape[2]} channels; expected a single-channel "
                        "labelIds PNG")
    if raw.shape != tuple(image_shape[:2]):
        raise DataError(f"label file {sample.label} is {raw.shape[1]}x{raw.shape[0]} but its image is "
                        f"{image_shape[1]}x{image_shape[0]}")
    if sample.train_ids:
        bad = np.setdiff1d(np.unique(raw), np.r_[np.arange(19), IGNORE_INDEX])
        if bad.size:
            raise DataError(f"label file {sample.label} holds trainIds outside 0-18/255: {bad[:10].tolist()}")
        return raw.astype(np.uint8)
    return label_ids_to_train_ids(raw, str(sample.label))


class CityscapesDataset(EpochAware, Dataset):
    """Returns dicts: ``image`` (3xHxW float32 normalised), ``label`` (HxW int64 trainIds), ``name``,
    ``index`` and ``fault`` (a per-sample fault message; the sample is then all-ignore)."""

    def __init__(self, data_root: str | Path, split: str, train: bool, augment_cfg: SegAugment,
                 seed: int = 0, strict_images: bool = False):
        self.root = Path(data_root)
        self.split = split
        self.samples = find_samples(self.root, split)
        self.train = train
        self.aug = augment_cfg
        self._init_epoch(seed)
        self.strict_images = strict_images

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB image and trainId label at full resolution, augmented when training."""
        s = self.samples[index]
        image = read_rgb(s.image)
        label = read_label(s, image.shape)
        if self.train:
            image, label = augment(image, label, self.aug, self.rng(index))
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
            label = np.full((h, w), IGNORE_INDEX, np.uint8)
        return {"image": torch.from_numpy(normalize(image)), "label": torch.from_numpy(label.astype(np.int64)),
                "name": self.samples[index].image.name, "index": index, "fault": fault}
