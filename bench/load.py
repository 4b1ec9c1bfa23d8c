"""Benchmark `imageclust load` against raw onnxruntime throughput, in one run.

    python bench/load.py --model /tmp/randclip                      # ViT-B/32-shaped random CLIP
    python bench/load.py --model ../shared/models/efficientnet-lite0
    python bench/load.py --model DIR --n 200 --photos bench/out/photos12mp

Makes N realistic 12-megapixel JPEGs once (cached in --photos), then measures
(a) raw inference: the model's onnxruntime session on preprocessed tensors, batch 16;
(b) end to end: `imageclust load` into a fresh database (scan, read, sha256, decode,
    thumbnail, hashes, inference, writes), as a subprocess;
and prints both with the ratio (b)/(a), plus the load's peak RSS at N/2 and N images
(memory must not grow with the number of images).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_photo(i: int, w: int = 4000, h: int = 3000) -> Image.Image:
    """Photo-like: smooth large-scale structure, edges, fine texture and sensor noise."""
    rng = np.random.default_rng(i)
    small = rng.uniform(0, 255, (6, 8, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), dtype=np.float32)
    tex = np.asarray(Image.fromarray(rng.uniform(0, 255, (h // 8, w // 8)).astype(np.uint8))
                     .resize((w, h), Image.BILINEAR), dtype=np.float32)[..., None]
    y = np.arange(h, dtype=np.float32)[:, None, None]
    edges = (np.sin(y / (40 + i % 30)) > 0.7) * 35
    noise = rng.normal(0, 4, (h, w, 1)).astype(np.float32)
    arr = base * 0.8 + (tex - 128) * 0.25 + edges + noise
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def ensure_photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"photo{i:05d}.jpg"
        if not p.exists():
            make_photo(i).save(p, "JPEG", quality=92)
            print(f"\rmaking 12-MP JPEGs: {i + 1}/{n}", end="", file=sys.stderr)
        paths.append(p)
    print(file=sys.stderr)
    return paths


def raw_throughput(model: str, n: int, batch: int = 16) -> float:
    from datasette_imageclust.models import ImageEmbedder, find_model

    e = ImageEmbedder(find_model(model))
    h, w = e._input_hw()
    x = np.random.default_rng(0).integers(0, 255, (batch, h, w, 3), dtype=np.uint8)
    e.embed_uint8(x)  # warm up
    done, t0 = 0, time.perf_counter()
    while done < n:
        e.embed_uint8(x)
        done += batch
    return done / (time.perf_counter() - t0)


def run_load(model: str, folder: Path, db: Path, limit: int | None = None) -> tuple[dict, float]:
    """Run `imageclust load` in a fresh process; returns its JSON summary and peak RSS (MB)."""
    if limit is not None:  # a folder of symlinks to the first `limit` photos
        sub = Path(tempfile.mkdtemp(prefix="bench-sub-"))
        for p in sorted(folder.glob("*.jpg"))[:limit]:
            os.symlink(p.resolve(), sub / p.name)
        folder = sub
    code = (
        "import json, resource, sys; from datasette_imageclust.loader import load; "
        f"s = load({str(db)!r}, [{str(folder)!r}], {model!r}); "
        "print(json.dumps({**s.as_dict(), 'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    if d["errors"] or d["new"] != (limit or d["scanned"]):
        raise SystemExit(f"load did not embed every photo: {d}")
    return d, d["maxrss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--photos", default=str(Path(__file__).parent / "out" / "photos12mp"))
    a = ap.parse_args()
    photos = ensure_photos(Path(a.photos), a.n)
    mb = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        half, rss_half = run_load(a.model, Path(a.photos), Path(tmp) / "half.db", limit=a.n // 2)
        raw = raw_throughput(a.model, a.n)
        full, rss_full = run_load(a.model, Path(a.photos), Path(tmp) / "full.db", limit=a.n)
        raw2 = raw_throughput(a.model, a.n)  # before and after, to see drift from other load
    raw_mean = (raw + raw2) / 2
    e2e = full["new"] / full["seconds"]
    print(json.dumps({
        "model": a.model, "images": a.n, "jpeg_mb_each": round(mb, 2), "cpus": os.cpu_count(),
        "raw_inference_img_s": round(raw_mean, 2), "raw_before_after": [round(raw, 2), round(raw2, 2)],
        "load_img_s": round(e2e, 2), "ratio_load_over_raw": round(e2e / raw_mean, 3),
        "peak_rss_mb": {f"{a.n // 2} images": round(rss_half), f"{a.n} images": round(rss_full)},
    }, indent=2))


if __name__ == "__main__":
    main()
