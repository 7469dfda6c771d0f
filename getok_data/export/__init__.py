"""Interop exports: chat-format JSONL for MLLM stacks and Hugging Face tokenizers (docs/INTEROP.md)."""
from .chat import ExportStats, export_chat, rows_for_sample
from .tokenizer import build_tokenizer, export_tokenizer, spatial_tokens, standalone_tokenizer

__all__ = ["ExportStats", "export_chat", "rows_for_sample", "build_tokenizer", "export_tokenizer",
           "spatial_tokens", "standalone_tokenizer"]
