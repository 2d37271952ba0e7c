"""YAML configs: inheritance, overrides, and one-line errors that name the key and the file."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from densepred import ConfigError, build_model, load_config
from densepred.config import parse_override


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def base_and_child(tmp_path):
    write(tmp_path / "base.yaml", """
model:
  backbone: {type: HRNet, width: 8, multiscale_output: false}
  heads:
    pose: {type: HeatmapHead, num_keypoints: 17}
seed: 1
""")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nmodel:\n  heads:\n    pose: {num_keypoints: 5}\n")
    return child


def test_inheritance_merges_and_overrides(base_and_child):
    cfg = load_config(base_and_child, ["seed=7", "model.backbone.width=16"])
    assert cfg["model"]["heads"]["pose"] == {"type": "HeatmapHead", "num_keypoints": 5}
    assert cfg["model"]["backbone"]["width"] == 16 and cfg["seed"] == 7


def test_override_values_are_yaml():
    assert parse_override("a.b=[1, 2, 3]") == ("a.b", [1, 2, 3])
    assert parse_override("x=null") == ("x", None)
    assert parse_override("x=0.5") == ("x", 0.5)
    assert parse_override("name=w32") == ("name", "w32")


def test_list_override_reaches_the_model(base_and_child):
    cfg = load_config(base_and_child, ["model.backbone.stage2={num_channels: [8, 24], num_blocks: [1, 1]}"])
    model = build_model(cfg)
    assert model.backbone.stage2[0].out_channels == [8, 24]


def test_typo_in_key_names_key_and_file(tmp_path):
    bad = write(tmp_path / "typo.yaml", """
model:
  backbone: {type: HRNet, width: 8, multiscale_outptu: false}
  heads: {pose: {type: HeatmapHead}}
""")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "typo.yaml" in msg and "model.backbone.multiscale_outptu" in msg
    assert "did you mean 'multiscale_output'" in msg and "\n" not in msg


def test_typo_in_base_file_is_attributed_to_the_base(tmp_path):
    write(tmp_path / "base.yaml", "model:\n  backbone: {type: HRNet, widht: 8}\n  heads: {pose: {type: HeatmapHead}}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\nseed: 3\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: unknown key 'model\.backbone\.widht'"):
        load_config(child)


def test_unknown_top_level_key(tmp_path):
    bad = write(tmp_path / "top.yaml", "modle: {}\n")
    with pytest.raises(ConfigError, match=r"top\.yaml: unknown top-level key 'modle' \(did you mean 'model'\?\)"):
        load_config(bad)


def test_wrong_type_names_key(tmp_path):
    bad = write(tmp_path / "t.yaml", "model:\n  backbone: {type: HRNet, width: eight}\n  heads: {pose: {type: HeatmapHead}}\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: model\.backbone\.width must be .*int.*got str 'eight'"):
        load_config(bad)


def test_wrong_type_from_override_blames_set(base_and_child):
    with pytest.raises(ConfigError, match=r"--set: model\.heads\.pose\.num_keypoints must be int"):
        load_config(base_and_child, ["model.heads.pose.num_keypoints=many"])


def test_unknown_type_lists_registered_names(tmp_path):
    bad = write(tmp_path / "u.yaml", "model:\n  backbone: {type: HRNetX}\n  heads: {pose: {type: HeatmapHead}}\n")
    with pytest.raises(ConfigError, match=r"u\.yaml: model\.backbone\.type: unknown backbone type 'HRNetX'; registered backbones: HRNet"):
        load_config(bad)


def test_missing_base_file(tmp_path):
    bad = write(tmp_path / "m.yaml", "_base_: ../nowhere/base.yaml\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: _base_ file '\.\./nowhere/base\.yaml' not found"):
        load_config(bad)


def test_missing_config_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file .*absent.yaml not found"):
        load_config(tmp_path / "absent.yaml")
    bad = write(tmp_path / "syntax.yaml", "model: [1, 2\n")
    with pytest.raises(ConfigError, match=r"syntax\.yaml: line \d+ invalid YAML"):
        load_config(bad)


def test_bad_stage_setting_is_reported(tmp_path):
    bad = write(tmp_path / "s.yaml", "model:\n  backbone: {type: HRNet, arch: w32, stage2: {num_chanels: [1, 2]}}\n"
                                     "  heads: {pose: {type: HeatmapHead}}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['num_chanels'\] in stage2"):
        build_model(load_config(bad))


def test_standard_library_platform_is_not_shadowed():
    """`platform/` is a source root, not a package: `import platform` must stay the stdlib."""
    assert not (REPO / "platform" / "__init__.py").exists()
    out = subprocess.run([sys.executable, "-c", "import platform; print(platform.system()); print(platform.__file__)"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] in ("Linux", "Darwin", "Windows")
    assert "site-packages" not in out[1] and str(REPO / "platform") not in out[1]
