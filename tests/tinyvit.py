"""Small ONNX models shaped like the real ones, for the ``--precision`` tests: a vision
tower laid out as CLIP's ViT export, and the int8 variant a Hub export ships beside it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import benchscripts


def quantize(src: Path, dst: Path) -> None:
    """The int8 variant as ``bench/make_variants.py`` makes it (onnxruntime's dynamic
    quantisation, as the Hub's ``*_quantized.onnx`` files are made)."""
    benchscripts.load("make_variants").make_int8(src, dst)


def vit_shaped(path: Path, dim: int = 32, blocks: int = 4) -> None:
    """A vision tower shaped like CLIP's ViT export: a Conv patch embedding (32x32, stride 32),
    then matrix products over the 49 patch tokens, mean-pooled to ``dim``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal((dim, 3, 32, 32)) * 0.02).astype(np.float32), "P"),
               numpy_helper.from_array(np.array([0, dim, 49], dtype=np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["pixel_values", "P"], ["c"], kernel_shape=[32, 32], strides=[32, 32]),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["h0"], perm=[0, 2, 1])]
    for i in range(blocks):
        weights.append(numpy_helper.from_array((rng.standard_normal((dim, dim)) * 0.2).astype(np.float32), f"W{i}"))
        nodes.append(helper.make_node("MatMul", [f"h{i}", f"W{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("ReduceMean", [f"h{blocks}"], ["image_embeds"], axes=[1], keepdims=0))
    g = helper.make_graph(
        nodes, "vision",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", dim])],
        weights,
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
