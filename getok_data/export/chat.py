"""Shards -> chat-format JSONL (LLaMA-Factory / ms-swift ``messages`` + ``images``; TRL columns).

One row per (target, sentence, task) for the grid stage, and per (target, sentence, refinement
sample) for the offset stage, in a deterministic order: shards sorted, samples in tar order,
targets in order, sentences in order, then tasks (seg, box, point) or refinement samples in order.
Images and candidate tables are extracted once each into ``images_dir`` as ``KEY.EXT`` and
``KEY.cand.npz``. See docs/INTEROP.md for the columns.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..storage import Storage
from ..verify import iter_samples

TASKS = ("seg", "box", "point")
STAGES = ("grid", "offset")
IMAGE_TOKEN = "<image>"
INSTRUCTIONS = {
    "seg": "Please segment the object described as: {s}",
    "box": "Please output the bounding box of the object described as: {s}",
    "point": "Please point to the object described as: {s}",
}
REFINE_INSTRUCTION = ("Refine your answer: give one offset token (or <DELETE>) for each grid token "
                      "of your previous answer, in the same order.")


@dataclass
class ExportStats:
    rows: int = 0
    samples: int = 0
    targets: int = 0
    files_written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _write_once(path: Path, data: bytes, written: set[str], stats: ExportStats) -> None:
    """Write ``data`` at ``path`` unless this run already did or identical bytes are there."""
    key = str(path)
    if key in written:
        return
    written.add(key)
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    stats.files_written += 1


def sentences_of(target: dict) -> list[str]:
    """The target's referring expressions, or its category name when it has none."""
    sents = [s for s in target.get("sentences") or [] if s and s.strip()]
    if sents:
        return sents
    cat = target.get("category")
    return [f"the {cat}"] if cat else []


def _messages(turns: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"role": r, "content": c} for r, c in turns]


def rows_for_sample(meta: dict, image_path: str, cand_path: str, stages: tuple[str, ...],
                    tasks: tuple[str, ...], stats: ExportStats) -> Iterator[dict]:
    """The chat rows of one shard sample (its ``.json`` metadata), in the documented order."""
    n, m = int(meta["grid"]["n"]), int(meta["grid"]["m"])
    common = {"key": meta["key"], "grid_n": n, "grid_m": m, "width": meta["width"], "height": meta["height"],
              "images": [image_path], "cand_npz": cand_path}
    for t in meta["targets"]:
        stats.targets += 1
        sents = sentences_of(t)
        if not sents:
            stats.skip("target without sentences or category")
            continue
        per_target = dict(common, target_id=str(t["target_id"]), gt_box=[float(v) for v in t["box"]],
                          gt_mask_rle={"size": list(t["mask_rle"]["size"]), "counts": str(t["mask_rle"]["counts"])},
                          regions=t["regions"], offsets=t["offsets"], token_iou=float(t["token_iou"]))
        for si, sent in enumerate(sents):
            if "grid" in stages:
                for task in tasks:
                    answer = t["tokens"].get(task)
                    if answer is None:
                        stats.skip(f"no {task} tokens")
                        continue
                    user = IMAGE_TOKEN + INSTRUCTIONS[task].format(s=sent)
                    yield dict(per_target, id=f"{meta['key']}/{t['target_id']}/{si}/{task}", stage="grid",
                               task=task, sentence=sent, origin="", previous="", solution=answer,
                               messages=_messages([("user", user), ("assistant", answer)]))
            if "offset" in stages:
                for ri, ref in enumerate(t.get("refine") or []):
                    if ref["kind"] not in tasks:
                        continue
                    user = IMAGE_TOKEN + INSTRUCTIONS[ref["kind"]].format(s=sent)
                    turns = [("user", user), ("assistant", ref["prompt"]), ("user", REFINE_INSTRUCTION),
                             ("assistant", ref["answer"])]
                    yield dict(per_target, id=f"{meta['key']}/{t['target_id']}/{si}/refine{ri}", stage="offset",
                               task=ref["kind"], sentence=sent, origin=ref.get("origin", ""),
                               previous=ref["prompt"], solution=ref["answer"], messages=_messages(turns))


def export_chat(data: str, out: str | os.PathLike, stages: tuple[str, ...] = ("grid",), tasks: tuple[str, ...] = TASKS,
                images_dir: str | os.PathLike | None = None, relative: bool = False) -> ExportStats:
    """Write the chat JSONL at ``out`` from the shards in ``data`` (local path or fsspec URL).

    Images and candidate tables go to ``images_dir`` (default ``<out folder>/images``). Paths in
    the rows are absolute, or relative to the JSONL's folder with ``relative=True``.
    """
    bad = [s for s in stages if s not in STAGES] + [t for t in tasks if t not in TASKS]
    if bad:
        raise ValueError(f"unknown stage/task {bad}; stages {STAGES}, tasks {TASKS}")
    storage = Storage(data)
    shards = storage.list("shard-*.tar")
    if not shards:
        raise FileNotFoundError(f"no shard-*.tar in {data}")
    out_path = Path(out).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    media = Path(images_dir).resolve() if images_dir else out_path.parent / "images"
    media.mkdir(parents=True, exist_ok=True)
    stats, written = ExportStats(), set()

    def ref(p: Path) -> str:
        return os.path.relpath(p, out_path.parent) if relative else str(p)

    tmp = out_path.with_name(out_path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for shard in shards:
            for key, members in iter_samples(storage.read_bytes(shard)):
                stats.samples += 1
                if "json" not in members or "cand.npz" not in members:
                    stats.skip("sample without .json or .cand.npz")
                    continue
                meta = json.loads(members["json"])
                ext = meta.get("image_ext")
                if ext not in members:
                    stats.skip("sample without its image")
                    continue
                rows = list(rows_for_sample(meta, "", "", stages, tasks, stats))
                if not rows:
                    continue
                image, cand = media / f"{key}.{ext}", media / f"{key}.cand.npz"
                _write_once(image, members[ext], written, stats)
                _write_once(cand, members["cand.npz"], written, stats)
                for row in rows:
                    row.update(images=[ref(image)], cand_npz=ref(cand))
                    f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
                    stats.rows += 1
    os.replace(tmp, out_path)
    return stats
