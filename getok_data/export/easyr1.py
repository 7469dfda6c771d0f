"""``export easyr1``: EasyR1 parquet with ``images`` (bytes), ``problem`` and ``answer``.

EasyR1's ``RLHFDataset`` reads ``data.prompt_key`` (set ``problem``; it splits the text on
``<image>`` into image and text parts), ``data.answer_key`` (``answer``; passed to the reward
function as ``reward_input["ground_truth"]``) and ``data.image_key`` (``images``: dicts holding
``bytes``). ``answer`` is the JSON text of ``export.parquet.ground_truth`` (the answer, the GT
mask and box, the candidate table), which ``getok_data.rewards.easyr1.compute_score`` reads.
``id``, ``solution`` and the small reward columns stay as columns too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..dataset import Sample
from .parquet import write_parquet
from .registry import ExportFormat, register
from .rows import IMAGE_TOKEN, ExportStats, Row


def layout(row: Row, images: list[dict], gt: dict) -> dict:
    return dict(row.fields, images=images, problem=IMAGE_TOKEN + row.prompt,
                answer=json.dumps(gt, sort_keys=True, separators=(",", ":")))


def write(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: None, stats: ExportStats) -> None:
    write_parquet(out, samples, stats, layout)


FORMAT = register(ExportFormat("easyr1", ".parquet", write, "EasyR1 parquet: images, problem, answer (GT inside)", False))
