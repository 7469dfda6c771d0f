"""Exports: one registry of formats, stable row ids, absolute paths, tokenizer folder rules (no transformers here)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from tokenizers import Tokenizer, normalizers

from getok_data.cli import main
from getok_data.export import FORMATS, export_chat, export_tokenizer, rows_of_meta, run_export, standalone_tokenizer
from getok_data.export.rows import ExportStats
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


def test_registry_has_every_format_and_chat_alias():
    assert set(FORMATS) == {"llamafactory", "swift", "trl", "easyr1", "verl"}
    result = CliRunner().invoke(main, ["export", "--help"])
    for name in ("llamafactory", "chat", "swift", "trl", "easyr1", "verl", "tokenizer"):
        assert name in result.output


def test_llamafactory_rows_ids_and_offset_prompt(rows, tmp_path, monkeypatch):
    assert {r["stage"] for r in rows} == {"grid", "offset"}
    assert {r["task"] for r in rows if r["stage"] == "grid"} == {"seg", "box", "point"}
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        user, assistant = r["messages"]  # one user turn, one trained assistant turn, for both stages
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert assistant["content"] == r["solution"]
        assert user["content"].startswith("<image>") and user["content"].count("<image>") == len(r["images"]) == 1
        assert Path(r["images"][0]).is_absolute() and Path(r["cand_npz"]).is_absolute()
        key, target, si, last = r["id"].split("/")
        assert (key, target) == (r["key"], r["target_id"]) and si.isdigit()
        if r["stage"] == "grid":
            assert last == r["task"] and parse_one(r["solution"], N, r["task"]).kind == r["task"]
        else:
            assert last.startswith("refine") and last[6:].isdigit()
            assert r["previous"] in user["content"]  # the (often wrong) previous answer is never trained
            assert parse_refinement(r["solution"], r["previous"], N) is not None
    monkeypatch.chdir(tmp_path)  # every path resolves from any working directory
    assert all(Path(r["images"][0]).is_file() and Path(r["cand_npz"]).is_file() for r in rows)


def test_llamafactory_dataset_info_entry(shards, tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "x.json"}}))
    run_export("llamafactory", str(shards), tmp_path / "getok_grid.jsonl")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "x.json"}  # other datasets are kept
    entry = info["getok_grid"]
    assert entry["file_name"] == "getok_grid.jsonl" and entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"


def test_exports_deterministic_and_media_written_once(shards, tmp_path):
    media = tmp_path / "media"
    first = export_chat(str(shards), tmp_path / "a.jsonl", ("grid",), ("box",), media)
    again = export_chat(str(shards), tmp_path / "b.jsonl", ("grid",), ("box",), media)
    assert first.files_written == 12 and again.files_written == 0  # 6 images + 6 tables, once
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    for fmt in ("easyr1", "verl"):
        run_export(fmt, str(shards), tmp_path / f"{fmt}1.parquet", ("grid", "offset"))
        run_export(fmt, str(shards), tmp_path / f"{fmt}2.parquet", ("grid", "offset"))
        assert (tmp_path / f"{fmt}1.parquet").read_bytes() == (tmp_path / f"{fmt}2.parquet").read_bytes()


def test_every_format_keeps_ids_and_solutions(shards, rows, tmp_path):
    want = [(r["id"], r["solution"]) for r in rows]
    for fmt in ("swift", "trl"):
        run_export(fmt, str(shards), tmp_path / f"{fmt}.jsonl", ("grid", "offset"))
        got = [json.loads(x) for x in (tmp_path / f"{fmt}.jsonl").read_text().splitlines()]
        assert [(r["id"], r["solution"]) for r in got] == want
    trl_rows = [json.loads(x) for x in (tmp_path / "trl.jsonl").read_text().splitlines()]
    for r in trl_rows:
        assert "<image>" not in json.dumps(r["prompt"]) and r["completion"][0]["content"] == r["solution"]
    easy = pq.read_table(_parquet(shards, tmp_path, "easyr1")).to_pylist()
    assert [(r["id"], r["solution"]) for r in easy] == want
    assert all(r["problem"].startswith("<image>") and json.loads(r["answer"])["cand_npz_b64"] for r in easy)
    assert all(r["images"][0]["bytes"][:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb") for r in easy)
    verl = pq.read_table(_parquet(shards, tmp_path, "verl")).to_pylist()
    assert [(r["extra_info"]["id"], r["extra_info"]["solution"]) for r in verl] == want
    assert {r["data_source"] for r in verl} == {"getok"} and [r["extra_info"]["index"] for r in verl] == list(range(len(want)))
    assert all(r["reward_model"] == {"style": "rule", "ground_truth": r["extra_info"]["solution"]} for r in verl)
    assert all(r["prompt"][0]["role"] == "user" and r["prompt"][0]["content"].count("<image>") == 1 for r in verl)


def _parquet(shards: Path, tmp: Path, fmt: str) -> Path:
    out = tmp / f"{fmt}.parquet"
    run_export(fmt, str(shards), out, ("grid", "offset"))
    return out


def test_low_quality_and_empty_seg_targets():
    meta = {"key": "k", "grid": {"n": 4, "m": 8}, "width": 8, "height": 8, "targets": [
        {"target_id": "a", "sentences": ["x"], "low_quality": True, "tokens": {"box": "<box><grid_0_0><grid_1_1></box>"}},
        {"target_id": "b", "sentences": ["y"], "tokens": {"seg": "<seg></seg>", "box": None, "point": None},
         "refine": [{"kind": "seg", "origin": "selected", "prompt": "<seg></seg>", "answer": "<offset><seg></seg></offset>"}]},
    ]}
    stats = ExportStats()
    got = list(rows_of_meta(meta, ("grid", "offset"), ("seg", "box", "point"), stats))
    assert [r.id for r in got] == ["k/b/0/seg"] and got[0].answer == "<seg></seg>"
    assert stats.skipped == {"low_quality target (use --include-low-quality)": 1, "no box tokens": 1,
                             "no point tokens": 1, "refinement of an empty answer": 1}
    kept = list(rows_of_meta(meta, ("grid",), ("box",), ExportStats(), include_low_quality=True))
    assert [r.id for r in kept] == ["k/a/0/box"]


def test_export_errors(shards, tmp_path):
    run = CliRunner().invoke
    result = run(main, ["export", "chat", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2 and "no such build folder" in result.output
    result = run(main, ["export", "trl", "--data", str(shards), "--out", str(tmp_path / "x.jsonl"), "--relative"])
    assert result.exit_code == 2 and "absolute" in result.output
    result = run(main, ["export", "verl", "--data", str(shards), "--out", str(tmp_path / "x.parquet"),
                        "--images-dir", str(tmp_path / "m")])
    assert result.exit_code == 2 and "embedded" in result.output


def test_tokenizer_grid_from_build_and_conflicts(shards, tmp_path):
    run = CliRunner().invoke
    result = run(main, ["export", "tokenizer", "--data", str(shards), "--out", str(tmp_path / "tok")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["grid"] == N
    result = run(main, ["export", "tokenizer", "--data", str(shards), "--grid", "16", "--out", str(tmp_path / "t2")])
    assert result.exit_code == 2 and "disagrees" in result.output
    result = run(main, ["export", "tokenizer", "--out", str(tmp_path / "t3")])
    assert result.exit_code == 2 and "--data" in result.output
    result = run(main, ["export", "tokenizer", "--grid", "8", "--out", str(tmp_path / "t4"), "--base", str(tmp_path / "tok")])
    assert result.exit_code == 2 and "already holds spatial token(s) <grid_0_0>" in result.output
    result = run(main, ["export", "tokenizer", "--grid", "8", "--out", str(tmp_path / "t4"), "--base",
                        str(tmp_path / "tok"), "--allow-existing"])
    assert result.exit_code == 0 and json.loads(result.output.splitlines()[0])["first_id"] == 256


def test_tokenizer_default_normal_tokens_one_id_each(tmp_path):
    summary = export_tokenizer(32, tmp_path / "tok")
    assert summary["special"] is False and summary["contiguous"]
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    ids = json.loads((tmp_path / "tok" / "spatial_tokens.json").read_text())
    assert list(ids) == vocabulary(32) and sorted(ids.values()) == list(range(256, 256 + 32 * 32 + 20))
    text = "the dog <box><grid_3_4><grid_31_0></box> <offset><box><OFF_-1_0><DELETE></box></offset>"
    enc = tok.encode(text)
    assert [t for t in enc.tokens if t in ids] == ["<box>", "<grid_3_4>", "<grid_31_0>", "</box>", "<offset>", "<box>",
                                                   "<OFF_-1_0>", "<DELETE>", "</box>", "</offset>"]
    assert tok.decode(enc.ids, skip_special_tokens=True) == text  # normal tokens survive
    export_tokenizer(8, tmp_path / "sp", special=True)
    sp = Tokenizer.from_file(str(tmp_path / "sp" / "tokenizer.json"))
    assert sp.decode(sp.encode("<seg><grid_1_1></seg>").ids, skip_special_tokens=True) == ""


def test_tokenizer_base_with_normalizer(tmp_path):
    base = standalone_tokenizer()
    base.normalizer = normalizers.Lowercase()  # the spatial tokens must match the raw text anyway
    base.save(str(tmp_path / "base.json"))
    summary = export_tokenizer(8, tmp_path / "tok", base=tmp_path / "base.json")
    assert summary["tokens"] == 84 and summary["contiguous"] and summary["first_id"] == 256
    tok = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    enc = tok.encode("<point><grid_7_7></point><OFF_-1_1>")
    assert enc.tokens == ["<point>", "<grid_7_7>", "</point>", "<OFF_-1_1>"]
    with pytest.raises(FileNotFoundError):
        export_tokenizer(8, tmp_path / "x", base=tmp_path / "missing")


def test_trl_rewards_prefer_ground_truth(rows):
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    prompts = [r["messages"][:-1] for r in rows]
    truth = [[{"role": "assistant", "content": r["solution"]}] for r in rows]
    junk = ["I am not sure what you mean."] * len(rows)
    funcs = trl_rewards.make_rewards(stage="all")
    assert [f.__name__ for f in funcs] == [s.name for s in trl_rewards.REWARDS]
    assert len(trl_rewards.reward_weights("grid")) == len(trl_rewards.make_rewards(stage="grid")) == 7
    multi = ("points_f1_reward", "boxes_f1_reward")  # no points / boxes rows here: tests/test_task_families.py
    for f in funcs:
        good = f(prompts=prompts, completions=truth, completion_ids=None, **columns)
        bad = f(prompts=prompts, completions=junk, **columns)
        assert len(good) == len(bad) == len(rows) and all(isinstance(v, float) for v in good)
        assert all(g >= b for g, b in zip(good, bad)), f.__name__
        assert any(g > b for g, b in zip(good, bad)) or f.__name__ in multi, f.__name__
    plain = trl_rewards.format_reward(prompts, [r["solution"] for r in rows], **columns)
    assert plain == [1.0] * len(rows)
