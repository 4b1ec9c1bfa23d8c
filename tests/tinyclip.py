"""Build a tiny CLIP-shaped model directory (Hugging Face ONNX layout) in a test.

Same inputs, outputs and files as ``Xenova/clip-vit-base-patch32`` (real CLIP
tokenizer from ../shared when present, else a minimal one), random weights: for
plumbing tests of the vision and text paths only, never for quality.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the models are built only when a test asks for one
    import onnx

# ../shared beside the checkout; IMAGECLUST_SHARED points elsewhere (e.g. at a missing
# folder, to check that a CI run without it fails).
SHARED = Path(os.environ.get("IMAGECLUST_SHARED") or Path(__file__).resolve().parent.parent.parent / "shared")
TOKENIZER = SHARED / "models" / "clip-tokenizer" / "tokenizer.json"
CLIP_PRE = {
    "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "CLIPImageProcessor", "resample": 3,
    "rescale_factor": 1 / 255, "size": {"shortest_edge": 224},
}


def _vision(dim: int, rng) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    # 8x8 average pooling -> 3x28x28 -> flatten -> random projection -> dim
    w = numpy_helper.from_array(rng.standard_normal((3 * 28 * 28, dim)).astype(np.float32), "W")
    nodes = [
        helper.make_node("AveragePool", ["pixel_values"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "W"], ["image_embeds"]),
    ]
    g = helper.make_graph(
        nodes, "vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
        [w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _text(dim: int, rng) -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    # token embedding -> masked mean over the sequence -> dim
    e = numpy_helper.from_array(rng.standard_normal((49408, dim)).astype(np.float32), "E")
    nodes = [
        helper.make_node("Gather", ["E", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axis"], ["m3"]),
        helper.make_node("Mul", ["emb", "m3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["text_embeds"], keepdims=0),
    ]
    axis = numpy_helper.from_array(np.array([2], np.int64), "axis")
    axis1 = numpy_helper.from_array(np.array([1], np.int64), "axis1")
    g = helper.make_graph(
        nodes, "text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", dim])],
        [e, axis, axis1],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def make_tiny_clip(out: str | os.PathLike, dim: int = 32, seed: int = 0, text: bool = True) -> Path:
    """Write the model directory and return its path."""
    import onnx

    out = Path(out)
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    onnx.save(_vision(dim, rng), str(out / "onnx" / "vision_model.onnx"))
    if text:
        onnx.save(_text(dim, rng), str(out / "onnx" / "text_model.onnx"))
        if TOKENIZER.exists():
            shutil.copy(TOKENIZER, out / "tokenizer.json")
        else:
            _minimal_tokenizer(out / "tokenizer.json")
    (out / "preprocessor_config.json").write_text(json.dumps(CLIP_PRE, indent=2))
    (out / "config.json").write_text(json.dumps({"model_type": "clip", "random_weights": True}))
    return out


def _minimal_tokenizer(path: Path) -> None:
    # A word-level stand-in with CLIP's special tokens, for machines without ../shared.
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<|startoftext|>": 49406, "<|endoftext|>": 49407, "[UNK]": 0}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", 49406), ("<|endoftext|>", 49407)],
    )
    tok.save(str(path))
