"""Model variants against fp32 (``load --precision``): speed and agreement of the vectors.

    python bench/make_variants.py DIR          # once: writes DIR's _fp16 / _quantized files
    python bench/precision.py DIR IMAGES [--limit 200] [--repeats 5] [--threads 2]

For each variant DIR has: images/s embedding the same decoded images (decoding is done
once, beforehand, so only inference is timed; median of --repeats runs), the mean cosine
of each image's vector to its fp32 vector, and the mean overlap of each image's 10 nearest
neighbours with its fp32 neighbours. Prints the CPU flags that decide int8 speed (VNNI).
A table on stderr; JSON on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datasette_imageclust.models import ImageEmbedder, ModelError, find_model
from datasette_imageclust.models.variants import PRECISIONS, VNNI_FLAGS, cpu_flags

INT8_FLAGS = ("avx2", "avx512f") + VNNI_FLAGS


def decoded_crops(embedder: ImageEmbedder, folder: Path, limit: int) -> np.ndarray:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))[:limit]
    return np.stack([embedder.preprocessor.to_uint8(Image.open(p).convert("RGB")) for p in paths])


def embed_all(embedder: ImageEmbedder, crops: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([embedder.embed_uint8(crops[i:i + batch]) for i in range(0, len(crops), batch)])


def neighbours(vectors: np.ndarray, k: int = 10) -> np.ndarray:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="model directory with variants (bench/make_variants.py)")
    ap.add_argument("images", type=Path, help="folder of images (e.g. ../shared/imagesets/tuxpaint-stamps)")
    ap.add_argument("--limit", type=int, default=200, help="images embedded per run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    flags = cpu_flags()
    cpu = {f: f in flags for f in INT8_FLAGS}
    shown = ", ".join(f"{f}={'yes' if v else 'no'}" for f, v in cpu.items())
    print(f"CPU: {shown}; "
          f"load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    results, base = [], None
    crops = None
    for precision in PRECISIONS:
        try:
            files = find_model(args.model, precision=precision)
        except ModelError as e:
            print(f"{precision}: skipped ({e})", file=sys.stderr)
            continue
        emb = ImageEmbedder(files, threads=args.threads)
        if crops is None:
            crops = decoded_crops(emb, args.images, args.limit)
        embed_all(emb, crops[:16])  # warm-up: first-run allocations are not the variant's speed
        rates, vecs = [], None
        for _ in range(args.repeats):
            t = time.perf_counter()
            vecs = embed_all(emb, crops)
            rates.append(len(crops) / (time.perf_counter() - t))
        row = {"precision": precision, "file": str(files.vision.name), "mb": round(files.vision.stat().st_size / 1e6, 1),
               "images_per_second": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates]}
        if base is None:
            base = (row["images_per_second"], vecs, neighbours(vecs))
        row["speed_vs_fp32"] = round(row["images_per_second"] / base[0], 2)
        row["mean_cosine_to_fp32"] = round(float(np.mean(np.sum(vecs * base[1], axis=1))), 4)
        nb = neighbours(vecs)
        row["top10_overlap_with_fp32"] = round(float(np.mean(
            [len(set(a) & set(b)) / 10 for a, b in zip(nb, base[2])])), 3)
        results.append(row)
        print(f"{precision:5} {row['file']:32} {row['mb']:7.1f} MB {row['images_per_second']:7.1f} img/s "
              f"(x{row['speed_vs_fp32']:.2f}) cosine {row['mean_cosine_to_fp32']:.4f} "
              f"top-10 overlap {row['top10_overlap_with_fp32']:.3f}", file=sys.stderr)
    json.dump({"model": args.model, "images": len(crops) if crops is not None else 0, "threads": args.threads,
               "cpu": cpu, "load_average": os.getloadavg(), "variants": results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
