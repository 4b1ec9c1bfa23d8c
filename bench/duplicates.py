"""Near-duplicate quality on tuxpaint-stamps + tuxpaint-stamps-dupes (stand-in embedder).

    python bench/duplicates.py [--shared ../shared] [--db existing.db]

Loads both sets into a temporary database (or uses --db, which must hold both), runs
near-duplicate detection and prints pair precision (accepted pairs whose two images are
the same picture) and recall of the copy->original pairs, per transform, plus time (per
thousand images) and the cost of the pixel check per candidate pair it examined (the
aligned correlation, timed with cProfile in a second pass).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datasette_imageclust.analysis import neardup  # noqa: E402
from datasette_imageclust.pipeline import find_duplicates, load  # noqa: E402
from datasette_imageclust.store.connection import close, connect  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parent.parent.parent / "shared"))
    ap.add_argument("--db")
    a = ap.parse_args()
    sets = Path(a.shared) / "imagesets"
    dbp = a.db
    if not dbp:
        dbp = os.path.join(tempfile.mkdtemp(), "dupes.db")
        model = str(Path(a.shared) / "models" / "efficientnet-lite0")
        load(dbp, [str(sets / "tuxpaint-stamps"), str(sets / "tuxpaint-stamps-dupes")], model)
    db = connect(dbp)
    t = time.perf_counter()
    s = find_duplicates(db)
    secs = time.perf_counter() - t
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(find_duplicates, db)
    ncc = [(v[1], v[3]) for k, v in pstats.Stats(prof).stats.items()
           if k[0] == neardup.__file__ and k[2] == "aligned_ncc"]
    calls, ncc_s = (sum(c for c, _ in ncc), sum(t for _, t in ncc)) if ncc else (0, 0.0)
    img = {}
    for iid, path in db.execute("SELECT image_id, path FROM files"):
        img[os.path.relpath(path, sets)] = iid
    truth = list(csv.DictReader(open(sets / "tuxpaint-stamps-dupes" / "pairs.csv")))
    origin = {}  # image -> the original picture it shows
    for r in truth:
        origin[img[r["copy"]]] = img[r["original"]]
        origin[img[r["original"]]] = img[r["original"]]
    group = {iid: gid for gid, iid in db.execute("SELECT group_id, image_id FROM duplicate_members")}
    pairs = db.execute("SELECT image_a, image_b FROM duplicate_pairs").fetchall()
    good = sum(1 for x, y in pairs if origin.get(x, x) == origin.get(y, y))
    print(f"images {s.images}, accepted pairs {len(pairs)} ({s.by_rule}), groups {s.groups}, "
          f"{secs:.2f}s ({secs / s.images * 1000:.1f}s per 1000 images)")
    if calls:
        print(f"pixel check: {calls} candidate pairs examined, {ncc_s / calls * 1000:.1f} ms each "
              f"({ncc_s:.2f}s of the run under cProfile)")
    print(f"pair precision {good / max(len(pairs), 1):.3f} ({len(pairs) - good} wrong pairs)   goal >= 0.98")
    by: dict[str, list[int]] = {}
    for r in truth:
        o, c = img[r["original"]], img[r["copy"]]
        by.setdefault(r["transform"], []).append(int(group.get(o, -1) == group.get(c, -2)))
    allhits = [h for v in by.values() for h in v]
    print(f"recall of copy->original pairs {sum(allhits) / len(allhits):.3f} ({sum(allhits)}/{len(allhits)})   goal >= 0.95")
    for tr, hits in sorted(by.items()):
        print(f"  {tr:<10} recall {sum(hits) / len(hits):.3f} ({sum(hits)}/{len(hits)})")
    impure = 0
    for gid in set(group.values()):
        members = [i for i, g in group.items() if g == gid]
        impure += len({origin.get(i, i) for i in members}) > 1
    print(f"groups mixing different pictures: {impure} of {s.groups}")
    close(db)


if __name__ == "__main__":
    main()
