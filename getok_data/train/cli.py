"""``getok-data train sft|grpo`` and ``getok-data eval`` (registered by ``getok_data.cli``)."""
from __future__ import annotations

import json
import sys

import click


def _fail(msg: str, code: int = 2) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def check_inputs(cfg: dict) -> None:
    """Every input the run will read exists, before any work starts (a missing --val must not
    surface after ten minutes of training)."""
    from .data import resolve_shards

    for key in ("train", "val"):
        spec = cfg["data"].get(key)
        if spec is None and key == "val":
            continue
        try:
            resolve_shards(spec)
        except FileNotFoundError:
            flag = "--data" if key == "train" else "--val"
            raise FileNotFoundError(f"{flag}: no shards found at {spec}"
                                    + (" (the default; pass --val DIR, or set data.val: null to skip evaluation)"
                                       if key == "val" else "")) from None


@click.group()
def train() -> None:
    """Train the bundled grounding model on built shards (SFT, then GRPO)."""


@train.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML (configs/train_sft.yaml); flags override it.")
@click.option("--data", help="Training shards: folder, manifest.json, brace pattern or fsspec URL.")
@click.option("--val", help="Validation shards (evaluated at the end and every --eval-every steps).")
@click.option("--stage", type=click.Choice(["grid", "offset", "both"]), help="Answers to train on (default both).")
@click.option("--steps", type=int, help="Optimizer steps (0: write the untrained model).")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--workers", type=int, help="DataLoader workers.")
@click.option("--eval-every", type=int, help="Evaluate on --val every N steps (0: only at the end).")
@click.option("--eval-limit", type=int, help="(target, sentence) pairs per periodic evaluation (the final one uses all).")
@click.option("--seed", type=int)
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), help="Continue this checkpoint's run.")
@click.option("--out", required=True, help="Checkpoint path (a .pt file; OUT.log.jsonl beside it).")
@click.option("--no-progress", is_flag=True)
def sft(config_path, data, val, stage, steps, batch_size, lr, workers, eval_every, eval_limit, seed, resume, out,
        no_progress) -> None:
    """Supervised fine-tuning on the grid and/or offset-refinement answers."""
    from .config import SFT_DEFAULTS, load_train_config
    from .sft import train_sft

    over = {"stage": stage, "steps": steps, "seed": seed, "optim": {"lr": lr},
            "eval": {"every": eval_every, "limit": eval_limit},
            "data": {"train": data, "val": val, "batch_size": batch_size, "workers": workers}}
    try:
        cfg = load_train_config(SFT_DEFAULTS, config_path, over)
        check_inputs(cfg)
        result = train_sft(cfg, out, resume=resume, progress=not no_progress)
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    click.echo(json.dumps({"checkpoint": out, **result}, sort_keys=True))


@train.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML (configs/train_grpo.yaml); flags override it.")
@click.option("--stage", type=click.Choice(["grid", "offset"]), help="grid: stage 1; offset: stage 2 (multi-turn refinement).")
@click.option("--init", "init", required=True, type=click.Path(exists=True, dir_okay=False), help="Starting checkpoint (SFT or GRPO stage 1).")
@click.option("--data", help="Training shards.")
@click.option("--val", help="Validation shards.")
@click.option("--steps", type=int)
@click.option("--prompts", type=int, help="Prompts per step.")
@click.option("--group", type=int, help="Completions sampled per prompt (G).")
@click.option("--lr", type=float)
@click.option("--kl", type=float, help="KL coefficient (to the frozen --init model).")
@click.option("--eval-every", type=int)
@click.option("--eval-limit", type=int, help="(target, sentence) pairs per periodic evaluation (the final one uses all).")
@click.option("--refine-rounds", type=int, help="Refinement rounds in the evaluations (stage offset: try 1).")
@click.option("--seed", type=int)
@click.option("--out", required=True, help="Checkpoint path.")
@click.option("--no-progress", is_flag=True)
def grpo(config_path, stage, init, data, val, steps, prompts, group, lr, kl, eval_every, eval_limit, refine_rounds,
         seed, out, no_progress) -> None:
    """Group-relative policy optimisation with table-decoded rewards (no SAM)."""
    from .config import GRPO_DEFAULTS, load_train_config
    from .grpo import train_grpo

    over = {"stage": stage, "steps": steps, "seed": seed,
            "eval": {"every": eval_every, "limit": eval_limit, "refine_rounds": refine_rounds},
            "grpo": {"prompts": prompts, "group": group, "lr": lr, "kl": kl},
            "data": {"train": data, "val": val}}
    try:
        cfg = load_train_config(GRPO_DEFAULTS, config_path, over)
        check_inputs(cfg)
        result = train_grpo(cfg, init, out, progress=not no_progress)
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    click.echo(json.dumps({"checkpoint": out, **result}, sort_keys=True))


@click.command("eval")
@click.option("--ckpt", type=click.Path(exists=True, dir_okay=False), help="Checkpoint to evaluate.")
@click.option("--data", required=True, help="Shards to evaluate on.")
@click.option("--refine-rounds", type=int, default=0, show_default=True, help="Offset-refinement turns after the grid answer.")
@click.option("--limit", type=int, help="Evaluate the first N (target, sentence) pairs only.")
@click.option("--mode", type=click.Choice(["strict", "grammar", "none"]), default="strict", show_default=True, help="Decoding constraint.")
@click.option("--batch-size", type=int, default=96, show_default=True)
@click.option("--oracle", is_flag=True, help="Score the stored GT tokens instead (the grid's ceiling).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (more than the free cores stalls).")
def eval_cmd(ckpt, data, refine_rounds, limit, mode, batch_size, oracle, threads) -> None:
    """Decode answers (masks via the stored candidate table) and print metrics; the LAST line is JSON."""
    import torch

    from .checkpoint import data_grid, load_checkpoint
    from .evaluate import evaluate
    from .evaluate import oracle as oracle_metrics

    torch.set_num_threads(threads)
    try:
        if oracle:
            metrics = oracle_metrics(data, limit)
        elif not ckpt:
            _fail("--ckpt is required (or --oracle)")
        else:
            model, meta = load_checkpoint(ckpt)
            click.echo(f"checkpoint {ckpt}: step {meta['step']}, grid n={model.cfg.n}", err=True)
            if data_grid(data) != model.cfg.n:
                _fail(f"checkpoint grid n={model.cfg.n} but {data} has n={data_grid(data)}")
            metrics = evaluate(model, data, refine_rounds, limit, batch_size, mode)
    except (KeyError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    click.echo(json.dumps({**metrics, "refine_rounds": refine_rounds}, sort_keys=True))


def register(main: click.Group) -> None:
    main.add_command(train)
    main.add_command(eval_cmd)
