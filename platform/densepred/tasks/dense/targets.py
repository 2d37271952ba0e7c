"""One dense target as a dataset reads it: which layout target (its file, its kind), the batch key
it is delivered under, and what its task adds (a label's class count and ignore value, the class
swap of a mirrored crop, depth that follows the zoom).

A dense task's ``extra_targets`` returns its ``DenseTarget``; the first member of a same-input
multi-task run builds one dataset that reads and augments every member's target with the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...errors import ConfigError, DataError
from . import decode
from .layout import TargetSpec
from .samples import DenseSample

#: stored in boundary maps where nothing is scored (padding)
BOUNDARY_IGNORE = 255


@dataclass
class DenseTarget:
    """``key``: the batch key (the layout's target name); label targets carry ``num_classes`` and
    ``ignore_index`` (checked on read) and ``flip_lut`` (class id -> id in the mirrored image)."""

    key: str
    spec: TargetSpec
    num_classes: Optional[int] = None
    ignore_index: int = 255
    flip_lut: Optional[np.ndarray] = None
    rescale_depth: bool = False    # depth divided by the zoom of random scaling

    @property
    def kind(self) -> str:
        return self.spec.kind

    def read(self, sample: DenseSample, image_hw: tuple[int, int], strict: bool = False) -> np.ndarray:
        """The target of ``sample`` at full resolution (see ``decode``); ``strict`` (the data check)
        refuses values the readers would otherwise drop."""
        path = sample.files.get(self.key)
        if path is None:
            raise DataError(f"{sample.stem}: no {self.key} file listed for this sample")
        if self.kind == "label":
            ids = decode.read_label(self.spec, path, image_hw, self.ignore_index)
            return self.check_classes(ids, str(path))
        return decode.READERS[self.kind](self.spec, path, image_hw, sample.aux.get(self.key), strict)

    def check_classes(self, ids: np.ndarray, path: str) -> np.ndarray:
        if self.num_classes is None:
            return ids
        bad = (ids >= self.num_classes) & (ids != self.ignore_index)
        if bad.any():
            values = sorted(int(v) + self.spec.offset for v in np.unique(ids[bad]))[:10]
            raise DataError(f"{path}: stored label value(s) {', '.join(map(str, values))} outside the "
                            f"{self.num_classes} classes of the class list (values {self.spec.offset}.."
                            f"{self.spec.offset + self.num_classes - 1}); fix the file or data.class_info")
        return ids

    def empty(self, hw: tuple[int, int]) -> np.ndarray:
        """The target of a faulty sample: nothing to learn from it."""
        if self.kind == "label":
            return np.full(hw, self.ignore_index, np.int32)
        if self.kind == "boundary":
            return np.full(hw, BOUNDARY_IGNORE, np.uint8)
        if self.kind == "normals":
            return np.zeros((*hw, 3), np.float32)
        return np.zeros(hw, np.float32)

    def pad_value(self) -> float:
        """What fills the crop outside the image: ignored for every kind."""
        return {"label": self.ignore_index, "boundary": BOUNDARY_IGNORE}.get(self.kind, 0)


def check_keys(targets: list[DenseTarget]) -> list[DenseTarget]:
    """Targets of one dataset need distinct keys (two members reading one target is a mistake)."""
    keys = [t.key for t in targets]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ConfigError(f"two members read the same dense target {dup[0]!r}; each target trains one head "
                        "(set data.target of one member to another target of the layout)")
    return targets
