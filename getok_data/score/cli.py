"""``getok-data score`` and ``getok-data predict``: registered into the main CLI by ``getok_data.cli``."""
from __future__ import annotations

import json
import sys

import click

from .metrics import COUNTS, DEFAULT_COUNT, DEFAULT_EMPTY_UNION, EMPTY_UNION


def register(main: click.Group) -> None:
    """Add ``score`` and ``predict`` to the ``getok-data`` command line."""
    main.add_command(score)
    main.add_command(predict)


def _fail(msg: str) -> None:
    """Bad usage or input: one line, exit 2 (docs/FORMAT.md section 4 exit codes)."""
    click.echo(f"error: {msg}", err=True)
    sys.exit(2)


@click.command()
@click.option("--data", required=True, help="Build folder (or fsspec URL) holding shard-*.tar.")
@click.option("--pred", "pred", required=True, type=click.Path(dir_okay=False), help="Prediction JSONL.")
@click.option("--decoder", type=click.Choice(["table", "segmenter"]), default="table", show_default=True,
              help="table: the stored candidate table; segmenter: prompt the build's segmenter at the predicted points.")
@click.option("--segmenter", "seg_name", help="segmenter: superpixel | sam (default: the build's).")
@click.option("--sam-model", help="vit_b | vit_l | vit_h | tiny (default: the build's).")
@click.option("--sam-checkpoint", type=click.Path(), help="Path of the SAM checkpoint (.pth).")
@click.option("--points-per-batch", help="SAM prompts per decoder batch, or auto.")
@click.option("--multimask", help="best_iou | single | 0 | 1 | 2")
@click.option("--dtype", help="float32 | bfloat16")
@click.option("--device", help="auto | cpu | cuda | cuda:N")
@click.option("--empty-union", type=click.Choice(EMPTY_UNION), default=DEFAULT_EMPTY_UNION, show_default=True,
              help="IoU of an empty prediction on an empty target: one (LISA, gRefCOCO) or zero (VisionReasoner).")
@click.option("--count", type=click.Choice(COUNTS), default=DEFAULT_COUNT, show_default=True,
              help="expression: every (target, sentence) counts once; instance: every target once.")
@click.option("--missing", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="An export row without a prediction (in a task that has predictions): a format failure, or left out.")
@click.option("--per-sample", type=click.Path(dir_okay=False), help="Write every scored row here (JSONL).")
@click.option("--gallery", type=click.Path(dir_okay=False), help="Write a PNG of the best and worst rows here.")
def score(data, pred, decoder, seg_name, sam_model, sam_checkpoint, points_per_batch, multimask, dtype, device,
          empty_union, count, missing, per_sample, gallery) -> None:
    """Score any model's answers on a build; the metrics JSON is the last stdout line."""
    from ..dataset import DatasetError
    from .run import ScoreError, score_build

    overrides = {"name": seg_name, "sam_model": sam_model, "sam_checkpoint": sam_checkpoint,
                 "points_per_batch": points_per_batch, "multimask": multimask, "dtype": dtype, "device": device}
    try:
        report = score_build(data, pred, decoder, overrides, empty_union, count, missing, per_sample, gallery)
    except (ScoreError, DatasetError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    j = report["join"]
    for what in ("unknown", "duplicates", "bad_rows", "bad_samples"):
        if j[what]:
            click.echo(f"warning: {what.replace('_', ' ')}: {j[what]}", err=True)
    if j["missing"]:
        click.echo(f"warning: missing predictions per task: {j['missing']} (--missing {missing})", err=True)
    for group, m in sorted(report["metrics"]["all"].items()):
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items() if v is not None}
        click.echo(f"{group}: {shown}")
    click.echo(json.dumps(report, sort_keys=True))


@click.command()
@click.option("--data", required=True, help="Build folder (or fsspec URL) holding shard-*.tar.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              help="A transformers vision-language model folder (AutoModelForImageTextToText + AutoProcessor).")
@click.option("--ckpt", type=click.Path(exists=True, dir_okay=False),
              help="Or a bundled-trainer checkpoint (eval's decoding; --stage offset refines every task).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Prediction JSONL to write.")
@click.option("--task", "tasks", default="seg,box,point", show_default=True,
              help="Comma-separated tasks: seg, box, point, pl, cap, points, boxes (the export's prompts).")
@click.option("--stage", type=click.Choice(["grid", "offset"]), default="grid", show_default=True,
              help="offset: after the grid answer, --rounds refinement turns on the model's own answers.")
@click.option("--rounds", type=int, default=1, show_default=True, help="Refinement turns for --stage offset.")
@click.option("--limit", type=int, help="Predict only the first N rows.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--mode", type=click.Choice(["strict", "grammar", "none"]), default="strict", show_default=True,
              help="--ckpt: the decoding constraint (as eval).")
def predict(data, model_dir, ckpt, out, tasks, stage, rounds, limit, batch_size, max_new_tokens, device, mode) -> None:
    """Run a vision-language model (or a bundled checkpoint) on the build's prompts; write rows for ``score``."""
    from ..dataset import DatasetError
    from ..predict import PredictError, predict_build, predict_checkpoint

    if (model_dir is None) == (ckpt is None):
        _fail("give exactly one of --model and --ckpt")
    try:
        if ckpt:  # --limit counts (target, sentence) pairs, as eval's
            summary = predict_checkpoint(data, ckpt, out, rounds if stage == "offset" else 0, limit, batch_size, mode)
        else:
            summary = predict_build(data, model_dir, out, tuple(t for t in tasks.split(",") if t), stage, rounds,
                                    limit, batch_size, max_new_tokens, device)
    except (PredictError, DatasetError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    click.echo(json.dumps(summary, sort_keys=True))
