"""``examples/end_to_end.py`` runs as a user would run it (a fresh interpreter, hub access off),
and each stage leaves what the next one needs: build -> export trl -> add_spatial_tokens ->
TRL SFT -> TRL GRPO -> predict -> score. It proves the path, not the quality."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from getok_data.dataset import Dataset
from getok_data.tokens import vocabulary

ROOT = Path(__file__).resolve().parents[1]
N = 8
CHECKPOINT_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                    "tokenizer_config.json", "chat_template.jinja", "processor_config.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("e2e") / "run"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)  # the example finds this checkout's package by itself
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "end_to_end.py"), "--out", str(out),
                           "--grid", str(N)], cwd=out.parent, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == json.loads((out / "summary.json").read_text())
    return out, summary


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_build_and_trl_rows(run):
    out, s = run
    ds = Dataset(s["build"])
    samples = list(ds.samples())
    assert len(samples) == 3 and all(x.grid[0] == N for x in samples)
    rows = _jsonl(Path(s["rows"]))
    assert len(rows) == s["n_rows"] and {r["stage"] for r in rows} == {"grid", "offset"}
    assert sum(r["stage"] == "grid" for r in rows) == s["n_grid_rows"] > 0
    for r in rows:  # what SFTTrainer / GRPOTrainer and the rewards read
        assert r["prompt"][0]["role"] == "user" and r["completion"][0]["content"] == r["solution"]
        assert all(Path(p).is_file() for p in r["images"]) and Path(r["cand_npz"]).is_file()


def test_checkpoints_hold_the_spatial_vocabulary_and_sft_trained(run):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoTokenizer

    out, s = run
    assert s["sft"]["steps"] == 3 and s["sft"]["loss"] > 0 and s["grpo"]["steps"] == 2
    assert "rewards/format_reward/mean" in s["grpo"]["rewards_logged"]  # make_rewards ran inside TRL
    for folder in (Path(s["sft"]["dir"]), Path(s["model"])):
        assert all((folder / f).is_file() for f in CHECKPOINT_FILES), sorted(p.name for p in folder.iterdir())
        tok = AutoTokenizer.from_pretrained(folder)
        ids = tok.convert_tokens_to_ids(vocabulary(N))
        assert len(ids) == s["spatial_tokens"] == N * N + 20 and tok.unk_token_id not in ids
        assert len(tok.encode("<seg><grid_3_1></seg>", add_special_tokens=False)) == 3  # never split
        rows = AutoConfig.from_pretrained(folder).text_config.vocab_size
        assert max(ids) < rows
    weights = load_file(str(Path(s["sft"]["dir"]) / "model.safetensors"))
    emb = next(v for k, v in weights.items() if k.endswith("embed_tokens.weight"))
    tok = AutoTokenizer.from_pretrained(s["sft"]["dir"])
    seg, box, pl, pl_end = tok.convert_tokens_to_ids(["<seg>", "<box>", "<pl>", "</pl>"])
    # add_spatial_tokens starts every new row at the same mean: rows the SFT completions used moved
    # apart, rows of tokens no synthetic row holds (polylines) did not move
    assert not emb[seg].equal(emb[box]) and emb[pl].equal(emb[pl_end])


def test_predict_answers_every_grid_row_and_score_reports(run):
    out, s = run
    grid_ids = [r["id"] for r in _jsonl(Path(s["rows"])) if r["stage"] == "grid"]
    pred = _jsonl(Path(s["pred"]))
    assert [p["id"] for p in pred] == grid_ids and s["n_pred"] == len(grid_ids)  # one per row, export order
    assert all(isinstance(p["text"], str) for p in pred)
    rep = json.loads(Path(s["score"]).read_text())
    assert set(rep) >= {"data", "pred", "decoder", "segmenter", "conventions", "join", "metrics"}
    assert rep["conventions"] == {"count": "expression", "empty_union": "one", "missing": "fail"}
    j = rep["join"]
    assert (j["matched"], j["predictions"], j["unknown"], j["duplicates"], j["bad_rows"]) == (len(grid_ids),) * 2 + (0,) * 3
    m = rep["metrics"]["all"]
    keys = {"seg": {"giou", "ciou"}, "box": {"acc50", "acc80", "box_iou"}, "point": {"hit"}}
    assert sum(m[f"grid/{t}"]["n"] for t in keys) == len(grid_ids)
    for task, want in keys.items():
        g = m[f"grid/{task}"]
        assert want | {"n", "format_failure", "tokens_per_answer"} <= set(g)
        assert all(0.0 <= g[k] <= 1.0 for k in want | {"format_failure"})
    assert s["grid_seg_giou"] == m["grid/seg"]["giou"]
    assert set(rep["metrics"]["by_split"]) == {"train"} and set(rep["metrics"]["by_source"]) == {"synthetic"}
    per = _jsonl(out / "per_sample.jsonl")
    assert [r["id"] for r in per if r.get("id") in set(grid_ids)] == grid_ids
