"""Shared writer of the JSONL formats (llamafactory, swift, trl): one sorted-key JSON object a line."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from ..atomic import write_jsonl as write_lines
from ..dataset import Sample
from .rows import ExportStats, MediaWriter, Row

# layout(row, image_path, cand_path) -> the JSON object of one line
Layout = Callable[[Row, str, str], dict]


def write_jsonl(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: MediaWriter, stats: ExportStats,
                layout: Layout) -> None:
    """Extract each sample's media once, then write its rows through ``layout``; atomic."""
    def lines() -> Iterator[dict]:
        for sample, rows in samples:
            image, cand = media.sample(sample)
            for row in rows:
                yield layout(row, image, cand)

    stats.rows += write_lines(out, lines(), sort_keys=True)


def base_columns(row: Row, image: str, cand: str) -> dict:
    """The columns every JSONL row keeps: identity, ``solution``, the reward columns, media paths."""
    return dict(row.fields, images=[image], cand_npz=cand)
