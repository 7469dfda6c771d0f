"""``getok-data export chat|tokenizer``: registered into the main CLI by ``getok_data.cli``."""
from __future__ import annotations

import json
import sys

import click


def register(main: click.Group) -> None:
    """Add the ``export`` group to the ``getok-data`` command line."""
    main.add_command(export)


@click.group()
def export() -> None:
    """Export shards and the vocabulary for other stacks (LLaMA-Factory, ms-swift, TRL, HF)."""


@export.command()
@click.option("--data", required=True, help="Build folder (or fsspec URL) holding shard-*.tar.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .jsonl file.")
@click.option("--stage", type=click.Choice(["grid", "offset", "all"]), default="grid", show_default=True,
              help="grid: image + expression -> grid answer; offset: previous answer -> <offset> turn.")
@click.option("--task", "tasks", type=click.Choice(["seg", "box", "point"]), multiple=True,
              help="Repeatable; default all (offset rows exist for seg and box).")
@click.option("--images-dir", type=click.Path(file_okay=False),
              help="Where images and candidate tables are extracted (default: <out folder>/images).")
@click.option("--relative", is_flag=True, help="Write paths relative to the JSONL's folder (default absolute).")
def chat(data: str, out: str, stage: str, tasks: tuple[str, ...], images_dir: str | None, relative: bool) -> None:
    """Chat-format JSONL (messages + images + reward columns), one row per target x sentence."""
    from .chat import TASKS, export_chat

    stages = ("grid", "offset") if stage == "all" else (stage,)
    try:
        stats = export_chat(data, out, stages, tasks or TASKS, images_dir, relative)
    except (FileNotFoundError, ValueError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    click.echo(f"wrote {stats.rows} rows from {stats.samples} samples ({stats.targets} targets) to {out}; "
               f"{stats.files_written} media files written")
    for reason, count in sorted(stats.skipped.items()):
        click.echo(f"skipped {count}: {reason}", err=True)
    if stats.rows == 0:
        sys.exit(1)


@export.command()
@click.option("--grid", "n", type=int, default=32, show_default=True, help="Grid size n.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--base", type=click.Path(exists=True), help="tokenizer.json (or a folder holding one) to extend.")
@click.option("--no-special", is_flag=True,
              help="Mark the tokens non-special (skip_special_tokens / vLLM would strip special ones from outputs).")
def tokenizer(n: int, out: str, base: str | None, no_special: bool) -> None:
    """tokenizer.json with every spatial token as one added token, plus added_tokens.json."""
    from .tokenizer import export_tokenizer

    try:
        summary = export_tokenizer(n, out, base, special=not no_special)
    except Exception as e:  # tokenizers raises a plain Exception on a malformed tokenizer.json
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    click.echo(json.dumps(summary, sort_keys=True))
    if summary["special"]:
        click.echo("note: tokens are special; decode with skip_special_tokens=False (vLLM: "
                   "skip_special_tokens=False) or export with --no-special", err=True)
