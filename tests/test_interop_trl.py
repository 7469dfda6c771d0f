"""Real transformers / TRL / datasets on a tiny random Qwen2-VL built from configs on CPU (no hub).

The tokenizer folder, the model-side helper, every export loaded by ``datasets`` with its images,
TRL ``SFTTrainer`` and ``GRPOTrainer`` 2 steps each on ``export trl`` rows.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import datasets
from PIL import Image
from transformers import AutoTokenizer
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from getok_data.cli import main
from getok_data.export import run_export
from getok_data.export.trl import load
from getok_data.interop import add_spatial_tokens
from getok_data.rewards.trl import make_rewards, reward_weights, row_scores
from getok_data.tiny_vlm import base_tokenizer_folder, processor_for, tiny_model
from getok_data.tokens import vocabulary

N = 4
ANSWER = "<seg><grid_3_1><grid_0_2></seg><offset><box><OFF_-1_0><DELETE></box></offset>"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    from getok_data.config import load_config
    from pipelines.build import run_build

    root = tmp_path_factory.mktemp("interop")
    run_build(load_config(None, {"source": {"name": "synthetic", "size": 2}, "grid": {"n": N},
                                 "build": {"out": str(root / "build"), "images_per_shard": 2}}), progress=False)
    paths = {"build": root / "build", "base": base_tokenizer_folder(root / "base")}
    for name, extra in (("tok", []), ("tok_special", ["--special"])):
        result = CliRunner().invoke(main, ["export", "tokenizer", "--data", str(paths["build"]), "--base",
                                           str(paths["base"]), "--out", str(root / name), *extra])
        assert result.exit_code == 0, result.output
        paths[name] = root / name
    paths["trl"] = root / "trl.jsonl"
    run_export("trl", str(paths["build"]), paths["trl"], ("grid", "offset"))
    return paths


def test_base_export_is_a_drop_in_tokenizer(work):
    base = AutoTokenizer.from_pretrained(work["base"])
    tok = AutoTokenizer.from_pretrained(work["tok"])
    assert tok.chat_template == base.chat_template and tok.chat_template
    assert (tok.eos_token, tok.pad_token) == (base.eos_token, base.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tok.eos_token_id == base.eos_token_id and len(tok) == len(base) + N * N + 20
    ids = tok.encode(ANSWER, add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids)[:4] == ["<seg>", "<grid_3_1>", "<grid_0_2>", "</seg>"]
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == ANSWER  # default: tokens survive
    special = AutoTokenizer.from_pretrained(work["tok_special"])
    assert special.decode(special.encode(ANSWER, add_special_tokens=False), skip_special_tokens=True) == ""
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")


def test_add_spatial_tokens_never_shrinks_and_inits_only_new_ids(work):
    tok = AutoTokenizer.from_pretrained(work["base"])
    spare = 7  # a table with more rows than the tokenizer has entries (Qwen2.5-VL-style)
    model = tiny_model(tok, rows=len(tok) + spare)
    old_len, before = len(tok), model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    ids = add_spatial_tokens(model, tok, N, pad_to_multiple_of=64)
    emb, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert ids == tok.convert_tokens_to_ids(vocabulary(N)) and ids == list(range(old_len, old_len + N * N + 20))
    assert emb.shape[0] == out.shape[0] == model.config.text_config.vocab_size == 320  # ceil(287 / 64) * 64
    others = [i for i in range(before.shape[0]) if i not in set(ids)]
    assert torch.equal(emb[others], before[others]) and torch.equal(out[others], before_out[others])
    assert torch.allclose(emb[ids], before[:old_len].mean(0).expand(len(ids), -1))
    assert torch.allclose(out[ids], before_out[:old_len].mean(0).expand(len(ids), -1))
    # Enough spare rows: nothing resized, only the new ids' rows written; a second call changes nothing.
    tok2 = AutoTokenizer.from_pretrained(work["base"])
    model2 = tiny_model(tok2, rows=len(tok2) + 200)
    before2 = model2.get_input_embeddings().weight.detach().clone()
    ids2 = add_spatial_tokens(model2, tok2, N, init="grid2d")
    emb2 = model2.get_input_embeddings().weight
    assert emb2.shape[0] == before2.shape[0] == model2.config.text_config.vocab_size
    rest = [i for i in range(emb2.shape[0]) if i not in set(ids2)]
    assert torch.equal(emb2[rest], before2[rest]) and not torch.equal(emb2[ids2], before2[ids2])
    near = (emb2[ids2[0]] - emb2[ids2[1]]).norm()  # <grid_0_0> vs <grid_1_0>
    far = (emb2[ids2[0]] - emb2[ids2[N * N - 1]]).norm()  # vs the opposite corner
    assert near < far
    snapshot = emb2.detach().clone()
    assert add_spatial_tokens(model2, tok2, N) == ids2 and torch.equal(model2.get_input_embeddings().weight, snapshot)


def test_datasets_loads_every_export_with_images(work, tmp_path):
    for fmt in ("llamafactory", "swift", "trl"):
        out = tmp_path / f"{fmt}.jsonl"
        run_export(fmt, str(work["build"]), out, ("grid", "offset"))
        ds = datasets.load_dataset("json", data_files=str(out), split="train")
        ds = ds.cast_column("images", datasets.List(datasets.Image()))
        assert isinstance(ds[0]["images"][0], Image.Image) and len(set(ds["id"])) == len(ds)
    for fmt in ("easyr1", "verl"):
        out = tmp_path / f"{fmt}.parquet"
        run_export(fmt, str(work["build"]), out, ("grid", "offset"))
        ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
        image, row = ds[0]["images"][0], ds[0] if fmt == "easyr1" else ds[0]["extra_info"]
        assert isinstance(image, Image.Image) and image.size == (row["width"], row["height"])


def _trainer_inputs(work, special: bool):
    tok = AutoTokenizer.from_pretrained(work["tok_special" if special else "tok"])
    return tok, processor_for(tok), tiny_model(tok), load(work["trl"])


def _cpu(**kw):
    return dict(max_steps=2, per_device_train_batch_size=2, report_to=[], use_cpu=True, save_strategy="no",
                logging_steps=1, dataloader_num_workers=0, **kw)


def test_sft_two_steps_on_trl_rows(work, tmp_path):
    tok, proc, model, ds = _trainer_inputs(work, special=False)
    ds = ds.select(range(4))
    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path), learning_rate=1e-3, **_cpu()),
                         train_dataset=ds, processing_class=proc)
    batch = trainer.data_collator([ds[0], ds[1]])
    assert batch["pixel_values"].shape[0] > 0  # the images reached the model
    labels = batch["labels"][0]
    trained = tok.decode(labels[labels != -100])  # only the completion (and the template's end) is trained
    assert trained.rstrip("\n") == ds[0]["solution"] + tok.eos_token
    assert (batch["input_ids"] == proc.image_token_id).sum() > 0
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))


def test_grpo_two_steps_special_tokens_still_score(work, tmp_path):
    tok, proc, model, ds = _trainer_inputs(work, special=True)  # the hard case: TRL strips these tokens
    ds = ds.select(range(4))
    funcs = make_rewards(tok, stage="all")
    args = GRPOConfig(output_dir=str(tmp_path), num_generations=2, max_completion_length=6,
                      reward_weights=reward_weights("all"), **_cpu())
    trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=proc, reward_funcs=funcs)
    assert trainer.train().global_step == 2
    assert "rewards/format_reward/mean" in trainer.state.log_history[0]
    # Ground-truth completions through TRL's own decode + reward path score as when scored directly.
    inputs = [ds[i] for i in range(4)]
    ids = [tok.encode(r["solution"], add_special_tokens=False) + [tok.eos_token_id] for r in inputs]
    texts = trainer.processing_class.batch_decode(ids, skip_special_tokens=True)  # what TRL does
    assert texts == [""] * 4  # special tokens vanish from TRL's text ...
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    got = trainer._calculate_rewards(inputs, [r["prompt"] for r in inputs], completions, ids)
    want = [[row_scores(r["solution"], r).get(key, 0.0) for key in _keys(r)] for r in inputs]
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float32))  # ... but the rewards still see them
    assert got[:, 0].tolist() == [1.0] * 4  # format_reward: every ground truth is well formed


def _keys(row: dict) -> list[str]:
    from getok_data.rewards.trl import REWARDS

    return [s.key if s.stage in ("both", row["stage"]) else "_none" for s in REWARDS]
