"""The generic ``folders`` layout (mmsegmentation's convention): per split an image folder and a label
folder, ``<stem><image_suffix>`` pairs with ``<stem><label_suffix>`` (stems may hold subfolders), and
optionally a split file of stems, one a line::

    data:
      format: folders
      train_images: img_dir/train       # relative to data_root unless absolute
      train_labels: ann_dir/train
      val_images: img_dir/val
      val_labels: ann_dir/val
      image_suffix: .jpg
      label_suffix: .png
      train_split: null                 # or a text file of stems (one folder + split files)

Benchmark layouts (PASCAL-Context, LIP, ADE20K) are presets of these keys in configs/datasets/.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Optional

from ...errors import ConfigError, DataError
from .dataset import SegSample
from .settings import FOLDER_KEYS, SegData


def check_layout(data: SegData, where) -> None:
    """The layout keys fit ``data.format`` (``where(key)`` names the file that set a key)."""
    if data.format == "folders":
        for key in FOLDER_KEYS:
            if not getattr(data, key):
                kind = "images" if key.endswith("images") else "label PNGs"
                raise ConfigError(f"{where('data')}: data.format=folders needs data.{key} (the folder of "
                                  f"{key.split('_')[0]} {kind}, relative to data_root)")
        for key in ("image_suffix", "label_suffix"):
            if not getattr(data, key).strip():
                raise ConfigError(f"{where(f'data.{key}')}: data.{key} is empty; give the end of the file names, "
                                  "e.g. .jpg or _label.png")
        return
    if data.target is not None and not data.is_dense:
        raise ConfigError(f"{where('data.target')}: data.target picks a target of a multi-target layout; "
                          f"data.format={data.format} has one label per image (remove data.target)")
    given = [k for k in FOLDER_KEYS if getattr(data, k)]
    if given:
        raise ConfigError(f"{where(f'data.{given[0]}')}: data.{given[0]} belongs to the folders layout; set "
                          "data.format=folders to read an image folder and a label folder per split")


def _under(root: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def check_root(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"data_root {root} does not exist; set data_root to your dataset folder "
                        "(--set data_root=...) or make the demo sets with `platform data demo`")


def find_folder_samples(root: Path, data: SegData, split: str) -> list[SegSample]:
    """The samples of ``split`` (``train``/``val``): every image of the split's image folder, or the
    stems of its split file. Every listed image needs its label (DataError otherwise); an image
    missing behind a split-file stem is left to the reader (a counted fault in training)."""
    check_root(root)
    images = _folder(root, data, split, "images")
    labels = _folder(root, data, split, "labels")
    split_file = data.split_name(split)
    if split_file:
        return _from_split_file(_under(root, split_file), images, labels, data, split)
    return _from_listing(images, labels, data, split)


def _folder(root: Path, data: SegData, split: str, kind: str) -> Path:
    folder = _under(root, data.folder(split, kind))
    if not folder.is_dir():
        raise DataError(f"data.{split}_{kind}: {kind[:-1]} folder {folder} not found; check data_root and "
                        f"data.{split}_{kind}")
    return folder


def _from_listing(images: Path, labels: Path, data: SegData, split: str) -> list[SegSample]:
    suffix = data.image_suffix
    found = sorted(p for p in images.rglob(f"*{suffix}") if p.is_file())
    if not found:
        raise DataError(f"no images in {images} ending in {suffix!r} (data.{split}_images, data.image_suffix)"
                        f"{_suffix_hint(images)}")
    samples = []
    for path in found:
        stem = path.relative_to(images).as_posix()[: -len(suffix)]
        label = labels / f"{stem}{data.label_suffix}"
        if not label.is_file():
            missing = sum(not (labels / (p.relative_to(images).as_posix()[: -len(suffix)] + data.label_suffix)).is_file()
                          for p in found)
            raise DataError(f"{path}: no label file {label} ({missing} of {len(found)} {split} images lack one; "
                            f"every image needs <stem>{data.label_suffix} in data.{split}_labels)")
        samples.append(SegSample(path, label, stem=stem))
    return samples


def _suffix_hint(folder: Path) -> str:
    """What the folder does hold, e.g. ``; it holds 12 '.png' files``."""
    counts = collections.Counter(p.suffix for p in folder.rglob("*") if p.is_file() and p.suffix)
    if not counts:
        return "; the folder is empty"
    suffix, n = counts.most_common(1)[0]
    return f"; it holds {n} '{suffix}' file(s): set data.image_suffix={suffix}"


def read_split_file(path: Path, image_suffix: str, split: str) -> list[tuple[int, str]]:
    """``(line number, stem)`` of a split file; blank lines and ``#`` comments are skipped."""
    if not path.is_file():
        raise DataError(f"data.{split}_split: split file {path} not found; give a text file of file stems, one a "
                        f"line (relative to data_root), or null to use every image of data.{split}_images")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the split file ({e})") from None
    stems = []
    for number, line in enumerate(lines, 1):
        stem = line.strip()
        if not stem or stem.startswith("#"):
            continue
        stem = stem.split()[0]
        stems.append((number, stem[: -len(image_suffix)] if stem.endswith(image_suffix) else stem))
    if not stems:
        raise DataError(f"{path}: the split file lists no file stems; write one stem a line (e.g. 2008_000002), "
                        f"or set data.{split}_split=null to use every image")
    return stems


def _from_split_file(path: Path, images: Path, labels: Path, data: SegData, split: str) -> list[SegSample]:
    samples = []
    for number, stem in read_split_file(path, data.image_suffix, split):
        image = images / f"{stem}{data.image_suffix}"
        label = labels / f"{stem}{data.label_suffix}"
        has_image, has_label = image.is_file(), label.is_file()
        if not has_label:
            what = "no image and no label" if not has_image else "no label"
            raise DataError(f"{path} line {number}: stem '{stem}' has {what} (looked for {label}); fix the split "
                            "file or restore the files")
        samples.append(SegSample(image, label, stem=stem))
    return samples


def orphan_labels(root: Path, data: SegData, split: str, samples: list[SegSample]) -> Optional[int]:
    """Label files of the split's label folder that no sample uses (None without a listing)."""
    if data.split_name(split):
        return None
    labels = _under(root, data.folder(split, "labels"))
    used = {s.label for s in samples}
    return sum(1 for p in labels.rglob(f"*{data.label_suffix}") if p.is_file() and p not in used)
