"""The spatial vocabulary as Hugging Face ``tokenizers`` added tokens that never split.

``build_tokenizer(n)`` extends a base ``tokenizer.json`` (or, without one, a minimal byte-level
tokenizer with no merges, enough to encode any text) with every token of
``getok_data.tokens.vocabulary(n)`` as one added token, in vocabulary order, so the tokens get
consecutive ids after the base vocabulary. Tokens are *special* by default; ``special=False``
marks them non-special, which matters because ``skip_special_tokens=True`` (Hugging Face
``decode``) and vLLM strip special tokens from generated text: a special spatial token vanishes
from the answer unless decoding keeps special tokens (docs/INTEROP.md).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from ..tokens import vocabulary


def byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable-unicode table, in byte order (ids 0..255 of the standalone model)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def standalone_tokenizer() -> Tokenizer:
    """A minimal lossless tokenizer: byte-level BPE over the 256 byte symbols, no merges."""
    vocab = {ch: i for i, ch in enumerate(byte_alphabet())}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def load_base(base: str | os.PathLike) -> Tokenizer:
    """A ``tokenizer.json`` file, or a folder holding one."""
    p = Path(base)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {base}")
    return Tokenizer.from_file(str(p))


def spatial_tokens(n: int, special: bool = True) -> list[AddedToken]:
    """The vocabulary as ``AddedToken``s: matched on the raw text (not normalised), no stripping."""
    return [AddedToken(t, special=special, normalized=False, single_word=False, lstrip=False, rstrip=False)
            for t in vocabulary(n)]


def build_tokenizer(n: int, base: str | os.PathLike | None = None, special: bool = True) -> Tokenizer:
    """A tokenizer in which every spatial token of an ``n x n`` grid is one added token."""
    tok = load_base(base) if base is not None else standalone_tokenizer()
    added = spatial_tokens(n, special)
    if special:
        tok.add_special_tokens(added)
    else:
        tok.add_tokens(added)
    return tok


def export_tokenizer(n: int, out: str | os.PathLike, base: str | os.PathLike | None = None,
                     special: bool = True) -> dict:
    """Write ``out/tokenizer.json`` and ``out/added_tokens.json``; return a summary.

    ``added_tokens.json`` is ``{token: id}`` in vocabulary order (the Hugging Face file of that
    name; ``list(json.load(f))`` is the token list to pass to ``tokenizer.add_tokens``), and
    ``spatial_tokens.txt`` the same list, one token a line.
    """
    tok = build_tokenizer(n, base, special)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"), pretty=True)
    tokens = vocabulary(n)
    ids = {t: tok.token_to_id(t) for t in tokens}
    (out_dir / "added_tokens.json").write_text(json.dumps(ids, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "spatial_tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    values = list(ids.values())
    return {"out": str(out_dir), "grid": n, "tokens": len(tokens), "special": special,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True), "first_id": min(values), "last_id": max(values),
            "contiguous": values == list(range(values[0], values[0] + len(values)))}
