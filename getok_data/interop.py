"""Model side of the spatial vocabulary: ``add_spatial_tokens(model, tokenizer, n)``.

Replaces the old "resize then overwrite the last rows" snippet, which is wrong twice over:
``resize_token_embeddings(len(tok))`` *shrinks* a table that has spare rows (Qwen2.5-VL-7B has
152,064 rows for 151,667 tokenizer entries), and after ``pad_to_multiple_of`` the last rows are
padding, not the new tokens. Here every row is addressed by its token id.

Init (``init="mean"``, the default): each new input row (and output row of an untied
``lm_head``) starts at the mean of the tokenizer's existing rows (padding rows excluded). A
row at the mean keeps the model's output distribution close to the old one at step 0 (the new
logits equal the average logit, so no new token dominates), which is what Hugging Face's own
``mean_resizing`` aims at, but deterministic. ``init="grid2d"`` adds to the mean a small fixed
2D sinusoidal code of each grid token's (column, row) projected to the hidden size, so
neighbouring cells start close and far cells apart (offset and wrapper tokens get the mean). It
has not been measured against ``mean`` yet (docs/INTEROP.md). transformers / torch are imported
only when the function is called.
"""
from __future__ import annotations

import math
from typing import Any

from .tokens import vocabulary

INITS = ("mean", "grid2d")


def _text_configs(config: Any) -> list[Any]:
    out = [config]
    get = getattr(config, "get_text_config", None)
    text = get() if callable(get) else getattr(config, "text_config", None)
    if text is not None and text is not config:
        out.append(text)
    return out


def _grid2d_codes(n: int, dim: int, seed: int) -> "Any":
    """``(n*n, dim)`` unit-scale codes: 2D sinusoids of (i/n, j/n) through a fixed random projection."""
    import torch

    freqs = torch.tensor([1.0, 2.0, 4.0]) * math.pi
    j, i = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    u, v = (i.reshape(-1, 1) + 0.5) / n, (j.reshape(-1, 1) + 0.5) / n  # raster order: row j outer
    feats = torch.cat([torch.sin(u * freqs), torch.cos(u * freqs), torch.sin(v * freqs), torch.cos(v * freqs)], 1)
    gen = torch.Generator().manual_seed(seed)
    proj = torch.randn(feats.shape[1], dim, generator=gen) / math.sqrt(feats.shape[1])
    codes = feats @ proj
    return codes / codes.norm(dim=1, keepdim=True).mean()


def add_spatial_tokens(model: Any, tokenizer: Any, n: int, *, special: bool = False, pad_to_multiple_of: int = 64,
                       init: str = "mean", scale: float = 0.5, seed: int = 0) -> list[int]:
    """Add the ``n x n`` spatial vocabulary to ``tokenizer`` and ``model``; return the ids of
    every spatial token in vocabulary order.

    Tokens the tokenizer already holds keep their ids and rows. The embedding table (and an
    untied ``lm_head``) grows only when an id does not fit, to a multiple of
    ``pad_to_multiple_of``; it never shrinks. Exactly the rows of the newly added ids are
    initialised (``init``: ``mean`` or ``grid2d``, see the module docstring; ``scale`` is the
    grid2d code's norm relative to the rows' mean distance from their mean). ``config.vocab_size``
    (and the text config's) is set to the table's row count.
    """
    import torch
    from tokenizers import AddedToken

    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    tokens = vocabulary(n)
    old_len = len(tokenizer)
    have = tokenizer.get_vocab()
    new = [t for t in tokens if t not in have]
    if new:
        tokenizer.add_tokens([AddedToken(t, special=special, normalized=False) for t in new], special_tokens=special)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    new_ids = tokenizer.convert_tokens_to_ids(new)
    emb = model.get_input_embeddings()
    rows = emb.weight.shape[0]
    needed = max(ids) + 1
    if needed > rows:
        target = -(-needed // pad_to_multiple_of) * pad_to_multiple_of
        model.resize_token_embeddings(target, mean_resizing=False)
    emb = model.get_input_embeddings()
    rows = emb.weight.shape[0]
    for cfg in _text_configs(model.config):
        if hasattr(cfg, "vocab_size"):
            cfg.vocab_size = rows
    if not new_ids:
        return ids
    out = model.get_output_embeddings()
    tables = [emb.weight]
    if out is not None and out.weight is not emb.weight and out.weight.shape[0] == rows:
        tables.append(out.weight)
    grid_new = [(k, tid) for k, (tok, tid) in enumerate(zip(tokens, ids)) if tok in set(new) and k < n * n]
    with torch.no_grad():
        for weight in tables:
            ref = weight[:old_len].float()
            mean = ref.mean(0)
            weight[new_ids] = mean.to(weight.dtype)
            if init == "grid2d" and grid_new:
                spread = (ref - mean).norm(dim=1).mean()
                codes = _grid2d_codes(n, weight.shape[1], seed)
                cells = torch.tensor([k for k, _ in grid_new])
                rows_ = torch.tensor([tid for _, tid in grid_new])
                weight[rows_] = (mean + scale * spread * codes[cells]).to(weight.dtype)
    return ids
