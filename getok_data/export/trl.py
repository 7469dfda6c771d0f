"""``export trl``: TRL conversational prompt-completion JSONL with ``images``.

``prompt`` = ``[{"role": "user", "content": instruction}]`` and ``completion`` =
``[{"role": "assistant", "content": answer}]``, with *no* ``<image>`` in the text: TRL's
``prepare_multimodal_messages`` inserts the image part itself (SFTTrainer's vision collator and
GRPOTrainer both do). SFT trains only the completion; GRPO uses ``prompt`` and passes the other
columns to the reward functions (getok_data.rewards.trl). ``images`` holds absolute paths:
``load`` below casts them to images, as TRL needs PIL images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..dataset import Sample
from .jsonl import base_columns, write_jsonl
from .registry import ExportFormat, register
from .rows import ExportStats, MediaWriter, Row


def layout(row: Row, image: str, cand: str) -> dict:
    return dict(base_columns(row, image, cand), prompt=[{"role": "user", "content": row.prompt}],
                completion=[{"role": "assistant", "content": row.answer}])


def write(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: MediaWriter, stats: ExportStats) -> None:
    write_jsonl(out, samples, media, stats, layout)


def load(path: str | Path, split: str = "train") -> Any:
    """The export as a ``datasets.Dataset`` whose ``images`` column decodes to PIL images."""
    import datasets

    ds = datasets.load_dataset("json", data_files=str(path), split=split)
    feature = datasets.List(datasets.Image()) if hasattr(datasets, "List") else datasets.Sequence(datasets.Image())
    return ds.cast_column("images", feature)


FORMAT = register(ExportFormat("trl", ".jsonl", write, "TRL prompt/completion JSONL + images", True))
