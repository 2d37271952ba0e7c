"""`platform data convert-labels SRC OUT --palette CLASS_INFO`: colour-coded (RGB) label images ->
single-channel index PNGs, through the palette of a class list. Each output stores the classes the
way the class list reads them back (class ids; +1 with reduce_zero_label); colours that are not in
the palette become ignored pixels, counted and reported."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from .class_info import ClassInfo

LABEL_IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


@dataclass
class ConvertSummary:
    files: int = 0
    unknown_pixels: int = 0
    files_with_unknown: int = 0
    unknown_colours: collections.Counter = field(default_factory=collections.Counter)

    def describe(self, out: Path, info: ClassInfo) -> str:
        text = f"converted {self.files} label file(s) to index PNGs in {out} ({info.display}, {info.num_classes} classes)"
        if not self.unknown_pixels:
            return text + "; every colour is in the palette"
        top = ", ".join(f"{list(c)} x{n}" for c, n in self.unknown_colours.most_common(5))
        return (f"{text}; {self.unknown_pixels} pixel(s) in {self.files_with_unknown} file(s) have colours not in "
                f"the palette and are ignored: {top}")


def colour_table(info: ClassInfo) -> dict[int, int]:
    """RGB key (``r << 16 | g << 8 | b``) -> class id; DataError when two classes share a colour."""
    table: dict[int, int] = {}
    for cid, (r, g, b) in enumerate(info.palette):
        key = (r << 16) | (g << 8) | b
        if key in table:
            raise DataError(f"--palette {info.display}: classes '{info.names[table[key]]}' and '{info.names[cid]}' "
                            f"share the colour {[r, g, b]}; colour labels cannot tell them apart")
        table[key] = cid
    return table


def read_colour_label(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a label image (palette and grey images expanded to colour)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"label image {path} cannot be read ({' '.join(str(e).split())}); re-copy or remove it") from None


def to_class_ids(rgb: np.ndarray, table: dict[int, int], info: ClassInfo) -> tuple[np.ndarray, np.ndarray]:
    """Class ids (ignore_index for unknown colours) and the mask of unknown pixels."""
    keys = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(keys, return_inverse=True)
    mapped = np.array([table.get(int(k), -1) for k in uniq], np.int64)
    ids = mapped[inverse.reshape(keys.shape)]
    unknown = ids < 0
    ids[unknown] = info.ignore_index
    return ids, unknown


def list_label_images(src: Path, exclude: Path) -> list[Path]:
    if not src.is_dir():
        raise DataError(f"SRC_FOLDER {src} {'is a file' if src.exists() else 'not found'}; give the folder of colour "
                        "label images")
    found = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in LABEL_IMAGE_SUFFIXES
                   and exclude not in p.resolve().parents)
    if not found:
        raise DataError(f"no label images ({', '.join(LABEL_IMAGE_SUFFIXES)}) in {src}")
    return found


def convert_folder(src: Path, out: Path, info: ClassInfo) -> ConvertSummary:
    """Convert every label image under ``src`` into ``out/<same relative path>.png``."""
    if src.resolve() == out.resolve():
        raise DataError(f"OUT_FOLDER {out} is SRC_FOLDER; give another folder (the colour labels are kept)")
    files = list_label_images(src, out.resolve())
    table = colour_table(info)
    summary = ConvertSummary()
    for path in files:
        rgb = read_colour_label(path)
        ids, unknown = to_class_ids(rgb, table, info)
        target = out / path.relative_to(src).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), info.encode(ids)):
            raise DataError(f"cannot write {target}")
        summary.files += 1
        if unknown.any():
            summary.files_with_unknown += 1
            summary.unknown_pixels += int(unknown.sum())
            for c, n in zip(*np.unique(rgb[unknown], axis=0, return_counts=True)):
                summary.unknown_colours[tuple(int(v) for v in c)] += int(n)
    return summary
