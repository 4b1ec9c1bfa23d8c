"""Build a tiny sentence-embedding model directory (the Hugging Face ONNX layout of e.g.
``Xenova/paraphrase-multilingual-MiniLM-L12-v2``) in a test.

Same files, inputs and output as such an export: ``onnx/model.onnx`` taking input_ids,
attention_mask and token_type_ids and giving ``last_hidden_state`` (one state per token,
padding included, as a real encoder does), a WordPiece ``tokenizer.json`` with BERT's
special tokens, ``tokenizer_config.json`` and ``config.json``. The weights are random:
each token state is its (random) embedding, so the mean-pooled vector of a text is a
random projection of its bag of words: texts that share words are near, texts that do
not are far. Plumbing and "same words cluster together" tests only, never quality.
"""
from __future__ import annotations

import json
import os
import string
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:  # the models are built only when a test asks for one
    import onnx

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Words the tests write descriptions with (others are spelt out letter by letter).
WORDS = """
a an the of in on at with and or is are this that image shows photo picture drawing illustration
white black red green blue yellow brown grey orange pink purple background foreground small large
bird birds feathers wings beak mammal mammals fur animal tail flower flowers petals bloom garden
fruit fruits apple sweet vegetable vegetables carrot farm coin coins money metal round road sign
signs traffic street clothes clothing shirt fashion space planet rocket stars sky
""".split()


def _tokenizer(path: Path, words: Iterable[str]) -> int:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab: dict[str, int] = {}
    for t in [*SPECIAL, *words, *string.ascii_lowercase, *string.digits,
              *("##" + c for c in string.ascii_lowercase + string.digits)]:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    tok.save(str(path))
    return len(vocab)


def _encoder(vocab: int, dim: int, rng) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    e = numpy_helper.from_array(rng.standard_normal((vocab, dim)).astype(np.float32), "E")
    t = numpy_helper.from_array(0.1 * rng.standard_normal((2, dim)).astype(np.float32), "T")
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["words"]),
        helper.make_node("Gather", ["T", "token_type_ids"], ["types"]),
        helper.make_node("Add", ["words", "types"], ["last_hidden_state"]),
    ]
    ints = TensorProto.INT64
    g = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info(n, ints, ["batch", "sequence"])
         for n in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", dim])],
        [e, t],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def make_tiny_sentence(out: str | os.PathLike, dim: int = 128, seed: int = 0, max_tokens: int = 128,
                       words: Iterable[str] = WORDS) -> Path:
    """Write the model directory and return its path."""
    import onnx

    out = Path(out)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    n = _tokenizer(out / "tokenizer.json", words)
    onnx.save(_encoder(n, dim, np.random.default_rng(seed)), str(out / "onnx" / "model.onnx"))
    (out / "tokenizer_config.json").write_text(json.dumps({"model_max_length": max_tokens,
                                                           "tokenizer_class": "BertTokenizer"}))
    (out / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": dim,
                                                 "max_position_embeddings": 512, "random_weights": True}))
    return out
