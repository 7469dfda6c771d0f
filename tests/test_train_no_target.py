"""The bundled trainer on gRefCOCO no-target queries: the grammar allows ``<seg></seg>``, SFT trains
on it, and ``eval`` / ``predict --ckpt`` + ``score`` count N-acc the same way."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from click.testing import CliRunner

from getok_data.cli import main as cli
from getok_data.config import load_config
from getok_data.train.data import ShardStream
from getok_data.train.decoding import allowed
from getok_data.train.vocab import SeqVocab
from pipelines.build import run_build
from test_sources_grefcoco import groot  # noqa: F401  (the gRefCOCO fixture layout)

TINY_MODEL = {"image_size": 32, "d": 32, "heads": 2, "channels": [8, 16], "text_buckets": 64, "max_words": 8}


def run(args: list[str]) -> list[str]:
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output.strip().splitlines()


def test_grammar_allows_the_empty_seg_answer():
    v = SeqVocab(4)
    first = allowed(v, "seg", [], [v.open["seg"]], "strict", 5)
    assert first[v.close["seg"]] and first[: v.num_grid].all()
    assert allowed(v, "seg", [], [v.open["seg"], v.close["seg"]], "strict", 5).nonzero().tolist() == [[v.eos]]
    point = allowed(v, "point", [], [v.open["point"]], "strict", 5)
    assert not point[v.close["point"]]  # a point still needs its anchor


def test_no_target_queries_train_and_count_in_eval_and_score(groot, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    run_build(load_config(overrides={"source": {"name": "grefcoco", "data_root": str(groot)}, "grid": {"n": 8},
                                     "build": {"out": str(out)}}), progress=False)
    # the training stream carries the no-target query with its empty answer, loss on </seg> and <eos>
    stream = ShardStream(str(out), {"image_size": 32, "tasks": {"seg": 1.0, "box": 0.0, "point": 0.0}},
                         stage="grid", shuffle=False)
    empty = [e for e in stream if e.info.get("no_target")]
    assert len(empty) == 1 and empty[0].task == "seg" and empty[0].answer == "<seg></seg>"
    v = SeqVocab(8)
    ids, start = v.encode_example("seg", "", empty[0].answer)
    assert ids[start:] == [v.open["seg"], v.close["seg"], v.eos]

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": TINY_MODEL, "seed": 0, "stage": "grid",
                                   "data": {"batch_size": 8, "workers": 0, "val": None, "resample": True,
                                            "tasks": {"seg": 1.0, "box": 0.0, "point": 0.0}},
                                   "optim": {"lr": 1.0e-2, "warmup": 5}}))
    ck = tmp_path / "s.pt"
    run(["train", "sft", "--config", str(cfg), "--data", str(out), "--steps", "60", "--out", str(ck), "--no-progress"])
    rows = [json.loads(x) for x in open(str(ck) + ".log.jsonl")]
    losses = [r["loss"] for r in rows if r["event"] == "train"]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]

    metrics = json.loads(run(["eval", "--ckpt", str(ck), "--data", str(out)])[-1])
    assert metrics["n_no_target"] == 1 and metrics["format_ok"] == 1.0
    # learnt: the no-target query answered <seg></seg>, the targeted ones with anchors
    assert metrics["n_acc"] == 1.0 and metrics["t_acc"] == 1.0

    pred = tmp_path / "pred.jsonl"
    run(["predict", "--data", str(out), "--ckpt", str(ck), "--out", str(pred)])
    texts = {json.loads(x)["id"]: json.loads(x)["text"] for x in pred.read_text().splitlines()}
    assert texts["grefcoco_val_909/ref135/0/seg"] == "<seg></seg>"
    rep = json.loads(run(["score", "--data", str(out), "--pred", str(pred), "--empty-union", "zero"])[-1])
    seg = rep["metrics"]["all"]["grid/seg"]
    assert seg["n_acc"] == metrics["n_acc"] and seg["t_acc"] == metrics["t_acc"] and seg["n_no_target"] == 1
    assert seg["giou"] == pytest.approx(metrics["mask_giou"]) and seg["ciou"] == pytest.approx(metrics["mask_ciou"])
    one = json.loads(run(["score", "--data", str(out), "--pred", str(pred)])[-1])["metrics"]["all"]["grid/seg"]
    assert one["giou"] == pytest.approx(seg["giou"] + 1 / seg["n"])  # the empty union scores 1 under `one`
