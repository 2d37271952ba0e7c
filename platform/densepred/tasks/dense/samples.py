"""The samples of a split in a dense layout: the split file's stems, each with its image and the
files of the targets a run reads. A stem without a target file is a DataError at listing time
(before Ray starts); a missing image is left to the reader (a counted fault in training)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from ...errors import DataError
from .layout import DenseLayout, TargetSpec


@dataclass
class DenseSample:
    stem: str
    image: Path
    files: dict[str, Path] = field(default_factory=dict)   # target name -> its file
    aux: dict[str, Path] = field(default_factory=dict)     # target name -> its valid_where file


def under(root: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def split_file(root: Path, layout: DenseLayout, split: str, override: Optional[str]) -> Path:
    """The split file of ``split``: ``data.<split>_split`` when given, else the layout's."""
    return under(root, override or layout.splits[split])


def read_stems(path: Path, split: str) -> list[str]:
    """The stems of a split file (blank lines and ``#`` comments skipped)."""
    if not path.is_file():
        raise DataError(f"data.{split}_split: split file {path} not found; check data_root (the layout lists its "
                        f"{split} stems there) or set data.{split}_split")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the split file ({e})") from None
    stems = [line.split()[0] for line in lines if line.strip() and not line.strip().startswith("#")]
    if not stems:
        raise DataError(f"{path}: the split file lists no stems; write one file stem a line")
    return stems


def find_file(root: Path, folders: Iterable[str], stem: str, suffixes: Iterable[str]) -> Optional[Path]:
    """The first ``<folder>/<stem><suffix>`` that exists."""
    for folder in folders:
        for suffix in suffixes:
            p = under(root, folder) / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _missing(root: Path, spec: TargetSpec, stem: str) -> str:
    return f"{under(root, spec.folders[0]) / stem}{'|'.join(spec.suffixes)}"


def find_dense_samples(root: Path, layout: DenseLayout, split: str, targets: Iterable[TargetSpec],
                       override: Optional[str] = None) -> list[DenseSample]:
    """Every stem of the split with its image path and the file of each of ``targets``."""
    if not root.is_dir():
        raise DataError(f"data_root {root} does not exist; set data_root to your {layout.dataset} folder "
                        "(--set data_root=...) or make the demo sets with `platform data demo`")
    path = split_file(root, layout, split, override)
    targets = list(targets)
    samples, missing = [], []
    for stem in read_stems(path, split):
        sample = DenseSample(stem, under(root, layout.image_folder) / f"{stem}{layout.image_suffix}")
        for spec in targets:
            found = find_file(root, spec.folders, stem, spec.suffixes)
            if found is None:
                missing.append((stem, spec))
                continue
            sample.files[spec.name] = found
            if spec.valid_where:
                vw = spec.valid_where
                sample.aux[spec.name] = under(root, vw["folder"]) / f"{stem}{vw['suffix']}"
        samples.append(sample)
    if missing:
        stem, spec = missing[0]
        raise DataError(f"{path}: stem '{stem}' has no {spec.name} file ({_missing(root, spec, stem)}); "
                        f"{len(missing)} of {len(samples)} {split} stems lack one; restore the files or remove "
                        "the stems from the split file")
    return samples
