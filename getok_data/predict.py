"""``getok-data predict``: a transformers vision-language model answers a build's prompts.

The prompts are the export's (``getok_data.export.chat``: same instructions, same row ids, same
order), sent through the model's own chat template as ``[image, text]`` user turns; answers
are decoded greedily with the spatial tokens kept (``skip_special_tokens=False``, then only the
tokenizer's own special tokens are stripped, so spatial tokens registered as special survive).
``--stage offset`` then runs ``rounds`` refinement turns on the model's own answers: each round
shows the model its previous answer (re-quantised to grid tokens after a refinement, as
``eval`` does) and asks for the ``<offset>`` turn. Rows: ``{"id", "text"}`` plus, for offset,
``"refine"`` (the offset answers) and ``"previous"`` (what each round refined); ``score`` reads them.
"""
from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .atomic import write_jsonl
from .dataset import Dataset
from .decode import TableDecoder
from .export.rows import ALL_TASKS, INSTRUCTIONS, REFINE_INSTRUCTION, TASKS, ExportStats, rows_of_meta
from .tokens import Grid, encode, vocabulary

STAGES = ("grid", "offset")


class PredictError(ValueError):
    """Prediction cannot start (bad option, unloadable model); the message says what and where."""


@dataclass
class Job:
    """One export row being answered, with what its refinement rounds need."""

    id: str
    task: str
    sentence: str
    image: Any  # PIL image
    decoder: TableDecoder
    grid: Grid
    instruction: str = ""  # the export row's prompt (captions hold the region, points ask for every instance)
    text: str = ""
    refine: list[str] = field(default_factory=list)
    previous: list[str] = field(default_factory=list)

    def prompt(self) -> list[dict]:
        text = self.instruction or INSTRUCTIONS[self.task].format(s=self.sentence)
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]

    def refine_prompt(self, previous: str) -> list[dict]:
        """The export's offset row: one user turn holding the previous answer (export/rows.py)."""
        text = INSTRUCTIONS[self.task].format(s=self.sentence) + "\n" + REFINE_INSTRUCTION.format(prev=previous)
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]

    def row(self, stage: str) -> dict:
        out = {"id": self.id, "text": self.text}
        if stage == "offset" and self.task in ("seg", "box"):
            out.update(refine=self.refine, previous=self.previous)
        return out


def _jobs(ds: Dataset, tasks: tuple[str, ...], limit: int | None) -> Iterator[Job]:
    from PIL import Image

    k = 0
    for sample in ds.samples():
        rows = list(rows_of_meta(sample.meta, ("grid",), tasks, ExportStats()))
        if not rows:
            continue
        n, m = sample.grid
        with Image.open(io.BytesIO(sample.image)) as im:
            image = im.convert("RGB")
        decoder = TableDecoder(sample.table, n, m)
        grid = Grid(n, sample.meta["width"], sample.meta["height"], m)
        for r in rows:
            if limit is not None and k >= limit:
                return
            k += 1
            yield Job(r.id, r.fields["task"], r.fields["sentence"], image, decoder, grid, r.prompt)


class Generator:
    """Batched greedy generation with a model folder's processor and chat template."""

    def __init__(self, model_dir: str, device: str = "auto", max_new_tokens: int = 256):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(model_dir)
            self.model = AutoModelForImageTextToText.from_pretrained(model_dir)
        except (OSError, ValueError, KeyError) as e:
            raise PredictError(f"{model_dir}: cannot load a vision-language model and processor ({e})") from None
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.tok = self.processor.tokenizer
        self.tok.padding_side = "left"  # generation continues every row from its own end
        self.max_new_tokens = max_new_tokens
        # every special token of the tokenizer (named ones and added special ones such as
        # <|vision_start|>); the spatial ones among them are kept by strip()
        self._special = set(self.tok.all_special_tokens) | {
            t.content for t in getattr(self.tok, "added_tokens_decoder", {}).values() if t.special}
        self._spatial: set[str] = set()

    def strip(self, text: str, n: int) -> str:
        """Remove the tokenizer's own special tokens (not spatial ones); cut at the end-of-turn."""
        if not self._spatial:
            self._spatial = set(vocabulary(n))
        for stop in (self.tok.eos_token, self.tok.pad_token):
            if stop and stop in text:
                text = text.split(stop, 1)[0]
        for s in self._special - self._spatial:
            text = text.replace(s, "")
        return text.strip()

    def __call__(self, conversations: list[list[dict]], images: list[Any], n: int) -> list[str]:
        import torch

        texts = [self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [self.strip(t, n) for t in self.tok.batch_decode(new, skip_special_tokens=False)]


def _refine_round(gen: Generator, jobs: list[Job], batch_size: int) -> None:
    """One refinement round for every job whose last answer still grounds something."""
    from .rewards.core import parse_refinement
    from .tokens.answers import parse_answer
    from .train.evaluate import requantise

    live = []
    for j in jobs:
        if j.task not in ("seg", "box"):
            continue
        if not j.refine:
            item = parse_answer(j.text, j.grid.n, j.task)
        else:  # re-quantise the previous round's refined grounding
            parsed = parse_refinement(j.refine[-1], j.previous[-1], j.grid.n)
            if parsed is None:
                continue
            prev = parsed[0][0]
            item = requantise(prev, parsed[1].groups[0].steps, j.grid, j.decoder)
        if item is None or not item.anchors:
            continue
        live.append((j, encode(item)))
    for start in range(0, len(live), batch_size):
        chunk = live[start:start + batch_size]
        answers = gen([j.refine_prompt(p) for j, p in chunk], [j.image for j, _ in chunk], chunk[0][0].grid.n)
        for (j, p), a in zip(chunk, answers):
            j.previous.append(p)
            j.refine.append(a)


def predict_build(data: str, model_dir: str, out: str | os.PathLike, tasks: tuple[str, ...] = TASKS,
                  stage: str = "grid", rounds: int = 1, limit: int | None = None, batch_size: int = 8,
                  max_new_tokens: int = 256, device: str = "auto") -> dict:
    """Answer the build's prompts with the model at ``model_dir``; write prediction rows at ``out``."""
    bad = [t for t in tasks if t not in ALL_TASKS]  # pl: lane builds, grid answers only
    if bad or not tasks:
        raise PredictError(f"unknown task(s) {bad or tasks}; valid: {', '.join(ALL_TASKS)}")
    if stage not in STAGES:
        raise PredictError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    if batch_size < 1 or rounds < 1 or max_new_tokens < 1:
        raise PredictError("--batch-size, --rounds and --max-new-tokens must be >= 1")
    t0 = time.time()
    ds = Dataset(data)
    gen = Generator(str(model_dir), device, max_new_tokens)
    jobs = list(_jobs(ds, tasks, limit))
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        for j, a in zip(chunk, gen([j.prompt() for j in chunk], [j.image for j in chunk], chunk[0].grid.n)):
            j.text = a
    if stage == "offset":
        for _ in range(rounds):
            _refine_round(gen, jobs, batch_size)
    path = Path(out)
    write_jsonl(path, (j.row(stage) for j in jobs))
    return {"rows": len(jobs), "out": str(path), "model": str(model_dir), "stage": stage,
            "rounds": rounds if stage == "offset" else 0, "tasks": list(tasks), "device": str(gen.device),
            "seconds": round(time.time() - t0, 3)}


# ---------------------------------------------------------------- the bundled trainer's checkpoints
def _export_positions(ds: Dataset) -> dict[tuple[str, int], tuple[str, list[int | None]]]:
    """(key, target index) -> (target_id, export sentence index of each raw sentence; None: not exported)."""
    out = {}
    for sample in ds.samples():
        for ti, t in enumerate(sample.meta["targets"]):
            k, idx = 0, []
            for s in t.get("sentences") or []:
                idx.append(k if s and s.strip() else None)
                k += bool(s and s.strip())
            out[(sample.key, ti)] = (str(t["target_id"]), idx)
    return out


def predict_checkpoint(data: str, ckpt: str, out: str | os.PathLike, rounds: int = 0, limit: int | None = None,
                       batch_size: int = 96, mode: str = "strict") -> dict:
    """The bundled trainer's answers (``getok-data eval``'s decoding: constrained greedy, ``rounds``
    refinement turns on every task, re-quantised between rounds) as prediction rows for ``score``."""
    import itertools

    import torch

    from .train.checkpoint import load_checkpoint
    from .train.decoding import generate
    from .train.evaluate import Outcome, encode_batch, eval_examples, refinable

    t0 = time.time()
    ds = Dataset(data)
    model, _ = load_checkpoint(ckpt)
    if ds.grid_n() != model.cfg.n:
        raise PredictError(f"checkpoint grid n={model.cfg.n} but {data} has n={ds.grid_n()}")
    model.eval()
    where = _export_positions(ds)
    seen: dict[tuple[str, int], int] = {}
    examples = eval_examples(data, model.cfg.image_size, limit)
    rows: list[dict] = []
    skipped = 0
    with torch.no_grad():
        while batch := list(itertools.islice(examples, batch_size)):
            enc = encode_batch(model, batch)
            texts = generate(model, enc, [e.task for e in batch], [""] * len(batch), mode=mode).texts(model.vocab)
            decoders: dict[str, TableDecoder] = {}
            outs, recs = [], []
            for e, text in zip(batch, texts):
                if e.key not in decoders:
                    decoders[e.key] = TableDecoder(e.table, e.info["n"], e.info["m"])
                o = Outcome(e, e.task, decoders[e.key])
                o.set_answer(text)
                outs.append(o)
                if e.task == "seg":
                    seen[(e.key, e.target)] = seen.get((e.key, e.target), -1) + 1
                tid, idx = where[(e.key, e.target)]
                si = idx[seen[(e.key, e.target)]]
                rec = {"id": f"{e.key}/{tid}/{si}/{e.task}", "text": text}
                if rounds:
                    rec.update(refine=[], previous=[])
                recs.append(rec if si is not None else None)
            for _ in range(rounds):  # as train.evaluate.run_refinement, keeping the turns
                live = [k for k, o in enumerate(outs) if refinable(o)]
                if not live:
                    break
                prev = [encode(outs[k].item) for k in live]
                gen = generate(model, _select(enc, live), ["offset"] * len(live), prev, mode=mode)
                for k, text, p in zip(live, gen.texts(model.vocab), prev):
                    outs[k].refine(text, p)
                    if recs[k] is not None:
                        recs[k]["refine"].append(text)
                        recs[k]["previous"].append(p)
            skipped += sum(r is None for r in recs)
            rows += [r for r in recs if r is not None]
    path = Path(out)
    write_jsonl(path, rows)
    return {"rows": len(rows), "out": str(path), "ckpt": str(ckpt), "stage": "offset" if rounds else "grid",
            "rounds": rounds, "skipped_empty_sentences": skipped, "seconds": round(time.time() - t0, 3)}


def _select(enc: dict, rows: list[int]) -> dict:
    import torch

    from .train.model import select_enc

    return select_enc(enc, torch.tensor(rows))
