"""COCO-format keypoints for top-down pose: one sample per annotated instance (person, animal, hand)
box, for any skeleton (``KeypointMeta``).

Default layout under ``data_root`` (COCO's own); any annotation file and image folder can be given::

    annotations/person_keypoints_{train2017,val2017}.json
    images/{train2017,val2017}/*.jpg        (or {train2017,val2017}/*.jpg directly under the root)

Every category that lists the configured joints is used (animal sets give one category per
species); annotations of other categories are left out and counted. Annotations without
``num_keypoints``/``area``/``iscrowd`` get them computed, as pycocotools needs them.

Validation boxes come from ground truth or from a person detection results file
(``bbox_file``, COCO results format) filtered by ``det_score_thr``.

Annotation index cache: parsing and checking a COCO annotation file (the train2017 one is
~250 MB of JSON) takes far longer than the training step that follows it, and every sweep trial
and every ``platform train`` would repeat it. The person records built from the files are
therefore kept in ``<cache>/index/<key>.npz`` (plain arrays, read with ``allow_pickle=False``),
where the key is the SHA-256 of the annotation file's bytes, of the detection file's bytes and
``det_score_thr`` for detected boxes, the crop aspect ratio and this loader's code. A changed
file therefore never meets a stale index; a cache file that cannot be read is ignored and
rebuilt. ``<cache>`` is ``$DENSEPRED_CACHE`` if set (``off`` disables the cache), else
``$XDG_CACHE_HOME/densepred`` or ``~/.cache/densepred``. The first parse of a file still checks
all of it and reports every fault as before; pycocotools' ``COCO`` is built only when asked for
(``dataset.coco``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...atomicfile import write_atomic
from ...cachedir import cache_dir
from ...epoch import EpochAware
from ...errors import DataError
from ...imageio import read_rgb
from .codec import HeatmapCodec
from .keypoint_meta import KeypointMeta, check_matches_file, coco_keypoints
from .crop_targets import RESERVED_KEYS as RESERVED_SAMPLE_KEYS, CropTarget, check_targets
from .evaluation import load_coco_gt
from .geometry import box_to_center_scale
from ...imagenorm import normalize
from .transforms import AugmentConfig, augment, crop, warp_channel


@dataclass
class PersonRecord:
    image_id: int
    image_file: str
    center: np.ndarray
    scale: np.ndarray
    joints: np.ndarray       # (K, 3) x, y, 0 in image pixels
    joints_vis: np.ndarray   # (K, 3) 0/1
    score: float = 1.0
    area: float = 0.0
    ann_id: int = -1         # COCO annotation id of a ground-truth person (MPII: the entry's
                             # position in annot/<split>.json); -1 for a detection
    category_id: int = 1     # the COCO category of the instance (or of the detection)


def parse_notes(coco: Any, ann_file: Path) -> list[str]:
    """One line each for what a parse of ``ann_file`` did beyond reading it: annotations of
    categories without keypoints left out, fields computed for pycocotools."""
    notes = []
    categories = set(keypoint_category_ids(coco))
    other = sum(1 for a in coco.dataset["annotations"] if a.get("category_id") not in categories)
    if other:
        notes.append(f"{ann_file.name}: {other} annotation(s) of categories without keypoints left out")
    if getattr(coco, "filled_annotations", 0):
        notes.append(f"{ann_file.name}: {coco.filled_annotations} annotation(s) lacked num_keypoints, area or "
                     "iscrowd; computed (area: the box's)")
    return notes


def resolve_image_dir(data_root: Path, split: str) -> Path:
    for cand in (data_root / "images" / split, data_root / split):
        if cand.is_dir():
            return cand
    raise DataError(f"no image folder for split '{split}' under {data_root} "
                    f"(looked for images/{split}/ and {split}/)")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _keypoint_array(kps: list) -> Optional[np.ndarray]:
    """The keypoint values as float32, or None if one is not a finite number."""
    try:
        k = np.asarray(kps)
    except (TypeError, ValueError):  # ragged nesting
        return None
    if k.ndim != 1 or k.dtype.kind not in "iuf":  # strings, null, booleans or lists among the values
        return None
    k = k.astype(np.float32)
    return k if np.isfinite(k).all() else None


def as_box(box: Any) -> Optional[list[float]]:
    """``box`` as four floats ``[x, y, w, h]``, or None if it is not a list of four finite numbers."""
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
        return None
    return [float(v) for v in box]


def check_images(coco: Any, ann_file: Path) -> None:
    """Every image entry names its file and has a positive width and height (the loader needs them)."""
    for image_id, info in coco.imgs.items():
        if not isinstance(info.get("file_name"), str) or not info["file_name"]:
            raise DataError(f"{ann_file}: image {image_id} has no 'file_name'; every entry of 'images' "
                            "needs id, file_name, width and height")
        for key in ("width", "height"):
            if not _is_number(info.get(key)) or info[key] <= 0:
                raise DataError(f"{ann_file}: image {image_id} ({info['file_name']}) has {key} "
                                f"{info.get(key)!r}; expected a positive number of pixels")


def clean_box(bbox: list[float], width: int, height: int) -> Optional[list[float]]:
    """Clip a COCO [x, y, w, h] box to the image as the official loader does; None if empty."""
    x, y, w, h = bbox
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1))
    if x2 >= x1 and y2 >= y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


def _ann_id(ann: dict) -> int:
    """The annotation's integer id, or -1 when it has none (its mask then cannot be looked up)."""
    ann_id = ann.get("id")
    return ann_id if type(ann_id) is int and 0 <= ann_id < 2**63 else -1


def keypoint_category_ids(coco: Any) -> list[int]:
    """The ids of the categories that list keypoints (``from_categories`` checked they share them)."""
    return sorted(c["id"] for c in coco.dataset.get("categories", []) if isinstance(c, dict) and c.get("keypoints"))


def load_gt_persons(coco: Any, ann_file: Path, image_dir: Path, aspect_ratio: float,
                    num_keypoints: int = 17) -> list[PersonRecord]:
    """One record per non-crowd instance of a keypoint category with at least one labelled keypoint."""
    records = []
    categories = set(keypoint_category_ids(coco))
    for image_id in sorted(coco.getImgIds()):
        info = coco.imgs[image_id]
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            if ann.get("category_id") not in categories or ann.get("iscrowd", 0):
                continue
            kps = ann.get("keypoints") or []
            if not isinstance(kps, list):
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has keypoints of type "
                                f"{type(kps).__name__}; expected a list of {3 * num_keypoints} numbers")
            if len(kps) != 3 * num_keypoints:
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has {len(kps)} keypoint values, "
                                f"expected {3 * num_keypoints} ({num_keypoints} keypoints x 3)")
            k = _keypoint_array(kps)
            if k is None:
                bad = next((v for v in kps if not _is_number(v)), "out of range")
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has the keypoint value {bad!r}; "
                                "keypoints must be numbers (x, y, visibility)")
            area = ann.get("area", 0)
            if not _is_number(area):
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has area {area!r}; expected a number")
            bbox = as_box(ann.get("bbox"))
            if bbox is None:
                raise DataError(f"{ann_file}: annotation {ann.get('id')} has an invalid bbox {ann.get('bbox')!r} "
                                "(expected [x, y, width, height])")
            if k.max() == 0 or area <= 0:
                continue
            box = clean_box(bbox, info["width"], info["height"])
            if box is None:
                continue
            k = k.reshape(-1, 3)
            joints = np.zeros((num_keypoints, 3), np.float32)
            joints[:, :2] = k[:, :2]
            vis = np.minimum(k[:, 2:3], 1.0).repeat(3, axis=1)
            vis[:, 2] = 0
            center, scale = box_to_center_scale(*box, aspect_ratio=aspect_ratio)
            records.append(PersonRecord(image_id, str(image_dir / info["file_name"]), center, scale,
                                        joints, vis, 1.0, float(box[2] * box[3]), _ann_id(ann),
                                        int(ann["category_id"])))
    return records


def load_detected_persons(coco: Any, bbox_file: Path, image_dir: Path, aspect_ratio: float,
                          score_thr: float, num_keypoints: int = 17) -> list[PersonRecord]:
    """One record per detected box of a keypoint category with score >= ``score_thr`` (a detection
    without ``category_id`` is of the first keypoint category)."""
    if not bbox_file.is_file():
        raise DataError(f"person detection file {bbox_file} not found (set bbox_file: null to use "
                        "ground-truth boxes)")
    try:
        dets = json.loads(bbox_file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{bbox_file}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(dets, list):
        raise DataError(f"{bbox_file}: expected a list of detections in COCO results format")
    records = []
    categories = keypoint_category_ids(coco)
    for i, d in enumerate(dets):
        try:
            image_id, box, score = d["image_id"], d["bbox"], d["score"]
        except (KeyError, TypeError):
            raise DataError(f"{bbox_file}: detection #{i} lacks image_id/bbox/score") from None
        if not _is_number(score):
            raise DataError(f"{bbox_file}: detection #{i} has score {score!r}; expected a number")
        score = float(score)
        category = d.get("category_id", categories[0])
        if category not in categories or score < score_thr:
            continue
        if image_id not in coco.imgs:
            raise DataError(f"{bbox_file}: detection #{i} refers to image_id {image_id}, "
                            "which is not in the annotation file")
        checked = as_box(box)
        if checked is None:
            raise DataError(f"{bbox_file}: detection #{i} has an invalid box {box} (expected [x, y, width, height])")
        if checked[2] <= 0 or checked[3] <= 0:
            raise DataError(f"{bbox_file}: detection #{i} has an invalid box {box} (width and height must be > 0)")
        center, scale = box_to_center_scale(*checked, aspect_ratio=aspect_ratio)
        zeros = np.zeros((num_keypoints, 3), np.float32)
        records.append(PersonRecord(image_id, str(image_dir / coco.imgs[image_id]["file_name"]),
                                    center, scale, zeros, zeros.copy(), score, checked[2] * checked[3],
                                    category_id=int(category)))
    return records


# --------------------------------------------------------------------------------------------
# Annotation index cache
# --------------------------------------------------------------------------------------------
INDEX_FORMAT = 3  # layout of the .npz files (2: ann_id, 3: category_id); the key also covers the loader's code
_log = logging.getLogger(__name__)


def index_cache_dir() -> Optional[Path]:
    """Folder of the prepared annotation indexes, or None when ``DENSEPRED_CACHE=off``."""
    return cache_dir("index")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _loader_code_hash() -> str:
    """Hash of the modules that turn annotations into records: editing them invalidates indexes."""
    from . import geometry

    h = hashlib.sha256()
    for mod_file in (__file__, geometry.__file__):
        h.update(Path(mod_file).read_bytes())
    return h.hexdigest()


def index_key(ann_sha: str, aspect_ratio: float, joints: Sequence[str],
              det_sha: Optional[str] = None, det_score_thr: Optional[float] = None) -> dict:
    """Everything the records depend on (the image folder is not: file names are kept relative)."""
    key = {"format": INDEX_FORMAT, "code": _loader_code_hash(), "annotations": ann_sha,
           "aspect_ratio": float(aspect_ratio).hex(), "joints": list(joints), "boxes": "gt"}
    if det_sha is not None:
        key.update(boxes="detections", detections=det_sha, det_score_thr=float(det_score_thr).hex())
    return key


def index_path(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    return cache_dir / f"{digest}.npz"


def save_index(path: Path, key: dict, records: list[PersonRecord], image_dir: Path,
               notes: Sequence[str] = ()) -> bool:
    """Write ``records`` and the parse's ``notes`` (atomically) to ``path``; False when they do not fit
    the format."""
    if not records or not all(type(r.image_id) is int and -2**63 <= r.image_id < 2**63
                              and -1 <= r.ann_id < 2**63 for r in records):
        return False  # non-integer image ids are legal in a COCO file, just not cached
    prefix = str(image_dir) + os.sep
    names, index, seen = [], [], {}
    for r in records:
        name = r.image_file[len(prefix):] if r.image_file.startswith(prefix) else r.image_file
        if str(image_dir / name) != r.image_file:
            return False
        if name not in seen:
            seen[name] = len(names)
            names.append(name)
        index.append(seen[name])
    arrays = {
        "key": np.array(json.dumps(key, sort_keys=True)),
        "image_id": np.array([r.image_id for r in records], np.int64),
        "file_names": np.array(names, dtype=str),
        "file_index": np.array(index, np.int64),
        "center": np.stack([r.center for r in records]),
        "scale": np.stack([r.scale for r in records]),
        "joints": np.stack([r.joints for r in records]),
        "joints_vis": np.stack([r.joints_vis for r in records]),
        "score": np.array([r.score for r in records], np.float64),
        "area": np.array([r.area for r in records], np.float64),
        "ann_id": np.array([r.ann_id for r in records], np.int64),
        "category_id": np.array([r.category_id for r in records], np.int64),
        "notes": np.array(list(notes), dtype=str),
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())

    write_atomic(path, write)
    return True


def load_index(path: Path, key: dict, image_dir: Path) -> tuple[list[PersonRecord], list[str]]:
    """The records and notes stored by ``save_index``; raises (ValueError, OSError, ...) if the file
    is damaged or was written for another key."""
    with np.load(path, allow_pickle=False) as z:
        if json.loads(str(z["key"][()])) != key:
            raise ValueError("written for other files or settings")
        a = {name: z[name] for name in ("image_id", "file_names", "file_index", "center", "scale",
                                         "joints", "joints_vis", "score", "area", "ann_id", "category_id", "notes")}
    n = len(a["image_id"])
    k = len(key["joints"])
    shapes = {"file_index": (n,), "center": (n, 2), "scale": (n, 2), "joints": (n, k, 3),
              "joints_vis": (n, k, 3), "score": (n,), "area": (n,), "ann_id": (n,), "category_id": (n,)}
    for name, shape in shapes.items():
        if a[name].shape != shape:
            raise ValueError(f"array {name} has shape {a[name].shape}, expected {shape}")
    if n == 0 or a["file_index"].min() < 0 or a["file_index"].max() >= len(a["file_names"]):
        raise ValueError("inconsistent file index")
    files = [str(image_dir / name) for name in a["file_names"].tolist()]
    ids, fidx = a["image_id"].tolist(), a["file_index"].tolist()
    scores, areas, ann_ids = a["score"].tolist(), a["area"].tolist(), a["ann_id"].tolist()
    cats = a["category_id"].tolist()
    center, scale, joints, vis = a["center"], a["scale"], a["joints"], a["joints_vis"]
    return [PersonRecord(ids[i], files[fidx[i]], center[i], scale[i], joints[i], vis[i], scores[i], areas[i],
                         ann_ids[i], cats[i]) for i in range(n)], [str(n) for n in a["notes"].tolist()]


@dataclass
class FaultLog:
    """Per-sample faults (missing/corrupt images) seen by a dataset; reported, never fatal in training."""

    files: dict[str, str] = field(default_factory=dict)


class TopDownDataset(EpochAware, Dataset):
    """Top-down samples of ``records`` (``PersonRecord``s): the affine crop of one person, its
    target heatmaps and weights. Subclasses read a data set's files into ``records`` and call
    ``_init_samples``; the sample code below is shared by every keypoint format.

    ``__getitem__`` returns a dict: ``image`` (3xHxW float32), ``target`` (KxhxW), ``target_weight``
    (Kx1), ``center``, ``scale``, ``rotation``, ``image_id``, ``score``, ``area``, ``index`` and
    ``fault`` (empty, or the message of a per-sample fault: the sample then has zero weight), plus
    the arrays of every ``extra_targets`` entry (see ``crop_targets.CropTarget``), whose channels
    get the image's augmentation and crop.
    """

    records: list[PersonRecord]

    def _init_samples(self, codec: HeatmapCodec, train: bool, augment_cfg: Optional[AugmentConfig],
                      seed: int, strict_images: bool, extra_targets: Sequence[CropTarget],
                      meta: KeypointMeta) -> None:
        """The crop, augmentation and encoding settings every sample uses."""
        self.codec = codec
        self.input_size = tuple(codec.input_size)
        self.aspect_ratio = self.input_size[0] / self.input_size[1]
        self.train = train
        self.augment_cfg = augment_cfg or AugmentConfig()
        self.meta = meta
        self._init_epoch(seed)
        self.strict_images = strict_images
        self.extra_targets = check_targets(extra_targets)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> dict[str, Any]:
        """The crop as uint8 RGB plus joints in crop pixels (before normalisation and encoding), and
        under ``extras`` each extra target's channel warped to the crop (None: no target)."""
        r = self.records[index]
        image = read_rgb(r.image_file)
        channels = self._render_extras(r, image.shape[:2])
        keys = [k for k, c in channels.items() if c is not None]
        if keys:  # one array, so that the random flip moves the channels with the image
            image = np.dstack([image] + [channels[k] for k in keys])
        joints, vis, center, scale, rot = r.joints, r.joints_vis, r.center, r.scale, 0.0
        if self.train:
            image, joints, vis, center, scale, rot = augment(
                image, joints, vis, center, scale, self.augment_cfg, self.aspect_ratio, self.rng(index),
                self.meta)
        for i, k in enumerate(keys):
            channels[k] = image[:, :, 3 + i]
        image = image[:, :, :3]
        trans = self.codec.crop_transform(center, scale, rot)
        patch, joints = crop(image, joints, vis, trans, self.input_size)
        extras = {k: None if c is None else warp_channel(c, trans, self.input_size) for k, c in channels.items()}
        return {"patch": patch, "joints": joints, "joints_vis": vis, "center": center, "scale": scale,
                "rotation": rot, "extras": extras}

    def _render_extras(self, record: PersonRecord, image_hw: tuple[int, int]) -> dict[str, Optional[np.ndarray]]:
        """Each extra target's channel in image pixels (checked: one uint8 value per pixel)."""
        out: dict[str, Optional[np.ndarray]] = {}
        for t in self.extra_targets:
            channel = t.render(record, image_hw)
            if channel is not None and (channel.shape != tuple(image_hw) or channel.dtype != np.uint8):
                raise ValueError(f"crop target {t.key!r} rendered a {channel.dtype} array of shape "
                                 f"{channel.shape}; expected uint8 {tuple(image_hw)}")
            out[t.key] = channel
        return out

    def _encode_extras(self, extras: Optional[dict[str, Optional[np.ndarray]]]) -> dict[str, torch.Tensor]:
        """The tensors of every extra target; ``empty()`` for a faulty sample or a missing target."""
        out: dict[str, torch.Tensor] = {}
        for t in self.extra_targets:
            warped = None if extras is None else extras.get(t.key)
            arrays = t.empty() if warped is None else t.encode(warped)
            for name, value in arrays.items():
                if name in out or name in RESERVED_SAMPLE_KEYS:
                    raise ValueError(f"crop target {t.key!r} returns the array {name!r}, which another "
                                     "target or the pose sample already uses")
                out[name] = torch.from_numpy(np.ascontiguousarray(value))
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        fault = ""
        try:
            s = self.load(index)
        except DataError as e:
            if self.strict_images:
                raise
            fault = str(e)
            w, h = self.input_size
            s = {"patch": np.zeros((h, w, 3), np.uint8), "joints": r.joints, "joints_vis": r.joints_vis * 0,
                 "center": r.center, "scale": r.scale, "rotation": 0.0, "extras": None}
        target, weight = self.codec.encode(s["joints"], s["joints_vis"])
        sample = {
            "image": torch.from_numpy(normalize(s["patch"])),
            "target": torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)),
            "target_weight": torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)),
            "center": torch.as_tensor(s["center"], dtype=torch.float32),
            "scale": torch.as_tensor(s["scale"], dtype=torch.float32),
            "rotation": float(s["rotation"]),
            "image_id": int(r.image_id),
            "category_id": int(r.category_id),
            "score": float(r.score),
            "area": float(r.area),
            "index": int(index),
            "fault": fault,
        }
        if self.extra_targets:
            sample.update(self._encode_extras(s["extras"]))
        return sample


def under_root(root: Path, path: str | Path) -> Path:
    """``path`` relative to ``root`` unless absolute (never to the working directory)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


class CocoPoseDataset(TopDownDataset):
    """COCO-format keypoints of any skeleton as top-down samples (see ``TopDownDataset`` for the
    sample dict): ground-truth boxes, or detected ones for validation (``bbox_file``).
    ``ann_file``, ``image_dir`` and ``bbox_file`` are relative to ``data_root`` unless absolute
    (defaults: COCO's layout for ``split``); ``meta`` is the data set's joints (default COCO's)."""

    def __init__(self, data_root: str | Path, split: str, codec: HeatmapCodec, train: bool,
                 ann_file: Optional[str | Path] = None, bbox_file: Optional[str | Path] = None,
                 det_score_thr: float = 0.0, augment_cfg: Optional[AugmentConfig] = None,
                 seed: int = 0, strict_images: bool = False, extra_targets: Sequence[CropTarget] = (),
                 image_dir: Optional[str | Path] = None, meta: Optional[KeypointMeta] = None):
        root = Path(data_root)
        if not root.is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root to your dataset folder "
                            "(--set data_root=...) or make the demo set with `platform data demo`")
        self.ann_file = under_root(root, ann_file or Path("annotations") / f"person_keypoints_{split}.json")
        self.split = split
        self.image_dir_cfg = image_dir
        #: what the first parse of the files found worth saying (filled fields, other categories)
        self.notes: list[str] = []
        self._init_samples(codec, train, augment_cfg, seed, strict_images, extra_targets, meta or coco_keypoints())
        self.bbox_file: Optional[Path] = under_root(root, bbox_file) if bbox_file and not train else None
        self.det_score_thr = float(det_score_thr)
        self._coco: Any = None
        #: where the records came from: "parsed" (the annotation files) or "cache" (a prepared
        #: index, ``index_file``); ``index_seconds`` is how long getting them took
        self.index_source, self.index_file, self.index_seconds = "parsed", None, 0.0
        t0 = time.perf_counter()
        key, self.index_file = self._index_key()
        self.records = self._cached_records(root, key) if key is not None else None
        if self.records is None:
            self.records = self._parse_records(root, key)
        self.index_seconds = time.perf_counter() - t0

    @property
    def coco(self) -> Any:
        """The ground truth as a pycocotools ``COCO`` (parsed on first use; training never needs it)."""
        if self._coco is None:
            self._coco = load_coco_gt(self.ann_file)
        return self._coco

    def _index_key(self) -> tuple[Optional[dict], Optional[Path]]:
        """The cache key of this dataset's records and its file, or (None, None) when the cache is
        off or a file cannot be hashed (the parse then reports what is wrong with it)."""
        cache_dir = index_cache_dir()
        if cache_dir is None or not self.ann_file.is_file():
            return None, None
        if self.bbox_file is not None and not self.bbox_file.is_file():
            return None, None
        try:
            det = (file_sha256(self.bbox_file), self.det_score_thr) if self.bbox_file is not None else (None, None)
            key = index_key(file_sha256(self.ann_file), self.aspect_ratio, self.meta.names, *det)
        except OSError:
            return None, None
        return key, index_path(cache_dir, key)

    def _cached_records(self, root: Path, key: dict) -> Optional[list[PersonRecord]]:
        if not self.index_file.is_file():
            return None
        image_dir = self._image_dir(root)
        try:
            records, self.notes = load_index(self.index_file, key, image_dir)
        except Exception as e:  # noqa: BLE001  (a cache: any damage means "rebuild it")
            _log.warning("ignoring the annotation index cache %s (%s: %s); rebuilding it",
                         self.index_file, type(e).__name__, e)
            return None
        self.image_dir = image_dir
        self.index_source = "cache"
        return records

    def _image_dir(self, root: Path) -> Path:
        if self.image_dir_cfg is None:
            return resolve_image_dir(root, self.split)
        folder = under_root(root, self.image_dir_cfg)
        if not folder.is_dir():
            raise DataError(f"image folder {folder} not found; check data_root and data.{'train' if self.train else 'val'}"
                            "_images")
        return folder

    def _parse_records(self, root: Path, key: Optional[dict]) -> list[PersonRecord]:
        """Read, check and index the annotation (and detection) files; store the result in the cache."""
        coco = load_coco_gt(self.ann_file)
        if not coco.imgs:
            raise DataError(f"{self.ann_file}: the annotation file lists no images")
        check_images(coco, self.ann_file)
        check_matches_file(self.meta, coco.dataset["categories"], str(self.ann_file))
        self.image_dir = self._image_dir(root)
        k = self.meta.num_keypoints
        if self.bbox_file is not None:
            records = load_detected_persons(coco, self.bbox_file, self.image_dir, self.aspect_ratio,
                                            self.det_score_thr, k)
        else:
            records = load_gt_persons(coco, self.ann_file, self.image_dir, self.aspect_ratio, k)
        self.notes = parse_notes(coco, self.ann_file)
        if not records:
            raise DataError(f"{self.ann_file}: no usable samples for split '{self.split}' (no instance of a keypoint "
                            "category with a labelled keypoint and a box inside its image)")
        if key is not None and self._unchanged(key):
            try:
                save_index(self.index_file, key, records, self.image_dir, self.notes)
            except OSError as e:  # a read-only or full disk costs speed, never the run
                _log.warning("cannot write the annotation index cache %s: %s", self.index_file, e)
        return records

    def _unchanged(self, key: dict) -> bool:
        """The files still have the hashed content (not rewritten while they were parsed)."""
        try:
            return (file_sha256(self.ann_file) == key["annotations"]
                    and (self.bbox_file is None or file_sha256(self.bbox_file) == key["detections"]))
        except OSError:
            return False
