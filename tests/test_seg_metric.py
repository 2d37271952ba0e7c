"""Cityscapes mIoU: agreement with cityscapesscripts' evaluator on a tiny fake gtFine tree."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from densepred.errors import DataError
from densepred.registry import METRICS, build
from densepred.tasks.segmentation import labels as L
from densepred.tasks.segmentation.metric import (
    CityscapesMIoU,
    ConfusionMatrix,
    evaluate_prediction_folder,
    match_predictions,
)

H, W = 64, 128
FRAMES = [("frankfurt", "000000", "000294"), ("frankfurt", "000001", "000538"), ("lindau", "000000", "000019")]
VOID_IDS = [0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30]


def _gt_image(rng: np.random.Generator, k: int) -> np.ndarray:
    """Blocks of every labelId 0..33 plus random rectangles; 'train' (31) never appears in GT."""
    ids = np.array([i for i in range(34) if i != 31], dtype=np.uint8)
    small = rng.choice(ids, size=(8, 16)).astype(np.uint8)
    small.ravel()[: len(ids)] = np.roll(ids, k)  # every id (except 31) is present in each image
    gt = cv2.resize(small, (W, H), interpolation=cv2.INTER_NEAREST)
    for _ in range(6):
        y, x = int(rng.integers(0, H - 8)), int(rng.integers(0, W - 8))
        gt[y:y + int(rng.integers(3, 12)), x:x + int(rng.integers(3, 20))] = rng.choice(ids)
    return gt


def _pred_image(rng: np.random.Generator, gt: np.ndarray, k: int) -> np.ndarray:
    pred = gt.copy()
    if k == 0:
        return pred  # one perfect prediction
    noise = rng.random(gt.shape)
    pred[noise < 0.15] = rng.choice(np.arange(34), size=int((noise < 0.15).sum())).astype(np.uint8)
    pred[(noise >= 0.15) & (noise < 0.22)] = rng.choice(VOID_IDS)  # predicted void ids
    pred[5:9, 10:30] = 31  # 'train' predicted where GT has other classes (and void)
    pred[:, -6:] = 17  # a band of 'pole'
    pred[pred == 33] = 32  # bicycle only predicted in the perfect image
    return pred


@pytest.fixture(scope="module")
def fake_cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cs")
    rng = np.random.default_rng(3)
    gt_dir = root / "gtFine" / "val"
    pred_dir = root / "results"
    gts, preds = [], []
    for k, (city, seq, frame) in enumerate(FRAMES):
        (gt_dir / city).mkdir(parents=True, exist_ok=True)
        sub = pred_dir / city if k < 2 else pred_dir  # predictions are searched recursively
        sub.mkdir(parents=True, exist_ok=True)
        gt = _gt_image(rng, k)
        pred = _pred_image(rng, gt, k)
        gt_path = gt_dir / city / f"{city}_{seq}_{frame}_gtFine_labelIds.png"
        pred_path = sub / f"{city}_{seq}_{frame}_leftImg8bit.png"
        assert cv2.imwrite(str(gt_path), gt) and cv2.imwrite(str(pred_path), pred)
        gts.append(gt)
        preds.append(pred)
    (pred_dir / "README.txt").write_text("non-PNG files are skipped\n")
    return {"root": root, "gt_dir": gt_dir, "pred_dir": pred_dir, "gts": gts, "preds": preds}


def _cityscapes_reference(pred_dir: Path, gt_dir: Path) -> dict:
    """Run cityscapesscripts' own evaluator on the folder, set up as its main() would."""
    if not hasattr(np, "in1d"):  # removed in numpy 2.4; only used by instance-level / pixel acc.
        np.in1d = np.isin  # test-only shim
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs

    args = copy.copy(cs.args)
    args.groundTruthSearch = str(gt_dir / "*" / "*_gtFine_labelIds.png")
    args.predictionPath = str(pred_dir)
    args.predictionWalk = None
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    args.bold = args.nocol = ""
    gt_list = sorted(str(p) for p in gt_dir.glob("*/*_gtFine_labelIds.png"))
    pred_list = [cs.getPrediction(args, g) for g in gt_list]
    return cs.evaluateImgLists(pred_list, gt_list, args)


def _assert_same(ours: dict, ref: dict) -> None:
    assert math.isclose(ours["mIoU"], ref["averageScoreClasses"], rel_tol=0, abs_tol=1e-6)
    for name in L.CLASS_NAMES:
        a, b = ours[f"IoU.{name}"], ref["classScores"][name]
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=0, abs_tol=1e-6), (name, a, b)


def test_label_tables_follow_cityscapesscripts():
    from cityscapesscripts.helpers.labels import id2label, trainId2label

    assert L.NUM_CLASSES == len(L.CLASS_NAMES) == len(L.PALETTE) == 19
    assert L.CLASS_NAMES[0] == "road" and L.CLASS_NAMES[-1] == "bicycle"
    for t, name in enumerate(L.CLASS_NAMES):
        assert trainId2label[t].name == name and tuple(trainId2label[t].color) == L.PALETTE[t]
        assert L.TRAIN_ID_TO_LABEL_ID[t] == trainId2label[t].id
    for i in range(256):
        if i in id2label:
            expect = id2label[i].trainId if 0 <= id2label[i].trainId < 255 else 255
            assert L.LABEL_ID_TO_TRAIN_ID[i] == expect
        else:
            assert not L.KNOWN_LABEL_IDS[i]
    assert L.LABEL_ID_TO_TRAIN_ID.dtype == np.uint8 and L.TRAIN_ID_TO_LABEL_ID[255] == 0
    ids = np.arange(34, dtype=np.uint8).reshape(2, 17)
    train = L.label_ids_to_train_ids(ids)
    back = L.train_ids_to_label_ids(train)
    keep = train != 255
    assert (back[keep] == ids[keep]).all() and (back[~keep] == 0).all()
    assert (L.label_ids_to_train_ids(ids.astype(np.uint16)) == train).all()
    with pytest.raises(DataError, match=r"some/file\.png.*40, 200"):
        L.label_ids_to_train_ids(np.array([[7, 40, 200, 40]], np.uint8), "some/file.png")
    with pytest.raises(DataError, match="300"):
        L.label_ids_to_train_ids(np.array([7, 300], np.int32), "x.png")
    with pytest.raises(DataError):
        L.train_ids_to_label_ids(np.array([0, 19]))


def test_matches_cityscapesscripts(fake_cityscapes, tmp_path):
    d = fake_cityscapes
    ref = _cityscapes_reference(d["pred_dir"], d["gt_dir"])
    ours = evaluate_prediction_folder(d["pred_dir"], d["gt_dir"], num_workers=2, out_dir=tmp_path)
    _assert_same(ours, ref)
    assert ours["num_images"] == 3
    # 'train' has no GT pixel but false positives: IoU 0 (not NaN), counted in the mean
    assert ours["IoU.train"] == 0.0 == ref["classScores"]["train"]
    assert 0.3 < ours["mIoU"] < 1.0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mIoU"] == pytest.approx(ours["mIoU"])
    # data_root + split, single-threaded, gives the same numbers
    same = evaluate_prediction_folder(d["pred_dir"], data_root=d["root"], split="val", num_workers=1)
    assert same == ours

    # the registered metric on trainIds (void predictions -> 255) gives the same numbers too
    metric = build(METRICS, {"type": "CityscapesMIoU"})
    assert isinstance(metric, CityscapesMIoU)
    for pred, gt in zip(d["preds"], d["gts"]):
        metric.process(L.label_ids_to_train_ids(pred), L.label_ids_to_train_ids(gt))
    got = metric.compute(out_dir=tmp_path / "m")
    _assert_same(got, ref)
    assert got["aAcc"] == pytest.approx(ours["aAcc"])
    assert (tmp_path / "m" / "metrics.json").is_file()
    assert "Score Average" in metric.table()
    metric.reset()
    assert math.isnan(metric.compute()["mIoU"])


def test_absent_class_is_nan_and_perfect_is_one(fake_cityscapes, tmp_path):
    d = fake_cityscapes
    pred_dir = tmp_path / "perfect"
    pred_dir.mkdir()
    for (city, seq, frame), gt in zip(FRAMES, d["gts"]):
        cv2.imwrite(str(pred_dir / f"{city}_{seq}_{frame}_pred.png"), gt)
    ours = evaluate_prediction_folder(pred_dir, d["gt_dir"])
    ref = _cityscapes_reference(pred_dir, d["gt_dir"])
    _assert_same(ours, ref)
    assert math.isnan(ours["IoU.train"])  # no GT, never predicted on evaluated GT
    assert ours["mIoU"] == 1.0 and ours["aAcc"] == 1.0


def test_confusion_matrix_rules():
    cm = ConfusionMatrix(3, 255)
    gt = np.array([0, 0, 0, 1, 1, 255, 255, 2])
    pred = np.array([0, 1, 255, 1, 1, 2, 0, 1])
    cm.update(pred, gt)
    # class 0: tp 1, fn 2 (one predicted ignore), fp 0 (pred 0 on ignored GT does not count)
    # class 1: tp 2, fn 0, fp 2 ; class 2: tp 0, fn 1, fp 0 (pred 2 on ignored GT not counted)
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 4, 0.0])
    assert cm.pixel_accuracy() == pytest.approx(3 / 6)
    other = ConfusionMatrix(3, 255)
    other.update(np.array([[2]]), np.array([[2]]))
    cm.merge(other)
    np.testing.assert_allclose(cm.iou(), [1 / 3, 2 / 4, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    empty = ConfusionMatrix(3)
    empty.update(np.array([1]), np.array([0]))
    iou = empty.iou()
    assert iou[0] == 0.0 and iou[1] == 0.0 and math.isnan(iou[2])
    with pytest.raises(ValueError):
        cm.update(np.zeros((2, 2), int), np.full((2, 2), 7))


def _copy_preds(d, dest: Path) -> list[Path]:
    dest.mkdir()
    out = []
    for (city, seq, frame), pred in zip(FRAMES, d["preds"]):
        p = dest / f"{city}_{seq}_{frame}_leftImg8bit.png"
        cv2.imwrite(str(p), pred)
        out.append(p)
    return out


def test_errors_name_the_file(fake_cityscapes, tmp_path):
    d = fake_cityscapes
    # missing prediction: names the GT file
    paths = _copy_preds(d, tmp_path / "missing")
    paths[1].unlink()
    with pytest.raises(DataError, match="frankfurt_000001_000538_gtFine_labelIds.png: no prediction"):
        evaluate_prediction_folder(tmp_path / "missing", d["gt_dir"])
    # prediction of another size
    paths = _copy_preds(d, tmp_path / "size")
    cv2.imwrite(str(paths[2]), np.zeros((H // 2, W // 2), np.uint8) + 7)
    with pytest.raises(DataError, match=r"lindau_000000_000019_leftImg8bit\.png: prediction is 64x32"):
        evaluate_prediction_folder(tmp_path / "size", d["gt_dir"], num_workers=2)
    # unknown label ids in a prediction (255 and 40 are not Cityscapes labelIds)
    paths = _copy_preds(d, tmp_path / "unknown")
    bad = d["preds"][0].copy()
    bad[0, 0], bad[1, 1] = 255, 40
    cv2.imwrite(str(paths[0]), bad)
    with pytest.raises(DataError, match=r"frankfurt_000000_000294_leftImg8bit\.png: unknown .* 40, 255"):
        evaluate_prediction_folder(tmp_path / "unknown", d["gt_dir"])
    # non-Cityscapes file name
    _copy_preds(d, tmp_path / "name")
    cv2.imwrite(str(tmp_path / "name" / "prediction_1.png"), d["preds"][0])
    with pytest.raises(DataError, match=r"prediction_1\.png: not a Cityscapes file name"):
        evaluate_prediction_folder(tmp_path / "name", d["gt_dir"])
    # two predictions for one image
    _copy_preds(d, tmp_path / "twice")
    cv2.imwrite(str(tmp_path / "twice" / "lindau_000000_000019_color.png"), d["preds"][2])
    with pytest.raises(DataError, match="second prediction for lindau_000000_000019"):
        match_predictions(tmp_path / "twice", d["gt_dir"])
    # a multi-channel prediction
    paths = _copy_preds(d, tmp_path / "rgb")
    cv2.imwrite(str(paths[0]), np.dstack([d["preds"][0]] * 3))
    with pytest.raises(DataError, match=r"frankfurt_000000_000294_leftImg8bit\.png: image has 3 channels"):
        evaluate_prediction_folder(tmp_path / "rgb", d["gt_dir"])
    # unknown id in the ground truth names the GT file
    gt_dir = tmp_path / "gt" / "frankfurt"
    gt_dir.mkdir(parents=True)
    g = d["gts"][0].copy()
    g[3, 3] = 34
    cv2.imwrite(str(gt_dir / "frankfurt_000000_000294_gtFine_labelIds.png"), g)
    with pytest.raises(DataError, match=r"frankfurt_000000_000294_gtFine_labelIds\.png: unknown .* 34"):
        evaluate_prediction_folder(d["pred_dir"], tmp_path / "gt")
    with pytest.raises(DataError, match="not found"):
        evaluate_prediction_folder(tmp_path / "nope", d["gt_dir"])


def test_palette_png_prediction_uses_indices(fake_cityscapes, tmp_path):
    from PIL import Image

    d = fake_cityscapes
    pred_dir = tmp_path / "palette"
    _copy_preds(d, pred_dir)
    pred = d["preds"][0]
    im = Image.frombytes("P", (pred.shape[1], pred.shape[0]), pred.tobytes())  # indices = labelIds
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(pred_dir / f"{'_'.join(FRAMES[0])}_leftImg8bit.png")
    ours = evaluate_prediction_folder(pred_dir, d["gt_dir"])
    _assert_same(ours, _cityscapes_reference(pred_dir, d["gt_dir"]))
