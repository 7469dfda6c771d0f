"""The export registry: each format module registers one ``ExportFormat`` under its name.

``getok-data export FORMAT`` and ``run_export`` look formats up here; ``chat`` is an alias of
``llamafactory``. A format turns the shared rows (export/rows.py) into its framework's layout and
writes one output file atomically (temp + rename).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..dataset import Sample
from .rows import ExportStats, MediaWriter, Row, check_selection, iter_rows

# writer(out, samples_with_rows, media, stats) -> None; writes ``out`` atomically
Writer = Callable[[Path, Iterator[tuple[Sample, list[Row]]], "MediaWriter | None", ExportStats], None]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str  # ".jsonl" or ".parquet"
    writer: Writer
    help: str
    media: bool  # True: images and tables extracted to a folder; False: embedded in the rows


FORMATS: dict[str, ExportFormat] = {}
ALIASES: dict[str, str] = {}


def register(fmt: ExportFormat, aliases: tuple[str, ...] = ()) -> ExportFormat:
    """Add a format (and its aliases) to the registry; a name taken twice is an error."""
    for name in (fmt.name, *aliases):
        if name in FORMATS or name in ALIASES:
            raise ValueError(f"export format {name!r} registered twice")
    FORMATS[fmt.name] = fmt
    for a in aliases:
        ALIASES[a] = fmt.name
    return fmt


def get_format(name: str) -> ExportFormat:
    name = ALIASES.get(name, name)
    if name not in FORMATS:
        raise ValueError(f"unknown export format {name!r}; known: {sorted(FORMATS) + sorted(ALIASES)}")
    return FORMATS[name]


def run_export(fmt: str, data: str, out: str | os.PathLike, stages: tuple[str, ...] = ("grid",),
               tasks: tuple[str, ...] = ("seg", "box", "point"), images_dir: str | os.PathLike | None = None,
               include_low_quality: bool = False, cap_region: str = "box") -> ExportStats:
    """Export the build ``data`` as ``fmt`` into the file ``out``; every path in a row is absolute.

    Images and candidate tables of media formats go to ``images_dir`` (default ``<out folder>/images``).
    """
    spec = get_format(fmt)
    check_selection(stages, tasks, cap_region)  # before any file is made
    out_path = Path(out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stats = ExportStats()
    media = None
    if spec.media:
        media = MediaWriter(Path(images_dir) if images_dir else out_path.parent / "images", stats)
    spec.writer(out_path, iter_rows(data, stages, tasks, stats, include_low_quality, cap_region), media, stats)
    return stats
