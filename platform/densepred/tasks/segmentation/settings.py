"""The config sections a segmentation task reads: ``data`` (layout, class list, loader),
``evaluation`` and ``inference``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from ...config import setting
from ...precision_check import PrecisionSettings
from ..dense.layout import layout_names

#: the segmentation task's own layouts, then the multi-target ones of configs/datasets/layouts/
#: (NYUD-v2, PASCAL-Context MT: segmentation read from the layout's label target)
DENSE_FORMATS = layout_names()
FORMATS = ("cityscapes", "folders") + DENSE_FORMATS
#: `data` keys of the `folders` layout (paths relative to data_root unless absolute)
FOLDER_KEYS = ("train_images", "train_labels", "val_images", "val_labels")


@dataclass
class SegData:
    """``data`` section of a segmentation task YAML.

    ``format: cityscapes`` reads ``leftImg8bit/<split>`` and ``gtFine/<split>`` (``train_split`` and
    ``val_split`` name the split folders). ``format: folders`` reads an image folder and a label
    folder per split (mmsegmentation's convention: ``<stem><image_suffix>`` pairs with
    ``<stem><label_suffix>``); ``train_split``/``val_split`` are then optional text files of stems.
    """

    format: str = setting("cityscapes", choices=FORMATS,
                          hint="cityscapes: leftImg8bit/ + gtFine/; folders: an image and a label folder per split; "
                               f"{', '.join(DENSE_FORMATS)}: a multi-target layout")
    train_split: Optional[str] = None    # cityscapes: split folder (default train); folders: split file or null
    val_split: Optional[str] = None      # cityscapes: split folder (default val); folders: split file or null
    train_images: Optional[str] = None
    train_labels: Optional[str] = None
    val_images: Optional[str] = None
    val_labels: Optional[str] = None
    image_suffix: str = ".jpg"
    label_suffix: str = ".png"
    class_info: Optional[Union[str, dict]] = None  # shipped name, .yaml path or mapping (cityscapes: default)
    target: Optional[str] = None         # multi-target layouts: the label target read (null: the layout's default)
    batch_size: int = setting(3, ge=1, hint="samples per worker and step")  # official: 12 in total on 4 GPUs
    loader_workers: int = setting(2, ge=0, le=64)
    augment: dict = field(default_factory=dict)

    @property
    def is_dense(self) -> bool:
        """A multi-target layout (the label is one target of several)."""
        return self.format in DENSE_FORMATS

    def split_name(self, split: str) -> Optional[str]:
        """The configured split of ``train``/``val`` (Cityscapes: the folder name, default the split;
        folders and multi-target layouts: a split file or None)."""
        value = self.train_split if split == "train" else self.val_split
        return value if value is not None or self.format != "cityscapes" else split

    def folder(self, split: str, kind: str) -> Optional[str]:
        """``data.<split>_<kind>`` (kind: images or labels)."""
        return getattr(self, f"{split}_{kind}")


@dataclass
class SegEval:
    interval: int = setting(10, ge=1)  # evaluate every N epochs (and after the last)


@dataclass
class SegInference(PrecisionSettings):
    """``inference`` section: how a full image is predicted (and the precision keys every task has)."""

    mode: str = setting("whole", choices=("whole", "slide", "multiscale"))
    crop_size: list[int] = setting(factory=lambda: [1024, 512], ge=16, le=8192)  # [W, H] window for slide
    stride_ratio: float = setting(2 / 3, gt=0, le=1)  # window stride as a fraction of the crop (official 2/3)
    scales: list[float] = setting(factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], gt=0, le=8)
    flip: bool = False             # also average the horizontally flipped image (flip pairs swapped back)
    align_corners: bool = False    # upsampling of logits to the image size
