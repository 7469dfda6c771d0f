"""The spatial vocabulary as Hugging Face ``tokenizers`` added tokens that never split.

``build_tokenizer(n)`` extends a base ``tokenizer.json`` (or, without one, a minimal byte-level
tokenizer with no merges, enough to encode any text) with every token of
``getok_data.tokens.vocabulary(n)`` as one added token, in vocabulary order, so the tokens get
consecutive ids after the base vocabulary.

Tokens are *normal* (non-special) by default: TRL decodes GRPO completions with
``skip_special_tokens=True`` (hard-coded), and vLLM and verl skip special tokens by default, so
special spatial tokens would vanish from the text every reward sees. ``special=True`` opts in
(decode with ``skip_special_tokens=False`` then, or use ``rewards.trl.make_rewards(tokenizer)``).

``export_tokenizer(..., base=DIR)`` writes a complete drop-in folder: every tokenizer file of the
base (``tokenizer_config.json`` with eos/pad/bos and the chat template, ``special_tokens_map.json``,
``chat_template.jinja``, processor configs, ...) with the extended ``tokenizer.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from ..atomic import atomic_path, write_atomic
from ..tokens import vocabulary

# Files of a Hugging Face tokenizer / processor folder copied unchanged next to the new tokenizer.json.
BASE_FILES = ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "chat_template.json",
              "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model",
              "preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json")


class TokenizerError(ValueError):
    """A tokenizer export that cannot be done as asked; the message names what and where."""


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


def base_json(base: str | os.PathLike) -> Path:
    """The ``tokenizer.json`` of ``base`` (the file itself, or a folder holding one)."""
    p = Path(base)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {base}")
    return p


def load_base(base: str | os.PathLike) -> Tokenizer:
    return Tokenizer.from_file(str(base_json(base)))


def spatial_tokens(n: int, special: bool = False) -> list[AddedToken]:
    """The vocabulary as ``AddedToken``s: matched on the raw text (not normalised), no stripping."""
    return [AddedToken(t, special=special, normalized=False, single_word=False, lstrip=False, rstrip=False)
            for t in vocabulary(n)]


def existing_spatial(tok: Tokenizer, n: int) -> list[str]:
    """The spatial tokens a tokenizer already holds (in its model vocabulary or as added tokens)."""
    vocab = tok.get_vocab(with_added_tokens=True)
    return [t for t in vocabulary(n) if t in vocab]


def build_tokenizer(n: int, base: str | os.PathLike | None = None, special: bool = False,
                    allow_existing: bool = False) -> Tokenizer:
    """A tokenizer in which every spatial token of an ``n x n`` grid is one added token.

    A base that already holds a spatial token would break the consecutive ids the vocabulary
    promises: an error naming it, unless ``allow_existing`` (those tokens keep their ids).
    """
    tok = load_base(base) if base is not None else standalone_tokenizer()
    clash = existing_spatial(tok, n)
    if clash and not allow_existing:
        more = f" and {len(clash) - 5} more" if len(clash) > 5 else ""
        raise TokenizerError(f"{base_json(base)}: the base tokenizer already holds spatial token(s) "
                             f"{', '.join(clash[:5])}{more}; their ids would not be consecutive "
                             "(use --allow-existing to keep them)")
    added = spatial_tokens(n, special)
    if special:
        tok.add_special_tokens(added)
    else:
        tok.add_tokens(added)
    return tok


def _write(path: Path, data: bytes) -> None:
    write_atomic(path, data)


def export_tokenizer(n: int, out: str | os.PathLike, base: str | os.PathLike | None = None,
                     special: bool = False, allow_existing: bool = False) -> dict:
    """Write the tokenizer folder ``out``; return a summary.

    ``tokenizer.json`` (extended), ``spatial_tokens.json`` (``{token: id}`` in vocabulary order),
    ``spatial_tokens.txt`` (one token a line; ms-swift ``--new_special_tokens`` takes it),
    ``added_tokens.json`` (Hugging Face's ``{token: id}`` file: the base's entries, if any, plus
    the spatial ones) and, with a base, every file of ``BASE_FILES`` found next to its
    ``tokenizer.json``.
    """
    tok = build_tokenizer(n, base, special, allow_existing)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    copied, added_map = [], {}
    if base is not None:
        folder = base_json(base).parent
        for name in BASE_FILES:
            src = folder / name
            if src.is_file() and src.resolve() != (out_dir / name).resolve():
                _write(out_dir / name, src.read_bytes())
                copied.append(name)
        if (folder / "added_tokens.json").is_file():
            added_map = json.loads((folder / "added_tokens.json").read_text(encoding="utf-8"))
    with atomic_path(out_dir / "tokenizer.json") as tmp:
        tok.save(str(tmp), pretty=True)
    tokens = vocabulary(n)
    ids = {t: tok.token_to_id(t) for t in tokens}
    text = json.dumps(ids, indent=1, ensure_ascii=False) + "\n"
    _write(out_dir / "spatial_tokens.json", text.encode())
    _write(out_dir / "added_tokens.json", (json.dumps(dict(added_map, **ids), indent=1, ensure_ascii=False) + "\n").encode())
    _write(out_dir / "spatial_tokens.txt", ("\n".join(tokens) + "\n").encode())
    values = list(ids.values())
    return {"out": str(out_dir), "grid": n, "tokens": len(tokens), "special": special,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True), "first_id": min(values), "last_id": max(values),
            "contiguous": values == list(range(values[0], values[0] + len(values))), "copied": copied}
