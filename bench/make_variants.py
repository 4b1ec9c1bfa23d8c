"""Write the reduced-precision variants of a model directory beside its fp32 ONNX files,
named as Hub exports name them (``--precision``, datasette_imageclust/models/variants.py):

    python bench/make_variants.py DIR [--only int8|fp16]

int8: onnxruntime's dynamic quantisation (weights int8, activations quantised at run
time), as the Hub's ``*_quantized.onnx`` files are made. fp16: onnxruntime's float16
converter (onnxruntime.transformers.float16; inputs and outputs stay float32, as the Hub's
``*_fp16.onnx`` exports of CLIP keep them). Needs the ``onnx`` package (in the test extra).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datasette_imageclust.models.variants import variant_names

BASES = ("onnx/vision_model.onnx", "vision_model.onnx", "onnx/text_model.onnx", "text_model.onnx")


def make_int8(src: Path, dst: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # It logs a warning per tensor it leaves in float (shape arithmetic): noise, not news.
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
    finally:
        logging.getLogger().setLevel(level)


def make_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


MAKERS = {"int8": make_int8, "fp16": make_fp16}


def make_variants(directory: Path, only: tuple[str, ...] = ("int8", "fp16")) -> list[Path]:
    """Write the missing variants of every fp32 ONNX file in ``directory``; the paths written."""
    written = []
    for base in BASES:
        src = directory / base
        if not src.is_file():
            continue
        for precision in only:
            dst = directory / variant_names(base, precision)[0]
            if not dst.exists():
                MAKERS[precision](src, dst)
                written.append(dst)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--only", choices=sorted(MAKERS), action="append")
    args = ap.parse_args()
    for path in make_variants(args.directory, tuple(args.only or ("int8", "fp16"))):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)


if __name__ == "__main__":
    main()
