"""Exports for real MLLM stacks (docs/INTEROP.md): one module per format, one registry.

Formats register themselves in ``registry.FORMATS`` when imported here: ``llamafactory`` (alias
``chat``), ``swift``, ``trl`` (JSONL, media extracted once to a folder, absolute paths) and
``easyr1``, ``verl`` (parquet, images and ground truth inside the row). ``export_tokenizer``
writes the Hugging Face tokenizer of the spatial vocabulary.
"""
from __future__ import annotations

import os

from . import easyr1, llamafactory, swift, trl, verl  # noqa: F401  (each registers its format)
from .registry import ALIASES, FORMATS, ExportFormat, get_format, register, run_export
from .rows import TASKS, ExportStats, Row, iter_rows, rows_of_meta, sentences_of
from .tokenizer import TokenizerError, build_tokenizer, export_tokenizer, spatial_tokens, standalone_tokenizer


def export_chat(data: str, out: str | os.PathLike, stages: tuple[str, ...] = ("grid",),
                tasks: tuple[str, ...] = TASKS, images_dir: str | os.PathLike | None = None) -> ExportStats:
    """``run_export("llamafactory", ...)``: the former ``export chat``, kept as an alias."""
    return run_export("llamafactory", data, out, stages, tasks, images_dir)


__all__ = ["ALIASES", "FORMATS", "ExportFormat", "ExportStats", "Row", "TASKS", "TokenizerError", "build_tokenizer",
           "export_chat", "export_tokenizer", "get_format", "iter_rows", "register", "rows_of_meta", "run_export",
           "sentences_of", "spatial_tokens", "standalone_tokenizer"]
