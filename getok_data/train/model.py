"""A small grounding model: CNN image encoder + word-hash expression encoder + causal decoder.

- Image: a strided CNN over an ``S x S`` resize (the grid is per-axis, so a square resize keeps
  cells aligned), pooled to ``n x n`` cells, plus row/column embeddings, modulated by the
  expression (FiLM) and mixed by two 3x3 convs.
- Expression: word-hash embeddings + a small transformer encoder.
- Memory: the ``n*n`` cells and the expression tokens.
- Decoder: a causal transformer over ``<bos> <task> [previous answer] <sep> answer``. A grid
  token's input embedding is its cell's feature plus its row/column embedding; its output logit
  is a pointer (query . cell key) plus a row/column bias. So nothing is ``n*n``-sized unless
  ``grid_embed: full``. Offset tokens also see the anchor they refine (the k-th offset of an
  answer refines the k-th anchor of the previous answer): its 3x3 cells, and a 4x4 window of a
  half-cell-resolution (stride-4) feature map centred on it, i.e. where one offset step lands.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .vocab import SeqVocab


@dataclass
class ModelConfig:
    n: int = 16
    image_size: int = 128
    d: int = 128
    heads: int = 4
    channels: tuple[int, ...] = (32, 64, 96, 128)  # CNN widths; total stride 2**len(channels)/2
    mix_layers: int = 1  # 3x3 convs after the expression modulates the cells
    text_layers: int = 1
    dec_layers: int = 2
    text_buckets: int = 4096
    max_words: int = 24
    max_len: int = 64
    grid_embed: str = "factorized"  # factorized: 2n row/column vectors | full: n*n vectors
    max_anchors: int = 8  # longest <seg> answer decoding allows
    fine_dim: int = 16  # channels of the half-cell feature map that offset tokens see around their anchor
    dropout: float = 0.0

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "channels" in kw:
            kw["channels"] = tuple(kw["channels"])
        return cls(**kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


def _conv(ci: int, co: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ci, co, 3, stride, 1, bias=False), nn.GroupNorm(8, co), nn.GELU())


class GridEmbed(nn.Module):
    """Per-grid-point vectors: factorized (column + row) or full (one per point)."""

    def __init__(self, n: int, d: int, kind: str):
        super().__init__()
        self.n, self.kind = n, kind
        if kind == "full":
            self.full = nn.Parameter(torch.randn(n * n, d) * 0.02)
        elif kind == "factorized":
            self.col = nn.Parameter(torch.randn(n, d) * 0.02)
            self.row = nn.Parameter(torch.randn(n, d) * 0.02)
        else:
            raise ValueError(f"grid_embed must be factorized or full, got {kind!r}")

    def forward(self) -> torch.Tensor:
        """``[n*n, d]`` in raster order."""
        if self.kind == "full":
            return self.full
        return (self.row[:, None, :] + self.col[None, :, :]).reshape(self.n * self.n, -1)


class GroundingModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vocab = SeqVocab(cfg.n)
        n, d = cfg.n, cfg.d
        ch = (3,) + tuple(cfg.channels)
        self.cnn = nn.Sequential(*[_conv(ch[k], ch[k + 1], 2 if k < len(ch) - 2 else 1) for k in range(len(ch) - 1)])
        self.cell_in = nn.Conv2d(ch[-1], d, 1)
        self.cell_pos = GridEmbed(n, d, cfg.grid_embed)
        self.film = nn.Linear(d, 2 * d)
        self.mix = nn.Sequential(*[_conv(d, d, 1) for _ in range(cfg.mix_layers)])
        self.word = nn.Embedding(cfg.text_buckets, d, padding_idx=0)
        self.word_pos = nn.Embedding(cfg.max_words, d)
        layer = lambda: nn.TransformerEncoderLayer(d, cfg.heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True)
        self.text = nn.TransformerEncoder(layer(), cfg.text_layers, enable_nested_tensor=False)
        self.local = nn.Linear(9 * d, d)
        self.fine_in = nn.Conv2d(ch[2], cfg.fine_dim, 1)  # the stride-4 map: two pixels per cell
        self.fine = nn.Linear(16 * cfg.fine_dim, d)
        self.fine_film = nn.Linear(d, 2 * cfg.fine_dim)
        # decoder
        self.tok = nn.Embedding(len(self.vocab) - n * n, d)  # non-grid tokens
        self.grid_in = GridEmbed(n, d, cfg.grid_embed)
        self.cell_proj = nn.Linear(d, d)
        self.pos = nn.Embedding(cfg.max_len, d)
        dec = nn.TransformerDecoderLayer(d, cfg.heads, 2 * d, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, cfg.dec_layers)
        self.ln = nn.LayerNorm(d)
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.grid_bias = GridEmbed(n, 1, cfg.grid_embed)
        self.head = nn.Linear(d, len(self.vocab) - n * n)

    # ------------------------------------------------------------------ encoder
    def encode(self, images: torch.Tensor, text: torch.Tensor, img_index: torch.Tensor | None = None) -> dict:
        """``images`` uint8 ``[U, 3, S, S]``; ``img_index`` ``[B]`` picks each example's image."""
        n, d = self.cfg.n, self.cfg.d
        x = self.cnn[:2](images.float() / 255.0 - 0.5)
        fine = F.adaptive_avg_pool2d(self.fine_in(x), 2 * n)  # [U, f, 2n, 2n]: half-cell resolution
        x = F.adaptive_avg_pool2d(self.cell_in(self.cnn[2:](x)), n)  # [U, d, n, n]
        if img_index is not None:
            x, fine = x[img_index], fine[img_index]
        pad = text == 0
        w = self.word(text) + self.word_pos(torch.arange(text.shape[1], device=text.device))
        w = self.text(w, src_key_padding_mask=pad)
        pooled = (w * (~pad)[..., None]).sum(1) / (~pad).sum(1, keepdim=True).clamp(min=1)
        fg, fb = self.fine_film(pooled).chunk(2, dim=-1)
        fine = fine * (1 + fg[..., None, None]) + fb[..., None, None]  # the expression modulates it too
        gamma, beta = self.film(pooled).chunk(2, dim=-1)
        x = x + self.cell_pos().T.reshape(1, d, n, n)
        x = x * (1 + gamma[..., None, None]) + beta[..., None, None]
        x = x + self.mix(x)  # [B, d, n, n]
        cells = x.flatten(2).transpose(1, 2)  # [B, n*n, d], raster order
        memory = torch.cat([cells, w], dim=1)
        mem_pad = torch.cat([torch.zeros(cells.shape[:2], dtype=torch.bool, device=pad.device), pad], dim=1)
        return {"cells": cells, "fine": fine, "memory": memory, "mem_pad": mem_pad}

    def neighbourhood(self, enc: dict, b: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """What an offset token sees of its anchor ``cell`` (rows ``b``): the 3x3 cells around it and
        the 4x4 half-cell window centred on it (one offset step each way and a bit), ``[K, d]``."""
        n, d = self.cfg.n, self.cfg.d
        j, i = cell // n, cell % n
        padded = F.pad(enc["cells"].reshape(-1, n, n, d), (0, 0, 1, 1, 1, 1))  # [B, n+2, n+2, d]
        dj, di = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
        nb = padded[b[:, None], j[:, None] + dj.reshape(1, 9), i[:, None] + di.reshape(1, 9)]  # [K, 9, d]
        fine = F.pad(enc["fine"], (1, 1, 1, 1)).permute(0, 2, 3, 1)  # [B, 2n+2, 2n+2, f]
        fj, fi = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
        win = fine[b[:, None], 2 * j[:, None] + fj.reshape(1, 16), 2 * i[:, None] + fi.reshape(1, 16)]  # [K, 16, f]
        return self.local(nb.reshape(len(b), 9 * d)) + self.fine(win.reshape(len(b), -1))

    # ------------------------------------------------------------------ decoder
    def refs(self, ids: torch.Tensor) -> torch.Tensor:
        """For each position, the cell of the previous-answer anchor that the next offset token
        refines (-1 where none): after ``<sep>``, the k-th offset refines the k-th prefix anchor."""
        v, B, T = self.vocab, *ids.shape
        after = torch.cumsum(ids == v.sep, dim=1) > 0
        is_anchor = (ids < v.num_grid) & ~after
        rank = torch.cumsum(is_anchor, dim=1) - 1
        table = torch.full((B, T + 1), -1, dtype=torch.long, device=ids.device)
        table.scatter_(1, torch.where(is_anchor, rank, T), torch.where(is_anchor, ids, -1))
        table[:, T] = -1
        done = torch.cumsum(after & (ids >= v.off0) & (ids < v.off0 + 10), dim=1)
        ref = table.gather(1, done.clamp(max=T))
        return torch.where(after, ref, -1)

    def embed(self, enc: dict, ids: torch.Tensor) -> torch.Tensor:
        n2, T = self.cfg.n ** 2, ids.shape[1]
        is_grid = ids < n2
        other = self.tok((ids - n2).clamp(min=0))
        cell_ids = ids.clamp(max=n2 - 1)
        cell = enc["cells"].gather(1, cell_ids[..., None].expand(-1, -1, self.cfg.d))
        grid = self.cell_proj(cell) + self.grid_in()[cell_ids]
        x = torch.where(is_grid[..., None], grid, other)
        ref = self.refs(ids)
        b, t = torch.nonzero(ref >= 0, as_tuple=True)
        if len(b):
            x = x.index_put((b, t), self.neighbourhood(enc, b, ref[b, t]), accumulate=True)
        return x + self.pos(torch.arange(T, device=ids.device))

    def decode(self, enc: dict, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[B, T, V]`` for every position of ``ids``."""
        T = ids.shape[1]
        causal = torch.triu(torch.ones((T, T), dtype=torch.bool, device=ids.device), diagonal=1)
        pad = ids == self.vocab.pad
        h = self.decoder(self.embed(enc, ids), enc["memory"], tgt_mask=causal, tgt_key_padding_mask=pad,
                         memory_key_padding_mask=enc["mem_pad"], tgt_is_causal=True)
        h = self.ln(h)
        keys = self.key(enc["cells"])  # [B, n*n, d]
        grid = torch.einsum("btd,bkd->btk", self.query(h), keys) / math.sqrt(self.cfg.d)
        grid = grid + self.grid_bias().squeeze(-1)
        return torch.cat([grid, self.head(h)], dim=-1)

    def forward(self, images, text, ids, img_index=None) -> torch.Tensor:
        return self.decode(self.encode(images, text, img_index), ids)


def select_enc(enc: dict, index: torch.Tensor) -> dict:
    """Encoder outputs for a subset / repetition of the batch rows."""
    return {k: v[index] for k, v in enc.items()}


def sft_loss(logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens: position t predicts ids[t+1]."""
    logits, target, mask = logits[:, :-1], ids[:, 1:], loss_mask[:, :-1]
    return F.cross_entropy(logits[mask], target[mask])


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
