"""The rows every export format shares: one per (target, sentence, task), built from a build folder.

The order is deterministic: shards sorted, samples in tar order, targets in order, sentences in
order, then tasks (seg, box, point) or refinement samples in stored order. Row ids are stable
(``getok-data score`` joins predictions on them):

- grid rows ``{key}/{target_id}/{sentence_index}/{task}``
- offset rows ``{key}/{target_id}/{sentence_index}/refine{k}``
- lane rows, only when ``pl`` is asked (not a default task): grid ``.../{sentence_index}/pl``,
  offset ``.../{sentence_index}/refinepl`` (the polyline's own ``refine``, FORMAT.md section 9)
- region captions, only when ``cap`` is asked: ``.../{sentence_index}/cap``: the region's tokens
  in the prompt (its ``<box>`` by default, its ``<seg>`` with ``cap_region="seg"``), the
  expression as the answer; targets without an expression of their own are not captioned
- multi-instance rows, only when ``points`` / ``boxes`` are asked: ``{key}/{target_id}/{sentence_index}/points``
  per query of ``getok_data.instances`` (a COCO category group's target id is
  ``category-<name>``), after the sample's per-target rows, query by query

Rows of an export that asks for ``cap``, ``points`` or ``boxes`` all carry three more columns
(``region``, ``gt_instances`` as JSON text, ``gt_candidates``), so every row of one file has the
same columns; an export that asks for none of them keeps its bytes.

Offset rows hold the previous answer in the *user* turn (the answer to learn is only the
``<offset>`` turn): 70% of the anchors of a sampled previous answer are meant to be deleted, so
putting it in an assistant turn would teach SFT wrong grid answers in every framework that trains
all assistant turns (TRL, LLaMA-Factory without ``mask_history``). The bundled trainer's offset
prompt has the same shape (train/data.py).
"""
from __future__ import annotations

import base64
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..atomic import write_atomic
from ..dataset import Dataset, Sample
from ..instances import has_expressions, queries_of_meta
from ..tokens.answers import MULTI_TASKS

TASKS = ("seg", "box", "point")
# asked only when named (lanes, captions, multi-instance): default exports stay as they were
OPTIONAL_TASKS = ("pl", "cap", "points", "boxes")
ALL_TASKS = TASKS + OPTIONAL_TASKS
NEW_TASKS = ("cap", "points", "boxes")
CAP_REGIONS = ("box", "seg")
#: Columns every row gets when an export asks for a task of NEW_TASKS (defaults: rows of other tasks).
NEW_COLUMNS = {"region": "", "gt_instances": "", "gt_candidates": 0}
STAGES = ("grid", "offset")
IMAGE_TOKEN = "<image>"
INSTRUCTIONS = {
    "seg": "Please segment the object described as: {s}",
    "box": "Please output the bounding box of the object described as: {s}",
    "point": "Please point to the object described as: {s}",
    "pl": "Please output the polyline of the object described as: {s}",
    "points": "Please point to every object described as: {s}",
    "boxes": "Please output the bounding box of every object described as: {s}",
}
#: Region captioning prompts, one picked per row by a stable hash of its id (varied wording, same bytes
#: on every run); ``{r}`` is the region's token string.
CAP_INSTRUCTIONS = (
    "Please describe the region {r} in a short phrase.",
    "What is in the region {r}? Answer with a short description.",
    "Give a brief caption of the region {r}.",
)
REFINE_INSTRUCTION = ("Previous answer: {prev}\nRefine the previous answer: give one offset token (or <DELETE>) "
                      "for each grid token of the previous answer, in the same order.")
EMPTY_SEG = "<seg></seg>"


@dataclass
class ExportStats:
    """What an export wrote and what it left out (and why): nothing is dropped silently."""

    rows: int = 0
    samples: int = 0
    targets: int = 0
    files_written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


@dataclass
class Row:
    """One exported example before a format lays it out: the prompt text has no image placeholder."""

    fields: dict  # id, solution, stage, task, ... (the reward columns, docs/INTEROP.md)
    prompt: str  # the user turn's text, without ``<image>``
    answer: str  # the assistant turn (== fields["solution"])
    target: dict | None = None  # the target JSON the row asks about (set for cap / points / boxes rows)
    query: Any = None  # the multi-instance query (points / boxes rows): getok_data.instances.Query

    @property
    def id(self) -> str:
        return self.fields["id"]


def sentences_of(target: dict) -> list[str]:
    """The target's referring expressions, or its category name when it has none."""
    sents = [s for s in target.get("sentences") or [] if s and s.strip()]
    if sents:
        return sents
    cat = target.get("category")
    return [f"the {cat}"] if cat else []


def parse_stage(stage: str) -> tuple[str, ...]:
    """``grid`` | ``offset`` | ``all`` as the tuple of stages."""
    if stage == "all":
        return STAGES
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES + ('all',)}")
    return (stage,)


def check_selection(stages: tuple[str, ...], tasks: tuple[str, ...], cap_region: str = "box") -> None:
    bad = [s for s in stages if s not in STAGES] + [t for t in tasks if t not in ALL_TASKS]
    if bad:
        raise ValueError(f"unknown stage/task {bad}; stages {STAGES}, tasks {ALL_TASKS}")
    if cap_region not in CAP_REGIONS:
        raise ValueError(f"unknown caption region {cap_region!r}; expected one of {CAP_REGIONS}")


def cap_prompt(row_id: str, region: str) -> str:
    """The captioning prompt of a row: one of CAP_INSTRUCTIONS, chosen by the row id's CRC-32."""
    return CAP_INSTRUCTIONS[zlib.crc32(row_id.encode("utf-8")) % len(CAP_INSTRUCTIONS)].format(r=region)


def rows_of_meta(meta: dict, stages: tuple[str, ...], tasks: tuple[str, ...], stats: ExportStats,
                 include_low_quality: bool = False, cap_region: str = "box") -> Iterator[Row]:
    """The rows of one sample's metadata (its ``.json``), in the documented order."""
    n, m = int(meta["grid"]["n"]), int(meta["grid"]["m"])
    common = {"key": meta["key"], "grid_n": n, "grid_m": m, "width": int(meta["width"]),
              "height": int(meta["height"])}
    if any(t in NEW_TASKS for t in tasks):
        common.update(NEW_COLUMNS)
    for t in meta["targets"]:
        stats.targets += 1
        if t.get("low_quality") and not include_low_quality:
            stats.skip("low_quality target (use --include-low-quality)")
            continue
        sents = sentences_of(t)
        if not sents:
            stats.skip("target without sentences or category")
            continue
        per_target = target_columns(meta, common, t)
        tokens = t.get("tokens") or {}
        box_only = bool(t.get("box_only"))  # Visual Genome regions: the mask is only the box
        for si, sent in enumerate(sents):
            if "grid" in stages:
                for task in tasks:
                    if task in MULTI_TASKS:
                        continue  # after the targets, per query
                    if task == "cap":
                        row = _cap_row(t, per_target, si, sent, cap_region, box_only, stats)
                        if row is not None:
                            yield row
                        continue
                    if task == "seg" and box_only:
                        stats.skip("seg of a box-only region (Visual Genome)")
                        continue
                    answer = tokens.get(task)
                    if not answer:
                        stats.skip(f"no {task} tokens")
                        continue
                    yield Row(dict(per_target, id=f"{meta['key']}/{t['target_id']}/{si}/{task}", stage="grid",
                                   task=task, sentence=sent, origin="", previous="", solution=answer),
                              INSTRUCTIONS[task].format(s=sent), answer)
            if "offset" in stages:
                for ri, ref in enumerate(t.get("refine") or []):
                    if ref["kind"] not in tasks or (box_only and ref["kind"] == "seg"):
                        continue
                    if not ref.get("prompt") or ref["prompt"] == EMPTY_SEG:
                        stats.skip("refinement of an empty answer")
                        continue
                    prompt = INSTRUCTIONS[ref["kind"]].format(s=sent) + "\n" + REFINE_INSTRUCTION.format(prev=ref["prompt"])
                    yield Row(dict(per_target, id=f"{meta['key']}/{t['target_id']}/{si}/refine{ri}", stage="offset",
                                   task=ref["kind"], sentence=sent, origin=ref.get("origin", ""),
                                   previous=ref["prompt"], solution=ref["answer"]),
                              prompt, ref["answer"])
            if "offset" in stages and "pl" in tasks and (t.get("polyline") or {}).get("refine"):
                ref = t["polyline"]["refine"]
                prompt = INSTRUCTIONS["pl"].format(s=sent) + "\n" + REFINE_INSTRUCTION.format(prev=ref["prompt"])
                yield Row(dict(per_target, id=f"{meta['key']}/{t['target_id']}/{si}/refinepl", stage="offset",
                               task="pl", sentence=sent, origin="polyline", previous=ref["prompt"],
                               solution=ref["answer"]), prompt, ref["answer"])
    multi = [task for task in tasks if task in MULTI_TASKS]
    if multi and "grid" in stages:
        yield from _multi_rows(meta, common, multi, stats, include_low_quality)


def target_columns(meta: dict, common: dict, t: dict) -> dict:
    """The columns every row of target ``t`` carries: identity and what the rewards need."""
    rle = t.get("mask_rle") or {}
    return dict(common, target_id=str(t["target_id"]),
                gt_box=[float(v) for v in (t.get("box") or [0, 0, 0, 0])],
                gt_mask_rle={"size": [int(v) for v in rle.get("size", [meta["height"], meta["width"]])],
                             "counts": str(rle.get("counts", ""))},
                regions=str(t.get("regions") or ""), offsets=str(t.get("offsets") or ""),
                token_iou=float(t.get("token_iou") or 0.0),
                # gRefCOCO no-target queries and ReasonSeg ignore regions (FORMAT.md section 8)
                no_target=bool(t.get("no_target")), gt_ignore_rle=t.get("ignore_rle"))


def _cap_row(t: dict, per_target: dict, si: int, sent: str, cap_region: str, box_only: bool,
             stats: ExportStats) -> Row | None:
    """The captioning row of one (target, expression): the region in the prompt, the text as answer."""
    if t.get("no_target"):
        stats.skip("cap of a no-target query")
        return None
    if not has_expressions(t):
        stats.skip("cap of a target without an expression of its own")
        return None
    region = (t.get("tokens") or {}).get(cap_region)
    if cap_region == "seg" and box_only:
        stats.skip("cap --cap-region seg of a box-only region")
        return None
    if not region:
        stats.skip(f"cap: no {cap_region} tokens")
        return None
    rid = f"{per_target['key']}/{t['target_id']}/{si}/cap"
    return Row(dict(per_target, id=rid, stage="grid", task="cap", sentence=sent, origin="", previous="",
                    solution=sent, region=region), cap_prompt(rid, region), sent, target=t)


def _multi_rows(meta: dict, common: dict, tasks: list[str], stats: ExportStats,
                include_low_quality: bool) -> Iterator[Row]:
    for q in queries_of_meta(meta, include_low_quality):
        gt = json.dumps(q.instances, sort_keys=True, separators=(",", ":"))
        t = q.target
        # the offset labels and ignore region belong to one mask's <seg>, not to a set of instances
        base = dict(target_columns(meta, common, t), target_id=q.target_id, regions="", offsets="",
                    gt_ignore_rle=None, gt_instances=gt, gt_candidates=q.candidates)
        for si, sent in enumerate(q.sentences):
            for task in tasks:
                answer = q.answer(task)
                yield Row(dict(base, id=f"{meta['key']}/{q.target_id}/{si}/{task}", stage="grid", task=task,
                               sentence=sent, origin="", previous="", solution=answer),
                          INSTRUCTIONS[task].format(s=sent), answer, target=t, query=q)


def iter_rows(data: str, stages: tuple[str, ...], tasks: tuple[str, ...], stats: ExportStats,
              include_low_quality: bool = False, cap_region: str = "box") -> Iterator[tuple[Sample, list[Row]]]:
    """``(sample, its rows)`` for every sample of the build that yields at least one row."""
    check_selection(stages, tasks, cap_region)
    for sample in Dataset(data).samples():
        stats.samples += 1
        if "cand.npz" not in sample.members:
            stats.skip("sample without .cand.npz")
            continue
        if sample.image_ext not in sample.members:
            stats.skip("sample without its image")
            continue
        rows = list(rows_of_meta(sample.meta, stages, tasks, stats, include_low_quality, cap_region))
        if rows:
            yield sample, rows


def b64(data: bytes) -> str:
    """Bytes as base64 text (JSON- and parquet-safe; the candidate table travels in the row this way)."""
    return base64.b64encode(data).decode("ascii")


class MediaWriter:
    """Extracts each image and candidate table once into a folder, atomically; returns absolute paths."""

    def __init__(self, folder: str | os.PathLike, stats: ExportStats):
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stats, self.written = stats, set()

    def put(self, name: str, data: bytes) -> str:
        path = self.folder / name
        if name not in self.written:
            self.written.add(name)
            if not (path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data):
                write_atomic(path, data)
                self.stats.files_written += 1
        return str(path)

    def sample(self, sample: Sample) -> tuple[str, str]:
        """``(image path, candidate-table path)`` of a sample, both absolute."""
        return (self.put(f"{sample.key}.{sample.image_ext}", sample.image),
                self.put(f"{sample.key}.cand.npz", sample.members["cand.npz"]))
