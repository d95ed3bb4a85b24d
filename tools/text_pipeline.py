"""Tokenisation, batching and pooling shared by the tools (no torch, no transformers).

Why: every tool must tokenize exactly as sentence-transformers does for
all-MiniLM-L6-v2, and the model's tokenizer.json does not do that by default:
it bakes in truncation at 128 tokens and padding to a fixed 128, which the
`tokenizers` library applies unless overridden. These helpers override both
(truncation at MAX_TOKENS, longest_first; no padding) in one place, pad
batches to their longest member, and do the mean pooling + L2 normalisation
of the sentence-transformers pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

MAX_TOKENS = 256


def load_tokenizer(path: Path, max_tokens: int = MAX_TOKENS) -> Tokenizer:
    """tokenizer.json with truncation at `max_tokens` (longest_first) and no padding."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_tokens, strategy="longest_first")
    tokenizer.no_padding()
    return tokenizer


def batch_inputs(encodings: list[Encoding]) -> dict[str, np.ndarray]:
    """The three int64 model inputs, padded with 0 to the longest encoding."""
    width = max(len(e.ids) for e in encodings)
    feed = {name: np.zeros((len(encodings), width), dtype=np.int64)
            for name in ("input_ids", "attention_mask", "token_type_ids")}
    for row, e in enumerate(encodings):
        n = len(e.ids)
        feed["input_ids"][row, :n] = e.ids
        feed["attention_mask"][row, :n] = 1
        feed["token_type_ids"][row, :n] = e.type_ids
    return feed


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of `hidden` [b, s, d] over positions where `mask` [b, s] is 1, L2-normalised."""
    weights = mask.astype(np.float32)[:, :, None]
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
