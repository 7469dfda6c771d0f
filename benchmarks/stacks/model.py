"""The model side of every stack check, built in the stack's own venv with its own transformers: a
tiny random Qwen2-VL (getok_data.tiny_vlm), its tokenizer extended by ``export tokenizer --base``
and the model by ``getok_data.interop.add_spatial_tokens``, saved as a model folder the stack
loads like any Hugging Face model. Nothing is downloaded."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def model_folder(folder: Path, n: int) -> Path:
    import transformers
    from transformers import AutoTokenizer

    from getok_data.export.tokenizer import export_tokenizer
    from getok_data.interop import add_spatial_tokens
    from getok_data.tiny_vlm import base_tokenizer_folder, processor_for, tiny_model

    base = base_tokenizer_folder(folder / "base_tok")
    export_tokenizer(n, folder / "tok", base=base)  # `getok-data export tokenizer --grid n --base ...`
    tok = AutoTokenizer.from_pretrained(folder / "tok")
    if int(transformers.__version__.split(".")[0]) < 5:  # 4.x's Qwen2VLProcessor insists on a Qwen2 tokenizer class
        from transformers import Qwen2TokenizerFast

        tok = Qwen2TokenizerFast.from_pretrained(folder / "tok")
    model = tiny_model(tok)
    add_spatial_tokens(model, tok, n=n)  # ids already there: rows written, nothing resized
    out = folder / "model"
    model.save_pretrained(out)
    processor_for(tok).save_pretrained(out)
    return out


def setup(data: Path, stack: str) -> tuple[dict, int, Path, Path]:
    """``(prepared.json, grid n, a fresh work folder, the model folder built in it)`` of a check."""
    import json
    import tempfile

    prepared = json.loads((data / "prepared.json").read_text())
    work = Path(tempfile.mkdtemp(prefix=f"{stack}-"))
    return prepared, prepared["grid_n"], work, model_folder(work, prepared["grid_n"])


def spatial_ids_are_single(tokenizer, n: int) -> bool:
    """Every spatial token of the n-grid encodes to exactly one id, inside a sentence too."""
    from getok_data.tokens import vocabulary

    for t in vocabulary(n):
        ids = tokenizer.encode("x" + t + "y", add_special_tokens=False)
        if tokenizer.convert_tokens_to_ids(t) not in ids or len(tokenizer.encode(t, add_special_tokens=False)) != 1:
            return False
    return True


def response_batch(tokenizer, answers: list[str], eos: int):
    """``(responses, mask)``: each answer's ids and the end of turn, right padded (what a rollout
    hands the reward manager of verl and EasyR1)."""
    import torch

    ids = [tokenizer.encode(a, add_special_tokens=False) + [eos] for a in answers]
    width = max(len(r) for r in ids)
    return (torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in ids]),
            torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids]))


def finish(check, stack: str) -> None:
    """Run ``check(DATA)`` (DATA: argv[1]), print its findings, then one JSON line."""
    import json

    out = check(Path(sys.argv[1]))
    for k, v in out.items():
        print(f"{k}: {v}")
    print(json.dumps({"ok": True, stack: out[stack], **{k: out[k]["rows"] for k in ("grid", "offset", "multi")},
                      "spatial_tokens_single_ids": out["spatial_tokens_single_ids"]}))
