"""A tiny random Qwen2-VL, its processor and a local tokenizer, built from configs on CPU (no hub).

Why in the package: the interop / TRL tests and ``examples/end_to_end.py`` (run in CI) need the
same offline stand-in for a Qwen2-VL-class model: hidden 32, one text layer, a one-block vision
tower, images resized to 56x56 (4x4 patches of 14 pixels, 4 image tokens after the 2x2 merge).
It proves a path through transformers / TRL, not any quality. transformers and torch are
imported only when a function is called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]
SIDE = 56


def base_tokenizer_folder(folder: Path) -> Path:
    """A Hugging Face tokenizer folder (byte-level BPE + chat specials + chat template), as a model ships one."""
    from transformers import PreTrainedTokenizerFast

    from .export import standalone_tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_object=standalone_tokenizer(), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=CHAT_SPECIALS[1:])
    tok.add_special_tokens({"additional_special_tokens": CHAT_SPECIALS[1:]})
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(folder)
    return folder


def processor_for(tokenizer: Any) -> Any:
    """A Qwen2-VL processor around ``tokenizer`` with images fixed at 56x56 pixels."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    size = {"shortest_edge": SIDE * SIDE, "longest_edge": SIDE * SIDE}
    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(size=size),
                            tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(size=size),
                            chat_template=tokenizer.chat_template)


def tiny_model(tokenizer: Any, rows: int | None = None) -> Any:
    """A random Qwen2-VL whose embedding table has ``rows`` rows (default ``len(tokenizer)``);
    its generation config stops at ``<|im_end|>`` and pads with ``<|endoftext|>``."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(0)
    ids = tokenizer.convert_tokens_to_ids
    cfg = Qwen2VLConfig(
        text_config={"vocab_size": rows or len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                     "eos_token_id": ids("<|im_end|>"), "pad_token_id": ids("<|endoftext|>"), "bos_token_id": None},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2VLForConditionalGeneration(cfg)
    model.generation_config.eos_token_id = ids("<|im_end|>")
    model.generation_config.pad_token_id = ids("<|endoftext|>")
    return model
