"""``getok-data``: a thin command line over the stages and pipelines."""
from __future__ import annotations

import json
import os
import sys

import click

from .config import ConfigError, load_config


# Exit codes (docs/FORMAT.md): 1 data found bad (verify), 2 bad usage or config, 3 error rate above
# --max-error-rate, 4 output folder refused (another config, another build), 5 I/O error.
EXIT_BAD_DATA, EXIT_USAGE, EXIT_ERROR_RATE, EXIT_OUTPUT, EXIT_IO = 1, 2, 3, 4, 5


def _fail(msg: str, code: int = EXIT_BAD_DATA) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(code)


def _io_message(e: OSError) -> str:
    where = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{e.strerror or type(e).__name__}{where}" if e.strerror else f"{type(e).__name__}: {e}"


def _parse_set(items: tuple[str, ...]) -> dict:
    """``--set section.key=value`` (value read as YAML) -> nested overrides."""
    import yaml

    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        parts = key.strip().split(".")
        if not eq or len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE (e.g. segmenter.scale=200)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        out.setdefault(parts[0], {})[parts[1]] = parsed
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="getok-data")
def main() -> None:
    """Build GETok grounding-token datasets, check them, and train on them."""


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config; flags override it.")
@click.option("--src", help="synthetic | refcoco | refcoco+ | refcocog | coco | grefcoco | reasonseg | hf | tusimple | culane | vg | humanref")
@click.option("--split", help="Split to build (all, train, val, testA, ...).")
@click.option("--size", type=int, help="synthetic: number of images.")
@click.option("--seed", type=int, help="synthetic: scene seed.")
@click.option("--data-root", type=click.Path(), help="REFER layout root holding <dataset>/refs(...).p and instances.json.")
@click.option("--image-root", type=click.Path(), help="Folder of the images (COCO train2014 for RefCOCO).")
@click.option("--annotations", type=click.Path(), help="coco: instances json; humanref: annotations.jsonl (default <data-root>/annotations.jsonl).")
@click.option("--split-by", help="REFER splitBy (unc, umd, google).")
@click.option("--dataset-dir", help="REFER: folder under --data-root (default: the dataset name).")
@click.option("--include-crowd/--no-include-crowd", default=None, help="coco: keep iscrowd=1 annotations (default on).")
@click.option("--data-files", help="hf: parquet files / glob, or a datasets save_to_disk folder.")
@click.option("--columns", help="hf: role=column,... (image, text, mask|rle|polygon|bbox, image_id, ann_id, "
                                "category, bbox_format=xywh|xyxy|xyxy_norm); overrides the preset.")
@click.option("--preset", help="hf: column layout of a known set (lmms-refcoco | visionreasoner).")
@click.option("--min-token-iou", type=float, help="Flag targets below this token IoU low_quality (default off).")
@click.option("--list", "lane_list", type=click.Path(), help="culane: frame list relative to --data-root (list/train_gt.txt).")
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
@click.option("--dry-run", is_flag=True, help="Print the plan (images, shards, images per split, annotation problems) "
              "as a last JSON line; build and write nothing.")
@click.option("--runner", type=click.Choice(["local", "ray"]))
@click.option("--address", help="Ray address (auto, ray://host:10001); default starts a local Ray.")
@click.option("--num-actors", type=int)
@click.option("--gpus-per-actor", type=float)
@click.option("--cpus-per-actor", type=float)
@click.option("--cpu-workers", type=int, help="CPU workers per runner/actor that annotate while the segmenter runs.")
@click.option("--storage-options", help="JSON of fsspec options for URL inputs and --out (e.g. '{\"s3\": {\"anon\": true}}');"
              " credentials otherwise come from the filesystem's environment (AWS_*, AWS_ENDPOINT_URL).")
@click.option("--set", "settings", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Set any config key (repeatable), e.g. --set segmenter.scale=200; flags above win.")
@click.option("--no-progress", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON line.")
def build(config_path, src, split, size, seed, data_root, image_root, annotations, split_by, dataset_dir, lane_list,
          include_crowd, data_files, columns, preset, min_token_iou, n, m, offset_masks, segmenter, sam_model,
          sam_checkpoint, points_per_batch, fast_decoder, multimask, dtype, device, table_max_side, method, tau, out,
          images_per_shard, limit, max_error_rate, force, dry_run, runner, address, num_actors, gpus_per_actor,
          cpus_per_actor, cpu_workers, storage_options, settings, no_progress, as_json) -> None:
    """Build (or resume) a sharded WebDataset of grounding tokens."""
    from pipelines.build import BuildError, check_error_rate, dry_run as plan_only, run_build

    from .stats import format_table

    if storage_options is not None:  # an environment variable: it reaches Ray actors, never the manifest
        from .location import ENV

        try:
            if not isinstance(json.loads(storage_options), dict):
                raise ValueError
        except ValueError:
            _fail(f"--storage-options: expected a JSON object, got {storage_options[:80]!r}", EXIT_USAGE)
        os.environ[ENV] = storage_options
    if points_per_batch is not None and points_per_batch != "auto":
        try:
            points_per_batch = int(points_per_batch)
        except ValueError:
            _fail(f"--points-per-batch: expected an integer or auto, got {points_per_batch!r}", EXIT_USAGE)
    flags = {
        "source": {"name": src, "split": split, "size": size, "seed": seed, "data_root": data_root,
                   "image_root": image_root, "annotations": annotations, "split_by": split_by,
                   "dataset_dir": dataset_dir, "include_crowd": include_crowd, "limit": limit,
                   "data_files": data_files, "columns": columns, "preset": preset, "list": lane_list},
        "grid": {"n": n, "m": m, "offset_masks": offset_masks},
        "segmenter": {"name": segmenter, "sam_model": sam_model, "sam_checkpoint": sam_checkpoint,
                      "points_per_batch": points_per_batch, "fast_decoder": fast_decoder, "multimask": multimask,
                      "dtype": dtype, "device": device, "table_max_side": table_max_side},
        "selection": {"method": method, "tau": tau, "min_token_iou": min_token_iou},
        "build": {"out": out, "images_per_shard": images_per_shard, "max_error_rate": max_error_rate,
                  "runner": runner, "address": address, "num_actors": num_actors,
                  "gpus_per_actor": gpus_per_actor, "cpus_per_actor": cpus_per_actor,
                  "cpu_workers": cpu_workers},
    }
    try:
        overrides = _parse_set(settings)
        for section, values in flags.items():
            overrides.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
        cfg = load_config(config_path, overrides)
        if dry_run:  # the plan only: nothing is built, --out is not touched
            planned = plan_only(cfg)
            if not as_json:
                for k in ("source", "images", "planned_shards", "images_per_split", "annotation_problems", "deferred"):
                    click.echo(f"{k:<22} {planned[k]}")
            click.echo(json.dumps(planned, sort_keys=True))
            return
        summary = run_build(cfg, force=force, progress=not no_progress)
    except (ConfigError, ValueError, TypeError) as e:
        _fail(str(e), EXIT_USAGE)
    except FileNotFoundError as e:
        _fail(f"not found: {e.filename or e}" if e.filename else str(e), EXIT_USAGE)
    except BuildError as e:
        _fail(str(e), EXIT_OUTPUT)
    except OSError as e:
        _fail(f"cannot write {cfg.build.out}: {_io_message(e)}", EXIT_IO)
    except RecursionError:
        _fail("input nested too deeply (RecursionError); see errors.jsonl of the shards built so far", EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        click.echo(format_table(summary))
        click.echo(f"shards: {summary['out']}/shard-*.tar  (manifest.json, errors.jsonl)")
    try:
        check_error_rate(summary, cfg.build.max_error_rate)
    except BuildError as e:
        _fail(str(e), EXIT_ERROR_RATE)


@main.command()
def options() -> None:
    """Every build config key, its type and default: the sections, then each source's and
    segmenter's own options (a YAML section or --set SECTION.KEY=VALUE takes them)."""
    from .config import describe_options

    click.echo(describe_options())


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
    """Prove a build complete and intact: the manifest's shards all present, checksums as recorded,
    every target re-decoded from its table. Exit 1 on any problem, listing them."""
    from .dataset import DatasetError
    from .verify import verify_dir

    shards = samples = targets = 0
    bad: list[str] = []
    try:
        for report in verify_dir(data):
            if report.shard != "manifest.json":
                shards += 1
                samples += report.samples
                targets += report.targets
            for p in report.problems[:20]:
                click.echo(f"{report.shard}: {p}", err=True)
            if report.problems:
                bad.append(f"{report.shard} ({len(report.problems)} problem(s))")
    except DatasetError as e:
        _fail(str(e), EXIT_USAGE)
    if bad:
        _fail(f"{data} failed verification: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}")
    if shards == 0:
        _fail(f"no shards found in {data}")
    click.echo(f"ok: {shards} shards, {samples} samples, {targets} targets verified")


@main.command()
@click.argument("data")
@click.option("--json", "as_json", is_flag=True)
def stats(data: str, as_json: bool) -> None:
    """Images, targets, errors, tokens per mask, token IoU, regions, bytes per image."""
    from .dataset import Dataset, DatasetError, ManifestError
    from .stats import format_table, summarize

    try:
        sidecars = Dataset(data).sidecars()
    except (DatasetError, ManifestError) as e:
        _fail(str(e), EXIT_USAGE)
    if not sidecars:
        _fail(f"no shard sidecars found in {data}", EXIT_USAGE)
    summary = summarize(sidecars)
    click.echo(json.dumps(summary, sort_keys=True) if as_json else format_table(summary))


@main.command()
@click.argument("data")
@click.option("--key", help="Sample key (default: the first sample).")
@click.option("--target", "target_index", type=int, default=0, show_default=True, help="Target index in the sample.")
@click.option("--png", "png", type=click.Path(dir_okay=False), help="Where to write the drawing.")
@click.option("--gallery", "gallery_png", type=click.Path(dir_okay=False),
              help="Also write a sheet of --count targets spread over token IoU (best, median, worst).")
@click.option("--count", type=int, default=9, show_default=True, help="Targets in the --gallery sheet.")
def inspect(data: str, key: str | None, target_index: int, png: str | None, gallery_png: str | None,
            count: int) -> None:
    """Draw a sample: GT mask, chosen anchors, decoded union, region labels; print its tokens."""
    from .dataset import DatasetError
    from .inspect import find_sample, render

    if not png and not gallery_png:
        _fail("inspect needs --png or --gallery (or both)", EXIT_USAGE)
    try:
        if png:
            click.echo(render(find_sample(data, key), target_index, png))
        if gallery_png:
            from .gallery import gallery

            click.echo(gallery(data, gallery_png, count))
    except (KeyError, IndexError, FileNotFoundError, DatasetError) as e:
        _fail(str(e).strip("'\""), EXIT_USAGE)


@main.command()
@click.argument("data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write the site into.")
@click.option("--pred", type=click.Path(exists=True, dir_okay=False),
              help="Prediction JSONL (as for score): metrics, every prediction decoded beside the GT.")
@click.option("--limit", type=int, help="Only the first N images (sorted), for a quick look at a big build.")
@click.option("--no-progress", is_flag=True)
def report(data: str, out: str, pred: str | None, limit: int | None, no_progress: bool) -> None:
    """Write a static HTML report of a build (and of a score run): open OUT/index.html anywhere."""
    from .dataset import DatasetError, ManifestError
    from .report import ReportError, build_report

    if limit is not None and limit < 1:
        _fail("--limit must be >= 1", EXIT_USAGE)
    try:
        summary = build_report(data, out, pred, limit, progress=not no_progress)
    except (ReportError, DatasetError, ManifestError, ValueError) as e:
        _fail(str(e), EXIT_USAGE)
    click.echo(f"report: {summary['index']}  ({summary['images']} images, {summary['targets']} targets, "
               f"{summary['predictions']} scored rows, {summary['bytes'] / 1e6:.2f} MB)")
    click.echo(json.dumps(summary, sort_keys=True))


def _register_optional() -> None:
    """Commands from later modules (train, eval, export) register themselves when present."""
    import importlib

    for mod in ("getok_data.train.cli", "getok_data.export.cli", "getok_data.score.cli"):
        try:
            importlib.import_module(mod).register(main)
        except ModuleNotFoundError as e:
            if not mod.startswith(e.name or "?"):  # a missing optional module, not a broken import
                raise


_register_optional()

if __name__ == "__main__":
    main()
