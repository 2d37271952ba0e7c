"""Readers of stored dense targets, by kind and file type, into the arrays the tasks train on:

- ``label``: ``(H, W) int32`` class ids, ``ignore`` where void (PNG index maps with an ``offset``
  and ``void`` values, two-class maps from a ``threshold``, Pascal-Part ``.mat`` person parts);
- ``depth``: ``(H, W) float32`` metres, 0 where there is no measurement (also non-finite or negative);
- ``normals``: ``(H, W, 3) float32`` unit vectors (x right, y, z as stored), the zero vector where
  there is none (a zero ``.npy`` vector, an all-zero ``.png`` pixel, or outside ``valid_where``);
- ``boundary``: ``(H, W) uint8`` 0/1 (``.npy`` > 0.5, ``.png`` > 127, or where a ``.mat`` label map changes).

Every reader checks that the target has its image's size and names the file when it cannot read it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np

from ...errors import DataError
from .layout import TargetSpec


def read_index_png(path: Path, kind: str = "index", hint: str = "") -> np.ndarray:
    """A single-channel PNG as stored (uint8/uint16; palette PNGs give their indices); a colour
    image is refused, the error naming the expected ``kind`` of PNG and ending with ``hint``."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise DataError(f"label file {path} is missing or corrupt")
    if raw.ndim == 3:
        from PIL import Image

        with Image.open(path) as im:   # OpenCV expands palette PNGs to colour; the labels are the indices
            if im.mode in ("P", "L", "I", "I;16"):
                return np.asarray(im)
        raise DataError(f"label file {path} has {raw.shape[2]} channels; expected a single-channel {kind} PNG{hint}")
    return raw


def load_mat(path: Path, key: Optional[str] = None) -> Any:
    """A MATLAB file (or one of its variables); DataError naming the file otherwise."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as e:  # scipy raises several types for a corrupt or foreign file
        raise DataError(f"{path}: not a readable MATLAB file ({' '.join(str(e).split())})") from None
    if key is None:
        return mat
    if key not in mat:
        raise DataError(f"{path}: no variable '{key}' (has: {', '.join(k for k in mat if not k.startswith('__'))})")
    return mat[key]


def _check_size(array: np.ndarray, image_hw: tuple[int, int], path: Path) -> np.ndarray:
    if tuple(array.shape[:2]) != tuple(image_hw):
        raise DataError(f"{path} is {array.shape[1]}x{array.shape[0]} but its image is {image_hw[1]}x{image_hw[0]} "
                        "(WxH); every target needs its image's size")
    return array


# ---------------------------------------------------------------------------- labels

def _label_png(spec: TargetSpec, path: Path, ignore: int) -> np.ndarray:
    if spec.threshold is not None:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise DataError(f"label file {path} is missing or corrupt")
        return (gray.astype(np.float32) / 255.0 > spec.threshold).astype(np.int32)
    raw = read_index_png(path).astype(np.int32)
    ids = raw - spec.offset
    return np.where(np.isin(raw, spec.void) | (ids < 0), ignore, ids).astype(np.int32)


def _parts_mat(spec: TargetSpec, path: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """Pascal-Part ``anno``: every person object's parts painted with their group's class id."""
    cfg = spec.parts_mat or {}
    person, groups = int(cfg.get("person_class", 15)), dict(cfg.get("groups") or {})
    out = np.zeros(image_hw, np.int32)
    try:
        objects = load_mat(path, "anno")[0][0][1][0]
        for obj in objects:
            if int(obj[1][0][0]) != person or len(obj[3]) == 0:
                continue
            for part in obj[3][0]:
                name, mask = str(part[0][0]), np.asarray(part[1]).astype(bool)
                if name not in groups:
                    raise DataError(f"{path}: person part '{name}' is not in the layout's parts_mat.groups")
                out[_check_size(mask, image_hw, path)] = int(groups[name])
    except (IndexError, TypeError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a Pascal-Part annotation (anno.objects with class index and parts: "
                        f"{' '.join(str(e).split())})") from None
    return out


def read_label(spec: TargetSpec, path: Path, image_hw: tuple[int, int], ignore: int) -> np.ndarray:
    ids = _parts_mat(spec, path, image_hw) if path.suffix == ".mat" else _label_png(spec, path, ignore)
    ids = _check_size(ids, image_hw, path)
    if spec.empty_is_void and (ids == 0).all():
        ids = np.full(image_hw, ignore, np.int32)   # nothing annotated: ignore the image, not "all background"
    return ids


# ---------------------------------------------------------------------------- regression targets

def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.asarray(np.load(str(path), allow_pickle=False))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({' '.join(str(e).split())})") from None


def _strict_problem(path: Path, bad: np.ndarray, values: np.ndarray, what: str) -> None:
    """``strict`` readers (the data check) name values a reader would otherwise silently drop."""
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(values[bad])[:5])
        raise DataError(f"{path}: {int(bad.sum())} pixel(s) hold {what} (e.g. {shown})")


def read_depth(spec: TargetSpec, path: Path, image_hw: tuple[int, int], aux: Optional[Path] = None,
               strict: bool = False) -> np.ndarray:
    depth = _load_npy(path)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.number):
        raise DataError(f"{path}: a depth map is an (H, W) array of metres, got shape {depth.shape} {depth.dtype}")
    depth = _check_size(depth.astype(np.float32), image_hw, path)
    if strict:
        _strict_problem(path, ~np.isfinite(depth) | (depth < 0), depth,
                        "negative or non-finite depth; store metres, and 0 where there is no measurement")
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)


def unit_or_zero(vectors: np.ndarray) -> np.ndarray:
    """Normalise ``(..., 3)`` vectors; zero (or non-finite) ones stay zero."""
    v = np.where(np.isfinite(vectors), vectors, 0.0).astype(np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(norm > 1e-6, v / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def read_normals(spec: TargetSpec, path: Path, image_hw: tuple[int, int], aux: Optional[Path] = None,
                 strict: bool = False) -> np.ndarray:
    if path.suffix == ".npy":
        n = _load_npy(path)
        if n.ndim != 3 or n.shape[2] != 3:
            raise DataError(f"{path}: normals are an (H, W, 3) array, got shape {n.shape}")
        n = _check_size(n.astype(np.float32), image_hw, path)
        if strict:
            norm = np.linalg.norm(n, axis=2)
            _strict_problem(path, ~np.isfinite(norm) | ((norm > 1e-6) & (np.abs(norm - 1) > 0.05)), norm,
                            "normals of length neither 1 nor 0 (lengths shown); store unit vectors, 0 for none")
        n = unit_or_zero(n)
    else:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"normals file {path} is missing or corrupt")
        rgb = _check_size(bgr[:, :, ::-1], image_hw, path)
        n = unit_or_zero(rgb.astype(np.float32) / 255.0 * 2.0 - 1.0)
        n[(rgb == 0).all(axis=2)] = 0.0   # (0, 0, 0) stores "no normal"
    if spec.valid_where and aux is not None:
        labels = _check_size(np.asarray(load_mat(aux, spec.valid_where["key"])), image_hw, aux)
        n[~np.isin(labels, list(spec.valid_where["labels"]))] = 0.0
    return n


def label_map_boundaries(labels: np.ndarray) -> np.ndarray:
    """1 where a label map changes (4-neighbour Laplacian != 0), thinned to one pixel (Guo-Hall, as
    ASTMT's skimage.morphology.thin)."""
    band = (np.abs(cv2.Laplacian(labels.astype(np.float64), cv2.CV_64F)) > 0).astype(np.uint8) * 255
    thin = cv2.ximgproc.thinning(band, thinningType=cv2.ximgproc.THINNING_GUOHALL)
    return (thin > 0).astype(np.uint8)


def read_boundary(spec: TargetSpec, path: Path, image_hw: tuple[int, int], aux: Optional[Path] = None,
                  strict: bool = False) -> np.ndarray:
    if path.suffix == ".mat":
        return label_map_boundaries(_check_size(np.asarray(load_mat(path, spec.mat_key)), image_hw, path))
    if path.suffix == ".npy":
        edge = _load_npy(path)
        edge = _check_size((edge[:, :, 0] if edge.ndim == 3 else edge).astype(np.float32), image_hw, path)
        on = 1.0
    else:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise DataError(f"boundary file {path} is missing or corrupt")
        edge, on = _check_size(gray, image_hw, path).astype(np.float32), 255.0
    if strict:
        _strict_problem(path, (edge != 0) & (edge != on), edge, f"values other than 0 and {on:g} (boundary or not)")
    return (edge > on / 2).astype(np.uint8)


READERS: dict[str, Callable[..., np.ndarray]] = {"depth": read_depth, "normals": read_normals,
                                                  "boundary": read_boundary}
