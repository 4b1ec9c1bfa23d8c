"""Latency of the plugin's pages on a large collection, through a real Datasette client.

    python bench/pages.py                  # 100,000 images, 512-d, ~10 per cluster
    python bench/pages.py --n 20000 --repeat 10

Builds (once, cached in --workdir) a synthetic imageclust database: images, files and a
small thumbnail per image, clustered 512-d vectors, a clustering run of ~n/10 clusters
(stored with the project's clusterstore) and the similarity index. Then times each page
(HTML and JSON), reporting the first (cold) request and the median of the next ones.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasette_imageclust import pipeline  # noqa: E402
from datasette_imageclust.analysis import clusterstore  # noqa: E402
from datasette_imageclust.store import vectors  # noqa: E402
from datasette_imageclust.store import connection  # noqa: E402
from datasette_imageclust.store.schema import migrate, now  # noqa: E402


def build(path: str, n: int, dims: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 120, 40)).save(buf, "WEBP")
    thumb = buf.getvalue()
    n_clusters = max(2, n // 10)
    centres = rng.standard_normal((n_clusters, dims)).astype(np.float32)
    labels = rng.integers(0, n_clusters, n)
    x = centres[labels] + 0.6 * rng.standard_normal((n, dims)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    db = connection.connect(path)
    migrate(db, "core")
    stamp = now()
    with db.conn:
        mid = db["models"].insert({"name": "/nowhere/synthetic", "dimensions": dims, "sha256": "0" * 64,
                                   "created": stamp}).last_pk
        db["imageclust_meta"].insert({"key": "model_id", "value": str(mid)}, replace=True)
        db["images"].insert_all(({"id": i, "sha256": f"{i:064x}", "bytes": 1000, "format": "JPEG", "mode": "RGB",
                                  "width": 640, "height": 480, "frames": 1, "model_id": mid, "created": stamp}
                                 for i in range(1, n + 1)), batch_size=5000)
        db["files"].insert_all(({"id": i, "path": f"/photos/{i // 1000}/img_{i}.jpg", "root": "/photos",
                                 "relpath": f"{i // 1000}/img_{i}.jpg", "image_id": i, "size": 1000, "mtime": 0.0,
                                 "added": stamp} for i in range(1, n + 1)), batch_size=5000)
        db["thumbnails"].insert_all(({"image_id": i, "format": "webp", "width": 64, "height": 48, "data": thumb}
                                     for i in range(1, n + 1)), batch_size=5000)
        vectors.ensure_table(db, dims)
        for i in range(0, n, 10000):
            vectors.put(db, list(range(i + 1, min(n, i + 10000) + 1)), x[i:i + 10000])
    ids = np.arange(1, n + 1)
    clusterstore.store_run(db, "synthetic", "kmeans", {"n_clusters": n_clusters}, ids, x, labels,
                           model_id=mid, seconds=None, default=True)
    pipeline.build_index(db)
    connection.close(db)


async def measure(path: str, n: int, repeat: int) -> None:
    from datasette.app import Datasette

    ds = Datasette(immutables=[path])
    name = Path(path).stem
    index = (await ds.client.get(f"/{name}/-/imageclust.json")).json()
    big = index["clusters"][0]["id"]
    page = min(50, index["pages"])  # page 50 at 100k; the last page of a smaller test run
    mid = n // 2
    pages = {
        "clusters index": f"/{name}/-/imageclust",
        f"clusters index, page {page}": f"/{name}/-/imageclust?page={page}",
        "clusters index by cohesion": f"/{name}/-/imageclust.json?sort=cohesion",
        "cluster gallery": f"/{name}/-/imageclust/cluster/{big}",
        "image page (12 similar)": f"/{name}/-/imageclust/image/{mid}",
        "more like this (48)": f"/{name}/-/imageclust/search?like={mid}",
        "more like this, exact": f"/{name}/-/imageclust/search.json?like={mid}&exact=1",
        "thumbnail": f"/{name}/-/imageclust/thumb/{mid}",
        "files table (cell thumbnails)": f"/{name}/files?_nosuggest=1",  # facet suggestions are Datasette's own cost
    }
    print(f"{n:,} images, {path}")
    for label, url in pages.items():
        times = []
        for _ in range(repeat + 1):
            t = time.perf_counter()
            r = await ds.client.get(url)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
        print(f"  {label:<32} first {times[0] * 1000:7.1f} ms   median of {repeat} {np.median(times[1:]) * 1000:7.1f} ms",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "imageclust-bench-pages"))
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    path = os.path.join(a.workdir, f"pages{a.n}.db")
    if not os.path.exists(path):
        t = time.perf_counter()
        build(path, a.n, a.dims)
        print(f"built {path} in {time.perf_counter() - t:.0f}s", file=sys.stderr)
    asyncio.run(measure(path, a.n, a.repeat))


if __name__ == "__main__":
    main()
