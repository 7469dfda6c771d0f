"""``export verl``: verl RL parquet (``data_source``, ``prompt``, ``images``, ``ability``, ``reward_model``, ``extra_info``).

verl's ``RLHFDataset`` reads ``prompt`` (chat messages; ``<image>`` in a content string becomes an
image part), ``images`` (dicts holding ``bytes``), and passes ``data_source``,
``reward_model["ground_truth"]`` and ``extra_info`` to ``compute_score(data_source, solution_str,
ground_truth, extra_info)``. ``ground_truth`` is the answer text (``solution``); ``extra_info``
holds ``index``, ``id``, ``solution`` and the whole ground truth the GETok rewards need
(``export.parquet.ground_truth``, candidate table included), read by
``getok_data.rewards.verl.compute_score``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..dataset import Sample
from .parquet import write_parquet
from .registry import ExportFormat, register
from .rows import IMAGE_TOKEN, ExportStats, Row

DATA_SOURCE = "getok"
ABILITY = "grounding"


def write(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: None, stats: ExportStats) -> None:
    index = iter(range(1 << 62))

    def layout(row: Row, images: list[dict], gt: dict) -> dict:
        return {"data_source": DATA_SOURCE, "prompt": [{"role": "user", "content": IMAGE_TOKEN + row.prompt}],
                "images": images, "ability": ABILITY,
                "reward_model": {"style": "rule", "ground_truth": row.answer},
                "extra_info": dict(gt, index=next(index))}

    write_parquet(out, samples, stats, layout)


FORMAT = register(ExportFormat("verl", ".parquet", write, "verl parquet: data_source, prompt, images, reward_model, extra_info", False))
