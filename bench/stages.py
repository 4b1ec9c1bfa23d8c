"""Where `imageclust load` spends its time, per stage (decode, inference, write), on a device.

    python bench/stages.py --model ../shared/models/efficientnet-lite0 [--n 64] [--megapixels 3]
    python bench/stages.py --model DIR --decode-workers 2            # decode in 2 processes
    python bench/stages.py --model DIR --device cuda --batch-size 64   # on a GPU machine
    python bench/stages.py --model DIR --engine local,dask             # here, then on a Dask cluster
    python bench/stages.py --model DIR --engine dask --address tcp://HOST:8786   # an existing cluster

Runs `imageclust load --device D --json` into a fresh database --repeat times (each a new
process) over N photo-like JPEGs (made once, as bench/load.py makes them) and prints the
medians: images/s end to end and in the pipeline, and per stage its busy seconds (summed over
the stage's threads), its share, and the images/s one thread-second of it handles
(new images / stage seconds). The load average before and after is printed too: the
figures are only as quiet as the machine. With several --engine values each one runs in
turn over the same photos and the output gives each engine's figures and the ratio of
their images/s to the first one's (--engine dask without --address: load's own local
cluster of one single-threaded worker process per core; the workers' decode and inference
seconds are reported back to the driver, which writes).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from load import ensure_photos, machine  # bench/load.py: the same photos and machine line

STAGES = ("decode", "inference", "write")


def one_load(model: str, folder: Path, device: str, workers: int | None, batch: int,
             processes: int | None, engine: str = "local", address: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "datasette_imageclust", "load", str(Path(tmp) / "b.db"), str(folder),
               "--model", model, "--device", device, "--batch-size", str(batch), "--json"]
        if workers:
            cmd += ["--workers", str(workers)]
        if processes is not None:
            cmd += ["--decode-workers", str(processes)]
        if engine != "local":
            cmd += ["--engine", engine] + (["--address", address] if address else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"load failed: {r.stderr.strip().splitlines()[-1:]}")
        device_line = " / ".join(line for line in r.stderr.splitlines()
                                 if line.startswith(("device:", "dask:")) or "failed to start" in line)
        return {**json.loads(r.stdout), "device_line": device_line}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--megapixels", type=int, default=3, help="photo size (4:3)")
    ap.add_argument("--workers", type=int, help="decode threads (load's --workers; default: load's)")
    ap.add_argument("--decode-workers", type=int, help="decode processes (load's --decode-workers; default: load's)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engine", default="local", help="local, dask, or several, comma-separated (compared)")
    ap.add_argument("--address", help="the Dask scheduler for --engine dask (default: a local cluster)")
    ap.add_argument("--photos", help="where to keep the photos (default bench/out/photos<MP>mp)")
    a = ap.parse_args()
    w = int(round((a.megapixels * 1e6 * 4 / 3) ** 0.5))
    folder = Path(a.photos or Path(__file__).parent / "out" / f"photos{a.megapixels}mp")
    photos = ensure_photos(folder, a.n, (w, w * 3 // 4))
    sub = Path(tempfile.mkdtemp(prefix="bench-stages-"))  # exactly the first N photos
    for p in photos:
        os.symlink(p.resolve(), sub / p.name)
    load_before = os.getloadavg()
    results = {}
    for engine in a.engine.split(","):
        runs = [one_load(a.model, sub, a.device, a.workers, a.batch_size, a.decode_workers, engine, a.address)
                for _ in range(a.repeat)]
        if any(r["new"] != a.n or r["errors"] for r in runs):
            raise SystemExit(f"load did not embed every photo: {[(r['new'], r['errors']) for r in runs]}")
        results[engine] = summarise(runs)
    load_after = os.getloadavg()
    first = next(iter(results.values()))
    for r in results.values():
        r["load_img_s_vs_first"] = round(r["median_load_img_s"] / first["median_load_img_s"], 3)
        r["pipeline_img_s_vs_first"] = round(r["median_pipeline_img_s"] / first["median_pipeline_img_s"], 3)
    print(json.dumps({
        "model": a.model, "device": a.device, "images": a.n, "megapixels": a.megapixels, "workers": a.workers,
        "decode_workers": a.decode_workers, "batch_size": a.batch_size, "repeat": a.repeat,
        **machine(), "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        **(first if len(results) == 1 else {"engines": results}),
    }, indent=2))


def summarise(runs: list[dict]) -> dict:
    def med(f) -> float:
        return round(statistics.median(f(r) for r in runs), 3)

    stages = {}
    for s in STAGES:
        stages[s] = {
            "seconds": med(lambda r: r[f"{s}_seconds"]),
            "share": med(lambda r: r["stage_shares"][s]),
            "img_s_per_thread_second": med(lambda r: r["new"] / max(r[f"{s}_seconds"], 1e-9)),
        }
    return {
        "engine": runs[0]["engine"], "device_line": runs[0]["device_line"],
        "median_load_img_s": med(lambda r: r["new"] / r["seconds"]),
        "median_pipeline_img_s": med(lambda r: r["new"] / r["pipeline_seconds"]),
        "median_pipeline_seconds": med(lambda r: r["pipeline_seconds"]),
        "stages": stages,
    }


if __name__ == "__main__":
    main()
