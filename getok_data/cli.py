"""``getok-data``: a thin command line over the stages and pipelines."""
from __future__ import annotations

import json
import sys

import click

from .config import load_config


def _fail(msg: str, code: int = 1) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="getok-data")
def main() -> None:
    """Build GETok grounding-token datasets, check them, and train on them."""


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config; flags override it.")
@click.option("--src", help="synthetic | refcoco | refcoco+ | refcocog | coco")
@click.option("--split", help="Split to build (all, train, val, testA, ...).")
@click.option("--size", type=int, help="synthetic: number of images.")
@click.option("--seed", type=int, help="synthetic: scene seed.")
@click.option("--data-root", type=click.Path(), help="REFER layout root holding <dataset>/refs(...).p and instances.json.")
@click.option("--image-root", type=click.Path(), help="Folder of the images (COCO train2014 for RefCOCO).")
@click.option("--annotations", type=click.Path(), help="coco: instances json.")
@click.option("--split-by", help="REFER splitBy (unc, umd, google).")
@click.option("--grid", "n", type=int, help="Grid size n (n x n anchor tokens).")
@click.option("--m", "m", type=int, help="Offset lattice (default 2n: a step is half a cell).")
@click.option("--offset-masks/--no-offset-masks", default=None,
              help="Also store the masks one offset step from every anchor, so refined answers decode exactly "
                   "(default: on for superpixel, off for sam, where it costs ~4x the decoding).")
@click.option("--segmenter", help="superpixel | sam | sam2")
@click.option("--sam-model", help="sam: vit_b | vit_l | vit_h | tiny; sam2: hiera_t | hiera_s | hiera_b+ | hiera_l | tiny")
@click.option("--sam-checkpoint", type=click.Path(), help="Path of the SAM checkpoint (.pth).")
@click.option("--points-per-batch", help="SAM prompts per decoder batch, or auto (4 on CPU, 64 on GPU).")
@click.option("--fast-decoder/--no-fast-decoder", default=None, help="SAM: share the image embedding across prompts.")
@click.option("--multimask", help="best_iou | single | 0 | 1 | 2")
@click.option("--dtype", help="float32 | bfloat16")
@click.option("--device", help="auto | cpu | cuda | cuda:N")
@click.option("--table-max-side", type=int, help="Longest side of the stored candidate table (256 = SAM's mask resolution).")
@click.option("--selection", "method", help="sorted | gain")
@click.option("--tau", type=float, help="Target token IoU for the greedy selection.")
@click.option("--out", help="Output folder or fsspec URL.")
@click.option("--images-per-shard", type=int)
@click.option("--limit", type=int, help="Build only the first N images (sorted).")
@click.option("--max-error-rate", type=float, help="Exit non-zero above this quarantine rate (default 0.05).")
@click.option("--force", is_flag=True, help="Rebuild an output folder made with another config.")
@click.option("--runner", type=click.Choice(["local", "ray"]))
@click.option("--address", help="Ray address (auto, ray://host:10001); default starts a local Ray.")
@click.option("--num-actors", type=int)
@click.option("--gpus-per-actor", type=float)
@click.option("--cpus-per-actor", type=float)
@click.option("--cpu-workers", type=int, help="CPU workers per runner/actor that annotate while the segmenter runs.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def build(config_path, src, split, size, seed, data_root, image_root, annotations, split_by, n, m,
          offset_masks, segmenter, sam_model, sam_checkpoint, points_per_batch, fast_decoder, multimask, dtype, device,
          table_max_side, method, tau, out, images_per_shard, limit, max_error_rate, force, runner, address, num_actors,
          gpus_per_actor, cpus_per_actor, cpu_workers, no_progress, as_json) -> None:
    """Build (or resume) a sharded WebDataset of grounding tokens."""
    from pipelines.build import BuildError, check_error_rate, run_build
    from .stats import format_table

    overrides = {
        "source": {"name": src, "split": split, "size": size, "seed": seed, "data_root": data_root,
                   "image_root": image_root, "annotations": annotations, "split_by": split_by, "limit": limit},
        "grid": {"n": n, "m": m, "offset_masks": offset_masks},
        "segmenter": {"name": segmenter, "sam_model": sam_model, "sam_checkpoint": sam_checkpoint,
                      "points_per_batch": points_per_batch, "fast_decoder": fast_decoder, "multimask": multimask,
                      "dtype": dtype, "device": device, "table_max_side": table_max_side},
        "selection": {"method": method, "tau": tau},
        "build": {"out": out, "images_per_shard": images_per_shard, "max_error_rate": max_error_rate,
                  "runner": runner, "address": address, "num_actors": num_actors,
                  "gpus_per_actor": gpus_per_actor, "cpus_per_actor": cpus_per_actor,
                  "cpu_workers": cpu_workers},
    }
    try:
        cfg = load_config(config_path, overrides)
        summary = run_build(cfg, force=force, progress=not no_progress)
    except (BuildError, KeyError, ValueError, TypeError, FileNotFoundError) as e:
        _fail(str(e) if not isinstance(e, KeyError) else e.args[0])
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        click.echo(format_table(summary))
        click.echo(f"shards: {summary['out']}/shard-*.tar  (manifest.json, errors.jsonl)")
    try:
        check_error_rate(summary, float(cfg["build"]["max_error_rate"]))
    except BuildError as e:
        _fail(str(e), 3)


@main.command()
@click.option("--grid", "n", type=int, default=32, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["json", "txt"]), default="txt", show_default=True)
def vocab(n: int, fmt: str) -> None:
    """Print the ordered spatial vocabulary (grid tokens, offsets, wrappers)."""
    from .tokens import vocabulary

    tokens = vocabulary(n)
    click.echo(json.dumps(tokens) if fmt == "json" else "\n".join(tokens))


@main.command()
@click.argument("data")
def verify(data: str) -> None:
    """Recompute checksums and re-decode every target; exit non-zero at a bad shard."""
    from .verify import verify_dir

    shards = samples = targets = 0
    for report in verify_dir(data):
        shards += 1
        samples += report.samples
        targets += report.targets
        if report.problems:
            for p in report.problems[:20]:
                click.echo(f"{report.shard}: {p}", err=True)
            _fail(f"{report.shard} failed verification ({len(report.problems)} problem(s))")
    if shards == 0:
        _fail(f"no shards found in {data}")
    click.echo(f"ok: {shards} shards, {samples} samples, {targets} targets verified")


@main.command()
@click.argument("data")
@click.option("--json", "as_json", is_flag=True)
def stats(data: str, as_json: bool) -> None:
    """Images, targets, errors, tokens per mask, token IoU, regions, bytes per image."""
    from .stats import format_table, read_sidecars, summarize
    from .storage import Storage

    sidecars = read_sidecars(Storage(data))
    if not sidecars:
        _fail(f"no shard sidecars found in {data}")
    summary = summarize(sidecars)
    click.echo(json.dumps(summary, sort_keys=True) if as_json else format_table(summary))


@main.command()
@click.argument("data")
@click.option("--key", help="Sample key (default: the first sample).")
@click.option("--target", "target_index", type=int, default=0, show_default=True, help="Target index in the sample.")
@click.option("--png", "png", type=click.Path(dir_okay=False), required=True, help="Where to write the drawing.")
def inspect(data: str, key: str | None, target_index: int, png: str) -> None:
    """Draw a sample: GT mask, chosen anchors, decoded union, region labels; print its tokens."""
    from .inspect import find_sample, render

    try:
        meta, members = find_sample(data, key)
        text = render(meta, members, target_index, png)
    except (KeyError, IndexError, FileNotFoundError) as e:
        _fail(str(e))
    click.echo(text)


def _register_optional() -> None:
    """Commands from later modules (train, eval, export) register themselves when present."""
    import importlib

    for mod in ("getok_data.train.cli", "getok_data.export.cli"):
        try:
            importlib.import_module(mod).register(main)
        except ModuleNotFoundError as e:
            if not mod.startswith(e.name or "?"):  # a missing optional module, not a broken import
                raise


_register_optional()

if __name__ == "__main__":
    main()
