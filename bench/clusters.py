"""Clustering quality (real images, stand-in embedder) and scale (synthetic vectors).

    python bench/clusters.py quality [--shared ../shared]
    python bench/clusters.py scale [--sizes 1000,10000,100000] [--dims 512] [--method ward] [--clusters K] [--repeat 3]

quality: on tuxpaint-stamps (353 images, 16 labels) and sklearn-digits (500, 10 labels),
the project's methods and their peers, all on the same vectors in the same run:
- at K = #labels, ARI of `--clusters K` (Ward, k-means), of the ablations (exact Ward
  without smoothing; with smoothing but no k-means refinement), of `--clusters K` at
  several `--knn`, and of the peers: scikit-learn's KMeans, scikit-learn's exact Ward
  (AgglomerativeClustering), HDBSCAN alone and UMAP + HDBSCAN (umap-learn), their noise
  counted as one more cluster;
- for the default `imageclust cluster` (no K, clusters of 3-10): the pairwise precision
  (share of within-cluster pairs with the same label), the share of images in real
  clusters and the mean cluster size, per method and per `--knn`, beside the peers at
  ~10 images per cluster (KMeans and exact Ward with K = n / 10).
scale: each size runs in a fresh subprocess (--repeat times); prints wall time and peak
RSS (ru_maxrss of the child, which includes the ~150 MB of numpy/scikit-learn/scipy
themselves), as min-max over the repeats.
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pair_precision(y: np.ndarray, labels: np.ndarray) -> float:
    same = tot = 0
    for c in np.unique(labels[labels >= 0]):
        v = y[labels == c]
        _, cnt = np.unique(v, return_counts=True)
        same += int((cnt * (cnt - 1)).sum())
        tot += len(v) * (len(v) - 1)
    return same / max(tot, 1)


def load_set(shared: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    from datasette_imageclust.store.collection import ImageCollection
    from datasette_imageclust.pipeline import load
    from datasette_imageclust.store.connection import close, connect

    d = shared / "imagesets" / name
    cache = Path(tempfile.gettempdir()) / f"imageclust-bench-{name}.db"
    if not cache.exists():
        load(str(cache), [str(d)], str(shared / "models" / "efficientnet-lite0"))
    db = connect(str(cache), readonly=True)
    ids, x = ImageCollection(db).vectors()
    rel = dict(db.execute("SELECT image_id, relpath FROM files").fetchall())
    close(db)
    labels = {}
    if (d / "labels.csv").exists():
        labels = {r["path"]: r["category"] for r in csv.DictReader(open(d / "labels.csv"))}
    y = np.array([labels.get(rel[int(i)], rel[int(i)].split("/")[0]) for i in ids])
    return x, y


def _peers_at_k(x: np.ndarray, k: int, seed: int = 0) -> dict[str, np.ndarray | str]:
    """Labels from the peers (plain library calls, default-ish settings) at K clusters, or
    for the density-based ones their own number; a string says why one could not run."""
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans

    out: dict[str, np.ndarray | str] = {
        "k-means (scikit-learn)": KMeans(k, n_init=10, random_state=seed).fit_predict(x),
        "exact Ward (scikit-learn)": AgglomerativeClustering(k, linkage="ward").fit_predict(x),
        "HDBSCAN (scikit-learn)": HDBSCAN(min_cluster_size=5, copy=True).fit_predict(x),
    }
    try:
        import warnings

        import umap  # type: ignore

        with warnings.catch_warnings():  # "n_jobs overridden by random_state": wanted, for repeatability
            warnings.simplefilter("ignore", UserWarning)
            z = umap.UMAP(n_components=5, n_neighbors=15, min_dist=0.0, metric="cosine",
                          random_state=seed).fit_transform(x)
        out["UMAP+HDBSCAN"] = HDBSCAN(min_cluster_size=5, copy=True).fit_predict(z)
    except ImportError:
        out["UMAP+HDBSCAN"] = "umap-learn is not installed (pip install -e '.[umap]')"
    return out


def _default_line(y: np.ndarray, lab: np.ndarray) -> str:
    inside = lab >= 0
    mean = np.bincount(lab[inside]).mean() if inside.any() else 0
    return (f"pair precision {pair_precision(y, lab):.3f}, in clusters {inside.mean():.2f}, "
            f"mean size {mean:.1f}, {int(lab.max()) + 1} clusters")


def quality(shared: Path) -> None:
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import adjusted_rand_score

    from datasette_imageclust.analysis import clustering as C

    for name in ("tuxpaint-stamps", "sklearn-digits"):
        x, y = load_set(shared, name)
        k = len(set(y))
        print(f"\n{name}: {len(x)} images, {k} labels")
        print(f"  K = {k} (ARI against the labels):")
        for m in ("ward", "kmeans"):
            t = time.perf_counter()
            r = C.run(m, x, n_clusters=k, max_size=None)
            print(f"    --clusters {k} --method {m:<7} ARI {adjusted_rand_score(y, r.labels):.3f}  "
                  f"({time.perf_counter() - t:.2f}s)")
        # ablation: what the k-NN smoothing and the k-means refinement each bring to Ward
        lab = C.ward(x, n_clusters=k, max_size=None, knn_k=0, refine=False).labels
        print(f"    Ward without smoothing or refinement      ARI {adjusted_rand_score(y, lab):.3f}")
        lab = C.ward(x, n_clusters=k, max_size=None, refine=False).labels
        print(f"    Ward with smoothing, without refinement   ARI {adjusted_rand_score(y, lab):.3f}")
        for kk in (5, 10, 15, 20):
            lab = C.run("ward", x, n_clusters=k, max_size=None, knn_k=kk).labels
            print(f"    --clusters {k} --knn {kk:<3}              ARI {adjusted_rand_score(y, lab):.3f}")
        for peer, lab in _peers_at_k(x, k).items():
            if isinstance(lab, str):
                print(f"    peer {peer:<26} not run: {lab}")
                continue
            noise = int((lab < 0).sum())
            print(f"    peer {peer:<26} ARI {adjusted_rand_score(y, lab):.3f}, {len(set(lab) - {-1})} clusters"
                  + (f", {noise} noise ({noise / len(lab):.0%})" if noise else ""))
        print("  default, no K (clusters of 3-10; hdbscan: its own defaults, from 5 images, no cap):")
        for m in ("ward", "kmeans", "hdbscan"):
            t = time.perf_counter()
            lab = C.run(m, x, **dict(zip(("min_size", "max_size"), C.default_sizes(m, None, None, None)))).labels
            print(f"    --method {m:<7} {_default_line(y, lab)} ({time.perf_counter() - t:.2f}s)")
        for reduce in ("umap", "pca"):
            lab = C.hdbscan(x, min_size=5, reduce=reduce).labels
            print(f"    --method hdbscan on {reduce}: {_default_line(y, lab)}, ARI {adjusted_rand_score(y, lab):.3f}")
        for kk in (10, 15, 20, 30):
            print(f"    --method ward --knn {kk:<3} {_default_line(y, C.ward(x, knn_k=kk).labels)}")
        k10 = max(2, len(x) // 10)
        print(f"    peer k-means (scikit-learn), K = n/10 = {k10}: "
              f"{_default_line(y, KMeans(k10, n_init=10, random_state=0).fit_predict(x))}")
        print(f"    peer exact Ward (scikit-learn), K = n/10 = {k10}: "
              f"{_default_line(y, AgglomerativeClustering(k10, linkage='ward').fit_predict(x))}")


def synthetic(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Many small groups around random centres in d dimensions (like photo series)."""
    rng = np.random.default_rng(seed)
    k = max(2, n // 8)
    centres = rng.standard_normal((k, d)).astype(np.float32)
    which = rng.integers(0, k, n)
    x = centres[which] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def child(n: int, d: int, method: str, k: int | None) -> None:
    from datasette_imageclust.analysis import clustering as C

    x = synthetic(n, d)
    t = time.perf_counter()
    params = {"n_clusters": k, "max_size": None} if k else {}
    r = C.run(method, x, **params)
    secs = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lab = r.labels
    print(json.dumps({"n": n, "seconds": round(secs, 2), "peak_rss_mb": round(rss), "clusters": int(lab.max()) + 1,
                      "unclustered": int((lab < 0).sum()), "max_size": int(np.bincount(lab[lab >= 0]).max())}))


def scale(sizes: list[int], d: int, method: str, k: int | None, repeat: int) -> None:
    print(f"method {method}, {d}-d synthetic vectors" + (f", --clusters {k}" if k else ", default sizes")
          + f", {repeat} run(s) per size", flush=True)
    for n in sizes:
        runs = []
        for _ in range(repeat):
            cmd = [sys.executable, __file__, "child", str(n), str(d), method, str(k or 0)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:])
                break
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if not runs:
            continue
        secs = [r["seconds"] for r in runs]
        rss = [r["peak_rss_mb"] for r in runs]
        r = runs[-1]
        print(f"  n={n:>7}: {min(secs):.1f}-{max(secs):.1f}s  peak {min(rss)}-{max(rss)} MB  {r['clusters']} clusters "
              f"(largest {r['max_size']}), {r['unclustered']} unclustered", flush=True)


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
    ap.add_argument("--repeat", type=int, default=1, help="scale: runs per size (min-max printed)")
    a = ap.parse_args()
    if a.what == "quality":
        quality(Path(a.shared))
    else:
        scale([int(s) for s in a.sizes.split(",")], a.dims, a.method, a.clusters, a.repeat)


if __name__ == "__main__":
    main()
