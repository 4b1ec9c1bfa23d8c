"""Figure export benchmark: time and peak memory of ``--format figure`` (map) and a
contact sheet at growing sizes, and the screenshot in docs/.

    python bench/figure.py [--sizes 1000,10000,100000] [--clusters-per 25] [--keep DIR]
    python bench/figure.py --screenshot docs/export-figure-map.png

Databases are synthetic (tests/synthdb.py: real SQLite, WebP thumbnails, a default run,
the layout and atlas built by the library). Each export runs in a fresh process, so its
peak RSS (VmHWM) is that export's alone; the database build is not timed.
--screenshot: the 1,000-image, 40-cluster map (as in tests/test_export_figure.py) at
3,000 px, saved downscaled to 1,500 px.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def run_export(db: str, fmt: str, out: str, figure: str = "map") -> None:
    """In this process: one export (called through the subprocess below)."""
    from datasette_imageclust.export import contact, figure as fig
    from datasette_imageclust.export.selection import select
    from datasette_imageclust.store import connection

    conn = connection.connect(db)
    sel = select(conn)
    t0 = time.perf_counter()
    if fmt == "contact-sheet":
        summary = contact.write(conn, sel, Path(out), force=True)
    else:
        summary = fig.write(conn, sel, Path(out), figure=figure, force=True)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(summary))


def peak_rss_mb() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    across fork + exec, so a child of a process that just built a big database would report
    the parent's size."""
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return round(kb / 1024)


def measure(db: str, fmt: str, out: str, figure: str = "map") -> dict:
    code = f"import sys; sys.argv=['x']; sys.path.insert(0, {str(ROOT / 'bench')!r}); import figure as b; " \
           f"b.run_export({db!r}, {fmt!r}, {out!r}, {figure!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline() -> int:
    """Peak RSS (MB) of a process that only imports the package and opens nothing."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import datasette_imageclust.export.figure; " \
           "import figure as b; print(b.peak_rss_mb())"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--clusters-per", type=int, default=25, help="images per cluster")
    ap.add_argument("--keep", help="folder for the databases and outputs (default: a temporary one)")
    ap.add_argument("--screenshot", help="write the 1,000-image map screenshot here and stop")
    args = ap.parse_args()
    from synthdb import make_map_db

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-figure-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.screenshot:
        from PIL import Image

        db = str(work / "map1000.db")
        if not os.path.exists(db):
            make_map_db(db, 1000, clusters=40, thumb_px=48, distinct_thumbs=160,
                        label_prefix="protest banner, street scene")
        r = measure(db, "figure", str(work / "map1000.png"))
        with Image.open(work / "map1000.png") as im:
            im.thumbnail((1500, 1500), Image.Resampling.LANCZOS)
            im.save(args.screenshot, optimize=True)
        print(json.dumps(r))
        return
    print(f"import-only process: {baseline()} MB peak RSS", file=sys.stderr)
    for n in (int(v) for v in args.sizes.split(",")):
        db = str(work / f"map{n}.db")
        if not os.path.exists(db):
            t0 = time.perf_counter()
            make_map_db(db, n, clusters=max(2, n // args.clusters_per), thumb_px=64, distinct_thumbs=400)
            print(f"{n:,} images: database built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for fmt, out in (("figure", "map.png"), ("figure", "map.pdf"), ("contact-sheet", "sheet.pdf")):
            r = measure(db, fmt, str(work / f"{n}-{out}"))
            print(f"{n:>7,} images  {fmt:<13} {out:<9} {r['seconds']:>6.1f} s  peak RSS {r['peak_rss_mb']:>5} MB  "
                  f"labels {r.get('labels', '-')} (omitted {r.get('labels_omitted', '-')})  "
                  f"pages {r.get('pages')}  {os.path.getsize(work / f'{n}-{out}') / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
