"""Clustering quality (real images, stand-in embedder) and scale (synthetic vectors).

    python bench/clusters.py quality [--shared ../shared]
    python bench/clusters.py scale [--sizes 1000,10000,100000] [--dims 512] [--method ward] [--clusters K]

quality: on tuxpaint-stamps (353 images, 16 labels) and sklearn-digits (500, 10 labels),
ARI at K = #labels for each method, and for the default `imageclust cluster` (no K) the
pairwise precision (share of within-cluster pairs with the same label), the share of images
in real clusters and the mean cluster size, next to the peers' published figures.
scale: each size runs in a fresh subprocess; prints wall time and peak RSS (ru_maxrss of
the child, which includes the ~150 MB of numpy/scikit-learn/scipy themselves).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEERS = "peers at K=16 on tuxpaint: k-means 0.44, exact Ward 0.40, UMAP+HDBSCAN 0.47, HDBSCAN 0.09; " \
        "~10/cluster precision: k-means 0.62, Ward 0.67"


def pair_precision(y: np.ndarray, labels: np.ndarray) -> float:
    same = tot = 0
    for c in np.unique(labels[labels >= 0]):
        v = y[labels == c]
        _, cnt = np.unique(v, return_counts=True)
        same += int((cnt * (cnt - 1)).sum())
        tot += len(v) * (len(v) - 1)
    return same / max(tot, 1)


def load_set(shared: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    from datasette_imageclust.clusterstore import model_vectors
    from datasette_imageclust.db import connect
    from datasette_imageclust.loader import load

    d = shared / "imagesets" / name
    cache = Path(tempfile.gettempdir()) / f"imageclust-bench-{name}.db"
    if not cache.exists():
        load(str(cache), [str(d)], str(shared / "models" / "efficientnet-lite0"))
    db = connect(str(cache), readonly=True)
    ids, x, _ = model_vectors(db)
    rel = dict(db.execute("SELECT image_id, relpath FROM files").fetchall())
    labels = {}
    if (d / "labels.csv").exists():
        labels = {r["path"]: r["category"] for r in csv.DictReader(open(d / "labels.csv"))}
    y = np.array([labels.get(rel[int(i)], rel[int(i)].split("/")[0]) for i in ids])
    return x, y


def quality(shared: Path) -> None:
    from sklearn.metrics import adjusted_rand_score

    from datasette_imageclust import clustering as C

    print(PEERS)
    for name in ("tuxpaint-stamps", "sklearn-digits"):
        x, y = load_set(shared, name)
        k = len(set(y))
        print(f"\n{name}: {len(x)} images, {k} labels")
        for m in ("ward", "kmeans"):
            t = time.perf_counter()
            r = C.run(m, x, n_clusters=k, max_size=None)
            print(f"  --clusters {k} --method {m:<7} ARI {adjusted_rand_score(y, r.labels):.3f}  ({time.perf_counter() - t:.2f}s)")
        t = time.perf_counter()
        r = C.run("ward", x, n_clusters=k, max_size=None, knn_k=0, refine=False) if False else None
        # ablation: what the k-NN smoothing and k-means refinement bring
        lab = C.ward(x, n_clusters=k, max_size=None, knn_k=0, refine=False).labels
        print(f"  --clusters {k} plain exact Ward (no smoothing, no refinement) ARI {adjusted_rand_score(y, lab):.3f}")
        for m in ("ward", "kmeans", "hdbscan"):
            t = time.perf_counter()
            r = C.run(m, x, min_size=3, max_size=10)
            lab = r.labels
            inside = lab >= 0
            mean = np.bincount(lab[inside]).mean() if inside.any() else 0
            print(f"  default --method {m:<7} pair precision {pair_precision(y, lab):.3f}, "
                  f"in clusters {inside.mean():.2f}, mean size {mean:.1f}, {int(lab.max()) + 1} clusters "
                  f"({time.perf_counter() - t:.2f}s)")
        for kk in (10, 15, 20, 30):
            lab = C.ward(x, knn_k=kk).labels
            inside = lab >= 0
            print(f"  default ward, --knn {kk:<3} pair precision {pair_precision(y, lab):.3f}, in clusters {inside.mean():.2f}")
    print("\ngoals: --clusters 16 ARI >= 0.52; default precision >= 0.75, >= 90% in clusters, mean size 5-15")


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Many small groups around random centres in d dimensions (like photo series)."""
    rng = np.random.default_rng(seed)
    k = max(2, n // 8)
    centres = rng.standard_normal((k, d)).astype(np.float32)
    which = rng.integers(0, k, n)
    x = centres[which] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def child(n: int, d: int, method: str, k: int | None) -> None:
    from datasette_imageclust import clustering as C

    x = synthetic(n, d)
    t = time.perf_counter()
    params = {"n_clusters": k, "max_size": None} if k else {}
    r = C.run(method, x, **params)
    secs = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lab = r.labels
    print(json.dumps({"n": n, "seconds": round(secs, 2), "peak_rss_mb": round(rss), "clusters": int(lab.max()) + 1,
                      "unclustered": int((lab < 0).sum()), "max_size": int(np.bincount(lab[lab >= 0]).max())}))


def scale(sizes: list[int], d: int, method: str, k: int | None) -> None:
    print(f"method {method}, {d}-d synthetic vectors" + (f", --clusters {k}" if k else ", default (max 10)"))
    for n in sizes:
        cmd = [sys.executable, __file__, "child", str(n), str(d), method, str(k or 0)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-2000:])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  n={n:>7}: {r['seconds']:>6.1f}s  peak {r['peak_rss_mb']:>5} MB  {r['clusters']} clusters "
              f"(largest {r['max_size']}), {r['unclustered']} unclustered")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        n, d, method, k = sys.argv[2:6]
        return child(int(n), int(d), method, int(k) or None)
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["quality", "scale"])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--method", default="ward")
    ap.add_argument("--clusters", type=int)
    a = ap.parse_args()
    if a.what == "quality":
        quality(Path(a.shared))
    else:
        scale([int(s) for s in a.sizes.split(",")], a.dims, a.method, a.clusters)


if __name__ == "__main__":
    main()
