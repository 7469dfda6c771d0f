"""Shared files are untrusted: a crafted checkpoint runs nothing, and a prediction file that is not
text is a one-line error. Through the real command line, as a user would meet them."""
import json
import os
import pickle
import zipfile

import pytest
import torch
import yaml
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.config import load_config
from getok_data.score import score_build
from getok_data.train.checkpoint import CheckpointError, load_checkpoint
from pipelines.build import run_build

TINY_MODEL = {"image_size": 32, "d": 32, "heads": 2, "channels": [8, 16], "text_buckets": 64, "max_words": 8}


class _Evil:
    """A pickle whose loading would create ``path`` (it calls ``os.system`` through ``__reduce__``)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    run_build(load_config(None, {"source": {"name": "synthetic", "split": "val", "size": 3}, "grid": {"n": 8},
                                 "build": {"out": str(root / "val"), "images_per_shard": 3}}), progress=False)
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "data": {"batch_size": 4, "workers": 0, "val": None}}))
    good = root / "good.pt"
    res = CliRunner().invoke(cli, ["train", "sft", "--config", str(cfg), "--data", str(root / "val"), "--steps", "1",
                                   "--out", str(good), "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return root


def _evil_checkpoint(path, marker):
    """A real torch.save zip (so the loader cannot tell it apart by its container) with a payload."""
    torch.save({"format": "getok-train-1", "payload": _Evil(marker)}, path)


def _commands(root, ckpt, out):
    data = str(root / "val")
    return {
        "eval": ["eval", "--ckpt", str(ckpt), "--data", data],
        "predict": ["predict", "--ckpt", str(ckpt), "--data", data, "--out", str(out / "p.jsonl")],
        "grpo --init": ["train", "grpo", "--init", str(ckpt), "--data", data, "--val", data, "--steps", "1", "--out",
                        str(out / "g.pt"), "--no-progress"],
        "sft --resume": ["train", "sft", "--config", str(root / "tiny.yaml"), "--data", data, "--steps", "2",
                         "--resume", str(ckpt), "--out", str(out / "r.pt"), "--no-progress"],
    }


@pytest.mark.parametrize("command", ["eval", "predict", "grpo --init", "sft --resume"])
def test_an_evil_checkpoint_runs_nothing_and_is_one_line_exit_2(build, tmp_path, command):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    _evil_checkpoint(ckpt, marker)
    res = CliRunner().invoke(cli, _commands(build, ckpt, tmp_path)[command])
    assert not marker.exists(), "the checkpoint's pickle ran code"
    assert res.exit_code == 2, res.output
    err = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(ckpt) in err[0] and "Traceback" not in res.output
    assert not (tmp_path / "g.pt").exists() and not (tmp_path / "r.pt").exists()


def test_foreign_and_truncated_checkpoints_are_named_errors(build, tmp_path):
    good = (build / "good.pt").read_bytes()
    cases = {"truncated.pt": good[: len(good) // 2], "text.pt": b"hello, not a checkpoint\n",
             "plain_pickle.pt": pickle.dumps({"format": "getok-train-1"})}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)
    torch.save({"format": "other"}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a getok-data trainer checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    res = CliRunner().invoke(cli, ["eval", "--ckpt", str(tmp_path / "truncated.pt"), "--data", str(build / "val")])
    assert res.exit_code == 2 and "truncated.pt" in res.output and "Traceback" not in res.output


def test_a_real_checkpoint_still_loads_and_resumes_with_its_optimizer(build, tmp_path):
    model, ckpt = load_checkpoint(build / "good.pt")
    assert ckpt["step"] == 1 and ckpt["optimizer"]["state"]  # the optimizer state is tensors: weights_only loads it
    with zipfile.ZipFile(build / "good.pt") as z:
        assert any(n.endswith("data.pkl") for n in z.namelist())
    res = CliRunner().invoke(cli, ["train", "sft", "--config", str(build / "tiny.yaml"), "--data", str(build / "val"),
                                   "--steps", "2", "--resume", str(build / "good.pt"), "--out", str(tmp_path / "r.pt"),
                                   "--no-progress"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "r.pt")[1]["step"] == 2


def _gt_rows(build):
    """A correct prediction for every grid seg row (the stored GT tokens)."""
    from getok_data.export.rows import ExportStats, iter_rows

    return [{"id": r.id, "text": r.answer} for _, rows in iter_rows(str(build / "val"), ("grid",), ("seg",),
                                                                     ExportStats()) for r in rows]


def test_binary_prediction_file_is_one_line_exit_2(build, tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(b'{"id": "x", "text": "<seg></seg>"}\n\x89PNG\r\n\x1a\n\x00\xff\xfe')
    res = CliRunner().invoke(cli, ["score", "--data", str(build / "val"), "--pred", str(pred)])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and str(pred) in res.output and "line 2" in res.output
    assert "Traceback" not in res.output and "codec can't decode" not in res.output


def test_bom_and_crlf_rows_join(build, tmp_path):
    rows = _gt_rows(build)
    pred = tmp_path / "bom.jsonl"
    pred.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in rows).encode())
    report = score_build(str(build / "val"), pred)
    assert report["join"]["bad_rows"] == 0 and report["join"]["matched"] == len(rows)
    seg = report["metrics"]["all"]["grid/seg"]
    assert seg["n"] == len(rows) and seg["format_failure"] == 0.0


def test_an_empty_prediction_file_scores_every_row_a_failure_under_missing_fail(build, tmp_path):
    pred = tmp_path / "empty.jsonl"
    pred.write_text("")
    n_seg = len(_gt_rows(build))
    fail = score_build(str(build / "val"), pred, missing="fail")["metrics"]["all"]
    assert fail["grid/seg"]["n"] == n_seg and fail["grid/seg"]["format_failure"] == 1.0
    assert fail["grid/seg"]["giou"] == 0.0 and {"grid/box", "grid/point"} <= set(fail)
    assert score_build(str(build / "val"), pred, missing="skip")["metrics"]["all"] == {}
