"""Running models with onnxruntime: a CLIP vision tower, a CLIP text tower and a
sentence-embedding encoder (the last two for texts: queries, vocabulary, descriptions)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from . import devices
from .hub import CLIP_MAX_TOKENS, ModelError, ModelFiles, TextModelFiles, file_sha256
from .preprocess import Preprocessor, l2_normalise
from .tokens import TokenBatch, Tokens


def _session(path: Path, threads: int | None, spinning: bool = True):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    if not spinning:
        # Idle worker threads sleep instead of busy-waiting, leaving their CPU time to
        # other work in the process (image decoding while a batch runs).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return devices.session(path, opts)


class ImageEmbedder:
    """Runs a vision ONNX model: PIL images or uint8 crops in, L2-normalised vectors out."""

    def __init__(self, files: ModelFiles, threads: int | None = None, spinning: bool = True):
        self.files = files
        self.name = files.name
        cfg = json.loads(Path(files.preprocessor).read_text())
        self.preprocessor = Preprocessor.from_config(cfg)
        self.session = _session(files.vision, threads, spinning)
        self.input_name = self.session.get_inputs()[0].name
        outs = [o.name for o in self.session.get_outputs()]
        self.output_name = "image_embeds" if "image_embeds" in outs else outs[0]
        shape = self.session.get_outputs()[outs.index(self.output_name)].shape
        dim = shape[-1] if isinstance(shape[-1], int) else None
        if dim is None:
            dim = self.embed_uint8(np.zeros((1, *self._input_hw(), 3), np.uint8)).shape[1]
        self.dimensions = int(dim)
        self._sha256: str | None = None

    def _input_hw(self) -> tuple[int, int]:
        p = self.preprocessor
        return p.crop_hw or p.resize_hw or (p.shortest_edge or 224,) * 2  # type: ignore[return-value]

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.files.vision)
        return self._sha256

    def embed_uint8(self, batch: np.ndarray) -> np.ndarray:
        """NHWC uint8 crops (from ``preprocessor.to_uint8``) -> normalised vectors."""
        x = self.preprocessor.normalise(batch)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        out = out.reshape(out.shape[0], -1)
        return l2_normalise(out)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        crops = np.stack([self.preprocessor.to_uint8(im.convert("RGB")) for im in images])
        return self.embed_uint8(crops)


class TextTower:
    """A text model run batch by batch: texts in, L2-normalised vectors out, texts longer
    than ``max_tokens`` truncated (and counted: :meth:`embed_counting`)."""

    kind = ""

    def __init__(self, name: str, model: Path, tokenizer: Path, max_tokens: int, threads: int | None,
                 pad_tokens: Sequence[str] = ()) -> None:
        self.name = name
        self.model_path = Path(model)
        self.max_tokens = int(max_tokens)
        self.tokens = Tokens(tokenizer, self.max_tokens, pad_tokens)
        self.session = _session(self.model_path, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self._sha256: str | None = None
        self._dimensions: int | None = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = file_sha256(self.model_path)
        return self._sha256

    @property
    def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = int(self.embed(["a"]).shape[1])
        return self._dimensions

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return self.embed_counting(texts, batch_size)[0]

    def embed_counting(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, int]:
        """(vectors in the order of ``texts``, how many texts were truncated)."""
        # Texts of similar length share a batch, so little of each batch is padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[np.ndarray] = []
        truncated = 0
        for i in range(0, len(order), batch_size):
            batch = self.tokens.batch([texts[j] for j in order[i : i + batch_size]])
            out.append(self._run(batch))
            truncated += batch.truncated
        if not out:
            return np.zeros((0, self._dimensions or 0), np.float32), 0
        vecs = np.empty((len(texts), out[0].shape[1]), np.float32)
        vecs[np.asarray(order)] = np.concatenate(out)
        return vecs, truncated

    def _feed(self, batch: TokenBatch) -> dict[str, Any]:
        feed: dict[str, Any] = {"input_ids": batch.ids}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = batch.mask
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = np.zeros_like(batch.ids)
        return feed

    def _run(self, batch: TokenBatch) -> np.ndarray:
        raise NotImplementedError


class TextEmbedder(TextTower):
    """Runs a CLIP text ONNX model with its ``tokenizer.json`` (77 tokens at most)."""

    kind = "clip"
    MAX_TOKENS = CLIP_MAX_TOKENS

    def __init__(self, files: ModelFiles | TextModelFiles, threads: int | None = None):
        text = files.model if isinstance(files, TextModelFiles) else files.text
        if text is None or files.tokenizer is None:
            raise ModelError(f"model {files.name} has no text tower (text_model.onnx + tokenizer.json)")
        # CLIP pads with <|endoftext|>; the model pools at the first one.
        super().__init__(files.name, text, files.tokenizer, self.MAX_TOKENS, threads, ("<|endoftext|>",))
        outs = [o.name for o in self.session.get_outputs()]
        self.output_name = "text_embeds" if "text_embeds" in outs else outs[0]

    def _run(self, batch: TokenBatch) -> np.ndarray:
        out = self.session.run([self.output_name], self._feed(batch))[0]
        return l2_normalise(out.reshape(out.shape[0], -1))


class SentenceEmbedder(TextTower):
    """Runs a sentence-embedding encoder in the Hugging Face ONNX layout (``onnx/model.onnx``,
    inputs input_ids, attention_mask and, if it has them, token_type_ids): the token states
    are averaged over the attention mask (sentence-transformers' mean pooling), then
    L2-normalised. An export whose output is already pooled (2-D) is taken as it is."""

    kind = "sentence"

    def __init__(self, files: TextModelFiles, threads: int | None = None):
        super().__init__(files.name, files.model, files.tokenizer, files.max_tokens, threads, ("[PAD]", "<pad>"))
        outs = [o.name for o in self.session.get_outputs()]
        self.output_name = next((n for n in ("last_hidden_state", "token_embeddings", "sentence_embedding")
                                 if n in outs), outs[0])

    def _run(self, batch: TokenBatch) -> np.ndarray:
        out = self.session.run([self.output_name], self._feed(batch))[0]
        if out.ndim == 3:  # (batch, tokens, dims): the mean over the real tokens
            mask = batch.mask[:, : out.shape[1], None].astype(np.float32)
            out = (out * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
        return l2_normalise(out.reshape(out.shape[0], -1))


def text_model(files: TextModelFiles, threads: int | None = None) -> TextTower:
    """The embedder for a text model found by :func:`~.hub.find_text_model`."""
    return TextEmbedder(files, threads) if files.kind == "clip" else SentenceEmbedder(files, threads)
