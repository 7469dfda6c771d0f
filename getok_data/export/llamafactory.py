"""``export llamafactory`` (alias ``chat``): LLaMA-Factory sharegpt JSONL + its ``dataset_info.json`` entry.

Each row: ``messages`` = ``[user "<image>" + instruction, assistant answer]`` (LLaMA-Factory
replaces ``<image>`` by the image; one placeholder per entry of ``images``), ``images`` =
``[absolute path]``, plus ``id``, ``solution`` and the reward columns. Offset rows carry the
previous answer inside the user turn, so only the ``<offset>`` turn is trained whatever
``mask_history`` says. ``dataset_info.json`` next to the JSONL gets (or updates) the entry named
after the JSONL's stem; other entries there are kept.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from ..atomic import write_atomic
from ..dataset import Sample
from .jsonl import base_columns, write_jsonl
from .registry import ExportFormat, register
from .rows import IMAGE_TOKEN, ExportStats, MediaWriter, Row

DATASET_INFO = "dataset_info.json"


def messages(row: Row) -> list[dict[str, str]]:
    """The sharegpt turns of a row, with the ``<image>`` placeholder in the user turn."""
    return [{"role": "user", "content": IMAGE_TOKEN + row.prompt}, {"role": "assistant", "content": row.answer}]


def layout(row: Row, image: str, cand: str) -> dict:
    return dict(base_columns(row, image, cand), messages=messages(row))


def dataset_info_entry(file_name: str) -> dict:
    """LLaMA-Factory's dataset description of a sharegpt file with ``role``/``content`` messages and images."""
    return {"file_name": file_name, "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}


def write_dataset_info(out: Path) -> Path:
    """Add (or replace) the entry ``out.stem`` in ``out.parent/dataset_info.json``; atomic."""
    path = out.parent / DATASET_INFO
    info = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{path}: not valid JSON ({e}); fix or remove it") from None
        if not isinstance(info, dict):
            raise ValueError(f"{path}: expected a JSON object of dataset entries")
    info[out.stem] = dataset_info_entry(out.name)
    write_atomic(path, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    return path


def write(out: Path, samples: Iterator[tuple[Sample, list[Row]]], media: MediaWriter, stats: ExportStats) -> None:
    write_jsonl(out, samples, media, stats, layout)
    write_dataset_info(out)


FORMAT = register(ExportFormat("llamafactory", ".jsonl", write, "LLaMA-Factory sharegpt JSONL + dataset_info.json", True),
                  aliases=("chat",))
