"""Tokenising texts for a text model: a ``tokenizer.json`` (Hugging Face ``tokenizers``),
truncated to the model's limit, padded into one batch, and counting what was cut."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class TokenBatch:
    ids: np.ndarray  # int64 (batch, length), padded
    mask: np.ndarray  # int64, 1 = a real token
    truncated: int  # how many of the texts were longer than the limit and were cut


class Tokens:
    """``tokenizer.json`` with truncation at ``max_tokens`` (special tokens included: the
    library keeps the end-of-text token a model may pool at) and padding with the first
    of ``pad_tokens`` the vocabulary has."""

    def __init__(self, path: Path, max_tokens: int, pad_tokens: Sequence[str] = ()) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.max_tokens = int(max_tokens)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        # The first of ``pad_tokens`` the vocabulary has (masked out: its value hardly matters).
        found = (self.tokenizer.token_to_id(t) for t in pad_tokens)
        self.pad_id = int(next((i for i in found if i is not None), 0))

    def batch(self, texts: Sequence[str]) -> TokenBatch:
        encs = self.tokenizer.encode_batch(list(texts))
        n = max((len(e.ids) for e in encs), default=0)
        ids = np.full((len(encs), max(n, 1)), self.pad_id, dtype=np.int64)
        mask = np.zeros(ids.shape, dtype=np.int64)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = e.ids
            mask[r, : len(e.ids)] = 1
        return TokenBatch(ids, mask, sum(bool(e.overflowing) for e in encs))
