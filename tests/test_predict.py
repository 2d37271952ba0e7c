"""`platform predict` on real files: the synthetic demo sets, images, folders with bad files, videos
written with cv2.VideoWriter. Models are randomly initialised (nothing is trained); the pose model's
last layer is set so every keypoint has confidence 0.5, which makes --kpt-thr testable."""
from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import REPO
from densepred import build_model, load_config, save_checkpoint
from densepred.cli import main
from densepred.frames import header_size

POSE_TASK = str(REPO / "tasks" / "pose_demo.yaml")
SEG_TASK = str(REPO / "tasks" / "seg_demo.yaml")
DETECTIONS = Path("person_detection_results") / "COCO_val2017_detections_AP_H_56_person.json"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pose_root(tmp_path_factory) -> Path:
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = tmp_path_factory.mktemp("predict_pose") / "coco"
    make_pose_demo(root, num_train_images=1, num_val_images=12, seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory) -> Path:
    from densepred.tasks.segmentation.demo_data import make_seg_demo

    root = tmp_path_factory.mktemp("predict_seg") / "cityscapes"
    make_seg_demo(root, num_train=1, num_val=3, image_size=(256, 128), seed=0, progress=False)
    return root


@pytest.fixture(scope="module")
def pose_ckpt(pose_root, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_config(POSE_TASK, [f"data_root={pose_root}"]))
    with torch.no_grad():  # heatmaps 0.5 everywhere: every keypoint has confidence 0.5, at the crop's corner
        model.heads.pose.final_layer.weight.zero_()
        model.heads.pose.final_layer.bias.fill_(0.5)
    return save_checkpoint(tmp_path_factory.mktemp("predict_ckpt") / "pose.pth", model)


@pytest.fixture(scope="module")
def seg_ckpt(seg_root, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(load_config(SEG_TASK, [f"data_root={seg_root}"]))
    return save_checkpoint(tmp_path_factory.mktemp("predict_ckpt") / "seg.pth", model)


def val_images(root: Path) -> list[Path]:
    return sorted((root / "images" / "val2017").glob("*.jpg"))


def folder_of(files: list[Path], dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, dst / f.name)
    return dst


def pose(root: Path, ckpt: Path, source: Path, out: Path, *extra: str) -> int:
    return main(["predict", POSE_TASK, "--set", f"data_root={root}", "--checkpoint", str(ckpt),
                 "--input", str(source), "--out", str(out), *extra])


def write_video(path: Path, frames: list[np.ndarray], fps: float, fourcc: str = "mp4v") -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        writer.write(cv2.resize(f, (w, h)))
    writer.release()
    return path


def read_json(path: Path):
    return json.loads(path.read_text())


def iou(a, b) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ----------------------------------------------------------------------------- pose: boxes

def test_hog_finds_people_on_demo_val_images(pose_root, pose_ckpt, tmp_path, capsys):
    folder = folder_of(val_images(pose_root), tmp_path / "imgs")
    cv2.imwrite(str(folder / "zz_blank.png"), np.full((150, 200, 3), 128, np.uint8))  # nobody there
    cv2.imwrite(str(folder / "zz_tiny.png"), np.full((10, 12, 3), 200, np.uint8))  # smaller than HOG's window
    assert pose(pose_root, pose_ckpt, folder, tmp_path / "out") == 0
    stdout = capsys.readouterr().out
    assert stdout.count("note: no --boxes: OpenCV's HOG people detector proposes the person boxes") == 1
    assert re.search(r"predicted 13/14: zz_blank\.png: 1 person\(s\) \(boxes: whole-image\); HOG found nobody", stdout)

    boxes = read_json(tmp_path / "out" / "boxes.json")
    results = read_json(tmp_path / "out" / "results.json")
    assert len(results) == len(boxes) > 0
    hog = [b for b in boxes if b["source"] == "hog"]
    assert all(0 <= b["score"] < 1 for b in hog)
    # The detector finds real people: its boxes overlap ground-truth persons in most images.
    gt = read_json(pose_root / "annotations" / "person_keypoints_val2017.json")
    truth: dict[int, list] = {}
    for a in gt["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            truth.setdefault(a["image_id"], []).append(a["bbox"])
    found = {b["image_id"] for b in hog if any(iou(b["bbox"], t) > 0.3 for t in truth.get(b["image_id"], []))}
    assert len(found) >= 6, f"HOG matched a person in only {len(found)} of 12 images"
    assert {b["image_id"] for b in boxes if b["source"] == "whole-image"} >= {"zz_blank", "zz_tiny"}
    # Pictures show the boxes: they differ from the input images.
    first = sorted(found)[0]
    name = read_json(tmp_path / "out" / "images.json")[str(first)]
    drawn = cv2.imread(str(tmp_path / "out" / "vis" / (Path(name).stem + ".jpg")))
    plain = cv2.imread(str(folder / name))
    assert np.abs(drawn.astype(int) - plain.astype(int)).max() > 100
    assert len(list((tmp_path / "out" / "vis").glob("*.jpg"))) == 14


def test_det_thr_and_config_threshold_drop_low_score_boxes(pose_root, pose_ckpt, tmp_path, capsys):
    dets = read_json(pose_root / DETECTIONS)
    by_image: dict[int, list[float]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d["score"])
    images = [p for p in val_images(pose_root) if int(p.stem) in by_image][:5]
    folder = folder_of(images, tmp_path / "imgs")
    scores = [s for p in images for s in by_image[int(p.stem)]]
    above = sum(s >= 0.5 for s in scores)
    assert 0 < above < len(scores), "the demo detections should have scores on both sides of 0.5"
    boxes = ["--boxes", str(pose_root / DETECTIONS)]

    runs = {"cli": ["--det-thr", "0.5"], "config": ["--set", "data.det_score_thr=0.5"],
            "override": ["--set", "data.det_score_thr=0.99", "--det-thr", "0"]}
    for name, extra in runs.items():
        assert pose(pose_root, pose_ckpt, folder, tmp_path / name, *boxes, *extra) == 0
    capsys.readouterr()
    assert len(read_json(tmp_path / "cli" / "results.json")) == above
    assert len(read_json(tmp_path / "config" / "results.json")) == above
    assert len(read_json(tmp_path / "override" / "results.json")) == len(scores)
    assert all(b["score"] >= 0.5 and b["source"] == "file" for b in read_json(tmp_path / "cli" / "boxes.json"))

    # No box above the threshold: nothing is drawn, each image says why, the files are still written.
    assert pose(pose_root, pose_ckpt, folder, tmp_path / "none", *boxes, "--det-thr", "1") == 0
    stdout = capsys.readouterr().out
    assert len(re.findall(r"warning: \d+\.jpg: nothing drawn \(none of \d+ box\(es\) scores >= 1 .*"
                          r"lower --det-thr or data\.det_score_thr\)", stdout)) == len(images)
    assert read_json(tmp_path / "none" / "results.json") == []
    assert len(read_json(tmp_path / "none" / "images.json")) == len(images)


def test_kpt_thr_decides_which_keypoints_are_drawn(pose_root, pose_ckpt, tmp_path, capsys):
    image = val_images(pose_root)[0]
    plain = cv2.imread(str(image)).astype(int)
    # a box in the middle, so that its crop (and the keypoints at the crop's corner) lie inside the image
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": int(image.stem), "bbox": [100, 70, 40, 60], "score": 0.9}]))
    changed = {}
    for thr in ("0.3", "1.0"):
        assert pose(pose_root, pose_ckpt, image, tmp_path / thr, "--boxes", str(boxes), "--kpt-thr", thr) == 0
        drawn = cv2.imread(str(tmp_path / thr / "vis" / f"{image.stem}.jpg")).astype(int)
        changed[thr] = int((np.abs(drawn - plain).max(axis=2) > 60).sum())
        assert len(read_json(tmp_path / thr / "results.json")) == 1  # results do not depend on --kpt-thr
    stdout = capsys.readouterr().out
    assert re.search(rf"warning: {image.name}: nothing drawn \(no keypoint of 1 person\(s\) above --kpt-thr 1, "
                     r"best 0\.\d+; lower --kpt-thr", stdout)
    assert stdout.count("nothing drawn") == 1  # only at 1.0
    assert changed["0.3"] > changed["1.0"] > 0  # 1.0 still draws the box and its score


# ----------------------------------------------------------------------------- bad and huge files

def test_bad_files_in_a_folder_are_skipped_and_listed(pose_root, pose_ckpt, tmp_path, capsys):
    good = val_images(pose_root)[:2]
    folder = folder_of(good, tmp_path / "imgs")
    data = good[0].read_bytes()
    (folder / "corrupt.jpg").write_bytes(b"\x00garbage" * 50)
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert pose(pose_root, pose_ckpt, folder, out, "--detector", "whole") == 0
    stdout = capsys.readouterr().out
    assert re.search(r"skipped corrupt\.jpg: image file .*corrupt\.jpg is corrupt or not an image", stdout)
    assert re.search(r"skipped cut\.jpg: image file .*cut\.jpg is truncated \(no JPEG end marker\)", stdout)
    assert re.search(r"skipped empty\.png: image file .*empty\.png is empty \(0 bytes\)", stdout)
    assert f"skipped 3 of 5 input(s) (listed in {out / 'skipped.txt'})" in stdout
    assert "note: 1 file(s)" in stdout
    listed = [line.split("\t")[0] for line in (out / "skipped.txt").read_text().splitlines()]
    assert listed == ["corrupt.jpg", "cut.jpg", "empty.png"]
    assert len(read_json(out / "results.json")) == 2
    assert sorted(read_json(out / "images.json").values()) == sorted(p.name for p in good)


def test_huge_images_are_refused(pose_root, pose_ckpt, tmp_path, capsys):
    folder = folder_of(val_images(pose_root)[:1], tmp_path / "imgs")  # 256x192 = 0.049 MP
    big = cv2.resize(cv2.imread(str(val_images(pose_root)[1])), (800, 600))
    cv2.imwrite(str(folder / "big.png"), big)
    cv2.imwrite(str(tmp_path / "big.jpg"), big)
    assert pose(pose_root, pose_ckpt, folder, tmp_path / "out", "--detector", "whole", "--max-pixels", "0.1") == 0
    stdout = capsys.readouterr().out
    assert re.search(r"skipped big\.png: image file .*big\.png is 800x600 \(0\.48 megapixels\), above the limit "
                     r"of 0\.1 megapixels; shrink it or raise --max-pixels", stdout)
    assert "skipped 1 of 2 input(s)" in stdout
    assert len(read_json(tmp_path / "out" / "results.json")) == 1
    # the only input: a one-line error, found from the JPEG header
    assert pose(pose_root, pose_ckpt, tmp_path / "big.jpg", tmp_path / "o2", "--max-pixels", "0.1") == 2
    assert re.fullmatch(r"error: image file .*big\.jpg is 800x600 .*above the limit of 0\.1 megapixels.*",
                        one_line_error(capsys))


def test_image_size_is_read_from_the_header(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    assert header_size(tmp_path / "a.png") == (40, 30)
    assert header_size(tmp_path / "a.jpg") == (40, 30)
    # an EXIF-like APP1 segment before the frame header is skipped
    data = (tmp_path / "a.jpg").read_bytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 300) + b"Exif\x00\x00" + b"\xff\xc0" * 147
    (tmp_path / "exif.jpg").write_bytes(data[:2] + app1 + data[2:])
    assert header_size(tmp_path / "exif.jpg") == (40, 30)
    # a PNG that claims 100000x100000 is refused from its header, without decoding
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr
    (tmp_path / "bomb.png").write_bytes(png + b"\x00" * 16)
    assert header_size(tmp_path / "bomb.png") == (100000, 100000)
    from densepred import DataError
    from densepred.frames import read_image_checked
    with pytest.raises(DataError, match=r"is 100000x100000 \(1e\+04 megapixels\), above the limit"):
        read_image_checked(tmp_path / "bomb.png", 40_000_000)


# ----------------------------------------------------------------------------- videos

def test_pose_video_keeps_its_frame_rate(pose_root, pose_ckpt, tmp_path, capsys):
    frames = [cv2.imread(str(p)) for p in val_images(pose_root)[:3]]
    clip = write_video(tmp_path / "clip.mp4", frames, fps=5.0)
    assert pose(pose_root, pose_ckpt, clip, tmp_path / "out", "--detector", "whole") == 0
    assert "(5 fps)" in capsys.readouterr().out
    video = cv2.VideoCapture(str(tmp_path / "out" / "clip_pose.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()
    assert sorted(r["image_id"] for r in read_json(tmp_path / "out" / "results.json")) == [0, 1, 2]
    assert read_json(tmp_path / "out" / "images.json")["2"] == "clip_000002.jpg"


def test_segmentation_video_and_folder(seg_root, seg_ckpt, tmp_path, capsys):
    images = sorted((seg_root / "leftImg8bit" / "val").rglob("*.png"))
    clip = write_video(tmp_path / "street.avi", [cv2.imread(str(p)) for p in images], fps=7.0, fourcc="MJPG")
    assert main(["predict", SEG_TASK, "--checkpoint", str(seg_ckpt), "--input", str(clip),
                 "--out", str(tmp_path / "video")]) == 0
    assert "at 7 fps" in capsys.readouterr().out
    video = cv2.VideoCapture(str(tmp_path / "video" / "street_seg.mp4"))
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    ok, frame = video.read()
    assert ok and frame.shape[0] == 128 and frame.shape[1] > 256  # the frame plus the class legend
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(images)
    video.release()
    assert not (tmp_path / "video" / "labelIds").exists()

    # a folder (searched recursively, as Cityscapes has city subfolders) with one bad file
    folder = tmp_path / "frames"
    shutil.copytree(seg_root / "leftImg8bit" / "val", folder)
    (folder / "bad_leftImg8bit.png").write_bytes(b"\x00garbage" * 50)
    assert main(["predict", SEG_TASK, "--checkpoint", str(seg_ckpt), "--input", str(folder),
                 "--out", str(tmp_path / "imgs")]) == 0
    stdout = capsys.readouterr().out
    assert f"skipped 1 of {len(images) + 1} input(s)" in stdout
    assert len(list((tmp_path / "imgs" / "labelIds").glob("*_labelIds.png"))) == len(images)
    assert (tmp_path / "imgs" / "skipped.txt").read_text().startswith("bad_leftImg8bit.png\t")


# ----------------------------------------------------------------------------- one-line errors

@pytest.mark.parametrize("case,extra,message", [
    ("out_is_file", ["--out", "{tmp}/afile"], r"--out .*afile is a file; give a folder"),
    ("out_under_file", ["--out", "{tmp}/afile/sub"], r"cannot write to --out .*afile/sub: Not a directory"),
    ("boxes_folder", ["--boxes", "{tmp}"], r"--boxes .* is a folder; give a COCO results JSON file"),
    ("boxes_ids", ["--boxes", "{tmp}/other.json"],
     r"--boxes .*other\.json: none of its image ids \(139, 285\) match the inputs, whose ids are \d+, \d+; "
     r"image_id must be the file stem"),
    ("boxes_empty", ["--boxes", "{tmp}/empty.json"], r"--boxes .*empty\.json has no person detections"),
    ("det_thr", ["--det-thr", "1.5"], r"--det-thr must be between 0 and 1, got 1\.5"),
    ("kpt_thr", ["--kpt-thr", "-0.1"], r"--kpt-thr must be between 0 and 1, got -0\.1"),
    ("max_pixels", ["--max-pixels", "0"], r"--max-pixels must be a positive number of megapixels"),
    ("config_thr", ["--set", "data.det_score_thr=2"], r".*data\.det_score_thr must be .*got 2"),
])
def test_predict_errors_are_one_line_and_come_before_the_model(pose_root, tmp_path, capsys, case, extra, message):
    folder = folder_of(val_images(pose_root)[:2], tmp_path / "imgs")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty.json").write_text("[]")
    (tmp_path / "other.json").write_text(json.dumps([{"image_id": i, "bbox": [1, 2, 30, 40], "score": 0.9}
                                                     for i in (139, 285)]))
    args = ["predict", POSE_TASK, "--set", f"data_root={pose_root}", "--input", str(folder),
            "--out", str(tmp_path / "out"), *[a.format(tmp=tmp_path) for a in extra],
            # a missing checkpoint: the checks must fail first
            "--checkpoint", str(tmp_path / "absent.pth")]
    assert main(args) == 2
    line = one_line_error(capsys)
    assert re.fullmatch("error: " + message + ".*", line), line


def test_segmentation_rejects_pose_options(seg_root, tmp_path, capsys):
    assert main(["predict", SEG_TASK, "--checkpoint", str(tmp_path / "absent.pth"), "--input", str(seg_root),
                 "--out", str(tmp_path / "out"), "--kpt-thr", "0.5"]) == 2
    assert one_line_error(capsys) == "error: --kpt-thr applies to pose tasks only"
