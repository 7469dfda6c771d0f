"""Region captions (``cap``) scored as captioning papers report them: ``pycocoevalcap``.

Each scored unit is one caption against every expression of its region (a RefCOCOg region's
sentences, a VG region's phrase): ``gts[unit] = references``, ``res[unit] = [prediction]``. Both
are tokenized by pycocoevalcap's ``PTBTokenizer`` (Stanford CoreNLP's, lower-cased, punctuation
removed), then BLEU-1..4, METEOR, ROUGE-L and CIDEr (``Bleu(4)``, ``Meteor()``, ``Rouge()``,
``Cider()``) are pycocoevalcap's own numbers, not a re-implementation. The tokenizer and METEOR
run Java: without a ``java`` on the PATH, METEOR is left out and the output says so
(``caption_notes``), and the texts are tokenized by a stand-in (lower-case, punctuation split off
and dropped as PTBTokenizer drops it), which the output also says: those BLEU / ROUGE-L / CIDEr
may differ from a paper's in the last digits.

A missing or malformed caption (empty, or holding spatial tokens) is scored as the empty caption.
"""
from __future__ import annotations

import re
import shutil
from typing import Any

from ..tokens import Grid
from .metrics import common, register_metric
from .scoring import register_row_fields

# pycocoevalcap's PTBTokenizer.PUNCTUATIONS: tokens dropped after tokenization
PUNCTUATIONS = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"}
_FALLBACK_TOKEN = re.compile(r"\.\.\.|--|n't|'\w+|\w+(?:[-.]\w+)*|[^\w\s]")


def references(target: dict) -> list[str]:
    return [s for s in target.get("sentences") or [] if s and s.strip()]


@register_row_fields("cap")
def cap_fields(target: dict, result: Any, ok: bool, grid: Grid) -> dict:
    return {"caption": result if ok and isinstance(result, str) else "", "references": references(target)}


def java_available() -> bool:
    return shutil.which("java") is not None


def _fallback_tokenize(captions: dict) -> dict:
    """PTBTokenizer's output shape without Java: lower-cased tokens, its punctuation dropped."""
    out = {}
    for k, caps in captions.items():
        out[k] = [" ".join(t for t in _FALLBACK_TOKEN.findall(c["caption"].lower()) if t not in PUNCTUATIONS)
                  for c in caps]
    return out


def caption_scores(pairs: list[tuple[str, list[str]]]) -> dict:
    """pycocoevalcap's BLEU-1..4, METEOR, ROUGE-L and CIDEr of ``(caption, references)`` pairs."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [{"caption": r} for r in refs] for i, (_, refs) in enumerate(pairs)}
    res = {i: [{"caption": cap}] for i, (cap, _) in enumerate(pairs)}
    java = java_available()
    notes = []
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts, res = tok.tokenize(gts), tok.tokenize(res)
        tokenizer = "ptb"
    else:
        gts, res = _fallback_tokenize(gts), _fallback_tokenize(res)
        tokenizer = "python-fallback"
        notes.append("java not found: METEOR left out; PTBTokenizer replaced by a Python stand-in, so BLEU, "
                     "ROUGE-L and CIDEr may differ from papers' in the last digits (install a JRE)")
    out: dict = {"caption_tokenizer": tokenizer}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{k + 1}": float(b) for k, b in enumerate(bleu)})
    if java:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        out["meteor"] = float(meteor.compute_score(gts, res)[0])
        del meteor  # its __del__ ends the java process (calling __del__ by hand would deadlock the second call)
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    if notes:
        out["caption_notes"] = "; ".join(notes)
    return out


@register_metric("cap")
def cap_metrics(units: list[dict]) -> dict:
    out = common(units)
    pairs = [(u.get("caption") or "", list(u.get("references") or [])) for u in units if u.get("references")]
    if pairs:
        out.update(caption_scores(pairs))
    return out
