"""The rows every export format shares: one per (target, sentence, task), built from a build folder.

The order is deterministic: shards sorted, samples in tar order, targets in order, sentences in
order, then tasks (seg, box, point) or refinement samples in stored order. Row ids are stable
(``getok-data score`` joins predictions on them):

- grid rows ``{key}/{target_id}/{sentence_index}/{task}``
- offset rows ``{key}/{target_id}/{sentence_index}/refine{k}``
- lane rows, only when ``pl`` is asked (not a default task): grid ``.../{sentence_index}/pl``,
  offset ``.../{sentence_index}/refinepl`` (the polyline's own ``refine``, FORMAT.md section 9)

Offset rows hold the previous answer in the *user* turn (the answer to learn is only the
``<offset>`` turn): 70% of the anchors of a sampled previous answer are meant to be deleted, so
putting it in an assistant turn would teach SFT wrong grid answers in every framework that trains
all assistant turns (TRL, LLaMA-Factory without ``mask_history``). The bundled trainer's offset
prompt has the same shape (train/data.py).
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..atomic import write_atomic
from ..dataset import Dataset, Sample

TASKS = ("seg", "box", "point")
OPTIONAL_TASKS = ("pl",)  # asked only when named (lane builds): default exports stay as they were
ALL_TASKS = TASKS + OPTIONAL_TASKS
STAGES = ("grid", "offset")
IMAGE_TOKEN = "<image>"
INSTRUCTIONS = {
    "seg": "Please segment the object described as: {s}",
    "box": "Please output the bounding box of the object described as: {s}",
    "point": "Please point to the object described as: {s}",
    "pl": "Please output the polyline of the object described as: {s}",
}
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


def check_selection(stages: tuple[str, ...], tasks: tuple[str, ...]) -> None:
    bad = [s for s in stages if s not in STAGES] + [t for t in tasks if t not in ALL_TASKS]
    if bad:
        raise ValueError(f"unknown stage/task {bad}; stages {STAGES}, tasks {ALL_TASKS}")


def rows_of_meta(meta: dict, stages: tuple[str, ...], tasks: tuple[str, ...], stats: ExportStats,
                 include_low_quality: bool = False) -> Iterator[Row]:
    """The rows of one sample's metadata (its ``.json``), in the documented order."""
    n, m = int(meta["grid"]["n"]), int(meta["grid"]["m"])
    common = {"key": meta["key"], "grid_n": n, "grid_m": m, "width": int(meta["width"]),
              "height": int(meta["height"])}
    for t in meta["targets"]:
        stats.targets += 1
        if t.get("low_quality") and not include_low_quality:
            stats.skip("low_quality target (use --include-low-quality)")
            continue
        sents = sentences_of(t)
        if not sents:
            stats.skip("target without sentences or category")
            continue
        rle = t.get("mask_rle") or {}
        per_target = dict(common, target_id=str(t["target_id"]),
                          gt_box=[float(v) for v in (t.get("box") or [0, 0, 0, 0])],
                          gt_mask_rle={"size": [int(v) for v in rle.get("size", [meta["height"], meta["width"]])],
                                       "counts": str(rle.get("counts", ""))},
                          regions=str(t.get("regions") or ""), offsets=str(t.get("offsets") or ""),
                          token_iou=float(t.get("token_iou") or 0.0),
                          # gRefCOCO no-target queries and ReasonSeg ignore regions (FORMAT.md section 8)
                          no_target=bool(t.get("no_target")), gt_ignore_rle=t.get("ignore_rle"))
        tokens = t.get("tokens") or {}
        for si, sent in enumerate(sents):
            if "grid" in stages:
                for task in tasks:
                    answer = tokens.get(task)
                    if not answer:
                        stats.skip(f"no {task} tokens")
                        continue
                    yield Row(dict(per_target, id=f"{meta['key']}/{t['target_id']}/{si}/{task}", stage="grid",
                                   task=task, sentence=sent, origin="", previous="", solution=answer),
                              INSTRUCTIONS[task].format(s=sent), answer)
            if "offset" in stages:
                for ri, ref in enumerate(t.get("refine") or []):
                    if ref["kind"] not in tasks:
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


def iter_rows(data: str, stages: tuple[str, ...], tasks: tuple[str, ...], stats: ExportStats,
              include_low_quality: bool = False) -> Iterator[tuple[Sample, list[Row]]]:
    """``(sample, its rows)`` for every sample of the build that yields at least one row."""
    check_selection(stages, tasks)
    for sample in Dataset(data).samples():
        stats.samples += 1
        if "cand.npz" not in sample.members:
            stats.skip("sample without .cand.npz")
            continue
        if sample.image_ext not in sample.members:
            stats.skip("sample without its image")
            continue
        rows = list(rows_of_meta(sample.meta, stages, tasks, stats, include_low_quality))
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
