"""Bad input of every kind gives one line that names the file or key and says what to do.

The README section "Bad input: what you get" lists each kind of bad input with the test that covers it; the tests here fill
the rows that the task-specific test files do not cover, and the last test checks that every row
of that table names a test that exists. No training runs and no Ray: everything stops before.
"""
from __future__ import annotations

import ast
import io
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, TINY_POSE_MODEL
from densepred import CheckpointError, ConfigError, DataError, build_model, load_checkpoint, load_config
from densepred.cli import main
from densepred.tasks.base import build_task

POSE_TASK = str(REPO / "tasks" / "pose_demo.yaml")
SEG_TASK = str(REPO / "tasks" / "seg_demo.yaml")
TABLE = REPO / "README.md"  # its table in the section "Bad input: what you get"
TRAIN_ANN = Path("annotations") / "person_keypoints_train2017.json"
DETECTIONS = Path("person_detection_results") / "COCO_val2017_detections_AP_H_56_person.json"


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def pose_root(tmp_path_factory):
    from densepred.tasks.pose.demo_data import make_pose_demo

    root = tmp_path_factory.mktemp("bad_pose") / "coco"
    make_pose_demo(root, num_train_images=3, num_val_images=2, seed=11, progress=False)
    return root


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory):
    from densepred.tasks.segmentation.demo_data import make_seg_demo

    root = tmp_path_factory.mktemp("bad_seg") / "cityscapes"
    make_seg_demo(root, num_train=2, num_val=1, image_size=(256, 128), seed=11, progress=False)
    return root


@pytest.fixture
def pose_copy(pose_root, tmp_path):
    """A private copy of the pose demo set that a test may damage."""
    return Path(shutil.copytree(pose_root, tmp_path / "coco"))


@pytest.fixture
def seg_copy(seg_root, tmp_path):
    return Path(shutil.copytree(seg_root, tmp_path / "cityscapes"))


def _pose_task(root, *overrides):
    return build_task(load_config(POSE_TASK, [f"data_root={root}", *overrides]))


def _seg_task(root, *overrides):
    return build_task(load_config(SEG_TASK, [f"data_root={root}", "data.loader_workers=0", *overrides]))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _first_person(gt: dict) -> dict:
    """The first annotation the training loader uses (a non-crowd person)."""
    return next(a for a in gt["annotations"] if a["category_id"] == 1 and not a["iscrowd"])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("override,message", [
    ("sed=3", r"--set: unknown top-level key 'sed' \(did you mean 'seed'\?\)"),
    ("model.backbone.widht=8", r"--set: unknown key 'model\.backbone\.widht' for HRNet \(did you mean 'width'\?\)"),
    ("data.sigmaa=3", r"--set: unknown key 'data\.sigmaa' \(did you mean 'sigma'\?\)"),
    ("evaluation.flip_tset=true", r"--set: unknown key 'evaluation\.flip_tset' \(did you mean 'flip_test'\?\)"),
])
def test_unknown_set_key_is_blamed_on_set(pose_root, override, message):
    with pytest.raises(ConfigError, match=message):
        _pose_task(pose_root, override)


def test_unknown_train_key_fails_before_ray_starts(tmp_path, no_ray, capsys):
    """`train` and `ray` are read by the engine; a typo there still stops `platform train` at once."""
    rc = main(["train", POSE_TASK, "--set", f"data_root={tmp_path}", "--set", f"work_dir={tmp_path}",
               "--set", "train.epochz=3"])
    assert rc == 2
    line = _one_line_error(capsys)
    assert re.search(r"--set: unknown key 'train\.epochz' \(did you mean 'epochs'\?\)", line), line


# ----------------------------------------------------------------------------- dataset files

def test_annotation_json_syntax_error_names_file_and_line(pose_copy):
    ann = pose_copy / TRAIN_ANN
    ann.write_text(ann.read_text().replace('"images":', '"images"', 1))
    with pytest.raises(DataError, match=r"person_keypoints_train2017\.json: invalid JSON at line \d+ column \d+ "
                                        r"\(Expecting ':' delimiter\); fix or regenerate"):
        _pose_task(pose_copy).build_dataset("train")


@pytest.mark.parametrize("remove,message", [
    (TRAIN_ANN, r"person_keypoints_train2017\.json: COCO annotation file not found"),
    (Path("images") / "train2017", r"no image folder for split 'train2017' under .*coco"),
    (DETECTIONS, r"person detection file .*COCO_val2017_detections_AP_H_56_person\.json not found "
                 r"\(set bbox_file: null"),
])
def test_missing_dataset_part(pose_copy, remove, message):
    path = pose_copy / remove
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    with pytest.raises(DataError, match=message):
        task = _pose_task(pose_copy)
        task.build_dataset("train")
        task.build_dataset("val")


def _no_file_name(gt):
    del gt["images"][0]["file_name"]
    return rf"image {gt['images'][0]['id']} has no 'file_name'"


def _width_text(gt):
    gt["images"][0]["width"] = "wide"
    return rf"image {gt['images'][0]['id']} \(.*\) has width 'wide'; expected a positive number"


def _short_bbox(gt):
    ann = _first_person(gt)
    ann["bbox"] = [10, 20]
    return rf"annotation {ann['id']} has an invalid bbox \[10, 20\] \(expected \[x, y, width, height\]\)"


def _text_keypoint(gt):
    ann = _first_person(gt)
    ann["keypoints"][4] = "left"
    return rf"annotation {ann['id']} has the keypoint value 'left'; keypoints must be numbers"


def _null_area(gt):
    ann = _first_person(gt)
    ann["area"] = None
    return rf"annotation {ann['id']} has area None; expected a number"


@pytest.mark.parametrize("damage", [_no_file_name, _width_text, _short_bbox, _text_keypoint, _null_area])
def test_malformed_annotation_entries(pose_copy, damage):
    ann = pose_copy / TRAIN_ANN
    gt = json.loads(ann.read_text())
    message = damage(gt)
    ann.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=r"person_keypoints_train2017\.json: " + message):
        _pose_task(pose_copy).build_dataset("train")


def test_detections_json_syntax_error(pose_copy):
    dets = pose_copy / DETECTIONS
    dets.write_text(dets.read_text()[:-2])
    with pytest.raises(DataError, match=r"COCO_val2017_detections_AP_H_56_person\.json: invalid JSON at line 1 "
                                        r"column \d+"):
        _pose_task(pose_copy).build_dataset("val")


def _as_mapping(dets):
    return {"detections": dets}, r"expected a list of detections in COCO results format"


def _no_score(dets):
    del dets[0]["score"]
    return dets, r"detection #0 lacks image_id/bbox/score"


def _text_score(dets):
    dets[1]["score"] = "high"
    return dets, r"detection #1 has score 'high'; expected a number"


def _three_numbers(dets):
    dets[0]["bbox"] = [1, 2, 3]
    return dets, r"detection #0 has an invalid box \[1, 2, 3\] \(expected \[x, y, width, height\]\)"


@pytest.mark.parametrize("damage", [_as_mapping, _no_score, _text_score, _three_numbers])
def test_malformed_detections(pose_copy, damage):
    f = pose_copy / DETECTIONS
    data, message = damage(json.loads(f.read_text()))
    f.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"COCO_val2017_detections_AP_H_56_person\.json: " + message):
        _pose_task(pose_copy).build_dataset("val")


@pytest.mark.parametrize("content,message", [
    ('[{"image_id": 1, "bbox": [1, 2, 3', r"invalid JSON at line 1 column \d+"),
    ('{"image_id": 1, "bbox": [1, 2, 3, 4]}', r"expected a JSON list of detections .* got a dict"),
    ("[1, 2]", r"detection #0 lacks image_id/bbox"),
    ('[{"image_id": 1, "bbox": [0, 0, 10, 10]}, {"bbox": [0, 0, 5, 5]}]', r"detection #1 lacks image_id/bbox"),
    ('[{"image_id": 1, "bbox": [0, 0, -4, 10]}]', r"detection #0 has an invalid box \[0, 0, -4, 10\] "
                                                   r"\(width and height must be > 0\)"),
])
def test_malformed_boxes_file_for_predict(tmp_path, content, message):
    from densepred.tasks.pose.predict import load_boxes

    boxes = tmp_path / "my_boxes.json"
    boxes.write_text(content)
    with pytest.raises(DataError, match=r"my_boxes\.json: " + message):
        load_boxes(str(boxes))


# ----------------------------------------------------------------------------- images

def _damage_file(path: Path, damage: str) -> None:
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "corrupt":
        path.write_bytes(b"\x00garbage" * 50)
    else:  # truncated
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage,message", [
    ("missing", "not found"),
    ("empty", r"is empty \(0 bytes\); re-copy or remove it"),
    ("corrupt", r"is corrupt or not an image \(OpenCV cannot decode it\)"),
    ("truncated", r"is truncated \(no JPEG end marker\); re-copy or remove it"),
])
def test_pose_bad_image_when_inspecting(pose_copy, tmp_path, capsys, damage, message):
    """`platform data browse` (like eval and predict) stops at a bad image with one line naming it."""
    victim = Path(_pose_task(pose_copy).build_dataset("train").records[0].image_file)
    _damage_file(victim, damage)
    rc = main(["data", "browse", POSE_TASK, "--set", f"data_root={pose_copy}", "--split", "train",
               "--out", str(tmp_path / "browse"), "--limit", "1"])
    assert rc == 2
    line = _one_line_error(capsys)
    assert re.fullmatch(rf"error: image file {re.escape(str(victim))} {message}", line), line


@pytest.mark.parametrize("damage,message", [
    ("empty", r"is empty \(0 bytes\)"),
    ("corrupt", "is corrupt or not an image"),
    ("truncated", r"is truncated \(no PNG end chunk\)"),
])
def test_seg_bad_image_is_an_error_when_inspecting_and_a_counted_fault_in_training(seg_copy, damage, message):
    task = _seg_task(seg_copy)
    train = task.build_dataset("train")
    victim = train.samples[0].image
    _damage_file(victim, damage)
    expected = rf"image file .*{re.escape(victim.name)} {message}"
    with pytest.raises(DataError, match=expected):
        task.build_dataset("train", strict_images=True).load(0)
    sample = train[0]                      # training: carried as a fault, the label all ignore
    assert re.search(expected, sample["fault"]), sample["fault"]
    assert bool((sample["label"] == 255).all())
    assert train[1]["fault"] == ""


@pytest.fixture(scope="module")
def pose_checkpoint(pose_root, tmp_path_factory):
    from densepred import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("bad_ckpt") / "pose.pth",
                           build_model(load_config(POSE_TASK, [f"data_root={pose_root}"])))


@pytest.mark.parametrize("source,message", [
    ("absent.jpg", r"--input .*absent\.jpg not found"),
    ("broken.jpg", r"image file .*broken\.jpg is corrupt or not an image"),
    ("cut.jpg", r"image file .*cut\.jpg is truncated \(no JPEG end marker\)"),
    ("broken.mp4", r"video .*broken\.mp4 cannot be opened"),
])
def test_predict_bad_input_file(pose_root, pose_checkpoint, tmp_path, capsys, source, message):
    good = sorted((pose_root / "images" / "val2017").glob("*.jpg"))[0].read_bytes()
    (tmp_path / "broken.jpg").write_bytes(b"\x00garbage" * 50)
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "broken.mp4").write_bytes(b"\x00garbage" * 50)
    rc = main(["predict", POSE_TASK, "--set", f"data_root={pose_root}", "--checkpoint", str(pose_checkpoint),
               "--input", str(tmp_path / source), "--out", str(tmp_path / "out")])
    assert rc == 2
    line = _one_line_error(capsys)
    assert re.search(message, line), line


# ----------------------------------------------------------------------------- segmentation labels

@pytest.mark.parametrize("damage,message", [
    ("corrupt", "is missing or corrupt"),
    ("rgb", "has 3 channels; expected a single-channel labelIds PNG"),
])
def test_unreadable_label_png(seg_copy, damage, message):
    task = _seg_task(seg_copy)
    train = task.build_dataset("train")
    label = train.samples[0].label
    if damage == "corrupt":
        label.write_bytes(b"\x00garbage" * 50)
    else:
        cv2.imwrite(str(label), np.zeros((128, 256, 3), np.uint8))
    expected = rf"label file .*{re.escape(label.name)} {message}"
    with pytest.raises(DataError, match=expected):
        task.build_dataset("train", strict_images=True).load(0)
    assert re.search(expected, train[0]["fault"])   # training: a counted fault, not a crash


# ----------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("name", ["page.html", "photo.jpg", "weights.json", "array.npy"])
def test_foreign_file_types_are_reported_as_not_a_checkpoint(pose_root, tmp_path, name):
    """Files people download by mistake (an HTML error page, an image, JSON, a numpy array) are
    named as not being PyTorch checkpoints, not as files with unsafe Python objects."""
    if name == "page.html":
        data = b"<!DOCTYPE html><html><body>404 Not Found</body></html>"
    elif name == "photo.jpg":
        data = sorted((pose_root / "images" / "val2017").glob("*.jpg"))[0].read_bytes()
    elif name == "weights.json":
        data = json.dumps({"state_dict": {"conv1.weight": [0.0, 1.0]}}).encode()
    else:
        buf = io.BytesIO()
        np.save(buf, np.zeros((2, 3), np.float32))
        data = buf.getvalue()
    path = tmp_path / name
    path.write_bytes(data)
    kind = {"page.html": "an HTML/XML page", "photo.jpg": "a JPEG image", "weights.json": "a JSON file",
            "array.npy": "a numpy .npy array"}[name]
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))} is not a PyTorch checkpoint "
                                              rf"\(it is {kind}") as info:
        load_checkpoint(build_model(TINY_POSE_MODEL), path)
    assert "weights_only" not in str(info.value)


# ----------------------------------------------------------------------------- command line

@pytest.mark.parametrize("command", [
    ["train"], ["eval"], ["predict", "--checkpoint", "m.pth", "--input", "x.jpg", "--out", "o"],
    ["data", "browse", "--out", "o"],
])
def test_missing_task_file(tmp_path, capsys, command):
    missing = tmp_path / "tasks" / "pose_dmeo.yaml"
    head = command[:2] if command[0] == "data" else command[:1]
    rc = main([*head, str(missing), *command[len(head):]])
    assert rc == 2
    line = _one_line_error(capsys)
    assert line == f"error: config file {missing} not found"


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_workers_must_be_positive(tmp_path, no_ray, capsys, workers):
    rc = main(["train", POSE_TASK, "--workers", workers, "--set", f"data_root={tmp_path}",
               "--set", f"work_dir={tmp_path}"])
    assert rc == 2
    assert _one_line_error(capsys) == f"error: --workers must be >= 1, got {workers} (see platform train --help)"


def test_resume_of_unknown_run(pose_root, tmp_path, no_ray, capsys):
    rc = main(["train", POSE_TASK, "--resume", "--set", f"data_root={pose_root}", "--set", f"work_dir={tmp_path}",
               "--set", "run_name=never_ran"])
    assert rc == 2
    line = _one_line_error(capsys)
    assert re.search(rf"--resume: no run named 'never_ran' in {re.escape(str(tmp_path.resolve()))} "
                     r"\(check --set run_name=", line), line


@pytest.mark.parametrize("item,message", [
    ("train.epochs", r"--set 'train\.epochs': expected KEY=VALUE, e\.g\. --set train\.epochs=10"),
    ("=5", r"--set '=5': the key is empty"),
    ("data.input_size=[192, 256", r"--set data\.input_size: value '\[192, 256' is not valid YAML \(.*\); "
                                  r"check its brackets and quotes"),
    ("seed.value=1", r"--set seed\.value: 'seed' is a value, not a section"),
])
def test_bad_set_syntax(capsys, item, message):
    rc = main(["data", "browse", POSE_TASK, "--out", "unused", "--set", item])
    assert rc == 2
    line = _one_line_error(capsys)
    assert re.search(message, line), line


def test_eval_needs_checkpoint_or_predictions(pose_root, capsys):
    assert main(["eval", POSE_TASK, "--set", f"data_root={pose_root}"]) == 2
    assert _one_line_error(capsys) == ("error: give --checkpoint CKPT (a model to run) or --predictions FILE "
                                       "(results to score)")


# ----------------------------------------------------------------------------- the table

def _table_rows(text: str) -> list[list[str]]:
    """Body rows of the first Markdown table whose header is Input | Bad input | What you get | Test."""
    rows, in_table = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        if not in_table:
            in_table = cells == ["Input", "Bad input", "What you get", "Test"]
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
            names.add(node.name)
    return names


def test_every_bad_input_row_names_an_existing_test():
    rows = _table_rows(TABLE.read_text())
    assert len(rows) >= 30, f"{TABLE}: expected the bad-input table, found {len(rows)} rows"
    functions: dict[Path, set[str]] = {}
    problems = []
    for row in rows:
        if len(row) != 4 or not all(row):
            problems.append(f"row without 4 filled cells: {row}")
            continue
        ref = row[3].strip("`")
        m = re.fullmatch(r"(tests/test_\w+\.py)::(test_\w+)", ref)
        if not m:
            problems.append(f"{row[1]!r}: Test cell {row[3]!r} is not tests/FILE.py::test_name")
            continue
        path = REPO / m.group(1)
        if not path.is_file():
            problems.append(f"{row[1]!r}: {m.group(1)} does not exist")
            continue
        if path not in functions:
            functions[path] = _test_functions(path)
        if m.group(2) not in functions[path]:
            problems.append(f"{row[1]!r}: {m.group(1)} has no test function {m.group(2)}")
    assert not problems, "\n".join(problems)
