"""Running a model's vision and text towers with onnxruntime."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .hub import ModelError, ModelFiles, file_sha256
from .preprocess import Preprocessor, l2_normalise


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
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"cannot load {path} with onnxruntime: {e}") from e


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


class TextEmbedder:
    """Runs a CLIP text ONNX model with its ``tokenizer.json``."""

    MAX_TOKENS = 77

    def __init__(self, files: ModelFiles, threads: int | None = None):
        if files.text is None or files.tokenizer is None:
            raise ModelError(f"model {files.name} has no text tower (text_model.onnx + tokenizer.json)")
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(files.tokenizer))
        self.session = _session(files.text, threads)
        self.inputs = {i.name for i in self.session.get_inputs()}
        outs = [o.name for o in self.session.get_outputs()]
        self.output_name = "text_embeds" if "text_embeds" in outs else outs[0]
        # CLIP pads with <|endoftext|>; the model pools at the first one.
        self.pad_id = self.tokenizer.token_to_id("<|endoftext|>") or 0

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            out.append(self._embed_batch(texts[i : i + batch_size]))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        encs = [self.tokenizer.encode(t).ids for t in texts]
        encs = [e if len(e) <= self.MAX_TOKENS else e[: self.MAX_TOKENS - 1] + [e[-1]] for e in encs]
        n = max(len(e) for e in encs)
        ids = np.full((len(encs), n), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encs), n), dtype=np.int64)
        for r, e in enumerate(encs):
            ids[r, : len(e)] = e
            mask[r, : len(e)] = 1
        feed: dict[str, Any] = {"input_ids": ids}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = mask
        out = self.session.run([self.output_name], feed)[0]
        return l2_normalise(out.reshape(out.shape[0], -1))

