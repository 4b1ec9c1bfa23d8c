"""Benchmark a no-op re-run of `imageclust load` over many unchanged files.

    python bench/noop.py                 # 10,000 small PNGs, tiny random model for the first load
    python bench/noop.py --n 20000 --model DIR

The first load fills the database (its speed is not the point here); the figure is the
wall-clock time of the second, no-op run as a user sees it (a fresh `imageclust load`
process: start-up, scan, stat comparison, finish), and its peak RSS.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def make_files(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / f"d{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(sub / f"{i:06d}.png")


def timed_load(db: Path, folder: Path, model: str) -> tuple[float, dict]:
    code = ("import json, resource; from datasette_imageclust.cli import cli; import sys; "
            "sys.argv = ['imageclust', 'load', %r, %r, '--model', %r, '--json']; "
            "exec('try:\\n cli()\\nexcept SystemExit:\\n pass'); "
            "print(json.dumps({'maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
            % (str(db), str(folder), model))
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    lines = [json.loads(l) for l in out.strip().splitlines()]
    return wall, {**lines[0], **lines[1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--model", help="model directory (default: a tiny random CLIP built here)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = a.model
        if model is None:
            from tinyclip import make_tiny_clip

            model = str(make_tiny_clip(tmp / "tiny", text=False))
        make_files(tmp / "files", a.n)
        first, s1 = timed_load(tmp / "x.db", tmp / "files", model)
        second, s2 = timed_load(tmp / "x.db", tmp / "files", model)
        print(json.dumps({
            "files": a.n, "first_load_s": round(first, 2), "first_new": s1["new"],
            "noop_rerun_wall_s": round(second, 2), "noop_unchanged": s2["unchanged"],
            "noop_new": s2["new"], "noop_peak_rss_mb": round(s2["maxrss_mb"]),
            "first_peak_rss_mb": round(s1["maxrss_mb"]),
        }, indent=2))


if __name__ == "__main__":
    main()
