"""The rows a build asks answers for: the export's rows (same ids, same order), with their target."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..export.rows import ALL_TASKS, STAGES, ExportStats, rows_of_meta


@dataclass
class ExpectedRow:
    """One export row of a sample: what was asked, the reference answer, and the target it is about."""

    id: str
    stage: str  # grid | offset (the export's refine{k} rows)
    task: str  # seg | box | point | pl | cap | points | boxes (offset rows: the refined grounding's kind)
    previous: str  # offset rows: the answer being refined
    solution: str  # the reference answer
    target: dict  # the sample JSON's target
    sent_index: int
    alt: tuple[str, str, str, str]  # (key, target_id, sent_id, task) for the alternative join

    @property
    def group(self) -> str:
        """Metrics group: ``grid/seg`` ... or ``offset/seg`` ... (the export's refine rows); a grid
        row answered with its own refinement turns is scored in ``refined/...`` instead."""
        return f"{self.stage}/{self.task}"


def _sent_ids(target: dict) -> list[str]:
    """Sentence ids aligned with the export's sentence index (empty sentences are not exported)."""
    sents, ids = target.get("sentences") or [], target.get("sent_ids") or []
    if len(ids) != len(sents) or not ids:
        return []
    return [str(i) for s, i in zip(sents, ids) if s and s.strip()]


def expected_rows(meta: dict, stages: tuple[str, ...] = STAGES, tasks: tuple[str, ...] = ALL_TASKS,
                  include_low_quality: bool = False) -> Iterator[ExpectedRow]:
    """The export rows of one sample (``getok_data.export.rows.rows_of_meta``, so low-quality
    targets are left out as the exports leave them out) as ExpectedRows."""
    targets = {str(t["target_id"]): t for t in meta["targets"]}
    for row in rows_of_meta(meta, stages, tasks, ExportStats(), include_low_quality):
        r = row.fields
        t = targets.get(r["target_id"]) if row.target is None else row.target
        if row.query is not None:  # points / boxes: the instances asked for, and DensityF1's candidates
            t = dict(t, gt_instances=row.query.instances, gt_candidates=row.query.candidates)
        key, tid, si, last = r["id"].rsplit("/", 3)
        sids = _sent_ids(t)
        sid = sids[int(si)] if int(si) < len(sids) else si
        yield ExpectedRow(r["id"], r["stage"], r["task"], r["previous"], r["solution"], t, int(si),
                          (key, tid, sid, last))
