"""Benchmark `imageclust load` against raw onnxruntime throughput, in one run.

    python bench/load.py --model /tmp/randclip                      # ViT-B/32-shaped random CLIP
    python bench/load.py --model ../shared/models/efficientnet-lite0
    python bench/load.py --model DIR --n 200 --megapixels 3

Makes N realistic 12-megapixel JPEGs once (cached in --photos), then measures
(a) raw inference: the model's onnxruntime session on preprocessed tensors, batch 16;
(b) end to end: `imageclust load` into a fresh database (scan, read, sha256, decode,
    thumbnail, hashes, inference, writes), as a subprocess;
and prints both with the ratio (b)/(a) (end to end, and steady state without the model's
start-up), plus the load's peak RSS at N/2 and N images (memory must not grow with the
number of images). It also measures the CPU time one photo's read + sha256 + decode takes
(and, of it, Pillow's JPEG decode at the draft() scale), and from it the ceiling a machine
with C cores can reach when inference alone keeps every core busy (no idle time for
decoding to hide in): C / (decode + C / raw), with load's share of that ceiling. Raw
inference is measured with onnxruntime on all cores (as load runs it) and on one thread,
to show whether inference leaves cores idle. The CPU and onnxruntime version are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def decode_cost_ms(model: str, photos: list[Path], n: int = 30) -> tuple[float, float]:
    """CPU ms to read, hash and decode one photo (what the decode pool does), single thread;
    and, of it, Pillow's JPEG decode itself (ImageFile.load, measured with cProfile in a
    second pass so the profiler's overhead stays out of the first figure)."""
    import cProfile
    import hashlib
    import pstats

    from datasette_imageclust.ingest.decode import decode
    from datasette_imageclust.models import Preprocessor, find_model

    pre = Preprocessor.from_config(json.loads(find_model(model).preprocessor.read_text()))
    decode(photos[0].read_bytes(), pre)  # imports, first-call setup
    n = min(n, len(photos))
    t0 = time.process_time()
    for p in photos[:n]:
        data = p.read_bytes()
        hashlib.sha256(data).hexdigest()
        decode(data, pre)
    total = (time.process_time() - t0) / n * 1000
    prof = cProfile.Profile(time.process_time)
    for p in photos[:n]:
        data = p.read_bytes()
        prof.runcall(decode, data, pre)
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    jpeg = sum(v[3] for k, v in stats.items() if k[0].endswith("ImageFile.py") and k[2] == "load")
    return total, jpeg / n * 1000


def machine() -> dict:
    import platform

    import onnxruntime

    cpu, avx512 = platform.processor() or platform.machine(), None
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read().splitlines()
        cpu = next(l.split(":", 1)[1].strip() for l in info if l.startswith("model name"))
        avx512 = any(l.startswith("flags") and " avx512f" in l for l in info)
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "avx512": avx512, "cpus": os.cpu_count() or 1, "onnxruntime": onnxruntime.__version__}


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


def ensure_photos(folder: Path, n: int, size: tuple[int, int] = (4000, 3000)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"photo{i:05d}.jpg"
        if not p.exists():
            make_photo(i, *size).save(p, "JPEG", quality=92)
            print(f"\rmaking {size[0]}x{size[1]} JPEGs: {i + 1}/{n}", end="", file=sys.stderr)
        paths.append(p)
    print(file=sys.stderr)
    return paths


def raw_throughput(model: str, n: int, batch: int = 16, threads: int | None = None) -> float:
    """Images/s of the model's onnxruntime session alone (threads: None = all cores, as load)."""
    from datasette_imageclust.models import ImageEmbedder, find_model

    e = ImageEmbedder(find_model(model), threads=threads)
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
        "import json, resource, sys; from datasette_imageclust.pipeline import load; "
        f"s = load({str(db)!r}, [{str(folder)!r}], {model!r}); "
        "rss = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmRSS')][0] / 1024; "
        "print(json.dumps({**s.as_dict(), 'rss_end_mb': rss, "
        "'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    d = json.loads(out.strip().splitlines()[-1])
    if d["errors"] or d["new"] != (limit or d["scanned"]):
        raise SystemExit(f"load did not embed every photo: {d}")
    return d, (d["maxrss_mb"], d["rss_end_mb"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--megapixels", type=int, default=12, help="photo size (4:3)")
    ap.add_argument("--photos", help="where to keep the photos (default bench/out/photos<MP>mp)")
    a = ap.parse_args()
    w = int(round((a.megapixels * 1e6 * 4 / 3) ** 0.5))
    size = (w, w * 3 // 4)
    a.photos = a.photos or str(Path(__file__).parent / "out" / f"photos{a.megapixels}mp")
    photos = ensure_photos(Path(a.photos), a.n, size)
    mb = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        half, rss_half = run_load(a.model, Path(a.photos), Path(tmp) / "half.db", limit=a.n // 2)
        raw = raw_throughput(a.model, a.n)
        full, rss_full = run_load(a.model, Path(a.photos), Path(tmp) / "full.db", limit=a.n)
        raw2 = raw_throughput(a.model, a.n)  # before and after, to see drift from other load
        raw1 = raw_throughput(a.model, max(a.n // 4, 32), threads=1)
    raw_mean = (raw + raw2) / 2
    e2e = full["new"] / full["seconds"]
    steady = full["new"] / full["pipeline_seconds"]
    dec, jpeg = decode_cost_ms(a.model, photos)
    # If inference keeps every core busy, decoding cannot hide in its idle time: each
    # image then costs decode + cores x inference time of CPU.
    cores = os.cpu_count() or 1
    ceiling = cores * 1000 / (dec + cores * 1000 / raw_mean)
    print(json.dumps({
        "model": a.model, "images": a.n, "photo": f"{size[0]}x{size[1]}", "jpeg_mb_each": round(mb, 2),
        **machine(),
        "raw_inference_img_s": round(raw_mean, 2), "raw_before_after": [round(raw, 2), round(raw2, 2)],
        "raw_inference_1_thread_img_s": round(raw1, 2),
        "load_img_s": round(e2e, 2), "ratio_load_over_raw": round(e2e / raw_mean, 3),
        "load_steady_img_s": round(steady, 2), "ratio_steady_over_raw": round(steady / raw_mean, 3),
        "decode_cpu_ms_per_image": round(dec, 1), "of_which_jpeg_draft_decode_ms": round(jpeg, 1),
        "cpu_bound_ceiling_img_s": round(ceiling, 2),
        "ratio_ceiling_over_raw": round(ceiling / raw_mean, 3),
        "load_share_of_ceiling": round(e2e / ceiling, 3), "steady_share_of_ceiling": round(steady / ceiling, 3),
        # peak includes the model's load (bimodal by a few hundred MB from run to run);
        # the RSS at the end shows what the pipeline itself holds
        "peak_rss_mb": {f"{a.n // 2} images": round(rss_half[0]), f"{a.n} images": round(rss_full[0])},
        "rss_at_end_mb": {f"{a.n // 2} images": round(rss_half[1]), f"{a.n} images": round(rss_full[1])},
    }, indent=2))


if __name__ == "__main__":
    main()
