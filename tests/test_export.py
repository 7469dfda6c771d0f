"""Interop exports: chat JSONL rows, Hugging Face tokenizer, TRL-signature rewards on the rows."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, normalizers

from getok_data.cli import main
from getok_data.export import export_chat, export_tokenizer, standalone_tokenizer
from getok_data.rewards import parse_refinement
from getok_data.rewards import trl as trl_rewards
from getok_data.tokens import parse_one, vocabulary

N = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from getok_data.config import load_config
    from pipelines.build import run_build

    out = tmp_path_factory.mktemp("b")
    run_build(load_config(None, {"source": {"name": "synthetic", "size": 6}, "grid": {"n": N},
                                 "build": {"out": str(out), "images_per_shard": 4}}), progress=False)
    return out


@pytest.fixture(scope="module")
def rows(shards, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    result = CliRunner().invoke(main, ["export", "chat", "--data", str(shards), "--out", str(out), "--stage", "all"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_chat_rows_parse_and_images_exist(rows):
    assert {r["stage"] for r in rows} == {"grid", "offset"}
    assert {r["task"] for r in rows if r["stage"] == "grid"} == {"seg", "box", "point"}
    for r in rows:
        msgs = r["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2)
        assert msgs[-1]["content"] == r["solution"]
        assert sum(m["content"].count("<image>") for m in msgs) == len(r["images"]) == 1
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in r["images"])
        assert Path(r["cand_npz"]).is_file()
        assert r["grid_n"] == N and len(r["regions"]) == len(r["offsets"]) == N * N
        if r["stage"] == "grid":
            assert parse_one(r["solution"], N, r["task"]).kind == r["task"]
        else:
            assert msgs[1]["content"] == r["previous"]
            assert parse_refinement(r["solution"], r["previous"], N) is not None


def test_chat_export_deterministic_and_writes_images_once(shards, tmp_path):
    media = tmp_path / "media"
    first = export_chat(str(shards), tmp_path / "a.jsonl", ("grid",), ("box",), media, relative=True)
    again = export_chat(str(shards), tmp_path / "b.jsonl", ("grid",), ("box",), media, relative=True)
    assert first.files_written == 12 and again.files_written == 0  # 6 images + 6 tables, once
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    rows = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert rows and {r["task"] for r in rows} == {"box"}
    assert len({r["id"] for r in rows}) == len(rows)  # one row per (target, sentence, task)
    assert all(not Path(r["images"][0]).is_absolute() and (tmp_path / r["images"][0]).is_file() for r in rows)


def test_chat_export_missing_data(tmp_path):
    result = CliRunner().invoke(main, ["export", "chat", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "no shard" in result.output


def test_tokenizer_export_one_id_per_spatial_token(tmp_path):
    result = CliRunner().invoke(main, ["export", "tokenizer", "--grid", "32", "--out", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    ids = json.loads((tmp_path / "tok" / "added_tokens.json").read_text())
    assert list(ids) == vocabulary(32)  # vocabulary order; values are the ids
    enc = tok.encode("<seg><grid_3_4><grid_31_0></seg>")
    assert enc.tokens == ["<seg>", "<grid_3_4>", "<grid_31_0>", "</seg>"]
    assert enc.ids == [ids[t] for t in enc.tokens]
    assert sorted(ids.values()) == list(range(256, 256 + 32 * 32 + 20))
    text = "the dog <box><grid_3_4><grid_31_0></box> <offset><box><OFF_-1_0><DELETE></box></offset>"
    enc = tok.encode(text)
    assert tok.decode(enc.ids, skip_special_tokens=False) == text
    assert "<box>" not in tok.decode(enc.ids, skip_special_tokens=True)  # special: stripped by default
    assert all(t["special"] for t in json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["added_tokens"])


def test_tokenizer_no_special_and_base(tmp_path):
    base = standalone_tokenizer()
    base.normalizer = normalizers.Lowercase()  # the spatial tokens must match the raw text anyway
    base.save(str(tmp_path / "base.json"))
    summary = export_tokenizer(8, tmp_path / "tok", base=tmp_path / "base.json", special=False)
    assert summary["tokens"] == 84 and summary["contiguous"] and summary["first_id"] == 256
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    enc = tok.encode("<point><grid_7_7></point><OFF_-1_1>")
    assert enc.tokens == ["<point>", "<grid_7_7>", "</point>", "<OFF_-1_1>"]
    assert tok.decode(enc.ids, skip_special_tokens=True) == "<point><grid_7_7></point><OFF_-1_1>"
    again = export_tokenizer(8, tmp_path / "tok2", base=tmp_path / "tok", special=False)  # already there
    assert again["vocab_size"] == summary["vocab_size"] and again["first_id"] == 256
    with pytest.raises(FileNotFoundError):
        export_tokenizer(8, tmp_path / "x", base=tmp_path / "missing")


def test_trl_rewards_prefer_ground_truth(rows):
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    prompts = [r["messages"][:-1] for r in rows]
    truth = [[{"role": "assistant", "content": r["solution"]}] for r in rows]
    junk = ["I am not sure what you mean."] * len(rows)
    funcs = [getattr(trl_rewards, name) for name in dir(trl_rewards) if name.endswith("_reward")]
    assert len(funcs) >= 9
    for f in funcs:
        good = f(prompts=prompts, completions=truth, completion_ids=None, **columns)
        bad = f(prompts=prompts, completions=junk, **columns)
        assert len(good) == len(bad) == len(rows) and all(isinstance(v, float) for v in good)
        assert all(g >= b for g, b in zip(good, bad)), f.__name__
        assert any(g > b for g, b in zip(good, bad)), f.__name__
    plain = trl_rewards.format_reward(prompts, [r["solution"] for r in rows], **columns)
    assert plain == [1.0] * len(rows)
