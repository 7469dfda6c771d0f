"""``getok-data predict`` on a tiny random Qwen2-VL built from a config (nothing from the hub), then ``score``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from getok_data.cli import main
from getok_data.export.rows import INSTRUCTIONS, REFINE_INSTRUCTION
from getok_data.tokens import vocabulary

N = 8
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_qwen2vl(out: Path, n: int) -> Path:
    """A random Qwen2-VL (hidden 32, one layer, one vision block) with a local word-level
    tokenizer whose spatial tokens are special (so ``skip_special_tokens=True`` would drop them)."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration,
                              Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor)

    words = set()
    for t in [*INSTRUCTIONS.values(), REFINE_INSTRUCTION, "user assistant the a of"]:
        words |= set(t.replace("{s}", "").replace(":", " ").replace(",", " ").replace(".", " ").split())
    vocab = {"[UNK]": 0, **{w: k + 1 for k, w in enumerate(sorted(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")
    spatial = vocabulary(n)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL + spatial])
    ft = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="<|im_end|>",
                                 pad_token="<|endoftext|>", additional_special_tokens=spatial)
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 28 * 28 * 16}
    proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=ft,
                            video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=CHAT)
    ids = {s: ft.convert_tokens_to_ids(s) for s in SPECIAL}
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=len(ft), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    from getok_data.config import load_config
    from pipelines.build import run_build

    out = tmp_path_factory.mktemp("b")
    run_build(load_config(None, {"source": {"name": "synthetic", "size": 1}, "grid": {"n": N},
                                 "segmenter": {"name": "superpixel"}, "build": {"out": str(out)}}), progress=False)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_qwen2vl(tmp_path_factory.mktemp("vlm"), N)


def test_predict_then_score(build, model_dir, tmp_path):
    pred = tmp_path / "pred.jsonl"
    res = CliRunner().invoke(main, ["predict", "--data", str(build), "--model", str(model_dir), "--out", str(pred),
                                    "--limit", "4", "--batch-size", "3", "--max-new-tokens", "6", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    rows = [json.loads(x) for x in pred.read_text().splitlines()]
    assert summary["rows"] == len(rows) == 4
    assert [r["id"].rsplit("/", 1)[1] for r in rows] == ["seg", "box", "point", "seg"]  # export order
    text = " ".join(r["text"] for r in rows)
    assert "<grid_" in text or "<OFF_" in text  # special spatial tokens survive decoding
    assert not any(s in text for s in SPECIAL)  # the tokenizer's own specials do not
    res = CliRunner().invoke(main, ["score", "--data", str(build), "--pred", str(pred), "--missing", "skip"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["join"]["matched"] == 4 and rep["join"]["unknown"] == 0
    m = rep["metrics"]["all"]
    assert m["grid/seg"]["n"] == 2 and m["grid/box"]["n"] == 1 and m["grid/point"]["n"] == 1
    assert all(0.0 <= g["format_failure"] <= 1.0 for g in m.values())
    off = tmp_path / "off.jsonl"
    res = CliRunner().invoke(main, ["predict", "--data", str(build), "--model", str(model_dir), "--out", str(off),
                                    "--task", "seg,box", "--stage", "offset", "--rounds", "2", "--limit", "2",
                                    "--max-new-tokens", "6", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in off.read_text().splitlines()]
    assert [r["id"].rsplit("/", 1)[1] for r in rows] == ["seg", "box"]
    assert all(isinstance(r["refine"], list) and len(r["refine"]) == len(r["previous"]) <= 2 for r in rows)


def test_refinement_rounds_feed_the_models_own_answers(build, model_dir, tmp_path):
    """With the grid answer right (the build's own), each round shows the model its previous answer."""
    from getok_data.dataset import Dataset
    from getok_data.predict import Generator, _jobs, _refine_round

    ds = Dataset(str(build))
    meta = next(ds.samples()).meta
    jobs = list(_jobs(ds, ("seg", "box"), 2))
    truth = {f"{meta['key']}/{t['target_id']}/0/{k}": t["tokens"][k] for t in meta["targets"] for k in ("seg", "box")}
    for j in jobs:
        j.text = truth[j.id]
    gen = Generator(str(model_dir), "cpu", max_new_tokens=6)
    _refine_round(gen, jobs, 2)
    for j in jobs:
        assert j.previous == [j.text] and len(j.refine) == 1  # the answer as the assistant's turn
        assert j.row("offset") == {"id": j.id, "text": j.text, "refine": j.refine, "previous": j.previous}
    # a refinement that parses is re-quantised and refined again; one that does not ends the rounds
    seg = next(j for j in jobs if j.task == "seg")
    box = next(j for j in jobs if j.task == "box")
    k = seg.text.count("<grid_")
    seg.refine[-1] = "<offset><seg>" + "<OFF_0_0>" * k + "</seg></offset>"
    box.refine[-1] = "not an offset"
    _refine_round(gen, jobs, 2)
    assert len(seg.refine) == 2 and seg.previous[1] == seg.text and len(box.refine) == 1


def test_scored_refinement_chain_matches_the_export_refine_row(tmp_path, build):
    """A grid answer plus one refinement turn scores as the export's refine row on the same answer."""
    from getok_data.export import export_chat
    from getok_data.score import score_build

    out = tmp_path / "chat.jsonl"
    export_chat(str(build), out, ("grid", "offset"))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    preds, direct = [], []
    for r in rows:
        if r["stage"] == "offset" and r["origin"] in ("selected", "nearest") and r["id"].split("/")[2] == "0":
            grid_id = r["id"].rsplit("/", 1)[0] + "/" + r["task"]
            grid = next(g for g in rows if g["id"] == grid_id)
            assert grid["solution"] == r["previous"]
            preds.append({"id": grid_id, "text": grid["solution"], "refine": [r["solution"]]})
            direct.append({"id": r["id"], "text": r["solution"]})
    (tmp_path / "chain.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    (tmp_path / "direct.jsonl").write_text("".join(json.dumps(p) + "\n" for p in direct))
    a = score_build(str(build), tmp_path / "chain.jsonl", missing="skip")["metrics"]["all"]
    b = score_build(str(build), tmp_path / "direct.jsonl", missing="skip")["metrics"]["all"]
    for task in ("seg", "box"):
        ka = {k: v for k, v in a[f"refined/{task}"].items() if k != "tokens_per_answer"}
        kb = {k: v for k, v in b[f"offset/{task}"].items() if k != "tokens_per_answer"}
        assert ka == kb and ka["refine_gain"] != 0.0
    # a turn that does not parse is a format failure of the whole answer; an empty list is no refinement
    bad = [dict(p, refine=["<offset></offset>"]) for p in preds]
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(p) + "\n" for p in bad))
    c = score_build(str(build), tmp_path / "bad.jsonl", missing="skip")["metrics"]["all"]["refined/seg"]
    assert c["format_failure"] == 1.0 and c["giou"] == 0.0 and c["refine_gain"] == pytest.approx(-c["iou_before"])
    none = [dict(p, refine=[]) for p in preds]
    (tmp_path / "none.jsonl").write_text("".join(json.dumps(p) + "\n" for p in none))
    d = score_build(str(build), tmp_path / "none.jsonl", missing="skip")["metrics"]["all"]["refined/seg"]
    assert d["format_failure"] == 0.0 and d["refine_gain"] == 0.0 and d["giou"] == d["iou_before"]


@pytest.mark.parametrize("rounds", [0, 1])
def test_bundled_checkpoint_predict_score_equals_eval(build, tmp_path, rounds):
    """``eval`` == ``predict --ckpt`` + ``score`` on the bundled trainer's (untrained, tiny) model."""
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"image_size": 32, "d": 32, "heads": 2, "channels": [8, 16],
                                             "text_buckets": 64, "max_words": 8},
                                   "data": {"batch_size": 4, "workers": 0, "val": None}}))
    ck = tmp_path / "s0.pt"
    run = CliRunner()
    res = run.invoke(main, ["train", "sft", "--config", str(cfg), "--data", str(build), "--steps", "0", "--out",
                            str(ck), "--no-progress"])
    assert res.exit_code == 0, res.output
    res = run.invoke(main, ["eval", "--ckpt", str(ck), "--data", str(build), "--refine-rounds", str(rounds)])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout.strip().splitlines()[-1])
    pred = tmp_path / "p.jsonl"
    args = ["predict", "--data", str(build), "--ckpt", str(ck), "--out", str(pred)]
    res = run.invoke(main, args + (["--stage", "offset", "--rounds", str(rounds)] if rounds else []))
    assert res.exit_code == 0, res.output
    res = run.invoke(main, ["score", "--data", str(build), "--pred", str(pred), "--empty-union", "zero"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout.strip().splitlines()[-1])["metrics"]["all"]
    stage = "refined" if rounds else "grid"
    assert m[f"{stage}/seg"]["n"] == ev["n"]
    assert m[f"{stage}/seg"]["giou"] == pytest.approx(ev["mask_giou"], abs=1e-12)
    assert m[f"{stage}/seg"]["ciou"] == pytest.approx(ev["mask_ciou"], abs=1e-12)
    assert m[f"{stage}/box"]["acc50"] == pytest.approx(ev["box_acc50"], abs=1e-12)
    assert m[f"{stage}/box"]["acc80"] == pytest.approx(ev["box_acc80"], abs=1e-12)
    assert m[f"{stage}/point"]["hit"] == pytest.approx(ev["point_hit"], abs=1e-12)
