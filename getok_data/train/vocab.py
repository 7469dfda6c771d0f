"""The trainer's token ids: the spatial vocabulary (FORMAT.md order, ids from 0) + control tokens.

A sequence is ``<bos> <task_T> [previous answer] <sep> answer <eos>``; the loss covers the answer
and ``<eos>``. Spatial ids equal FORMAT.md's relative ids, so ``id < n*n`` is a grid token
``(i, j) = (id % n, id // n)`` and ``n*n <= id < n*n + 10`` is an offset token (9 = ``<DELETE>``).
"""
from __future__ import annotations

from ..tokens import WRAPPERS, tokenize, vocabulary

TASKS = ("seg", "box", "point", "offset")
CONTROL = ("<pad>", "<bos>", "<eos>", "<sep>") + tuple(f"<task_{t}>" for t in TASKS)


class SeqVocab:
    """Token <-> id for one grid size ``n``."""

    def __init__(self, n: int):
        self.n = n
        self.tokens = vocabulary(n) + list(CONTROL)
        self.index = {t: k for k, t in enumerate(self.tokens)}
        self.pad, self.bos, self.eos, self.sep = (self.index[t] for t in CONTROL[:4])
        self.task = {t: self.index[f"<task_{t}>"] for t in TASKS}
        self.num_grid = n * n
        self.off0 = n * n  # first offset token; <DELETE> is off0 + 9
        self.open = {k: self.index[o] for k, (o, _) in WRAPPERS.items()}
        self.close = {k: self.index[c] for k, (_, c) in WRAPPERS.items()}

    def __len__(self) -> int:
        return len(self.tokens)

    def ids(self, text: str) -> list[int]:
        return [self.index[t] for _, t in tokenize(text)] if text else []

    def text(self, ids: list[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    def encode_example(self, task: str, previous: str, answer: str) -> tuple[list[int], int]:
        """(sequence ids, index of the first answer token)."""
        prefix = [self.bos, self.task[task]] + self.ids(previous) + [self.sep]
        return prefix + self.ids(answer) + [self.eos], len(prefix)

    def prefix(self, task: str, previous: str = "") -> list[int]:
        return [self.bos, self.task[task]] + self.ids(previous) + [self.sep]

    def is_grid(self, i: int) -> bool:
        return 0 <= i < self.num_grid

    def is_offset(self, i: int) -> bool:
        return self.off0 <= i < self.off0 + 10
