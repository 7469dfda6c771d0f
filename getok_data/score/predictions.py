"""Prediction rows (JSONL) and their join onto a build's export rows, with every miss counted.

A row is ``{"id": ..., "text": ...}`` with the export rows' ``id``
(``{key}/{target_id}/{sentence_index}/{seg|box|point}`` or ``.../refine{k}``), or
``{"key", "target_id", "sent_id", "task", "text"}`` where ``sent_id`` is the target's own
sentence id (``sent_ids`` in the sample JSON, e.g. REFER's) or, for targets without sentence
ids, the sentence index. Optional fields: ``refine`` (list of ``<offset>`` answers, the
multi-turn refinement that ``getok-data predict --stage offset`` writes) and ``previous``.
Unreadable lines, rows without an id or text, duplicates, unknown ids and missing predictions
are counted and reported, never a crash. The file is UTF-8 (a leading BOM and CRLF line ends are
accepted); a file that is not text at all (a byte that is not UTF-8) is refused whole with
:class:`PredictionsError` naming the file and the line, since no row of it can be trusted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class PredictionsError(ValueError):
    """The prediction file cannot be read as text: one line naming the file and where."""


@dataclass
class Prediction:
    id: str
    text: str
    refine: list[str] | None = None  # None: no "refine" field (a plain grid answer)
    line: int = 0


@dataclass
class Predictions:
    """Predictions by id (and by the alternative key), plus what could not be used."""

    by_id: dict[str, Prediction] = field(default_factory=dict)
    by_alt: dict[tuple[str, str, str, str], Prediction] = field(default_factory=dict)
    bad_rows: list[str] = field(default_factory=list)  # "line N: why"
    duplicates: int = 0
    used: set[int] = field(default_factory=set)  # line numbers joined to an export row

    def lookup(self, row_id: str, alt: tuple[str, str, str, str]) -> Prediction | None:
        """The prediction for an export row, by ``id`` first, then by (key, target_id, sent_id, task)."""
        p = self.by_id.get(row_id) or self.by_alt.get(alt)
        if p is not None:
            self.used.add(p.line)
        return p

    def unknown(self) -> list[str]:
        """Ids of the predictions no export row asked for."""
        rows = list(self.by_id.values()) + list(self.by_alt.values())
        return sorted({p.id for p in rows if p.line not in self.used})


def _text(obj: dict, name: str) -> str | None:
    v = obj.get(name)
    return v if isinstance(v, str) else None


def read_predictions(path: str | Path) -> Predictions:
    """Parse a prediction JSONL; bad rows are recorded with their line number, never raised."""
    out = Predictions()
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # utf-8-sig: editors on Windows write a BOM
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise PredictionsError(f"{path}: line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                                       f"column {e.start + 1}); a prediction file is JSONL") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                out.bad_rows.append(f"line {lineno}: not JSON ({e.msg})")
                continue
            if not isinstance(obj, dict):
                out.bad_rows.append(f"line {lineno}: not a JSON object")
                continue
            text = _text(obj, "text")
            if text is None:
                out.bad_rows.append(f"line {lineno}: no string 'text'")
                continue
            refine = obj.get("refine")
            if refine is not None and (not isinstance(refine, list) or not all(isinstance(r, str) for r in refine)):
                out.bad_rows.append(f"line {lineno}: 'refine' is not a list of strings")
                continue
            if isinstance(obj.get("id"), str):
                pid, table, key = obj["id"], out.by_id, obj["id"]
            elif all(obj.get(k) is not None for k in ("key", "target_id", "sent_id", "task")):
                key = (str(obj["key"]), str(obj["target_id"]), str(obj["sent_id"]), str(obj["task"]))
                pid, table = "/".join(key), out.by_alt
            else:
                out.bad_rows.append(f"line {lineno}: neither 'id' nor key/target_id/sent_id/task")
                continue
            if key in table:
                out.duplicates += 1  # the first one counts
                continue
            table[key] = Prediction(pid, text, None if refine is None else list(refine), lineno)
    return out
