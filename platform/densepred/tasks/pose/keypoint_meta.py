"""Keypoint metadata of one data set: what the pose pipeline must know about its joints.

Augmentation (flip, half-body crops), the codec's joint weights, the flip test, OKS AP and the
pictures all read the joints through a :class:`KeypointMeta`, so any skeleton uses the same code as
COCO's 17 joints. Metadata is data: ``configs/datasets/keypoints/<name>.yaml`` (COCO, MPII,
CrowdPose, AP-10K, a 21-joint hand, a 68-point face), a YAML file of the user's, an inline mapping,
or the ``keypoints``/``skeleton`` of a COCO-format file's category (``from_categories``). One loader
(``load_keypoint_info``) reads every form.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import yaml

from ...errors import ConfigError, DataError
from ...project import shipped

#: the OKS sigma of every joint when a data set gives none (AP is then not comparable to published figures)
DEFAULT_SIGMA = 0.05
INFO_KEYS = ("name", "keypoints", "flip_pairs", "skeleton", "sigmas", "upper_body", "joint_weights")


@dataclass(frozen=True)
class KeypointMeta:
    """Joint names (in heatmap order), left/right flip pairs, limbs, the upper-body joints of the
    half-body augmentation, the per-joint loss weights (``data.use_joint_weights``) and the OKS
    sigmas (None: not given). ``source`` says where it came from (for messages)."""

    name: str
    names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    upper_body_ids: tuple[int, ...]
    joint_weights: np.ndarray = field(repr=False, compare=False)
    sigmas: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    source: str = ""

    @property
    def num_keypoints(self) -> int:
        return len(self.names)

    @property
    def lower_body_ids(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_keypoints) if i not in self.upper_body_ids)

    @property
    def half_body(self) -> bool:
        """Half-body augmentation needs to know the upper body."""
        return bool(self.upper_body_ids)

    def oks_sigmas(self) -> np.ndarray:
        """The OKS sigmas, or ``DEFAULT_SIGMA`` for every joint when the data set gives none."""
        return self.sigmas if self.sigmas is not None else np.full(self.num_keypoints, DEFAULT_SIGMA)

    def side(self, joint: int) -> str:
        """``L``, ``R`` or ``M`` (middle) from the joint's name; pictures colour the two sides
        differently so that left/right mistakes show."""
        return _side_of(self.names[joint]) or "M"


def make_meta(name: str, names: Sequence[str], flip_pairs: Sequence[Sequence[int]],
              skeleton: Sequence[Sequence[int]], upper_body_ids: Sequence[int],
              joint_weights: Sequence[float] | None = None, sigmas: Sequence[float] | None = None,
              source: str = "") -> KeypointMeta:
    """A :class:`KeypointMeta` from plain lists of 0-based indices (weights default to 1 per joint)."""
    k = len(names)
    weights = np.ones(k, np.float32) if joint_weights is None else np.array(joint_weights, np.float32)
    weights.setflags(write=False)  # shared by every codec: nobody may change it in place
    sig = None
    if sigmas is not None:
        # x / 10 as pycocotools writes COCO's sigmas (.26 / 10): AP stays bit-identical to its default
        sig = np.round(np.asarray(sigmas, np.float64) * 10, 9) / 10.0
        sig.setflags(write=False)
    return KeypointMeta(name, tuple(names), tuple((int(a), int(b)) for a, b in flip_pairs),
                        tuple((int(a), int(b)) for a, b in skeleton), tuple(int(i) for i in upper_body_ids),
                        weights, sig, source or name)


# ----------------------------------------------------------------------------------- reading info

def load_keypoint_info(spec: Any, where: str = "data.keypoint_info") -> KeypointMeta:
    """``spec``: a shipped name (``coco``, ``crowdpose``: ``configs/datasets/keypoints/<name>.yaml``),
    a YAML file path, or an inline mapping (keys ``INFO_KEYS``; joints by name or 0-based index)."""
    if isinstance(spec, Mapping):
        return parse_keypoint_info(spec, f"{where} (inline)")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"{where} must be a name ({', '.join(shipped_names())}), a YAML file or a mapping; "
                          f"got {spec!r}")
    path = Path(spec) if spec.endswith((".yaml", ".yml")) else shipped("keypoints", f"{spec}.yaml")
    if not path.is_file():
        if path.parent == shipped("keypoints", ""):
            raise ConfigError(f"{where}: no keypoint info named {spec!r}; shipped: {', '.join(shipped_names())}, "
                              "or give a YAML file")
        raise ConfigError(f"{where}: keypoint info file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a keypoint info file must be a mapping with keypoints, flip_pairs, ...")
    where_file = str(path) if spec.endswith((".yaml", ".yml")) else f"keypoint info {spec!r}"
    return parse_keypoint_info(raw, where_file, default_name=path.stem)


def shipped_names() -> list[str]:
    return sorted(p.stem for p in shipped("keypoints", "").glob("*.yaml"))


def parse_keypoint_info(raw: Mapping[str, Any], where: str, default_name: str = "custom") -> KeypointMeta:
    """Check and convert one keypoint info mapping; every mistake is one line naming ``where``."""
    unknown = sorted(set(raw) - set(INFO_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(INFO_KEYS)}")
    names = raw.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}: keypoints must be a non-empty list of joint names, got {names!r}")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{where}: keypoint {dup!r} is listed twice")
    k = len(names)
    pairs = _pairs(raw.get("flip_pairs"), names, where, "flip_pairs") if "flip_pairs" in raw \
        else derive_flip_pairs(names)
    seen = [i for p in pairs for i in p]
    if len(seen) != len(set(seen)) or any(a == b for a, b in pairs):
        raise ConfigError(f"{where}: flip_pairs must pair distinct joints, each joint at most once; got {pairs}")
    skeleton = _pairs(raw.get("skeleton") or [], names, where, "skeleton")
    upper = [_index(j, names, where, "upper_body") for j in raw.get("upper_body") or []]
    return make_meta(str(raw.get("name") or default_name), names, pairs, skeleton, upper,
                     _per_joint(raw.get("joint_weights"), k, where, "joint_weights", positive=False),
                     _per_joint(raw.get("sigmas"), k, where, "sigmas", positive=True), where)


def _index(joint: Any, names: Sequence[str], where: str, key: str) -> int:
    """A joint given by name or 0-based index, as an index."""
    if isinstance(joint, bool):
        raise ConfigError(f"{where}: {key}: {joint!r} is not a joint name or index")
    if isinstance(joint, int):
        if not 0 <= joint < len(names):
            raise ConfigError(f"{where}: {key}: joint index {joint} is out of range 0..{len(names) - 1} "
                              f"({len(names)} keypoints)")
        return joint
    if isinstance(joint, str) and joint in names:
        return names.index(joint)
    raise ConfigError(f"{where}: {key}: {joint!r} is not one of the keypoints ({', '.join(names[:6])}, ...)")


def _pairs(value: Any, names: Sequence[str], where: str, key: str) -> list[tuple[int, int]]:
    if not isinstance(value, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        raise ConfigError(f"{where}: {key} must be a list of [a, b] joint pairs (names or 0-based indices), "
                          f"got {value!r}")
    return [(_index(a, names, where, key), _index(b, names, where, key)) for a, b in value]


def _per_joint(value: Any, k: int, where: str, key: str, positive: bool) -> Optional[list[float]]:
    if value is None:
        return None
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or len(value) != k:
        raise ConfigError(f"{where}: {key} must list one number per keypoint ({k}), got "
                          f"{len(value) if isinstance(value, list) else value!r}")
    if any(not np.isfinite(v) or (v <= 0 if positive else v < 0) for v in value):
        raise ConfigError(f"{where}: {key} must be finite numbers {'> 0' if positive else '>= 0'}, got {value}")
    return [float(v) for v in value]


# --------------------------------------------------------------------------- from a COCO file

_SIDE_WORDS = (("left", "right"), ("Left", "Right"), ("LEFT", "RIGHT"))
_SIDE_PREFIXES = (("l_", "r_"), ("L_", "R_"))
_SIDE_SUFFIXES = (("_l", "_r"), ("_L", "_R"))


def _side_of(name: str) -> Optional[str]:
    """``L`` or ``R`` from ``left``/``right`` anywhere in the name (any case), else an ``l_``/``r_``
    prefix or ``_l``/``_r`` suffix; None for a joint without a side."""
    for left, right in _SIDE_WORDS:
        if left in name or right in name:
            return "L" if left in name else "R"
    for group, test in ((_SIDE_PREFIXES, str.startswith), (_SIDE_SUFFIXES, str.endswith)):
        for left, right in group:
            if test(name, left) or test(name, right):
                return "L" if test(name, left) else "R"
    return None


def _mirror_name(name: str) -> Optional[str]:
    """The name of the same joint on the other side (see ``_side_of``), None for a joint without one."""
    side = _side_of(name)
    if side is None:
        return None
    for left, right in _SIDE_WORDS:
        if left in name or right in name:
            return name.replace(left, right) if side == "L" else name.replace(right, left)
    for left, right in _SIDE_PREFIXES:
        if name.startswith((left, right)):
            return (right if side == "L" else left) + name[len(left):]
    for left, right in _SIDE_SUFFIXES:
        if name.endswith((left, right)):
            return name[: -len(left)] + (right if side == "L" else left)
    return None


def derive_flip_pairs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Left/right pairs from the joint names; joints without a partner map to themselves."""
    pairs = []
    for i, name in enumerate(names):
        other = _mirror_name(name)
        if other is not None and other in names and names.index(other) > i:
            pairs.append((i, names.index(other)))
    return pairs


def from_categories(categories: Sequence[Mapping[str, Any]], source: str) -> KeypointMeta:
    """The metadata of a COCO-format file: the ``keypoints`` names and 1-based ``skeleton`` of its
    keypoint categories, which must all list the same joints (animal sets give one category per
    species). Flip pairs come from the names; no sigmas, no upper body, unit joint weights."""
    cats = [c for c in categories if isinstance(c, Mapping) and c.get("keypoints")]
    if not cats:
        raise DataError(f"{source}: no category lists 'keypoints'; give the joints with data.keypoint_info "
                        "(a shipped name such as coco, or a YAML file)")
    names = [str(n) for n in cats[0]["keypoints"]]
    for c in cats[1:]:
        if [str(n) for n in c["keypoints"]] != names:
            raise DataError(f"{source}: categories {cats[0].get('name', cats[0].get('id'))!r} and "
                            f"{c.get('name', c.get('id'))!r} list different keypoints; one model predicts one "
                            "skeleton: split the file, or keep the categories that share one")
    k = len(names)
    skeleton = []
    for pair in cats[0].get("skeleton") or []:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(v, int) and 1 <= v <= k for v in pair)):
            raise DataError(f"{source}: category skeleton entry {pair!r} is not a pair of 1-based joint numbers "
                            f"in 1..{k}")
        skeleton.append((pair[0] - 1, pair[1] - 1))
    if len(set(names)) != k:
        raise DataError(f"{source}: the category lists a keypoint name twice ({names})")
    return make_meta(str(cats[0].get("name") or "custom"), names, derive_flip_pairs(names), skeleton, [],
                     None, None, f"{source} (its category)")


def check_matches_file(meta: KeypointMeta, categories: Sequence[Mapping[str, Any]], source: str) -> None:
    """A file whose keypoint categories name other joints than the configured metadata is an error,
    never a silent run (a category without names only has to have the same count)."""
    for c in categories:
        if not isinstance(c, Mapping) or not c.get("keypoints"):
            continue
        listed = [str(n) for n in c["keypoints"]]
        if listed != list(meta.names):
            if len(listed) != meta.num_keypoints:
                differ = f"{len(listed)} keypoints in the file, {meta.num_keypoints} in {meta.source}"
            else:
                differ = next(f"joint {i}: {a!r} in the file, {b!r} in {meta.source}"
                              for i, (a, b) in enumerate(zip(listed, meta.names)) if a != b)
            raise DataError(f"{source}: category {c.get('name', c.get('id'))!r} does not match the configured "
                            f"keypoint info ({differ}); fix data.keypoint_info, or set it to null to take the "
                            "joints from the file")


#: ``data.format`` values: the annotation layout (and metric) of a keypoint data set
FORMATS = ("coco", "mpii")


@functools.lru_cache(maxsize=None)
def keypoint_meta(name: str) -> KeypointMeta:
    """The shipped metadata ``name`` (``coco``, ``mpii``, ...), read once per process."""
    return load_keypoint_info(name)


def coco_keypoints() -> KeypointMeta:
    """COCO's 17 joints: the default skeleton of code used without a task (the official models')."""
    return keypoint_meta("coco")
