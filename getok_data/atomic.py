"""Files written whole or not at all: a temporary sibling, then ``os.replace`` (a reader sees the
old file or the new one, never a part of it; a failed write leaves no temporary behind)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path to fill; renamed onto ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict], sort_keys: bool = False) -> int:
    """One JSON object a line (UTF-8, not ASCII-escaped); returns the number of rows."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=sort_keys, ensure_ascii=False) + "\n")
            count += 1
    return count
