"""Model variants (``--precision``): which ONNX file of a model to load.

Hub ONNX exports (Xenova/*, onnx-community/*) ship reduced-precision files beside the
fp32 one: ``onnx/vision_model_fp16.onnx``, ``onnx/vision_model_quantized.onnx`` (int8,
dynamic quantisation; some exports call it ``_int8.onnx``), the same for ``text_model``.
This module is the one home of those names and of the rule ``auto`` follows.
"""
from __future__ import annotations

from pathlib import PurePosixPath

PRECISIONS = ("fp32", "fp16", "int8")
CHOICES = PRECISIONS + ("auto",)
SUFFIXES = {"fp32": ("",), "fp16": ("_fp16",), "int8": ("_quantized", "_int8")}
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")

# The rule for ``auto``: int8 only on a CPU with VNNI (int8 dot products in one
# instruction; on plain AVX2 int8 must widen to 16 bits and loses to fp32), only for a
# model whose int8 file does its work in matrix products, and only because that was
# measured faster: bench/precision.py on this project's 2-core test machine (AMD EPYC,
# avx2, avx512f, avx512_vnni, avx_vnni; quiet, load 1.7), random-weight CLIP ViT-B/32:
# int8 x1.49 (fp16 x1.01). The same run found int8 x0.24 on the convolutional
# EfficientNet-lite0: onnxruntime's ConvInteger kernels are slow (and its depthwise
# convolutions lose precision), so a model whose int8 work is mostly convolutions stays
# fp32. A ViT's int8 file has one ConvInteger too (the patch embedding) among 73
# MatMulIntegers: hence a count, not "any ConvInteger".
INT8_MEASURED_FASTER_WITH_VNNI = True


def int8_is_slow(path) -> bool:
    """Whether an int8 ONNX file does most of its integer work in convolutions
    (ConvInteger nodes at least as many as MatMulInteger ones), measured slower than fp32.
    Op types are plain strings in the protobuf: a byte count, no ``onnx`` package needed."""
    import mmap
    import re

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        convs = sum(1 for _ in re.finditer(rb"ConvInteger", m))
        matmuls = sum(1 for _ in re.finditer(rb"MatMulInteger", m))
    return convs > 0 and convs >= matmuls


def variant_names(filename: str, precision: str) -> list[str]:
    """The file names ``precision`` may have for ``filename`` (an fp32 file such as
    ``onnx/vision_model.onnx``), in the order they are tried."""
    p = PurePosixPath(filename)
    return [str(p.with_name(p.stem + s + p.suffix)) for s in SUFFIXES[precision]]


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def auto_precision(flags: set[str], available: set[str], int8_faster: bool | None = None, *,
                   keep: str | None = None) -> str:
    """``--precision auto``: the variant ``keep`` when the model ships it (the one a
    database's vectors already are: two variants' vectors do not mix, whatever this CPU
    prefers); else int8 where the CPU has VNNI, the model ships an int8 variant and int8 was
    measured faster (``int8_faster``, default: what was measured, above); else fp32. Never
    fp16: no CPU measurement found it faster."""
    if keep in available:
        return keep
    if int8_faster is None:
        int8_faster = INT8_MEASURED_FASTER_WITH_VNNI
    if int8_faster and "int8" in available and any(f in flags for f in VNNI_FLAGS):
        return "int8"
    return "fp32"
