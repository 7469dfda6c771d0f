"""Candidate tables built on the segmenter's device: threshold, bit-pack, deduplicate there.

At n = 32 the thresholded masks of one image are 1024 x h x w bools (50 MB at 256 x 192);
packed and deduplicated they are U rows of ceil(h*w/8) bytes. Only the latter cross to the host.
The results equal ``np.packbits`` and ``CandidateTable.from_point_rows`` exactly (tested on CPU,
where the same code runs).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits order (big-endian bits)


def pack_rows(bits: torch.Tensor) -> torch.Tensor:
    """``np.packbits(bits.reshape(P, -1), axis=1)`` on the tensor's device: uint8 ``[P, ceil(h*w/8)]``."""
    flat = bits.reshape(bits.shape[0], -1).to(torch.uint8)
    pad = (-flat.shape[1]) % 8
    if pad:
        flat = F.pad(flat, (0, pad))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=bits.device)
    return (flat.view(flat.shape[0], -1, 8) * weights).sum(dim=-1, dtype=torch.uint8)


def dedup_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Deduplicate packed rows on their device, in first-appearance order.

    Returns ``(ids, first)``: ``ids`` int64 ``[P]`` (-1 for all-zero rows) and ``first`` the
    indices of the rows kept, ascending: the same as ``CandidateTable.from_point_rows``. Rows are
    grouped by a 64-bit linear fingerprint and every row is then compared with its group's first
    row; ``None`` when two different rows share a fingerprint (the caller then dedups exactly
    on the host).
    """
    p, b = rows.shape
    pad = (-b) % 8
    words = (F.pad(rows, (0, pad)) if pad else rows).contiguous().view(torch.int64)
    gen = np.random.default_rng(0x5A2).integers(1, 2**62, size=words.shape[1], dtype=np.int64) | 1
    fp = (words * torch.as_tensor(gen, device=rows.device)).sum(dim=1)  # wraps mod 2^64
    _, inverse = torch.unique(fp, return_inverse=True)
    pos = torch.arange(p, device=rows.device)
    firstpos = torch.full((int(inverse.max()) + 1 if p else 0,), p, dtype=torch.int64, device=rows.device)
    firstpos = firstpos.scatter_reduce(0, inverse, pos, reduce="amin")
    rep = firstpos[inverse]
    if not bool((rows == rows[rep]).all()):
        return None
    nonzero = (rows != 0).any(dim=1)
    is_first = (rep == pos) & nonzero
    new_id = torch.cumsum(is_first.to(torch.int64), 0) - 1
    ids = torch.where(nonzero, new_id[rep], torch.full_like(new_id, -1))
    return ids, pos[is_first]
