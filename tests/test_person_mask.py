"""PersonMaskTask: the person mask as an extra target of the pose crops (aligned with the person,
flips included, without disturbing the pose samples), its metric, loss, head, pictures and recipe."""
from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import REPO, pose_demo_stride4
from densepred.config import load_config
from densepred.errors import PlatformError
from densepred.tasks.base import build_task
from densepred.tasks.person_mask.metric import PersonMaskIoU
from densepred.tasks.person_mask.task import PersonMaskBCE, PersonMaskTask
from densepred.tasks.person_mask.visualize import draw_mask, paste_mask
from densepred.tasks.pose.geometry import box_to_center_scale

RECIPE = REPO / "tasks" / "person_mask_demo.yaml"
POSE_RECIPE = REPO / "tasks" / "pose_demo.yaml"
FLIP_ONLY = {"data.augment.scale_factor": 0.0, "data.augment.rotation_prob": 0.0,
             "data.augment.half_body_prob": 0.0}


def _task(root, recipe=RECIPE, **overrides):
    return build_task(load_config(recipe, {"data_root": str(root), "data.loader_workers": 0,
                                           "data.val_batch_size": 4, **overrides}))


def _joint_hits(ds, index: int) -> tuple[int, int]:
    """(visible joints inside the crop on mask pixels > 0.5, visible joints inside the crop)."""
    sample, loaded = ds[index], ds.load(index)  # same seed, epoch and index: same augmentation
    mask = sample["mask"][0].numpy()
    h, w = mask.shape
    visible = loaded["joints_vis"][:, 0] > 0
    pts = loaded["joints"][visible, :2] * np.array([w, h]) / np.array(ds.input_size)
    inside = pts[(pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)].astype(int)
    return int((mask[inside[:, 1], inside[:, 0]] > 0.5).sum()), len(inside)


# ---------------------------------------------------------------- the crop target
@pytest.mark.parametrize("overrides", [{}, FLIP_ONLY], ids=["full_augmentation", "flips"])
def test_the_mask_target_lines_up_with_the_person(tiny_pose_demo, overrides):
    ds = _task(tiny_pose_demo, **overrides).build_dataset("train")
    hits = total = flipped = 0
    for epoch in range(2):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            h, n = _joint_hits(ds, i)
            hits, total = hits + h, total + n
            assert float(ds[i]["mask_weight"][0]) == 1.0  # every ground-truth person of the demo has a mask
            flipped += overrides == FLIP_ONLY and not np.allclose(ds.load(i)["center"], ds.records[i].center)
    # Occluded joints (labelled, but hidden behind another person) fall outside the visible mask;
    # observed ~93%. A mask that missed the flip or the crop would score far lower.
    assert total > 50 and hits / total > 0.8, (hits, total)
    if overrides == FLIP_ONLY:
        assert flipped > 0


def test_extra_targets_leave_the_pose_samples_unchanged(tiny_pose_demo):
    # the pose member of tasks/multitask_demo.yaml: the stride-4 recipe beside the stride-4 masks
    pose = _task(tiny_pose_demo, POSE_RECIPE, **pose_demo_stride4([24, 32]))
    mask = _task(tiny_pose_demo)
    plain = pose.build_dataset("train")
    with_mask = pose.build_dataset("train", extra_targets=mask.extra_targets("train"))
    own = mask.build_dataset("train")
    for epoch in (0, 1):
        for ds in (plain, with_mask, own):
            ds.set_epoch(epoch)
        for i in range(0, len(plain), 3):
            a, b, c = plain[i], with_mask[i], own[i]
            assert set(b) == set(a) | {"mask", "mask_weight"} and "mask" not in a
            for key in ("image", "target", "target_weight", "center", "scale"):
                assert torch.equal(a[key], b[key]) and torch.equal(a[key], c[key]), key
            assert a["rotation"] == b["rotation"] == c["rotation"]
            assert torch.equal(b["mask"], c["mask"])
    assert pose.shared_input_key() == mask.shared_input_key()
    assert pose.head_names == ("pose",) and mask.head_names == ("mask",) and pose.extra_targets("train") == ()


def test_val_uses_ground_truth_boxes_with_annotation_ids(tiny_pose_demo):
    task = _task(tiny_pose_demo)
    assert task.cfg.get("bbox_file")  # inherited from the pose demo, and ignored for masks
    ds = task.build_dataset("val")
    assert ds.bbox_file is None
    anns = json.loads(task.ann_file("val").read_text())["annotations"]
    persons = {a["id"] for a in anns if not a["iscrowd"] and max(a["keypoints"]) > 0}
    assert sorted(r.ann_id for r in ds.records) == sorted(persons)
    again = task.build_dataset("val")  # from the index cache this time: the ids survive it
    assert again.index_source == "cache" and [r.ann_id for r in again.records] == [r.ann_id for r in ds.records]
    # The pose task's detected boxes have no annotation, so a mask target gives them zero weight.
    pose = _task(tiny_pose_demo, POSE_RECIPE)
    detected = pose.build_dataset("val", extra_targets=task.extra_targets("val"))
    assert all(r.ann_id == -1 for r in detected.records)
    sample = detected[0]
    assert float(sample["mask_weight"][0]) == 0.0 and float(sample["mask"].sum()) == 0.0


# ---------------------------------------------------------------- metric and evaluation
class OracleModel(nn.Module):
    """Returns the ground-truth mask (as confident logits) of every crop it has been shown."""

    def __init__(self, ds):
        super().__init__()
        self.table: dict[str, torch.Tensor] = {}
        for i in range(len(ds)):
            s = ds[i]
            for image, mask in ((s["image"], s["mask"]), (s["image"].flip(-1), s["mask"].flip(-1))):
                self.table[self._key(image)] = (mask > 0.5).float() * 20 - 10

    @staticmethod
    def _key(image: torch.Tensor) -> str:
        return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask": torch.stack([self.table[self._key(img)] for img in x])}


class BackgroundModel(nn.Module):
    def __init__(self, h: int, w: int):
        super().__init__()
        self.size = (h, w)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask": torch.full((len(x), 1, *self.size), -10.0)}


def test_metric_scores_perfect_and_background_predictions():
    target = np.zeros((3, 1, 8, 6), np.float32)
    target[0, 0, 2:6, 1:4] = 1.0
    target[1, 0, :, :] = 0.7
    weight = np.array([1.0, 1.0, 0.0])
    metric = PersonMaskIoU()
    assert np.allclose(metric.process(target, target, weight)[:2], 1.0)
    assert metric.compute() == {"mIoU": 1.0, "pixel_IoU": 1.0, "persons": 2.0}
    metric.reset()
    ious = metric.process(np.zeros_like(target), target, weight)
    assert ious[:2].tolist() == [0.0, 0.0] and np.isnan(ious[2])  # weight 0: skipped
    assert metric.compute()["mIoU"] == 0.0 and metric.compute()["pixel_IoU"] == 0.0
    empty = PersonMaskIoU()
    empty.process(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.ones(1))  # nothing to find, nothing found
    assert empty.compute()["mIoU"] == 1.0


def test_evaluate_scores_an_oracle_1_and_background_0(tiny_pose_demo, tmp_path):
    task = _task(tiny_pose_demo)
    assert task.eval_cfg.flip_test
    ds = task.val_dataset()
    assert all(float(ds[i]["mask"].max()) > 0.5 for i in range(len(ds)))  # every person has a mask
    perfect = task.evaluate(OracleModel(ds), tmp_path / "oracle", torch.device("cpu"))
    assert perfect["mIoU"] == 1.0 and perfect["pixel_IoU"] == 1.0 and perfect["persons"] == len(ds)
    assert json.loads((tmp_path / "oracle" / "metrics.json").read_text())["mIoU"] == 1.0
    assert list((tmp_path / "oracle" / "vis").glob("*.jpg"))
    w, h = task.data.heatmap_size
    background = task.evaluate(BackgroundModel(h, w), None, torch.device("cpu"))
    assert background["mIoU"] == 0.0 and background["pixel_IoU"] == 0.0
    assert "mIoU" in task.format_metrics(background) and task.primary_metric in task.metric_names
    with pytest.raises(PlatformError, match="--checkpoint"):
        task.evaluate_file(tmp_path / "masks.json")


# ---------------------------------------------------------------- loss and training
def test_loss_weights_each_sample():
    logits = torch.randn(3, 1, 4, 4)
    target = (torch.rand(3, 1, 4, 4) > 0.5).float()
    weight = torch.tensor([[1.0], [0.0], [2.0]])
    per_sample = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((1, 2, 3))
    expected = (per_sample * weight[:, 0]).mean()
    torch.testing.assert_close(PersonMaskBCE()(logits.half(), target, weight), expected, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(PersonMaskBCE()(logits, target, weight), expected)


@pytest.fixture
def one_thread():
    """Training steps on one thread: on busy shared cores, torch's thread pool can be 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loss_decreases_without_ray(tiny_pose_demo, one_thread):
    torch.manual_seed(0)
    task = _task(tiny_pose_demo)
    model = task.build_model().train()
    loader = torch.utils.data.DataLoader(task.build_dataset("train"), batch_size=4, shuffle=False,
                                         num_workers=0, collate_fn=task.collate)
    batches = list(itertools.islice(loader, 2))
    assert batches[0]["mask"].shape == (4, 1, 32, 24)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(task.cfg["optimizer"]["lr"]))
    losses = []
    for step in range(20):
        batch = batches[step % len(batches)]
        loss = task.loss(model(batch["image"]), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    # Observed: from log(2) = 0.693 (zero logits) down smoothly to ~0.575 (-17%) after 20 steps.
    assert sum(losses[-2:]) < 0.9 * sum(losses[:2]), losses


# ---------------------------------------------------------------- pictures, head, recipe
@pytest.mark.parametrize("udp", [False, True])
def test_paste_mask_of_a_full_crop_covers_the_person_box(udp):
    image_hw, box = (200, 300), (100.0, 50.0, 60.0, 120.0)
    center, scale = box_to_center_scale(*box, aspect_ratio=96 / 128)
    pasted = paste_mask(np.ones((32, 24), np.float32), center, scale, (96, 128), image_hw, udp=udp)
    assert pasted.shape == image_hw and pasted.dtype == np.float32
    x, y, w, h = (int(v) for v in box)
    assert (pasted[y:y + h, x:x + w] > 0.5).all()
    # The crop's extent (the box widened to the crop's aspect ratio, plus 25%) is filled, give or take
    # the bilinear fade over one mask pixel (~5 image pixels here), and nothing lands beyond it.
    (x1, y1), (x2, y2) = np.round(center - scale * 100).astype(int), np.round(center + scale * 100).astype(int)
    assert 0 < x1 < x < x + w < x2 < image_hw[1] and 0 < y1 < y < y + h < y2 < image_hw[0]
    assert pasted[y1 + 4:y2 - 3, x1 + 4:x2 - 3].min() > 0.99
    outside = np.ones(image_hw, bool)
    outside[y1 - 4:y2 + 5, x1 - 4:x2 + 5] = False
    assert pasted[outside].max() == 0
    drawn = draw_mask(np.zeros((*image_hw, 3), np.uint8), pasted, (255, 0, 0))
    assert drawn[110, 130, 0] > 100 and drawn[5, 5].max() == 0


def test_mask_head_parameters_live_under_mask_layer():
    task = build_task(load_config(RECIPE))
    model = task.build_model()
    head_keys = [k for k in model.state_dict() if k.startswith("heads.")]
    assert head_keys and all(k.startswith("heads.mask.mask_layer.") for k in head_keys)
    # With every branch (no aggregation) the head concatenates them at the first one's resolution.
    several = build_task(load_config(RECIPE, {"model.backbone.aggregation": None})).build_model()
    with torch.no_grad():
        assert several(torch.zeros(1, 3, 128, 96))["mask"].shape == (1, 1, 32, 24)


def test_recipe_loads_and_builds():
    cfg = load_config(RECIPE)
    assert cfg["task"] == {"type": "PersonMaskTask", "loss": {"type": "PersonMaskBCE"}}
    assert list(cfg["model"]["heads"]) == ["mask"] and cfg["evaluation"]["flip_test"] is True
    task = build_task(cfg)
    assert isinstance(task, PersonMaskTask) and task.primary_metric == "mIoU"
    assert task.metric_names == ("mIoU", "pixel_IoU")
    with torch.no_grad():
        out = task.build_model().eval()(torch.zeros(1, 3, *task.cost_input_size()))
    assert set(out) == {"mask"} and out["mask"].shape == (1, 1, 32, 24)


def test_browse_and_predict_write_pictures_and_rle_masks(tiny_pose_demo, tmp_path):
    task = _task(tiny_pose_demo)
    assert task.browse("train", tmp_path / "browse", limit=2) == 2
    with np.load(sorted((tmp_path / "browse").glob("*.npz"))[0]) as z:
        assert z["image"].shape == (128, 96, 3) and z["mask"].shape == (128, 96) and z["mask"].max() == 255
    image = sorted((tiny_pose_demo / "images" / "val2017").glob("*.jpg"))[0]
    model = task.build_model()
    summary = task.predict(model, str(image), tmp_path / "pred", detector="whole")
    assert summary["persons"] == 1
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    from pycocotools import mask as mask_utils

    rle = results[0]["segmentation"]
    assert mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).shape == tuple(rle["size"])
    assert results[0]["image"] == image.name and len(results[0]["bbox"]) == 4
    assert (tmp_path / "pred" / "vis" / f"{image.stem}.jpg").is_file()
