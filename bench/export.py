"""Export benchmark: a ZIP of N original files, its time and the exporting process's
peak memory (RSS), at two sizes, to show memory stays flat as the archive grows.

    python bench/export.py [--sizes 1000,10000] [--kb 100] [--keep DIR]

The database is synthetic (tests/synthdb.py: real SQLite, a default clustering run) and
the originals real JPEG files written to a temporary folder (--kb KB each, distinct
bytes, so each is its own image whose sha256 the export checks). Each export runs as
`imageclust export DB --format zip -o OUT` in a fresh process; peak RSS is that
process's ru_maxrss.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def base_jpegs(kb: int, n: int = 16) -> list[bytes]:
    """``n`` JPEGs of about ``kb`` KB (smooth noise: photo-like, not compressible again)."""
    rng = np.random.default_rng(0)
    out = []
    side = 256
    while True:
        small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((side, side), Image.BICUBIC)
        noise = rng.integers(-25, 25, (side, side, 3))
        buf = io.BytesIO()
        Image.fromarray(np.clip(np.asarray(im, int) + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        if len(buf.getvalue()) >= kb * 1024 or side >= 4096:
            break
        side = int(side * 1.25)
    for i in range(n):
        im = Image.fromarray(np.roll(np.clip(np.asarray(im, int) + i, 0, 255).astype(np.uint8), i * 7, axis=1))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make(folder: Path, n: int, kb: int) -> str:
    import synthdb
    from datasette_imageclust.store import connection

    db_path = str(folder / "bench.db")
    synthdb.make_db(db_path, n, clusters=max(2, n // 200), dims=32, thumb_px=32, distinct_thumbs=50)
    bases = base_jpegs(kb)
    db = connection.connect(db_path)
    rows = []
    for iid, rel in db.execute("SELECT image_id, relpath FROM files").fetchall():
        data = bases[iid % len(bases)] + b"imageclust-bench-%08d" % iid  # bytes after EOI: still a valid JPEG
        path = folder / "originals" / rel.replace(".webp", ".jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append((str(path), str(folder / "originals"), rel, len(data), hashlib.sha256(data).hexdigest(), iid))
    with db.conn:
        db.conn.executemany("UPDATE files SET path = ?, root = ?, relpath = ?, size = ? WHERE image_id = ?",
                            [(p, r, rel, s, i) for p, r, rel, s, _, i in rows])
        db.conn.executemany("UPDATE images SET sha256 = ?, format = 'JPEG' WHERE id = ?",
                            [(h, i) for *_, h, i in rows])
    connection.close(db)
    return db_path


RUN = ("import resource, sys; from datasette_imageclust.cli import cli\n"
       "try:\n    cli(sys.argv[1:])\nexcept SystemExit as e:\n"
       "    print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
       "    raise\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--kb", type=int, default=100)
    ap.add_argument("--keep", help="keep the databases, originals and ZIPs in this folder")
    a = ap.parse_args()
    top = Path(a.keep or tempfile.mkdtemp(prefix="imageclust-bench-export-"))
    top.mkdir(parents=True, exist_ok=True)
    try:
        for n in (int(s) for s in a.sizes.split(",")):
            folder = top / f"n{n}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            t = time.perf_counter()
            db = make(folder, n, a.kb)
            made = time.perf_counter() - t
            out = folder / "export.zip"
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", RUN, "export", db, "--format", "zip", "-o", str(out)],
                               capture_output=True, text=True)
            seconds = time.perf_counter() - t
            if r.returncode:
                sys.exit(r.stderr)
            peak = int(r.stderr.split("PEAK_RSS_KB")[1].split()[0]) / 1024
            originals = sum(f.stat().st_size for f in (folder / "originals").rglob("*.jpg")) / 2**20
            print(f"{n:>6} originals ({originals:,.0f} MB): zip {out.stat().st_size / 2**20:,.0f} MB in "
                  f"{seconds:.1f} s ({n / seconds:,.0f} files/s), peak RSS {peak:.0f} MB "
                  f"(making the test set: {made:.0f} s)", flush=True)
            if not a.keep:
                shutil.rmtree(folder)
    finally:
        if not a.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
