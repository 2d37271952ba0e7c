"""Segmentation read from a multi-target layout (``data.format: nyud_mt`` / ``pascal_mt``): the label
is one target of the layout (``data.target``, default the layout's segmentation target), read and
augmented by the shared dense dataset, so that segmentation can share one data loader with depth,
normals and boundary members of a same-input multi-task run. The class list defaults to the one
the layout names for that target."""
from __future__ import annotations

from typing import Any, Callable, Optional

from ...errors import ConfigError
from ..dense.common import resolve_target
from ..dense.layout import DenseLayout, TargetSpec, load_layout
from ..dense.targets import DenseTarget
from .class_info import ClassInfo, load_class_info


def label_spec(fmt: str, target: Optional[str], where: Callable[[str], str]) -> tuple[DenseLayout, TargetSpec]:
    """The layout and its label target a segmentation config reads."""
    layout = load_layout(fmt)
    return layout, resolve_target(layout, target, "segmentation", "label", where)


def layout_class_info(layout: DenseLayout, spec: TargetSpec, where: Callable[[str], str]) -> ClassInfo:
    """The class list the layout names for ``spec`` (``data.class_info: null``)."""
    path = layout.class_info_path(spec.name)
    if path is None:
        raise ConfigError(f"{where('data.class_info')}: the {layout.name} layout names no class list for its "
                          f"{spec.name} target; set data.class_info (a shipped name, a .yaml file or a mapping)")
    return load_class_info(str(path), f"{layout.path}: targets.{spec.name}.class_info")


def label_target(spec: TargetSpec, info: ClassInfo) -> DenseTarget:
    """The label as a dense target: values checked against the class list, mirrored classes swapped."""
    return DenseTarget(spec.name, spec, num_classes=info.num_classes, ignore_index=info.ignore_index,
                       flip_lut=info.flip_lut)


def check_stored_convention(spec: TargetSpec, info: ClassInfo, where: Callable[[str], str]) -> None:
    """A class list with its own storage table (Cityscapes labelIds) cannot describe a layout's labels."""
    if info.label_ids is not None:
        raise ConfigError(f"{where('data.class_info')}: {info.display} maps stored labelIds, but the layout stores "
                          f"{spec.name} as class ids (+{spec.offset}); use a class list without label_ids")


def pair(ds: Any, index: int, key: str) -> tuple[Any, Any]:
    """``(image, label)`` of a dense dataset sample (the segmentation browse's view)."""
    image, arrays = ds.load(index)
    return image, arrays[key]
