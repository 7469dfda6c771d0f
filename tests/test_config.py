"""Typed build config: one table of defaults, checked values, errors that name the key and file."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from getok_data.config import BuildConfig, ConfigError, default_dict, load_config
from getok_data.segmenters import SEGMENTERS
from getok_data.sources import SOURCES

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_default_yaml_spells_out_exactly_the_typed_defaults():
    assert yaml.safe_load((CONFIGS / "default.yaml").read_text()) == default_dict()
    assert load_config(CONFIGS / "default.yaml").hash == load_config().hash


@pytest.mark.parametrize("name", ["refcoco_sam.yaml"])
def test_example_build_configs_load(name):
    cfg = load_config(CONFIGS / name)
    raw = yaml.safe_load((CONFIGS / name).read_text())
    for section, values in raw.items():  # every value written in the file reaches the typed config
        got = cfg.to_dict()[section]
        assert {k: got[k] for k in values} == values


def test_every_plugin_declares_typed_options_with_defaults():
    for registry in (SOURCES, SEGMENTERS):
        for name in registry.names():
            options = registry.get(name).options
            assert dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen, name
            assert all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                       for f in dataclasses.fields(options)), name


@pytest.mark.parametrize("overrides, message", [
    ({"grid": {"n": 16.7}}, "grid.n: expected an integer, got 16.7 (command line)"),
    ({"grid": {"n": 0}}, "grid.n: must be >= 1"),
    ({"selection": {"tau": 1.5}}, "selection.tau: must be in (0, 1]"),
    ({"selection": {"method": "best"}}, "selection.method: expected sorted | gain, got 'best'"),
    ({"build": {"max_error_rate": "x"}}, "build.max_error_rate: expected a number"),
    ({"build": {"images_per_shard": True}}, "build.images_per_shard: expected an integer, got True"),
    ({"segmenter": {"sam_model": "vit_h"}}, "segmenter.sam_model: unknown key; segmenter superpixel takes"),
    ({"source": {"name": "refcocoX"}}, "source.name: unknown source 'refcocoX'"),
    ({"source": {"name": "refcoco"}}, "source.data_root: required"),
    ({"source": {"name": "coco", "image_root": "x"}}, "source.annotations: required"),
    ({"segmenter": {"name": "sam", "sam_model": "vit_h"}}, "segmenter.sam_checkpoint: required for vit_h"),
    ({"grid": {"offset_masks": "yes"}}, "grid.offset_masks: expected true or false or auto"),
    ({"labelling": {"weights": {"I": 1.0}}}, "labelling.weights: expected non-negative I, R, H and F"),
    ({"gird": {"n": 8}}, "gird: unknown config section"),
])
def test_bad_values_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert message in str(e.value)


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("grid:\n  n: 16.7\n")
    with pytest.raises(ConfigError, match=r"grid.n: expected an integer, got 16.7 \(.*x.yaml\)"):
        load_config(bad)
    bad.write_text("grid: [n: 16\n")
    with pytest.raises(ConfigError, match=r"x.yaml: YAML syntax error at line"):
        load_config(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


def test_layers_flags_over_file_over_defaults(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("grid: {n: 16}\nselection: {tau: 0.8}\nsource: {name: synthetic, size: 5}\n")
    cfg = load_config(f, {"grid": {"n": 8}, "source": {"split": "val"}, "selection": {"tau": None}})
    assert (cfg.grid.n, cfg.grid.m, cfg.selection.tau) == (8, 16, 0.8)
    assert (cfg.source.options.size, cfg.source.options.split) == (5, "val")
    assert isinstance(cfg, BuildConfig) and cfg.offset_m == 16  # superpixel: offset masks on by default
    assert load_config(None, {"segmenter": {"name": "sam", "sam_model": "tiny"}}).offset_m is None
    assert load_config(None, {"build": {"max_error_rate": 0}}).build.max_error_rate == 0.0  # ints widen


def test_hash_follows_output_keys_only():
    base = load_config(None, {"grid": {"n": 8}})
    assert load_config(None, {"grid": {"n": 8}, "build": {"out": "elsewhere", "runner": "ray"}}).hash == base.hash
    assert load_config(None, {"grid": {"n": 8}, "selection": {"tau": 0.8}}).hash != base.hash
    sam = load_config(None, {"segmenter": {"name": "sam", "sam_model": "tiny"}})
    assert load_config(None, {"segmenter": {"name": "sam", "sam_model": "tiny", "device": "cpu"}}).hash == sam.hash
    assert "device" not in sam.output_dict()["segmenter"] and "checkpoint_sha256" in sam.output_dict()["segmenter"]


def test_checkpoint_is_hashed_by_content(tmp_path):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"weights")
    b.write_bytes(b"weights")
    cfg = lambda p: load_config(None, {"segmenter": {"name": "sam", "sam_model": "vit_b", "sam_checkpoint": str(p)}})
    assert cfg(a).hash == cfg(b).hash
    with pytest.raises(FileNotFoundError):
        cfg(tmp_path / "missing.pth").hash


def test_getok_data_options_lists_every_key_of_every_plugin():
    from click.testing import CliRunner

    from getok_data.cli import main

    res = CliRunner().invoke(main, ["options"])
    assert res.exit_code == 0
    for registry in (SOURCES, SEGMENTERS):
        for name in registry.names():
            block = res.output.split(f"{registry.kind}: {{name: {name}}}\n", 1)[1].split(":\n")[0]
            for f in dataclasses.fields(registry.get(name).options):
                assert f"  {f.name}: " in block, (name, f.name)
