"""From nothing to a scored model, offline, in about 20 seconds on a CPU.

    python examples/end_to_end.py --out out/e2e

Every stage a lab runs, each feeding the next, with the real libraries (getok-data, transformers,
TRL, datasets) and nothing downloaded:

1. ``getok-data build``: a small synthetic set (grid 8, superpixel segmenter).
2. ``getok-data export trl``: TRL prompt / completion rows with images (grid and offset stages).
3. A tiny random Qwen2-VL built from a config, with a local tokenizer
   (``getok_data.tiny_vlm``), extended by ``getok_data.interop.add_spatial_tokens``.
4. TRL ``SFTTrainer`` for a few steps, saved (model + processor) to ``OUT/sft``.
5. TRL ``GRPOTrainer`` for a few steps from the SFT weights with
   ``getok_data.rewards.trl.make_rewards(tokenizer)``, saved to ``OUT/model``.
6. ``getok-data predict`` with ``OUT/model`` on every grid row of the build.
7. ``getok-data score`` on those predictions: ``OUT/score.json`` (and per-sample rows).

It proves the path, not the quality: the model is random and trains for a handful of steps, so
most answers are format failures. For a real run, replace step 3 by a pretrained model and its
processor (docs/INTEROP.md section 2) and raise the sizes and steps. The last stdout line is one
JSON object naming every artefact (also written to ``OUT/summary.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's getok_data, installed or not


class _Tee(io.StringIO):
    """Captures what a command prints while still showing it."""

    def __init__(self, shown: Any):
        super().__init__()
        self.shown = shown

    def write(self, s: str) -> int:
        self.shown.write(s)
        return super().write(s)


def getok(*args: str) -> str:
    """Run one ``getok-data`` command in this process (as the shell would) and return its stdout."""
    from getok_data.cli import main

    print("$ getok-data " + shlex.join(args), flush=True)
    out = _Tee(sys.stdout)
    with contextlib.redirect_stdout(out):
        main.main(args=list(args), prog_name="getok-data", standalone_mode=False)
    return out.getvalue()


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def _train_args(steps: int, batch: int, device: str) -> dict:
    return dict(max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-3, report_to=[],
                use_cpu=device == "cpu", save_strategy="no", logging_steps=1, dataloader_num_workers=0,
                seed=0, data_seed=0, disable_tqdm=True)


def sft(out: Path, model: Any, processor: Any, rows: Any, steps: int, device: str) -> dict:
    """A few TRL SFT steps (only the completion is trained); the model and processor saved to ``out``."""
    from trl import SFTConfig, SFTTrainer

    trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=str(out), **_train_args(steps, 2, device)),
                         train_dataset=rows, processing_class=processor)
    result = trainer.train()
    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    print(f"sft: {result.global_step} steps, loss {result.training_loss:.4f} -> {out}", flush=True)
    return {"dir": str(out), "steps": result.global_step, "loss": result.training_loss}


def grpo(out: Path, model: Any, processor: Any, rows: Any, steps: int, device: str) -> dict:
    """A few TRL GRPO steps on grid rows, scored by the package's grid rewards (spatial tokens kept).

    On a random model every sampled completion is malformed, so every reward is 0 and so is the
    advantage: the step runs (sampling, rewards, loss) but moves nothing. A trained start does."""
    from trl import GRPOConfig, GRPOTrainer

    from getok_data.rewards.trl import make_rewards, reward_weights

    args = GRPOConfig(output_dir=str(out), num_generations=2, max_completion_length=8,
                      reward_weights=reward_weights("grid"), **_train_args(steps, 2, device))
    trainer = GRPOTrainer(model=model, args=args, train_dataset=rows, processing_class=processor,
                          reward_funcs=make_rewards(processor.tokenizer, stage="grid"))
    result = trainer.train()
    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    logs = [h for h in trainer.state.log_history if "reward" in h]
    print(f"grpo: {result.global_step} steps, mean reward {[h['reward'] for h in logs]} -> {out}", flush=True)
    return {"dir": str(out), "steps": result.global_step,
            "rewards_logged": sorted(k for k in (logs[-1] if logs else {}) if k.startswith("rewards/"))}


def run(out: Path, images: int = 3, grid: int = 8, sft_steps: int = 3, grpo_steps: int = 2,
        max_new_tokens: int = 16, device: str = "cpu") -> dict:
    """All seven stages into ``out``; returns the summary (artefact paths, row counts, the score)."""
    from transformers import AutoTokenizer

    from getok_data.export.trl import load
    from getok_data.interop import add_spatial_tokens
    from getok_data.tiny_vlm import base_tokenizer_folder, processor_for, tiny_model

    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    build, rows_path = out / "build", out / "trl" / "train.jsonl"
    getok("build", "--src", "synthetic", "--split", "train", "--size", str(images), "--grid", str(grid),
          "--segmenter", "superpixel", "--out", str(build), "--force", "--no-progress", "--json")
    getok("export", "trl", "--data", str(build), "--out", str(rows_path), "--stage", "all")
    rows = load(rows_path)

    # A model folder stand-in: a local tokenizer (no spatial tokens yet) and a random Qwen2-VL.
    tokenizer = AutoTokenizer.from_pretrained(base_tokenizer_folder(out / "base_tokenizer"))
    model = tiny_model(tokenizer)
    spatial = add_spatial_tokens(model, tokenizer, grid)
    processor = processor_for(tokenizer)
    print(f"add_spatial_tokens: {len(spatial)} tokens, ids {spatial[0]}..{spatial[-1]}, "
          f"{model.get_input_embeddings().weight.shape[0]} embedding rows", flush=True)

    sft_run = sft(out / "sft", model, processor, rows, sft_steps, device)
    grid_rows = rows.filter(lambda r: r["stage"] == "grid")
    grpo_run = grpo(out / "model", model, processor, grid_rows, grpo_steps, device)
    model_dir = grpo_run["dir"]

    pred = out / "pred.jsonl"
    predicted = last_json(getok("predict", "--data", str(build), "--model", model_dir, "--out", str(pred),
                                "--max-new-tokens", str(max_new_tokens), "--batch-size", "16",
                                "--device", device))
    report = last_json(getok("score", "--data", str(build), "--pred", str(pred),
                             "--per-sample", str(out / "per_sample.jsonl")))
    score_path = out / "score.json"
    score_path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    summary = {"build": str(build), "rows": str(rows_path), "n_rows": len(rows), "n_grid_rows": len(grid_rows),
               "spatial_tokens": len(spatial), "sft": sft_run, "grpo": grpo_run, "model": model_dir, "pred": str(pred),
               "n_pred": predicted["rows"], "score": str(score_path),
               "grid_seg_giou": report["metrics"]["all"]["grid/seg"]["giou"], "seconds": round(time.time() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for every artefact (created)")
    ap.add_argument("--images", type=int, default=3, help="synthetic images to build")
    ap.add_argument("--grid", type=int, default=8, help="grid size n")
    ap.add_argument("--sft-steps", type=int, default=3)
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--device", default="cpu", help="cpu (default, deterministic) or cuda")
    a = ap.parse_args(argv)
    summary = run(a.out, a.images, a.grid, a.sft_steps, a.grpo_steps, a.max_new_tokens, a.device)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
