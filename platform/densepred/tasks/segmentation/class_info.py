"""Class metadata of a segmentation dataset as data: the one loader of ``class_info`` YAML files
(``configs/datasets/classes/<name>.yaml``) and inline mappings.

A class_info holds the class ``names`` (their order is the class id), an optional ``palette`` (one
[R, G, B] per class), ``ignore_index`` (default 255), ``reduce_zero_label`` (ADE20K's convention:
stored 0 is ignored, 1..N are classes 0..N-1), ``label_flip_pairs`` (classes swapped when an image is
mirrored: left/right arm...) and, for datasets whose files store other ids (Cityscapes labelIds), a
``label_ids`` table: the stored id of each class, plus ``ignored_label_ids`` that exist but are ignored.

:class:`ClassInfo` turns stored label values into class ids (``decode``) and back (``encode``),
and names what is wrong with a label file in one line.
"""
from __future__ import annotations

import colorsys
import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import yaml

from ...errors import ConfigError, DataError

PROJECT_ROOT = Path(__file__).resolve().parents[4]
#: the shipped class_info files, by name (``data.class_info: lip``)
SHIPPED_DIR = PROJECT_ROOT / "configs" / "datasets" / "classes"
#: stored label values are 8- or 16-bit PNG pixels
MAX_LABEL_VALUE = 65535

KEYS = {
    "dataset": "display name of the dataset (tables, messages)",
    "source": "where the list comes from (free text)",
    "names": "class names; their order is the class id",
    "palette": "one [R, G, B] per class (default: generated colours)",
    "ignore_index": "label value that is not scored or trained (default 255)",
    "reduce_zero_label": "stored 0 is ignored and 1..N are classes 0..N-1 (ADE20K, PASCAL-Context 59)",
    "label_flip_pairs": "pairs of classes (ids or names) swapped when an image is mirrored",
    "label_ids": "the id each class has in the label files, when it is not its class id (Cityscapes)",
    "ignored_label_ids": "with label_ids: ids in the label files that exist but are ignored",
}


@dataclass(frozen=True)
class ClassInfo:
    """A validated class list. Class ids are ``0..num_classes-1``; ``ignore_index`` marks pixels
    that are neither trained nor scored."""

    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    reduce_zero_label: bool = False
    flip_pairs: tuple[tuple[int, int], ...] = ()
    label_ids: Optional[tuple[int, ...]] = None
    ignored_label_ids: tuple[int, ...] = ()
    dataset: str = ""
    source: str = ""          # the file it was read from, or where the inline mapping was set

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def label_dtype(self) -> type:
        """The dtype of decoded label maps: uint8 where every value fits."""
        return np.uint8 if max(self.ignore_index, self.num_classes - 1) < 256 else np.uint16

    @property
    def display(self) -> str:
        """How messages name this class list."""
        return self.dataset or self.source or "the class list"

    # ------------------------------------------------------------------ stored values <-> class ids
    @functools.cached_property
    def _decode_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(stored value -> class id or ignore, stored value is valid) over 0..65535."""
        lut = np.full(MAX_LABEL_VALUE + 1, self.ignore_index, dtype=self.label_dtype)
        known = np.zeros(MAX_LABEL_VALUE + 1, dtype=bool)
        n = self.num_classes
        if self.label_ids is not None:
            lut[list(self.label_ids)] = np.arange(n)
            known[list(self.label_ids) + list(self.ignored_label_ids)] = True
        elif self.reduce_zero_label:
            lut[1:n + 1] = np.arange(n)
            known[:n + 1] = True          # 0 is ignored, 1..N are the classes
            known[self.ignore_index] = True
        else:
            lut[:n] = np.arange(n)
            known[:n] = True
            known[self.ignore_index] = True
        return lut, known

    def valid_values(self) -> str:
        """The stored values a label file may hold, in words."""
        n = self.num_classes
        if self.label_ids is not None:
            ids = sorted(set(self.label_ids) | set(self.ignored_label_ids))
            return f"valid labelIds are {_ranges(ids)}"
        if self.reduce_zero_label:
            return f"{n} classes: values 1..{n}; 0 and {self.ignore_index} are ignored (reduce_zero_label)"
        return f"{n} classes: values 0..{n - 1}; {self.ignore_index} is ignored"

    def unknown_error(self, path: str, values: np.ndarray) -> DataError:
        """The one-line error for stored values outside the class list."""
        where = f"{path}: " if path else ""
        if self.label_ids is not None:
            return DataError(f"{where}unknown {self.dataset + ' ' if self.dataset else ''}label id(s) "
                             f"{describe_ids(values)} ({self.valid_values()})")
        return DataError(f"{where}label value(s) {describe_ids(values)} outside the class list of "
                         f"{self.display} ({self.valid_values()}); fix the label file or data.class_info")

    def decode(self, raw: np.ndarray, path: str = "") -> np.ndarray:
        """Stored label values -> class ids (``ignore_index`` where ignored); DataError naming
        ``path`` and the values for anything outside the class list."""
        raw = np.asarray(raw)
        if not np.issubdtype(raw.dtype, np.integer):
            raise DataError(f"{path + ': ' if path else ''}label image has dtype {raw.dtype}, expected integers")
        if raw.size and (raw.min() < 0 or raw.max() > MAX_LABEL_VALUE):
            raise self.unknown_error(path, np.unique(raw[(raw < 0) | (raw > MAX_LABEL_VALUE)]))
        lut, known = self._decode_tables
        index = raw if raw.dtype in (np.uint8, np.uint16) else raw.astype(np.int64)
        if raw.size and not known[index].all():
            raise self.unknown_error(path, np.unique(raw[~known[index]]))
        return lut[index]

    def check_class_ids(self, ids: np.ndarray, path: str = "") -> np.ndarray:
        """``ids`` already hold class ids (0..N-1 or ignore_index); DataError otherwise."""
        ids = np.asarray(ids)
        bad = (ids >= self.num_classes) & (ids != self.ignore_index)
        if ids.size and (bad.any() or ids.min() < 0):
            values = np.unique(ids[bad | (ids < 0)])
            raise DataError(f"{path + ': ' if path else ''}class ids {describe_ids(values)} outside "
                            f"0..{self.num_classes - 1} and {self.ignore_index}")
        return ids.astype(self.label_dtype)

    def encode(self, class_ids: np.ndarray) -> np.ndarray:
        """Class ids -> the values the dataset's label files store (for prediction PNGs that read
        back like ground truth): label_ids, +1 with reduce_zero_label, else the ids themselves.
        Ignored pixels become the stored 'ignored' value."""
        class_ids = np.asarray(class_ids)
        n = self.num_classes
        if self.label_ids is not None:
            table = np.array(list(self.label_ids) + [min(self.ignored_label_ids, default=0)], np.int64)
        elif self.reduce_zero_label:
            table = np.arange(1, n + 2, dtype=np.int64)
            table[n] = 0
        else:
            table = np.append(np.arange(n, dtype=np.int64), self.ignore_index)
        index = np.where((class_ids >= 0) & (class_ids < n), class_ids, n)
        out = table[index]
        return out.astype(np.uint8 if out.size == 0 or out.max() < 256 else np.uint16)

    # ------------------------------------------------------------------ flips and colours
    @functools.cached_property
    def flip_lut(self) -> Optional[np.ndarray]:
        """Class id -> class id of the mirrored image (over every value a decoded map can hold)."""
        if not self.flip_pairs:
            return None
        lut = np.arange(max(self.ignore_index, self.num_classes) + 1).astype(self.label_dtype)
        for a, b in self.flip_pairs:
            lut[a], lut[b] = b, a
        return lut

    @functools.cached_property
    def flip_permutation(self) -> Optional[list[int]]:
        """Channel order that turns the mirrored image's class scores into the image's."""
        if not self.flip_pairs:
            return None
        perm = list(range(self.num_classes))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @functools.cached_property
    def colour_lut(self) -> np.ndarray:
        """Class id -> RGB (uint8); black for ignore and anything else."""
        lut = np.zeros((max(self.ignore_index, self.num_classes) + 1, 3), np.uint8)
        lut[: self.num_classes] = np.asarray(self.palette, np.uint8)
        return lut

    def colorize(self, class_ids: np.ndarray) -> np.ndarray:
        """Class-id map -> RGB picture using the palette (ignore = black)."""
        ids = np.asarray(class_ids)
        lut = self.colour_lut
        return lut[np.clip(ids, 0, len(lut) - 1)]


def describe_ids(ids: Sequence[int] | np.ndarray, limit: int = 10) -> str:
    """``1, 5, 99`` (the first ``limit``, then how many in all)."""
    ids = [int(i) for i in ids]
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _ranges(ids: Sequence[int]) -> str:
    """``0..33`` for a contiguous list, else the values."""
    ids = sorted(ids)
    if ids and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]}"
    return describe_ids(ids)


def default_palette(n: int) -> list[list[int]]:
    """``n`` distinct, deterministic colours (golden-ratio hue steps, alternating brightness)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65 + 0.3 * (i % 2), 0.95 - 0.3 * ((i // 2) % 2))
        out.append([int(r * 255), int(g * 255), int(b * 255)])
    return out


# ---------------------------------------------------------------------- loading


def shipped_names() -> list[str]:
    """Names of the class_info files shipped in configs/datasets/classes/."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def load_class_info(value: Any, where: str = "data.class_info", inline_name: str = "") -> ClassInfo:
    """A ClassInfo from a shipped name (``lip``), a YAML path (``.yaml``/``.yml``; relative to the
    working directory) or an inline mapping. ``where`` names the config key in errors;
    ``inline_name`` names an inline class list in later messages (default: ``where``)."""
    if isinstance(value, Mapping):
        return parse_class_info(value, where, inline_name or where)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where} must be a shipped name ({', '.join(shipped_names())}), the path of a "
                          f"class_info .yaml file or a mapping with names, got {value!r}")
    if value.endswith((".yaml", ".yml")):
        return _load_file(Path(value).expanduser(), where)
    path = SHIPPED_DIR / f"{value}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(value, shipped_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where}: no shipped class list named {value!r}{hint}; shipped: "
                          f"{', '.join(shipped_names())}, or give the path of a .yaml file")
    return _load_cached(str(path))


@functools.lru_cache(maxsize=32)
def _load_cached(path: str) -> ClassInfo:
    return _load_file(Path(path), "data.class_info")


def _load_file(path: Path, where: str) -> ClassInfo:
    if not path.is_file():
        raise ConfigError(f"{where}: class_info file {path} not found; check the path (relative paths are "
                          "relative to the working directory)")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the class_info file ({e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} invalid YAML: {' '.join(str(getattr(e, 'problem', e)).split())}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a class_info file must be a mapping with at least 'names', "
                          f"got {type(data).__name__}")
    return parse_class_info(data, str(path))


def parse_class_info(data: Mapping[str, Any], where: str, source: str = "") -> ClassInfo:
    """Validate a class_info mapping; every mistake is one ConfigError naming ``where`` and the key."""
    from .class_info_checks import check_class_info

    return ClassInfo(**check_class_info(data, where), source=source or where)
