"""Throughput of `imageclust describe` (images/s) against a server with a fixed latency,
by concurrency: how much of the ideal `concurrency / latency` the client reaches.

    python bench/describe.py [--latency 0.2] [--levels 1,2,4,8] [--per-worker 30] [--api ollama|openai]

The server is tests/vlmserver.py (both APIs, as the tests use it) answering every request
after `--latency` seconds; the databases are synthetic (tests/synthdb.py: real SQLite,
real 256-px WebP thumbnails, sent as JPEG). Each level describes `per-worker x concurrency`
images into a fresh database through `pipeline.describe`, preflight included.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from datasette_imageclust import pipeline  # noqa: E402
from datasette_imageclust.store import connection  # noqa: E402
from synthdb import make_db  # noqa: E402  (tests/synthdb.py)
from vlmserver import VLMServer  # noqa: E402  (tests/vlmserver.py)


def one(level: int, n: int, latency: float, api: str, tmp: str) -> tuple[float, int]:
    path = make_db(os.path.join(tmp, f"c{level}.db"), n, thumb_px=256, with_run=False, seed=level)
    db = connection.connect(path)
    try:
        with VLMServer(models=["llava:latest", "gpt-4o-mini"], latency=latency) as srv:
            url, model = (srv.base, "llava") if api == "ollama" else (srv.openai_url, "gpt-4o-mini")
            start = time.perf_counter()
            s = pipeline.describe(db, model=model, url=url, api=api, concurrency=level)
            seconds = time.perf_counter() - start
            assert s.described == n and s.failed == 0, s.as_dict()
            return seconds, srv.max_active
    finally:
        connection.close(db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the server takes per request")
    ap.add_argument("--levels", default="1,2,4,8", help="concurrency levels")
    ap.add_argument("--per-worker", type=int, default=30, help="images per unit of concurrency")
    ap.add_argument("--api", choices=["ollama", "openai"], default="ollama")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    print(f"server latency {a.latency * 1000:.0f} ms per request, api {a.api}, {os.cpu_count()} cores")
    print("| concurrency | images | seconds | images/s | ideal (concurrency / latency) | share of ideal | "
          "server saw in flight |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            n = a.per_worker * level
            seconds, in_flight = one(level, n, a.latency, a.api, tmp)
            rate, ideal = n / seconds, level / a.latency
            print(f"| {level} | {n} | {seconds:.2f} | {rate:.1f} | {ideal:.1f} | {rate / ideal:.2f} | {in_flight} |",
                  flush=True)


if __name__ == "__main__":
    main()
