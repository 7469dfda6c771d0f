"""``getok-data train sft|grpo`` and ``getok-data eval`` end to end on tiny builds."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.config import ConfigError, load_config
from getok_data.train.checkpoint import load_checkpoint
from getok_data.train.config import GRPO_DEFAULTS, SFT_DEFAULTS, load_train_config
from pipelines.build import run_build

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"image_size": 32, "d": 32, "heads": 2, "channels": [8, 16], "text_buckets": 64, "max_words": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cli")
    for split, size in (("train", 6), ("val", 3)):
        run_build(load_config(None, {"source": {"name": "synthetic", "split": split, "size": size}, "grid": {"n": 8},
                                     "build": {"out": str(root / split), "images_per_shard": 3}}), progress=False)
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "data": {"batch_size": 8, "workers": 0, "val": None},
                                   "save_every": 2}))
    (root / "grpo.yaml").write_text(yaml.safe_dump({"data": {"val": None}}))
    return root


def run(args):
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output.strip().splitlines()


def test_yaml_configs_mirror_the_code_defaults():
    for name, defaults in (("train_sft.yaml", SFT_DEFAULTS), ("train_grpo.yaml", GRPO_DEFAULTS)):
        assert load_train_config(defaults, REPO / "configs" / name) == defaults
    with pytest.raises(ConfigError, match="unknown config key"):
        load_train_config(SFT_DEFAULTS, None, {"optim": {"nope": 1}})


def test_sft_eval_resume_and_grpo(data, tmp_path):
    base = ["--config", str(data / "tiny.yaml"), "--data", str(data / "train"), "--no-progress"]
    untrained = tmp_path / "s0.pt"
    run(["train", "sft", *base, "--steps", "0", "--out", str(untrained)])
    model, ckpt = load_checkpoint(untrained)
    assert ckpt["step"] == 0 and model.cfg.n == 8 and ckpt["vocab"][:2] == ["<grid_0_0>", "<grid_1_0>"]

    ck = tmp_path / "s.pt"
    out = run(["train", "sft", *base, "--val", str(data / "val"), "--steps", "3", "--out", str(ck)])
    result = json.loads(out[-1])
    assert result["step"] == 3 and set(result["val"]) >= {"mask_giou", "n"}
    assert [json.loads(x)["event"] for x in open(str(ck) + ".log.jsonl")][-1] == "eval"

    out = run(["eval", "--ckpt", str(ck), "--data", str(data / "val"), "--refine-rounds", "1"])
    metrics = json.loads(out[-1])
    assert set(metrics) >= {"mask_giou", "mask_ciou", "box_acc50", "box_acc80", "point_hit", "format_ok", "n"}
    assert metrics["n"] > 0 and metrics["format_ok"] == 1.0 and 0 <= metrics["mask_giou"] <= 1

    # resume continues the step count with the optimizer state
    run(["train", "sft", *base, "--steps", "4", "--resume", str(ck), "--out", str(tmp_path / "r.pt")])
    assert load_checkpoint(tmp_path / "r.pt")[1]["step"] == 4

    for stage in ("grid", "offset"):
        g = tmp_path / f"g_{stage}.pt"
        out = run(["train", "grpo", "--config", str(data / "grpo.yaml"), "--stage", stage, "--init", str(ck),
                   "--data", str(data / "train"),
                   "--steps", "1", "--prompts", "2", "--group", "3", "--out", str(g), "--no-progress"])
        rows = [json.loads(x) for x in open(str(g) + ".log.jsonl")]
        step = [r for r in rows if r["event"] == "train"][0]
        assert {"reward", "kl", "loss", "r_format"} <= set(step)
        assert ("r_mask_gain" in step) == (stage == "offset") and ("r_mask_iou" in step) == (stage == "grid")
        assert load_checkpoint(g)[1]["stage"] == stage
        # trainable: auto trains everything in stage 1, only the offset pathway in stage 2
        before, after = load_checkpoint(ck)[0], load_checkpoint(g)[0]
        cnn_moved = not all(torch.equal(a, b) for a, b in zip(before.cnn.parameters(), after.cnn.parameters()))
        assert cnn_moved == (stage == "grid")


def test_eval_oracle_and_errors(data, tmp_path):
    out = run(["eval", "--oracle", "--data", str(data / "val")])
    assert json.loads(out[-1])["mask_giou"] > 0.3
    res = CliRunner().invoke(cli, ["eval", "--data", str(data / "val")])
    assert res.exit_code != 0 and "--ckpt" in res.output
