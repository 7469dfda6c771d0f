"""Streaming training examples from built shards (WebDataset), one example per (target, sentence).

Shards come from a folder (its ``manifest.json`` shard list, else ``shard-*.tar``), a manifest
file, a brace pattern (``dir/shard-{000000..000003}.tar``) or a list; any fsspec URL works. The
pipeline: shard list -> split by node -> split by worker -> shard shuffle -> tar -> samples ->
sample shuffle -> expand into examples -> example shuffle. With fewer shards than readers
(nodes x workers) it splits samples instead of shards, so every sample is still read once.

Examples follow DESIGN.md section 2: a grid-stage example asks for a ``<seg>`` (or ``<box>``,
``<point>``) answer; an offset-stage example shows a previous answer and asks for the
``<offset>`` turn that refines it (one offset token or ``<DELETE>`` per anchor).
"""
from __future__ import annotations

import functools
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import fsspec
import numpy as np
import torch
import webdataset as wds
from braceexpand import braceexpand
from torch.utils.data import IterableDataset

from ..dataset import Dataset, DatasetError, load_npz
from ..tokens import rules
from ..tokens import OFFSET_STEPS, Grid, Mask, encode, parse
from .config import DATA
from .model import ModelConfig
from .vocab import SeqVocab

PROMPTS = {
    "seg": "<image>\nPlease segment {s}.",
    "box": "<image>\nPlease give the bounding box of {s}.",
    "point": "<image>\nPlease point at {s}.",
    "offset": "<image>\nRefine the previous answer for {s}.\nPrevious answer: {prev}",
}


@dataclass
class Example:
    """One training / evaluation example. ``previous`` is empty for grid-stage tasks."""

    key: str
    target: int
    sentence: str
    task: str  # seg | box | point | offset
    answer: str
    image: np.ndarray  # uint8 [S, S, 3]
    previous: str = ""
    info: dict = field(default_factory=dict)  # target fields + width/height/n/m (eval, GRPO)
    table: dict | None = None  # the .cand.npz arrays (eval, GRPO)

    @property
    def prompt(self) -> str:
        return PROMPTS[self.task].format(s=self.sentence, prev=self.previous)


# ---------------------------------------------------------------- shard lists and the pipeline

def resolve_shards(spec: str | list[str]) -> list[str]:
    """Shard URLs from a folder, a manifest.json, a brace pattern, or a list of those."""
    if isinstance(spec, (list, tuple)):
        return [u for s in spec for u in resolve_shards(s)]
    spec = str(spec)
    if "{" in spec:
        return list(braceexpand(spec))
    if spec.endswith(".tar"):
        return [spec]
    folder = spec.rsplit("/", 1)[0] if spec.endswith(".json") else spec.rstrip("/")
    try:
        ds = Dataset(folder)
        names = ds.shard_names()
    except DatasetError:
        names = []
    if not names:
        raise FileNotFoundError(f"no shards found at {spec}")
    return [f"{folder}/{n}" for n in names]


def _open_shards(src: Iterator[dict]) -> Iterator[dict]:
    for d in src:
        with fsspec.open(d["url"], "rb") as f:
            yield dict(d, stream=f)


def _readers() -> tuple[int, int]:
    """(this reader's rank, number of readers) over nodes x DataLoader workers."""
    rank, world, worker, workers = wds.utils.pytorch_worker_info()
    return rank * workers + worker, world * workers


def _split_samples(src: Iterator[dict]) -> Iterator[dict]:
    me, total = _readers()
    for k, s in enumerate(src):
        if k % total == me:
            yield s


class ShardStream(IterableDataset):
    """WebDataset stream of examples (or of raw samples with ``expand=False``).

    ``set_epoch(e)`` reseeds shard, sample and example shuffles (and example draws) per epoch.
    """

    def __init__(self, shards: str | list[str], cfg: dict, stage: str = "grid", shuffle: bool = True,
                 resample: bool = False, with_table: bool = False, seed: int = 0, expand: bool = True):
        self.urls = resolve_shards(shards)
        cfg = data_options(cfg)
        self.cfg, self.stage, self.shuffle, self.resample = cfg, stage, shuffle, resample
        self.with_table, self.seed, self.expand, self.epoch = with_table, seed, expand, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pipeline(self) -> wds.DataPipeline:
        seed = self.seed * 1000 + self.epoch
        _, readers = _readers()
        by_shard = self.resample or len(self.urls) >= readers
        if self.resample:
            stages = [wds.ResampledShards(self.urls, seed=seed + 7919 * _readers()[0], deterministic=True)]
        else:
            stages = [wds.SimpleShardList(self.urls, seed=seed if self.shuffle else None)]
            if by_shard:
                stages += [wds.split_by_node, wds.split_by_worker]
        stages += [_open_shards, wds.tariterators.tar_file_expander, wds.tariterators.group_by_keys]
        if not by_shard:
            stages.append(_split_samples)
        if self.shuffle:
            stages.append(wds.shuffle(self.cfg["sample_shuffle"], seed=seed))
        stages.append(wds.map(self._decode))
        if self.expand:
            stages.append(self._examples)
            if self.shuffle:
                stages.append(wds.shuffle(self.cfg["shuffle_buffer"], seed=seed + 1))
        return wds.DataPipeline(*stages)

    def __iter__(self):
        return iter(self._pipeline())

    def _decode(self, s: dict) -> dict:
        meta = json.loads(s["json"])
        img = cv2.imdecode(np.frombuffer(s[meta["image_ext"]], np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        size = self.cfg["image_size"]
        img = cv2.resize(img[:, :, ::-1], (size, size), interpolation=cv2.INTER_AREA)
        table = load_npz(s["cand.npz"]) if self.with_table else None
        return {"meta": meta, "image": np.ascontiguousarray(img), "table": table}

    def _examples(self, src: Iterator[dict]) -> Iterator[Example]:
        for s in src:
            rng = np.random.default_rng(zlib.crc32(f"{self.seed}/{self.epoch}/{s['meta']['key']}".encode()))
            yield from expand_sample(s["meta"], s["image"], self.cfg, self.stage, rng, s["table"])


# ---------------------------------------------------------------- examples of one image

def target_info(meta: dict, t: dict) -> dict:
    keys = ("mask_rle", "box", "offsets", "regions", "anchors", "tokens", "token_iou", "no_target", "ignore_rle")
    return {**{k: t.get(k) for k in keys}, "width": meta["width"], "height": meta["height"],
            "n": meta["grid"]["n"], "m": meta["grid"]["m"]}


def expand_sample(meta: dict, image: np.ndarray, cfg: dict, stage: str, rng: np.random.Generator,
                  table: dict | None = None) -> Iterator[Example]:
    """Examples of one image. ``stage``: grid | offset | both | eval (seg, box and point each)."""
    cfg = data_options(cfg)
    weights = cfg["tasks"]
    names = [k for k in ("seg", "box", "point") if weights.get(k, 0) > 0]
    p = np.array([weights[k] for k in names], float)
    keep_low = cfg["keep_low_quality"]
    for ti, t in enumerate(meta["targets"]):
        if t.get("low_quality") and not keep_low:
            continue  # below selection.min_token_iou: its tokens do not reproduce the GT well enough
        info = target_info(meta, t)
        no_target = bool(t.get("no_target"))
        for sent in t["sentences"]:
            base = dict(key=meta["key"], target=ti, sentence=sent, image=image, info=info, table=table)
            if stage == "eval":
                for task in (("seg",) if no_target else ("seg", "box", "point")):
                    yield Example(task=task, answer=t["tokens"][task] or "", **base)
                continue
            if stage in ("grid", "both"):
                task = names[rng.choice(len(names), p=p / p.sum())]
                if no_target:
                    task = "seg"  # a no-target query's only answer is the empty <seg></seg>
                elif t["tokens"][task] is None:
                    task = "box"  # no seg tokens for this target (see tokens.seg_reason)
                yield Example(task=task, answer=t["tokens"][task], **base)
            if no_target and not t["refine"]:
                continue
            if stage in ("offset", "both") and rng.random() < cfg["offset_rate"]:
                prev = offset_prompt(t, info, cfg, rng)
                yield Example(task="offset", previous=prev, answer=offset_answer(parse(prev, info["n"]), info), **base)


def offset_prompt(t: dict, info: dict, cfg: dict, rng: np.random.Generator) -> str:
    """A previous answer to refine: one of the sample's ``refine`` entries or a jittered GT answer."""
    cfg = data_options(cfg)
    n = info["n"]
    options = [r["prompt"] for r in t["refine"]]
    if t["tokens"]["seg"] is not None and not t.get("no_target"):  # no-target: its sampled anchors to delete
        options.append("jitter")
    choice = options[rng.integers(len(options))]
    if choice != "jitter":
        return choice
    anchors = set()
    for i, j in t["anchors"]:
        if rng.random() < cfg["jitter_move"]:
            i, j = int(np.clip(i + rng.integers(-1, 2), 0, n - 1)), int(np.clip(j + rng.integers(-1, 2), 0, n - 1))
        anchors.add((i, j))
    x0, y0, x1, y1 = info["box"]
    g = Grid(n, info["width"], info["height"], info["m"])
    (ia, ja), (ib, jb) = g.nearest(x0, y0), g.nearest(x1 - 1e-6, y1 - 1e-6)
    for _ in range(rng.poisson(cfg["jitter_extra"])):
        anchors.add((int(np.clip(rng.integers(ia - 2, ib + 3), 0, n - 1)), int(np.clip(rng.integers(ja - 2, jb + 3), 0, n - 1))))
    # Anchors anywhere (mostly far from the target: <DELETE>), the typical error of a grid answer
    # that grounded part of a distractor; without them the model never learns to delete its own.
    for _ in range(rng.poisson(cfg["jitter_far"])):
        anchors.add((int(rng.integers(n)), int(rng.integers(n))))
    return encode(Mask(tuple(sorted(anchors, key=lambda a: (a[1], a[0])))))


def offset_answer(previous: list, info: dict) -> str:
    """The ``<offset>`` turn that refines any previous answer of a target (FORMAT.md section 5):
    :func:`getok_data.tokens.rules.offset_answer` with the target's stored offset labels."""
    offsets = info["offsets"]
    grid = Grid(info["n"], info["width"], info["height"], info["m"])
    return rules.offset_answer(previous, grid, lambda k: _label_step(int(offsets[k])), info["box"])


def _label_step(o: int):
    return None if o == len(OFFSET_STEPS) else OFFSET_STEPS[o]


# ---------------------------------------------------------------- text and batches

_WORD = re.compile(r"[a-z0-9]+")


def hash_words(text: str, buckets: int, max_words: int) -> list[int]:
    """Word-hash ids in ``1..buckets-1`` (0 is padding)."""
    return [1 + zlib.crc32(w.encode()) % (buckets - 1) for w in _WORD.findall(text.lower())][:max_words] or [1]


def collate(examples: list[Example], vocab: SeqVocab, buckets: int = 4096, max_words: int = 24) -> dict:
    """Pad a list of examples into tensors. Each image is stored once (``images`` ``[U, 3, S, S]``,
    ``img_index`` ``[B]``), so the CNN runs once per image; the examples ride along."""
    seqs = [vocab.encode_example(e.task, e.previous, e.answer) for e in examples]
    words = [hash_words(e.sentence, buckets, max_words) for e in examples]
    T, L = max(len(s) for s, _ in seqs), max(len(w) for w in words)
    ids = torch.full((len(examples), T), vocab.pad, dtype=torch.long)
    loss_mask = torch.zeros((len(examples), T), dtype=torch.bool)
    text = torch.zeros((len(examples), L), dtype=torch.long)
    for b, ((s, start), w) in enumerate(zip(seqs, words)):
        ids[b, : len(s)] = torch.tensor(s)
        loss_mask[b, start - 1 : len(s) - 1] = True  # positions that predict the answer and <eos>
        text[b, : len(w)] = torch.tensor(w)
    keys: dict[str, int] = {}
    img_index = torch.tensor([keys.setdefault(e.key, len(keys)) for e in examples])
    first = {k: e.image for e in reversed(examples) for k in [e.key]}
    images = torch.from_numpy(np.stack([first[k] for k in keys])).permute(0, 3, 1, 2).contiguous()
    return {"images": images, "img_index": img_index, "text": text, "ids": ids, "loss_mask": loss_mask,
            "examples": examples}


def data_options(cfg: dict) -> dict:
    """A data section completed from the one table of defaults (``train/config.py`` DATA and the
    model's image and text sizes), so no reader keeps a default of its own."""
    model = ModelConfig()
    return {**DATA, "image_size": model.image_size, "text_buckets": model.text_buckets,
            "max_words": model.max_words, **cfg}


def make_loader(shards, cfg: dict, vocab: SeqVocab, stage: str, batch_size: int, workers: int = 1,
                shuffle: bool = True, with_table: bool = False, seed: int = 0, resample: bool = False):
    """A DataLoader over :class:`ShardStream` examples; returns ``(loader, stream)``."""
    cfg = data_options(cfg)
    stream = ShardStream(shards, cfg, stage, shuffle=shuffle, with_table=with_table, seed=seed, resample=resample)
    loader = torch.utils.data.DataLoader(
        stream, batch_size=batch_size, num_workers=workers, persistent_workers=False,
        collate_fn=functools.partial(collate, vocab=vocab, buckets=cfg["text_buckets"],
                                     max_words=cfg["max_words"]),
    )
    return loader, stream


__all__ = ["Example", "ShardStream", "resolve_shards", "expand_sample", "offset_answer", "offset_prompt",
           "collate", "make_loader", "hash_words", "target_info", "PROMPTS"]
