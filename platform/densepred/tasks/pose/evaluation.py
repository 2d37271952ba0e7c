"""COCO keypoint evaluation following the official HRNet code (deep-high-resolution-net.pytorch,
``lib/dataset/coco.py::evaluate`` and ``lib/nms/nms.py``), with pycocotools' COCOeval as the
source of truth for the AP/AR numbers.

Pipeline used by :class:`CocoKeypointMetric` (same order as the official ``evaluate``):

1. group the per-person predictions by image;
2. :func:`rescore`: score = box score * mean of the keypoint confidences above ``in_vis_thre``;
3. :func:`oks_nms` (or :func:`soft_oks_nms`) per image with ``oks_thre``;
4. :func:`to_coco_results` then :func:`evaluate_keypoints` (COCOeval, ``iouType='keypoints'``).

COCOeval runs in pycocotools or, with ``backend`` ``faster`` (or ``auto`` when installed), in
faster-coco-eval (the ``fast-eval`` extra), whose C++ matching and accumulation give the same 10
stats: bit-identical on the test sets, else within about 1e-16, because pycocotools' precision is
``tp / (tp + fp + eps)`` and faster-coco-eval's ``tp / (tp + fp)`` (``tests/test_eval_backends.py``).
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import numbers
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from densepred.errors import ConfigError, DataError
from densepred.registry import METRICS

from .keypoint_meta import coco_keypoints

NUM_KEYPOINTS = 17  # COCO's: the default of results files read without a task

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_STAT_DESCRIPTIONS = {
    "AP": "Average Precision  OKS=0.50:0.95  area=all",
    "AP50": "Average Precision  OKS=0.50       area=all",
    "AP75": "Average Precision  OKS=0.75       area=all",
    "APm": "Average Precision  OKS=0.50:0.95  area=medium",
    "APl": "Average Precision  OKS=0.50:0.95  area=large",
    "AR": "Average Recall     OKS=0.50:0.95  area=all",
    "AR50": "Average Recall     OKS=0.50       area=all",
    "AR75": "Average Recall     OKS=0.75       area=all",
    "ARm": "Average Recall     OKS=0.50:0.95  area=medium",
    "ARl": "Average Recall     OKS=0.50:0.95  area=large",
}
_GT_ANN_KEYS = ("id", "image_id", "category_id", "keypoints", "bbox")  # area, iscrowd, num_keypoints: computed if absent
#: ``evaluation.eval_backend`` values: which COCOeval computes the stats (same numbers, see above)
EVAL_BACKENDS = ("auto", "pycocotools", "faster")
BACKEND_LABELS = {"pycocotools": "pycocotools", "faster": "faster-coco-eval"}


# --------------------------------------------------------------------------------------------
# OKS and NMS
# --------------------------------------------------------------------------------------------
def oks_iou(
    g: np.ndarray,
    d: np.ndarray,
    area_g: float,
    areas_d: np.ndarray,
    sigmas: np.ndarray | None = None,
    in_vis_thre: float | None = None,
) -> np.ndarray:
    """OKS between one pose ``g`` (K*3,) and N poses ``d`` (N, K*3), as the official NMS does.

    The scale is the mean of the two areas, ``(area_g + area_d) / 2``. With ``in_vis_thre``
    only the joints whose *detection* confidence exceeds it are averaged: the official code
    writes ``list(vg > t) and list(vd > t)``, which Python evaluates to the second list, and that
    behaviour is reproduced here. A row with no selected joint gets OKS 0.
    """
    sigmas = coco_keypoints().sigmas if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64).reshape(-1)
    d = np.asarray(d, dtype=np.float64).reshape(-1, g.size)
    areas_d = np.asarray(areas_d, dtype=np.float64).reshape(-1)
    if d.shape[0] == 0:
        return np.zeros((0,), dtype=np.float64)
    variances = (sigmas * 2) ** 2
    dx = d[:, 0::3] - g[0::3]
    dy = d[:, 1::3] - g[1::3]
    scale = (area_g + areas_d[:, None]) / 2 + np.spacing(1)
    e = (dx ** 2 + dy ** 2) / variances / scale / 2
    if in_vis_thre is None:
        return np.exp(-e).mean(axis=1)
    mask = d[:, 2::3] > in_vis_thre
    count = mask.sum(axis=1)
    total = np.where(mask, np.exp(-e), 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _stack_db(kpts_db: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.array([float(p["score"]) for p in kpts_db], dtype=np.float64)
    kpts = np.stack([np.asarray(p["keypoints"], dtype=np.float64).reshape(-1) for p in kpts_db])
    areas = np.array([float(p["area"]) for p in kpts_db], dtype=np.float64)
    return scores, kpts, areas


def oks_nms(
    kpts_db: list[dict],
    thresh: float,
    sigmas: np.ndarray | None = None,
    in_vis_thre: float | None = None,
) -> list[int]:
    """Greedy OKS NMS: visit poses by decreasing score, drop those whose OKS with a kept pose
    is above ``thresh``. Returns the kept indices into ``kpts_db``, highest score first."""
    if len(kpts_db) == 0:
        return []
    scores, kpts, areas = _stack_db(kpts_db)
    order = scores.argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def soft_oks_nms(
    kpts_db: list[dict],
    thresh: float,
    sigmas: np.ndarray | None = None,
    in_vis_thre: float | None = None,
    max_dets: int = 20,
) -> tuple[list[int], np.ndarray]:
    """Soft OKS NMS as in the official ``soft_oks_nms`` (gaussian variant).

    Repeatedly takes the best remaining pose; every other remaining pose has its score
    multiplied by ``exp(-oks**2 / thresh)`` (``thresh`` plays the role of the gaussian width)
    and the remainder is re-sorted. At most ``max_dets`` poses are kept (official: 20, the
    COCOeval keypoint ``maxDets``). Returns ``(keep, kept_scores)``: the kept indices in pick
    order and their decayed scores. The official code discards the decayed scores (it only uses
    them for the ordering); :func:`group_nms` writes them back onto the kept persons.
    """
    if len(kpts_db) == 0:
        return [], np.zeros((0,), dtype=np.float64)
    scores, kpts, areas = _stack_db(kpts_db)
    order = scores.argsort()[::-1]
    scores = scores[order]
    keep: list[int] = []
    kept_scores: list[float] = []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        keep.append(int(i))
        kept_scores.append(float(scores[0]))
        order = order[1:]
        scores = scores[1:] * np.exp(-(ovr ** 2) / thresh)
        tmp = scores.argsort()[::-1]
        order = order[tmp]
        scores = scores[tmp]
    return keep, np.asarray(kept_scores, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Rescoring, grouping, conversion
# --------------------------------------------------------------------------------------------
def rescore(persons: Iterable[dict], in_vis_thre: float = 0.2) -> list[dict]:
    """Official rescoring. Returns shallow copies with ``score`` replaced by
    ``box score * mean(keypoint confidences > in_vis_thre)`` (0 when no joint passes)."""
    out = []
    for p in persons:
        conf = np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)[:, 2]
        valid = conf[conf > in_vis_thre]
        kpt_score = float(valid.mean()) if valid.size else 0.0
        q = dict(p)
        q["score"] = kpt_score * float(p["score"])
        out.append(q)
    return out


def _image_key(image_id: Any) -> Any:
    return int(image_id) if isinstance(image_id, numbers.Integral) else image_id


def group_nms(
    persons: Iterable[dict],
    use_nms: bool = True,
    soft: bool = False,
    oks_thre: float = 0.9,
    in_vis_thre: float = 0.2,
    sigmas: np.ndarray | None = None,
) -> list[dict]:
    """Per image (first-appearance order): :func:`rescore`, then OKS NMS (or soft OKS NMS with
    the decayed scores written back) like the official ``evaluate``, with the data set's OKS
    ``sigmas`` (default COCO's). Returns the kept persons (copies; the inputs are not modified)."""
    by_image: OrderedDict[Any, list[dict]] = OrderedDict()
    for p in persons:
        by_image.setdefault(_image_key(p["image_id"]), []).append(p)
    kept: list[dict] = []
    for img_persons in by_image.values():
        img_persons = rescore(img_persons, in_vis_thre)
        if not use_nms:
            kept.extend(img_persons)
        elif soft:
            keep, new_scores = soft_oks_nms(img_persons, oks_thre, sigmas)
            for i, s in zip(keep, new_scores):
                q = dict(img_persons[i])
                q["score"] = float(s)
                kept.append(q)
        else:
            kept.extend(img_persons[i] for i in oks_nms(img_persons, oks_thre, sigmas))
    return kept


def to_coco_results(persons: Iterable[dict], category_id: int = 1) -> list[dict]:
    """COCO keypoint results: ``{image_id, category_id, keypoints: [x, y, c] * K, score}`` made
    of plain JSON types (no ``center``/``scale``/``area``; an extra ``bbox`` would make
    pycocotools treat the results as box detections). A person's own ``category_id`` (its box's)
    wins over ``category_id``."""
    results = []
    for p in persons:
        kpts = np.asarray(p["keypoints"], dtype=np.float64).reshape(-1)
        results.append({
            "image_id": _image_key(p["image_id"]),
            "category_id": int(p.get("category_id", category_id)),
            "keypoints": [float(v) for v in kpts],
            "score": float(p["score"]),
        })
    return results


# --------------------------------------------------------------------------------------------
# Loading and checking files
# --------------------------------------------------------------------------------------------
RESULTS_FILE = "keypoints_results.json"  # what `platform eval` writes: the file a results folder holds


def _read_json(path: str | Path, what: str, expected: str = "") -> Any:
    """The JSON in ``path``; one-line DataError for a missing file, a folder (``expected`` says
    what file to give instead), bad JSON or an unreadable file."""
    path = Path(path)
    if path.is_dir():
        inside = path / RESULTS_FILE
        hint = f" (this folder has {inside})" if what == "keypoint results" and inside.is_file() else ""
        raise DataError(f"{path}: is a folder, not a {what} file; give {expected or f'the {what} JSON file'}{hint}")
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found; check the path")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); fix or regenerate the {what} file"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read {what} file ({e})") from None


def _check_results(entries: Any, source: str, num_keypoints: int, category_id: int = 1) -> list[dict]:
    """Validate results and return clean copies with plain JSON types."""
    if not isinstance(entries, list):
        raise DataError(
            f"{source}: keypoint results must be a JSON list of objects, got {type(entries).__name__}"
        )
    out = []
    for i, r in enumerate(entries):
        if not isinstance(r, dict):
            raise DataError(f"{source}: result {i} is a {type(r).__name__}, expected an object")
        missing = [k for k in ("image_id", "keypoints", "score") if k not in r]
        if missing:
            raise DataError(f"{source}: result {i} lacks {', '.join(missing)}; each result needs image_id, keypoints, score")
        try:
            kpts = np.asarray(r["keypoints"], dtype=np.float64).reshape(-1)
            score = float(r["score"])
        except (TypeError, ValueError):
            raise DataError(f"{source}: result {i} has non-numeric keypoints or score") from None
        if kpts.size % 3 != 0 or kpts.size != 3 * num_keypoints:
            raise DataError(
                f"{source}: result {i} (image_id {r['image_id']}) has {kpts.size} keypoint values, "
                f"expected {3 * num_keypoints} (x, y, confidence for each of {num_keypoints} keypoints)"
            )
        if not (np.isfinite(kpts).all() and math.isfinite(score)):
            raise DataError(f"{source}: result {i} (image_id {r['image_id']}) has NaN/inf keypoints or score")
        out.append({
            "image_id": _image_key(r["image_id"]),
            "category_id": int(r.get("category_id", category_id)),
            "keypoints": [float(v) for v in kpts],
            "score": score,
        })
    return out


def load_results(path: str | Path, num_keypoints: int = NUM_KEYPOINTS) -> list[dict]:
    """Read and check a COCO keypoint results JSON file (list of ``{image_id, keypoints, score}``)."""
    data = _read_json(path, "keypoint results",
                      "a COCO keypoint results JSON file (a list of {image_id, keypoints, score}, "
                      f"e.g. {RESULTS_FILE} from platform eval)")
    return _check_results(data, str(path), num_keypoints)


def load_coco_gt(ann_file: str | Path) -> Any:
    """Load a COCO keypoint annotation file into a (silent) ``pycocotools.coco.COCO``."""
    from pycocotools.coco import COCO

    data = _read_json(ann_file, "COCO annotation")
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: a COCO annotation file must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_file}: no '{key}' list; this is not a COCO keypoint annotation file")
    kp_cats = [c for c in data["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if not kp_cats:
        raise DataError(
            f"{ann_file}: no category with 'keypoints' (e.g. person); use a person_keypoints_*.json file"
        )
    kp_cat_ids = {c.get("id") for c in kp_cats}
    filled = 0
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataError(f"{ann_file}: annotation {i} is not an object")
        if ann.get("category_id") not in kp_cat_ids:
            continue
        missing = [k for k in _GT_ANN_KEYS if k not in ann]
        if missing:
            raise DataError(
                f"{ann_file}: annotation {i} (id {ann.get('id')}) lacks {', '.join(missing)}; "
                f"keypoint annotations need {', '.join(_GT_ANN_KEYS)}"
            )
        filled += _fill_derived_fields(ann)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    #: annotations whose num_keypoints / area / iscrowd were computed (third-party files often lack them)
    coco.filled_annotations = filled
    return coco


def _fill_derived_fields(ann: dict) -> int:
    """Give ``ann`` the fields pycocotools needs that follow from the others: ``num_keypoints`` (the
    labelled joints), ``area`` (the box's, for files without masks) and ``iscrowd`` (0). Returns 1
    when something was added."""
    added = 0
    if "num_keypoints" not in ann:
        kpts = ann["keypoints"] if isinstance(ann["keypoints"], list) else []
        ann["num_keypoints"] = sum(1 for v in kpts[2::3] if isinstance(v, (int, float)) and v > 0)
        added = 1
    if "area" not in ann:
        box = ann["bbox"] if isinstance(ann["bbox"], list) and len(ann["bbox"]) == 4 else [0, 0, 0, 0]
        ann["area"] = float(box[2]) * float(box[3]) if all(isinstance(v, (int, float)) for v in box) else 0.0
        added = 1
    if "iscrowd" not in ann:
        ann["iscrowd"], added = 0, 1
    return added


# --------------------------------------------------------------------------------------------
# COCOeval
# --------------------------------------------------------------------------------------------
def _keypoint_categories(coco_gt: Any) -> list[dict]:
    return [c for c in coco_gt.dataset.get("categories", []) if c.get("keypoints")]


def _write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1 if isinstance(obj, dict) else None)


@functools.lru_cache(maxsize=1)
def faster_coco_eval_available() -> bool:
    """Whether faster-coco-eval (the ``fast-eval`` extra) can be imported."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """The COCOeval implementation that ``backend`` (one of :data:`EVAL_BACKENDS`) names:
    ``pycocotools`` or ``faster``. ``auto`` is ``faster`` when faster-coco-eval is installed."""
    if backend not in EVAL_BACKENDS:
        raise ConfigError(f"evaluation.eval_backend must be one of {', '.join(EVAL_BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "faster" if faster_coco_eval_available() else "pycocotools"
    if backend == "faster" and not faster_coco_eval_available():
        raise ConfigError("evaluation.eval_backend: faster needs the faster-coco-eval package; install it "
                          "(pip install -e '.[fast-eval]') or use auto or pycocotools")
    return backend


def _int_ids(coco_gt: Any) -> bool:
    """faster-coco-eval's C++ side keys images and annotations by integer ids (it even rewrites
    other image ids in place); pycocotools takes any hashable id."""
    def is_int(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    return (all(is_int(i) for i in coco_gt.imgs)
            and all(is_int(a["id"]) and is_int(a["image_id"]) for a in coco_gt.dataset["annotations"]))


def _stats_pycocotools(coco_gt: Any, results: list[dict], cat_ids: list[int], sigmas: np.ndarray) -> list[float]:
    from pycocotools.cocoeval import COCOeval

    coco_dt = coco_gt.loadRes(results)
    coco_eval = COCOeval(coco_gt, coco_dt, "keypoints")
    coco_eval.params.useSegm = None
    coco_eval.params.catIds = cat_ids
    coco_eval.params.kpt_oks_sigmas = sigmas
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return [float(v) for v in coco_eval.stats[: len(STAT_NAMES)]]


def _stats_faster(coco_gt: Any, results: list[dict], cat_ids: list[int], sigmas: np.ndarray) -> list[float]:
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster

    # The same annotation dicts as the pycocotools ground truth (no copy): both libraries only set
    # gt["ignore"] on them, to the same value (iscrowd, or no labelled keypoint).
    gt = FasterCOCO(coco_gt.dataset, print_function=print)
    coco_dt = gt.loadRes(results)
    coco_eval = COCOeval_faster(gt, coco_dt, "keypoints", print_function=print,
                                kpt_oks_sigmas=np.asarray(sigmas, dtype=np.float64))
    coco_eval.params.catIds = cat_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return [float(v) for v in coco_eval.stats[: len(STAT_NAMES)]]


def _cocoeval_stats(coco_gt: Any, results: list[dict], cat_ids: list[int], sigmas: np.ndarray,
                    backend: str, source: str) -> list[float]:
    """The 10 keypoint stats by ``backend`` (``auto`` falls back to pycocotools when the ids do not
    suit faster-coco-eval)."""
    name = resolve_backend(backend)
    if name == "faster" and not _int_ids(coco_gt):
        if backend == "faster":
            raise DataError(f"{source}: evaluation.eval_backend faster needs integer image and annotation "
                            "ids in the ground truth; use auto or pycocotools")
        name = "pycocotools"
    run = _stats_faster if name == "faster" else _stats_pycocotools
    return run(coco_gt, results, cat_ids, sigmas)


def evaluate_keypoints(
    coco_gt: Any,
    results: list[dict] | str | Path,
    out_json: Path | None = None,
    verbose: bool = False,
    sigmas: np.ndarray | None = None,
    backend: str = "auto",
) -> dict[str, float]:
    """Run COCOeval (``iouType='keypoints'``) and return the 10 stats (``STAT_NAMES``).

    ``coco_gt`` is a pycocotools COCO (or an annotation file path); ``results`` a list of COCO
    keypoint results or a results file path. Only the GT categories that have keypoints are
    evaluated, over all GT images (as the official code). Empty results give zeros and a warning.
    pycocotools' printing is captured and printed only when ``verbose``. ``sigmas`` (the data set's
    OKS sigmas) defaults to the COCO ones; it is required when the GT does not have 17 keypoints. ``backend`` is one of
    :data:`EVAL_BACKENDS` (same numbers; ``auto`` uses faster-coco-eval when it is installed).
    """
    resolve_backend(backend)  # a bad name fails before any work
    if isinstance(coco_gt, (str, Path)):
        coco_gt = load_coco_gt(coco_gt)
    cats = _keypoint_categories(coco_gt)
    if not cats:
        raise DataError("COCO ground truth has no category with keypoints; use a person_keypoints_*.json file")
    num_kpts = len(cats[0]["keypoints"])
    if sigmas is None:
        if num_kpts != NUM_KEYPOINTS:
            raise DataError(
                f"ground truth has {num_kpts} keypoints per person but the COCO OKS sigmas are for "
                f"{NUM_KEYPOINTS}; pass per-keypoint sigmas"
            )
        sigmas = coco_keypoints().sigmas
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.shape != (num_kpts,):
        raise DataError(f"{len(sigmas)} OKS sigmas for {num_kpts} keypoints per person in the ground truth; give "
                        "one sigma per keypoint (data.keypoint_info sigmas)")

    if isinstance(results, (str, Path)):
        source = str(results)
        results = load_results(results, num_kpts)
    else:
        source = "keypoint results"
        results = _check_results(list(results), source, num_kpts, int(cats[0]["id"]))

    if not results:
        warnings.warn(f"{source}: no keypoint results to evaluate; all COCO keypoint metrics are 0", stacklevel=2)
        stats = {name: 0.0 for name in STAT_NAMES}
    else:
        gt_ids = set(coco_gt.getImgIds())
        unknown = [r["image_id"] for r in results if r["image_id"] not in gt_ids]
        if unknown:
            raise DataError(
                f"{source}: {len(unknown)} result(s) have an image_id not in the ground truth "
                f"(e.g. {unknown[0]!r}); evaluate against the annotation file the predictions were made on"
            )
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            values = _cocoeval_stats(coco_gt, results, sorted(int(c["id"]) for c in cats), sigmas, backend, source)
        if verbose:
            print(buf.getvalue(), end="")
        stats = dict(zip(STAT_NAMES, values))
    if out_json is not None:
        _write_json(Path(out_json), stats)
    return stats


def format_table(stats: dict[str, float], title: str = "") -> str:
    """An aligned text table of the COCO keypoint stats, 3 decimals."""
    names = [n for n in STAT_NAMES if n in stats] + [n for n in stats if n not in STAT_NAMES]
    width = max(len(n) for n in names) if names else 4
    desc_w = max((len(_STAT_DESCRIPTIONS.get(n, "")) for n in names), default=0)
    lines = [title] if title else []
    header = f"{'name':<{width}}  {'':<{desc_w}}  value"
    lines += [header, "-" * len(header)]
    for n in names:
        lines.append(f"{n:<{width}}  {_STAT_DESCRIPTIONS.get(n, ''):<{desc_w}}  {float(stats[n]):.3f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Registered metric
# --------------------------------------------------------------------------------------------
@METRICS.register_module()
class CocoKeypointMetric:
    """COCO keypoint AP/AR of top-down predictions, official HRNet style.

    ``process`` takes per-person dicts: ``image_id`` (COCO image id), ``keypoints`` (K, 3)
    with (x, y, confidence) in image pixels, ``score`` (person box score), ``area`` (box area in
    pixels; the official code uses ``scale[0] * scale[1] * 200**2``), ``center`` and ``scale``
    (kept for reference, not evaluated). ``compute`` rescoring + OKS NMS + COCOeval (``backend``: one
    of :data:`EVAL_BACKENDS`).
    """

    def __init__(
        self,
        ann_file: str,
        use_nms: bool = True,
        soft_nms: bool = False,
        oks_thre: float = 0.9,
        in_vis_thre: float = 0.2,
        backend: str = "auto",
        sigmas: np.ndarray | None = None,
    ) -> None:
        resolve_backend(backend)  # a bad name fails here, not after the whole inference
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64)
        self.ann_file = str(ann_file)
        self.backend = backend
        self.use_nms = bool(use_nms)
        self.soft_nms = bool(soft_nms)
        self.oks_thre = float(oks_thre)
        self.in_vis_thre = float(in_vis_thre)
        self._coco_gt: Any = None
        self._persons: list[dict] = []

    @property
    def coco_gt(self) -> Any:
        """The ground truth, loaded on first use."""
        if self._coco_gt is None:
            self._coco_gt = load_coco_gt(self.ann_file)
        return self._coco_gt

    def reset(self) -> None:
        """Forget the accumulated predictions."""
        self._persons = []

    def process(self, persons: list[dict]) -> None:
        """Accumulate per-person predictions (see the class docstring for the dict keys)."""
        for i, p in enumerate(persons):
            missing = [k for k in ("image_id", "keypoints", "score", "area") if k not in p]
            if missing:
                raise ValueError(f"CocoKeypointMetric.process: person {i} lacks {', '.join(missing)}")
            kpts = np.array(p["keypoints"], dtype=np.float64, copy=True)
            if kpts.ndim != 2 or kpts.shape[1] != 3:
                raise ValueError(
                    f"CocoKeypointMetric.process: person {i} keypoints must have shape (K, 3), got {kpts.shape}"
                )
            item = {
                "image_id": _image_key(p["image_id"]),
                "keypoints": kpts,
                "score": float(p["score"]),
                "area": float(p["area"]),
            }
            if "category_id" in p:
                item["category_id"] = int(p["category_id"])
            for k in ("center", "scale"):
                if k in p:
                    item[k] = np.array(p[k], dtype=np.float64, copy=True)
            self._persons.append(item)

    def __len__(self) -> int:
        return len(self._persons)

    def compute(self, out_dir: Path | None = None) -> dict[str, float]:
        """Rescore + NMS + COCOeval. With ``out_dir`` writes ``keypoints_results.json`` (COCO
        results) and ``metrics.json`` (the 10 stats) there."""
        coco_gt = self.coco_gt
        cats = _keypoint_categories(coco_gt)
        kept = group_nms(
            self._persons, use_nms=self.use_nms, soft=self.soft_nms,
            oks_thre=self.oks_thre, in_vis_thre=self.in_vis_thre, sigmas=self.sigmas,
        )
        results = to_coco_results(kept, category_id=int(cats[0]["id"]) if cats else 1)
        out_json = None
        if out_dir is not None:
            out_dir = Path(out_dir)
            _write_json(out_dir / "keypoints_results.json", results)
            out_json = out_dir / "metrics.json"
        return evaluate_keypoints(coco_gt, results, out_json=out_json, backend=self.backend, sigmas=self.sigmas)
