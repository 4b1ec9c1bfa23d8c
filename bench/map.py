"""Map benchmark: layout and atlas build time, and first paint of the map page in
headless Chromium, at 10,000 and 100,000 images; and the layout's quality on real images.

    python bench/map.py [--sizes 10000,100000] [--cluster-size 10] [--runs 3] [--keep DIR]
    python bench/map.py --quality [--shared ../shared]

Databases are synthetic (tests/synthdb.py: real SQLite, real 256-px WebP thumbnails,
vectors in vec0, a default clustering run with ~--cluster-size images per cluster), so
no model inference is needed. Prints, per size: layout seconds (embed / pack), atlas
seconds and MB per level, points.bin size, first paint (ms after navigation start, the
page's window.__imageclustPainted, cold browser cache; the first run is also the first
request to a fresh server, "cold", the others "warm"), and frame times while panning and
zooming. Chromium runs with --disable-gpu: WebGL is SwiftShader on the CPU, so frame
times here are a pessimistic bound for a machine with a GPU.

--quality: the 353 labelled tuxpaint stamps (stand-in embedder), laid out with t-SNE and
with UMAP: the share of each image's 5 nearest map neighbours in its category, beside the
same for its 5 nearest in the vectors and chance; and UMAP's first and second layout in a
fresh process (the first compiles numba code).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import chromium, datasette_server, missing_browser  # noqa: E402  (tests/browser.py)


def build(path: str, n: int, cluster_size: int) -> dict:
    import synthdb
    from datasette_imageclust.pipeline import build_map
    from datasette_imageclust.store import connection

    t = time.perf_counter()
    synthdb.make_db(path, n, clusters=max(2, n // cluster_size), dims=64, thumb_px=256, distinct_thumbs=1500)
    made = time.perf_counter() - t
    db = connection.connect(path)
    m = build_map(db)
    connection.close(db)
    s, a = m.layout, m.atlas
    t_layout = sum(s.seconds.values())
    t_atlas = a.seconds
    return {"make_s": made, "layout_s": t_layout, "layout_parts": s.seconds, "method": s.method,
            "groups": s.groups, "overlaps": s.overlaps, "atlas_s": t_atlas,
            "atlas_mb": {lv: round(b / 1e6, 1) for lv, b in a.bytes.items()}, "sheets": a.sheets,
            "db_mb": os.path.getsize(path) / 1e6}


def measure(path: str, runs: int) -> dict:
    import json
    import urllib.request

    with datasette_server(path) as base:
        name = Path(path).stem
        url = f"{base}/{name}/-/imageclust/map"
        out = {"paint_ms": [], "points_bytes": None}
        with chromium() as browser:
            for run in range(runs):
                ctx = browser.new_context(viewport={"width": 1280, "height": 800})
                page = ctx.new_page()
                page.goto(url)
                page.wait_for_function("window.__imageclustPainted", timeout=60_000)
                out["paint_ms"].append(page.evaluate("window.__imageclustPainted"))
                out["renderer"] = page.evaluate("window.__imageclustMap.renderer")
                if run == runs - 1:
                    out["frames"] = page.evaluate(FRAMES_JS)
                ctx.close()
        with urllib.request.urlopen(f"{url}.json") as r:
            meta = json.load(r)
        with urllib.request.urlopen(f"{base}{meta['points']['url']}") as r:
            out["points_bytes"] = len(r.read())
        return out


# Pan and zoom programmatically, one view change per animation frame, and time frames.
FRAMES_JS = """
() => new Promise(resolve => {
  const m = window.__imageclustMap, v = m.view, times = [];
  const s0 = v.s; let k = 0, last = performance.now();
  function step(now) {
    times.push(now - last); last = now;
    if (k < 60) { v.s = s0 * Math.pow(1.04, k); }          // zoom in
    else if (k < 120) { v.cx += 30 / v.s; v.cy += 10 / v.s; } // pan
    else { times.shift(); times.sort((a, b) => a - b);
      return resolve({mean: times.reduce((a, b) => a + b, 0) / times.length,
                      p95: times[Math.floor(times.length * 0.95)], level: m.level, detail: m.detailLoaded}); }
    k++; m.redraw();
    requestAnimationFrame(step);
  }
  requestAnimationFrame(step);
})
"""


def _tux_layout(db_path: str, method: str) -> dict:
    """Lay out a copy of the tuxpaint database with ``method``; neighbour agreement."""
    import csv

    from neighbours import chance, knn_agreement

    from datasette_imageclust.store.collection import ImageCollection
    from datasette_imageclust.pipeline import build_map
    from datasette_imageclust.store import connection

    db = connection.connect(db_path)
    t = time.perf_counter()
    s = build_map(db, method=method, atlas=False).layout
    secs = time.perf_counter() - t
    ids, vecs = ImageCollection(db).vectors()
    rel = dict(db.execute("SELECT image_id, relpath FROM files").fetchall())
    pos = {i: (x, y) for i, x, y in db.execute("SELECT image_id, x, y FROM layout_points WHERE layout_id = ?",
                                               [s.layout_id])}
    root = db.execute("SELECT root FROM files LIMIT 1").fetchone()[0]
    connection.close(db)
    with open(os.path.join(root, "labels.csv")) as f:
        cat = {r["path"]: r["category"] for r in csv.DictReader(f)}
    labels = np.array([cat[rel[int(i)]] for i in ids])
    xy = np.array([pos[int(i)] for i in ids])
    return {"method": s.method, "seconds": secs, "overlaps": s.overlaps, "map": knn_agreement(xy, labels),
            "vectors": knn_agreement(vecs, labels), "chance": chance(labels)}


def quality(shared: Path) -> None:
    import json
    import shutil
    import subprocess

    from datasette_imageclust.pipeline import load

    tux = shared / "imagesets" / "tuxpaint-stamps"
    cache = Path(tempfile.gettempdir()) / "imageclust-bench-tuxpaint-stamps.db"  # as bench/clusters.py
    if not cache.exists():
        load(str(cache), [str(tux)], str(shared / "models" / "efficientnet-lite0"))
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("tsne", "umap"):
            path = os.path.join(tmp, f"{method}.db")
            shutil.copy(cache, path)
            r = _tux_layout(path, method)
            print(f"tuxpaint-stamps, {r['method']}: 5 nearest map neighbours in the image's category {r['map']:.0%} "
                  f"(5 nearest in the vectors {r['vectors']:.0%}, chance {r['chance']:.0%}); overlaps {r['overlaps']}; "
                  f"{r['seconds']:.1f}s", flush=True)
        # UMAP's first call in a fresh process compiles numba code; the second does not.
        path = os.path.join(tmp, "fresh.db")
        shutil.copy(cache, path)
        code = ("import json, sys, time; sys.path[:0] = [%r, %r]; from datasette_imageclust.store import connection; "
                "from datasette_imageclust.pipeline import build_map; c = connection.connect(%r); t = [time.perf_counter()]; "
                "[(build_map(c, method='umap', atlas=False), t.append(time.perf_counter())) for _ in range(2)]; "
                "print(json.dumps([t[1] - t[0], t[2] - t[1]]))" % (str(ROOT), str(ROOT / "tests"), path))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        first, second = json.loads(out.strip().splitlines()[-1])
        print(f"UMAP layout of 353 images in a fresh process: first {first:.1f}s, second {second:.1f}s "
              f"(the difference is numba compiling umap-learn)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--cluster-size", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", help="Keep the databases in this directory")
    ap.add_argument("--quality", action="store_true", help="Layout quality on tuxpaint-stamps instead")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = ap.parse_args()
    if args.quality:
        return quality(Path(args.shared))
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = args.keep or tempfile.mkdtemp(prefix="imageclust-map-bench-")
    os.makedirs(tmp, exist_ok=True)
    why = missing_browser()
    have_browser = why is None
    if not have_browser:
        print(f"{why}: first-paint figures are skipped", file=sys.stderr)
    for n in sizes:
        path = os.path.join(tmp, f"map{n}.db")
        if os.path.exists(path):
            os.remove(path)
        b = build(path, n, args.cluster_size)
        print(f"n={n}: synthetic db {b['make_s']:.1f}s, {b['db_mb']:.0f} MB; layout {b['layout_s']:.1f}s "
              f"({b['method']}, parts {b['layout_parts']}, {b['groups']} groups, overlaps {b['overlaps']}); "
              f"atlas {b['atlas_s']:.1f}s, sheets {b['sheets']}, MB {b['atlas_mb']}", flush=True)
        if have_browser:
            m = measure(path, args.runs)
            f = m.get("frames") or {}
            cold, warm = m["paint_ms"][0], m["paint_ms"][1:] or [float("nan")]
            print(f"n={n}: first paint ms cold server {cold:.0f}, warm {min(warm):.0f}-{max(warm):.0f} "
                  f"(all {[round(x) for x in m['paint_ms']]}), renderer {m.get('renderer')}, points.bin "
                  f"{m['points_bytes'] / 1e6:.2f} MB; pan/zoom frame ms mean {f.get('mean', 0):.1f} "
                  f"p95 {f.get('p95', 0):.1f}", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
