"""Similarity-search benchmark: latency (p50/p95) and recall@k of ``search.knn`` against
exact search, at several collection sizes, plus sqlite-vec's plain float scan for scale.

    python bench/search.py                       # 10k and 100k synthetic 512-d vectors
    python bench/search.py --sizes 10000,100000,1000000 --queries 200
    python bench/search.py --real ../shared/imagesets/tuxpaint-stamps   # + real vectors (stand-in model)
    python bench/search.py --vectors cliplike --sizes 100000,1000000     # CLIP-like vectors

Synthetic data: clustered unit vectors with a common positive offset (like CNN features,
which are all >= 0), i.e. the case where plain sign bits fail and mean-centring matters.
``--vectors cliplike``: CLIP-like vectors (one common direction, Zipf-sized clusters, 5%
loners; mean pairwise cosine ~0.4, nearest-neighbour cosine ~0.67, printed per size).
Queries are held-out points of the same distribution (text/upload-like) and stored
vectors with their own id excluded ("more like this"). Databases are cached in --workdir.

Per size it prints: `imageclust index` time; the path search.knn took (exact in-memory scan,
bits + int8 codes, or bits alone: ``--memory-mb`` sets the plugin's ``search_memory_mb``);
search.knn p50/p95, recall@k and the first query (which loads the bits); the exact float scan p50 memory-mapped (as the plugin) and
through plain reads, and knn's share of it; the Hamming stage alone (cProfile over the
same queries); loading the bits from search_bits vs reading image_bits row by row; a vec0
point read by id; and where the misses are (mean nearest-neighbour cosine of the queries
that missed, vs the others).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasette_imageclust import pipeline  # noqa: E402
from datasette_imageclust.store import connection  # noqa: E402
from datasette_imageclust.analysis import search, searchcodes  # noqa: E402
from datasette_imageclust.store import vectors  # noqa: E402
from datasette_imageclust.web import MMAP_BYTES  # noqa: E402
from datasette_imageclust.store.schema import migrate  # noqa: E402


def synthetic(n: int, dims: int, seed: int, intrinsic: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_clusters = max(10, n // 100)
    # Two levels (themes, then clusters within them), uneven cluster sizes, and members
    # spread mostly along a few cluster-specific directions (embeddings of real photos
    # have a low intrinsic dimension) plus isotropic noise.
    themes = rng.standard_normal((max(5, n_clusters // 20), dims)).astype(np.float32)
    centres = themes[rng.integers(0, len(themes), n_clusters)] + 0.8 * rng.standard_normal(
        (n_clusters, dims)).astype(np.float32)
    sizes = rng.zipf(1.6, n_clusters).astype(np.float64)
    label = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    x = np.empty((n, dims), np.float32)
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        basis = rng.standard_normal((intrinsic, dims)).astype(np.float32)
        z = rng.standard_normal((len(idx), intrinsic)).astype(np.float32)
        x[idx] = centres[c] + 1.2 * z @ basis / np.sqrt(intrinsic) * np.sqrt(dims) / 4
    x += 0.3 * rng.standard_normal((n, dims)).astype(np.float32)
    x += 2.5 * np.abs(rng.standard_normal(dims)).astype(np.float32)  # common positive offset
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def cliplike(n: int, dims: int, seed: int, common: float = 0.4, cluster: float = 0.23,
             loners: float = 0.05) -> np.ndarray:
    """Unit vectors shaped like CLIP image embeddings, much harder for bit prefilters than
    ``synthetic``: every vector shares one common direction (squared weight ``common``),
    cluster members a cluster direction (``cluster``) and the rest is isotropic noise; clusters
    have Zipf-distributed sizes and ``loners`` of the vectors belong to none. Mean pairwise
    cosine ~0.4, nearest-neighbour cosine ~0.67 (``vector_stats`` prints both)."""
    rng = np.random.default_rng(seed)

    def unit(m: int) -> np.ndarray:
        v = rng.standard_normal((m, dims), dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    u = unit(1)[0]
    n_clusters = max(10, n // 50)
    centres = unit(n_clusters)
    sizes = np.minimum(rng.zipf(1.6, n_clusters), n // 20 + 1).astype(np.float64)
    label = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    c = np.where(rng.random(n) < loners, 0.0, cluster).astype(np.float32)[:, None]
    x = np.sqrt(common) * u + np.sqrt(c) * centres[label] + np.sqrt(1 - common - c) * unit(n)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


GENERATORS = {"synthetic": synthetic, "cliplike": cliplike}


def vector_stats(x: np.ndarray, sample: int = 1000) -> tuple[float, float]:
    """(mean pairwise cosine, mean nearest-neighbour cosine) of ``sample`` vectors against all."""
    s = np.einsum("ij,kj->ik", x[:sample], x)
    off = s[:, sample:].mean()
    s[np.arange(sample), np.arange(sample)] = -np.inf
    return float(off), float(s.max(axis=1).mean())


def rss_mb(path: str, memory_mb: int) -> float:
    """MB a fresh process's resident memory grows by when it loads a database's search
    state (what a server process holds per database), measured in a child process so this
    benchmark's own arrays do not count."""
    import subprocess

    code = ("import sys\nfrom datasette_imageclust.analysis import search, searchcodes\n"
            "searchcodes.set_memory_limit(int(sys.argv[2]))\n"
            "def rss():\n    for l in open('/proc/self/status'):\n"
            "        if l.startswith('VmRSS:'): return int(l.split()[1]) / 1024\n"
            "before = rss(); assert search.warm(sys.argv[1]); print(rss() - before)\n")
    out = subprocess.run([sys.executable, "-c", code, path, str(memory_mb)], capture_output=True, text=True,
                         check=True, cwd=str(Path(__file__).resolve().parent.parent))
    return float(out.stdout.strip())


HELD_OUT = 1000


def make_db(path: str, x: np.ndarray) -> None:
    db = connection.connect(path)
    migrate(db, "core")
    vectors.ensure_table(db, x.shape[1])
    with db.conn:
        for i in range(0, len(x), 10000):
            vectors.put(db, list(range(i + 1, min(len(x), i + 10000) + 1)), x[i:i + 10000])
    connection.close(db)


def index(path: str) -> float:
    """(Re)build the index every run: cached vectors, but always the current index code."""
    db = connection.connect(path)
    seconds = pipeline.build_index(db).seconds
    connection.close(db)
    search.clear_cache()
    return seconds


def pct(a: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(a) * 1000, p))


def _scan_p50(db, queries: np.ndarray, k: int) -> float:
    scan = []
    for q in queries:
        t = time.perf_counter()
        search.knn(db, q, k, exact=True)
        scan.append(time.perf_counter() - t)
    return pct(scan, 50) if scan else float("nan")


def _stage_ms(db, queries: np.ndarray, self_ids: list[int | None], k: int, stage: str) -> float:
    """Mean ms per query spent in search.py's function ``stage`` (cProfile, a separate pass)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    for q, sid in zip(queries, self_ids):
        prof.runcall(search.knn, db, q, k, exclude=[sid] if sid else [])
    calls = [(v[1], v[3]) for key, v in pstats.Stats(prof).stats.items()
             if key[0] == search.__file__ and key[2] == stage]
    return sum(ct for _, ct in calls) / len(queries) * 1000 if calls else float("nan")


def _storage(path: str, x: np.ndarray, reads: int = 200) -> dict:
    """Loading the bits (search_bits blobs vs image_bits row by row) and vec0 point reads."""
    search.clear_cache()
    t = time.perf_counter()
    assert search.warm(path)  # what a server process does at startup: the search_bits blobs
    packed = time.perf_counter() - t
    search.clear_cache()
    db = connection.connect(path, readonly=True)
    t = time.perf_counter()
    rows = db.execute(f"SELECT image_id, bits FROM {search.BITS_TABLE}").fetchall()
    by_row = time.perf_counter() - t
    assert len(rows) == len(x)
    ids = np.random.default_rng(2).integers(1, len(x) + 1, reads)
    t = time.perf_counter()
    for i in ids:
        db.execute(f"SELECT embedding FROM {vectors.TABLE} WHERE image_id = ?", [int(i)]).fetchone()
    point = (time.perf_counter() - t) / reads
    connection.close(db)
    return {"bits_packed_s": packed, "bits_rows_s": by_row, "point_read_ms": point * 1000}


def run(path: str, x: np.ndarray, queries: np.ndarray, self_ids: list[int | None], k: int,
        float_scan: int, storage: bool = True) -> dict:
    db = connection.connect(path, readonly=True)
    db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")  # as the plugin's connections
    n = len(x)
    t = time.perf_counter()
    search.knn(db, queries[0], k)  # loads the bits into the process cache
    warm = time.perf_counter() - t
    (entry,) = search._CACHE.values()
    path_taken = ("exact in-memory scan" if entry.scan is not None else
                  "bits + int8 codes" if entry.codes is not None else "bits + adaptive depth")
    lat, results = [], []
    for q, sid in zip(queries, self_ids):
        excl = [sid] if sid else []
        t = time.perf_counter()
        results.append(search.knn(db, q, k, exclude=excl))
        lat.append(time.perf_counter() - t)
    # The path taken (scan or codes) against the bit path at its fixed default depth, query
    # by query in turn, so that both see the same load (the machine is shared): the
    # measurement behind searchscan.SCAN_FLOATS.
    pair: dict = {path_taken: [], "bits": []}
    if entry.scan is not None or entry.codes is not None:
        for q, sid in zip(queries, self_ids):
            excl = [sid] if sid else []
            for name, kw in ((path_taken, {}), ("bits", {"candidates": search.default_candidates(k, n)})):
                t = time.perf_counter()
                search.knn(db, q, k, exclude=excl, **kw)
                pair[name].append(time.perf_counter() - t)
    # Ground truth after the timed loop: a big BLAS product leaves threads spinning that
    # would slow the next timed query.
    rec, nearest = [], []
    for q, sid, got in zip(queries, self_ids, results):
        s = x @ (q / np.linalg.norm(q))
        if sid:
            s[sid - 1] = -np.inf
        truth = set((np.argpartition(-s, k)[:k] + 1).tolist())
        rec.append(len(truth & {i for i, _ in got}) / k)
        nearest.append(float(s.max()))
    rec_a, near_a = np.asarray(rec), np.asarray(nearest)
    out = {"n": n, "path": path_taken, "p50": pct(lat, 50), "p95": pct(lat, 95), "recall": float(np.mean(rec)),
           "min_recall": float(np.min(rec)), "warm": warm,
           "scan_p50": _scan_p50(db, queries[:float_scan], k),
           "missed": int((rec_a < 1).sum()), "queries": len(rec),
           "nearest_missed": float(near_a[rec_a < 1].mean()) if (rec_a < 1).any() else float("nan"),
           "nearest_hit": float(near_a[rec_a == 1].mean()) if (rec_a == 1).any() else float("nan"),
           "hamming_ms": _stage_ms(db, queries, self_ids, k, "hamming"),
           "pair": {name: pct(v, 50) for name, v in pair.items() if v}}
    connection.close(db)
    plain = connection.connect(path, readonly=True)  # no mmap: every page through read()
    out["scan_plain_p50"] = _scan_p50(plain, queries[:float_scan], k)
    connection.close(plain)
    if storage:
        out.update(_storage(path, x))
    out["rss_mb"] = rss_mb(path, searchcodes.memory_limit() // 2**20)
    return out


def report(name: str, r: dict, k: int) -> None:
    print(f"{name:>14} n={r['n']:>8}  path: {r['path']}", flush=True)
    print(f"{name:>14} n={r['n']:>8}  knn p50 {r['p50']:6.2f} ms  p95 {r['p95']:6.2f} ms  "
          f"recall@{k} {r['recall']:.4f} (worst query {r['min_recall']:.2f})  "
          f"first query {r['warm'] * 1000:6.0f} ms  |  exact float scan p50 {r['scan_p50']:6.1f} ms "
          f"memory-mapped, {r['scan_plain_p50']:6.1f} ms plain reads; knn/exact {r['p50'] / r['scan_p50']:.2f}",
          flush=True)
    print(f"{'':>14} Hamming stage {r['hamming_ms']:.2f} ms/query; misses: {r['missed']} of {r['queries']} queries, "
          f"their nearest image at cosine {r['nearest_missed']:.2f} (the others' {r['nearest_hit']:.2f})", flush=True)
    if r["pair"]:
        print(f"{'':>14} in turn, query by query: {r['path']} p50 {r['pair'][r['path']]:.2f} ms, "
              f"bit path at its fixed depth p50 {r['pair']['bits']:.2f} ms", flush=True)
    print(f"{'':>14} memory of a server process's search state: {r['rss_mb']:.0f} MB "
          f"({r['rss_mb'] / r['n'] * 100000:.0f} MB per 100k vectors)", flush=True)
    if "bits_packed_s" in r:
        print(f"{'':>14} bits loaded from search_bits {r['bits_packed_s']:.3f} s, image_bits row by row "
              f"{r['bits_rows_s']:.3f} s; a vec0 point read {r['point_read_ms']:.3f} ms", flush=True)


def real_vectors(folder: str, model: str, workdir: str) -> tuple[str, np.ndarray]:
    from datasette_imageclust.pipeline import load

    path = os.path.join(workdir, "real.db")
    if not os.path.exists(path):
        load(path, [folder], model)
    index(path)
    db = connection.connect(path, readonly=True)
    ids, x = vectors.read_all(db)
    connection.close(db)
    assert (ids == np.arange(1, len(ids) + 1)).all()
    return path, x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated collection sizes")
    ap.add_argument("--dims", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200, help="queries per size (half held-out, half stored)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--vectors", choices=sorted(GENERATORS), default="synthetic",
                    help="synthetic: clustered with a positive offset (the README's first table); "
                         "cliplike: CLIP-like, one common direction, Zipf clusters, 5%% loners")
    ap.add_argument("--memory-mb", type=int, default=searchcodes.DEFAULT_MEMORY_MB,
                    help="the plugin setting search_memory_mb: 0 measures the bits alone")
    ap.add_argument("--float-scan", type=int, default=20, help="queries timed with the exact float scan")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "imageclust-bench-search"))
    ap.add_argument("--real", help="also measure on real vectors: an image folder (loaded with --model)")
    ap.add_argument("--model", default=str(Path(__file__).resolve().parent.parent.parent
                                           / "shared/models/efficientnet-lite0"))
    a = ap.parse_args()
    searchcodes.set_memory_limit(a.memory_mb)
    os.makedirs(a.workdir, exist_ok=True)
    print(f"k={a.k}, {a.dims}-d, {a.queries} queries per size; candidates rescored: "
          f"{search.default_candidates(a.k, 10**9)}", flush=True)
    for n in (int(s) for s in a.sizes.split(",")):
        half = min(a.queries // 2, HELD_OUT)
        # Always the same data for a size (the database is cached): HELD_OUT extra points.
        data = GENERATORS[a.vectors](n + HELD_OUT, a.dims, seed=n)
        x, held = data[:n], data[n:n + half]
        mean_cos, nn_cos = vector_stats(x)
        print(f"{a.vectors} vectors: mean pairwise cosine {mean_cos:.3f}, nearest-neighbour cosine "
              f"{nn_cos:.3f}", flush=True)
        path = os.path.join(a.workdir, f"{a.vectors}-{n}-{a.dims}.db")
        if not os.path.exists(path):
            t = time.perf_counter()
            make_db(path, x)
            print(f"built {path} in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
        print(f"index of {n} vectors built in {index(path):.1f}s", flush=True)
        rng = np.random.default_rng(1)
        stored = rng.choice(n, a.queries - half, replace=False)
        queries = np.concatenate([held, x[stored]])
        self_ids = [None] * half + [int(i) + 1 for i in stored]
        report(a.vectors, run(path, x, queries, self_ids, a.k, a.float_scan), a.k)
    if a.real:
        path, x = real_vectors(a.real, a.model, a.workdir)
        ids = list(range(1, len(x) + 1))
        report("real", run(path, x, x, ids, a.k, a.float_scan, storage=False), a.k)
        # Real collections are small; also force the bit path to rescore few candidates,
        # which is what the prefilter's quality shows at scale.
        for c in (20, 50, 100):
            db = connection.connect(path, readonly=True)
            rec = []
            for i in ids:
                got = {j for j, _ in search.knn(db, x[i - 1], a.k, exclude=[i], candidates=c)}
                s = x @ x[i - 1]
                s[i - 1] = -np.inf
                rec.append(len(got & set((np.argpartition(-s, a.k)[:a.k] + 1).tolist())) / a.k)
            connection.close(db)
            print(f"{'real':>14} n={len(x):>8}  recall@{a.k} rescoring only the best {c} after the two bit stages: "
                  f"{np.mean(rec):.4f}", flush=True)


if __name__ == "__main__":
    main()
