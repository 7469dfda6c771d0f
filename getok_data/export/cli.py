"""``getok-data export FORMAT|tokenizer``: registered into the main CLI by ``getok_data.cli``.

One subcommand per registered export format (export/registry.py), plus ``tokenizer``.
"""
from __future__ import annotations

import json
import sys

import click


def register(main: click.Group) -> None:
    """Add the ``export`` group to the ``getok-data`` command line."""
    main.add_command(export)


@click.group()
def export() -> None:
    """Export shards and the vocabulary for other stacks (LLaMA-Factory, ms-swift, TRL, EasyR1, verl, HF)."""


def _format_command(name: str, help_text: str, media: bool, suffix: str) -> click.Command:
    @click.option("--data", required=True, help="Build folder (or fsspec URL) holding shard-*.tar.")
    @click.option("--out", required=True, type=click.Path(dir_okay=False), help=f"Output {suffix} file.")
    @click.option("--stage", type=click.Choice(["grid", "offset", "all"]), default="grid", show_default=True,
                  help="grid: image + expression -> grid answer; offset: previous answer -> <offset> turn.")
    @click.option("--task", "tasks", type=click.Choice(["seg", "box", "point", "pl", "cap", "points", "boxes"]),
                  multiple=True,
                  help="Repeatable; default seg, box, point (offset rows exist for seg and box). Only when named: "
                       "pl (lane polylines), cap (region captioning: region tokens in, text out), points / boxes "
                       "(one group per instance; <point></point> / <box></box> when nobody matches).")
    @click.option("--cap-region", type=click.Choice(["box", "seg"]), default="box", show_default=True,
                  help="cap: the region in the prompt as its <box> or its <seg> tokens (targets with a mask).")
    @click.option("--include-low-quality", is_flag=True, help="Keep targets marked low_quality (skipped by default).")
    @click.option("--images-dir", type=click.Path(file_okay=False), hidden=not media,
                  help="Where images and candidate tables are extracted (default: <out folder>/images).")
    @click.option("--relative", is_flag=True, hidden=True)
    def command(data: str, out: str, stage: str, tasks: tuple[str, ...], cap_region: str, include_low_quality: bool,
                images_dir: str | None, relative: bool) -> None:
        from ..dataset import DatasetError
        from .registry import run_export
        from .rows import TASKS, parse_stage

        if relative:
            click.echo("error: --relative was removed: relative paths resolved only from the output's folder "
                       "(rewards, datasets and TRL failed elsewhere); every path is now absolute", err=True)
            sys.exit(2)
        if images_dir and not media:
            click.echo(f"error: --images-dir does not apply to {name}: images are embedded in the rows", err=True)
            sys.exit(2)
        try:
            stats = run_export(name, data, out, parse_stage(stage), tasks or TASKS, images_dir, include_low_quality,
                               cap_region)
        except (FileNotFoundError, ValueError, DatasetError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)  # bad input (docs/FORMAT.md section 4 exit codes); 1: nothing to export
        click.echo(f"wrote {stats.rows} {name} rows from {stats.samples} samples ({stats.targets} targets) to {out}"
                   + (f"; {stats.files_written} media files written" if media else ""))
        for reason, count in sorted(stats.skipped.items()):
            click.echo(f"skipped {count}: {reason}", err=True)
        if stats.rows == 0:
            sys.exit(1)

    command.__doc__ = help_text
    return click.command(name=name, help=help_text)(command)


def _add_formats() -> None:
    from .registry import ALIASES, FORMATS

    for fmt in FORMATS.values():
        export.add_command(_format_command(fmt.name, fmt.help, fmt.media, fmt.suffix))
    for alias, target in ALIASES.items():
        fmt = FORMATS[target]
        export.add_command(_format_command(fmt.name, f"Alias of `export {target}`: {fmt.help}", fmt.media, fmt.suffix),
                           name=alias)


@export.command()
@click.option("--data", help="Build folder: the grid is read from its manifest (preferred over --grid).")
@click.option("--grid", "n", type=int, help="Grid size n, when there is no build to read it from.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--base", type=click.Path(exists=True),
              help="Tokenizer folder (or its tokenizer.json) to extend; all its tokenizer files are copied.")
@click.option("--special", is_flag=True,
              help="Mark the tokens special (default normal: TRL, vLLM and verl strip special tokens from outputs).")
@click.option("--no-special", is_flag=True, hidden=True, help="The default now; kept for old scripts.")
@click.option("--allow-existing", is_flag=True, help="Accept a base that already holds spatial tokens (they keep their ids).")
def tokenizer(data: str | None, n: int | None, out: str, base: str | None, special: bool, no_special: bool,
              allow_existing: bool) -> None:
    """tokenizer.json with every spatial token as one added token (+ the base's tokenizer files)."""
    from .tokenizer import export_tokenizer

    if special and no_special:
        click.echo("error: --special and --no-special contradict each other", err=True)
        sys.exit(2)
    if data:
        from ..dataset import Dataset, DatasetError

        try:
            built = Dataset(data).grid_n()
        except (DatasetError, ValueError, StopIteration) as e:
            click.echo(f"error: --data {data}: cannot read the grid size ({e or 'no samples'})", err=True)
            sys.exit(2)
        if n is not None and n != built:
            click.echo(f"error: --grid {n} disagrees with the build {data} (grid {built}); drop --grid", err=True)
            sys.exit(2)
        n = built
    if n is None:
        click.echo("error: give --data BUILD (the grid is read from it) or --grid N", err=True)
        sys.exit(2)
    try:
        summary = export_tokenizer(n, out, base, special=special, allow_existing=allow_existing)
    except Exception as e:  # tokenizers raises a plain Exception on a malformed tokenizer.json
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(json.dumps(summary, sort_keys=True))
    if not summary["contiguous"]:
        click.echo("warning: the spatial token ids are not consecutive (the base held some of them)", err=True)
    if summary["special"]:
        click.echo("note: tokens are special; decode with skip_special_tokens=False or score with "
                   "getok_data.rewards.trl.make_rewards(tokenizer)", err=True)


_add_formats()
