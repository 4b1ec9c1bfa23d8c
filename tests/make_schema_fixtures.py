"""Write tests/fixtures/schema-*.sqlite: one small database for every schema state an
earlier datasette-imageclust could leave behind, for tests/test_schema_fixtures.py.

    python tests/make_schema_fixtures.py          # rewrites the files (commit them)

The schema states are those of the project's history (the commits that added migrations):

    first      core 1, clusters 1, map 1           (package skeleton)
    search1    + search 1                          (search_index, search_vectors, image_bits)
    clusters2  clusters 2                          (vocabulary_vectors, duplicate_pairs)
    search2    search 2                            (search_bits)
    clusters3  clusters 3                          (trigger: pruned images leave clusters)
    map2       map 2  = the schema of today        (trigger: pruned images leave the map)

Each is written by the CURRENT code (loader, clustering, labels, layout, atlas) with the
migration lists cut to that state, so exactly those tables exist. Two things the current
code writes only in a later shape are adjusted, as the old code left them: near-duplicate
groups without duplicate_pairs before clusters 2 (plain SQL), and the similarity index,
which `load` always builds: dropped entirely before search 1, its search_bits dropped at
search 1. Keep the files as they are: a new migration must bring exactly these forward.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"

EPOCHS: dict[str, dict[str, int]] = {
    "first": {"core": 1, "clusters": 1, "map": 1},
    "search1": {"core": 1, "clusters": 1, "map": 1, "search": 1},
    "clusters2": {"core": 1, "clusters": 2, "map": 1, "search": 1},
    "search2": {"core": 1, "clusters": 2, "map": 1, "search": 2},
    "clusters3": {"core": 1, "clusters": 3, "map": 1, "search": 2},
    "map2": {"core": 1, "clusters": 3, "map": 2, "search": 2},
}
USER_LABEL = "my favourite shapes"  # a person's label, which must survive every migration


def path_of(name: str) -> Path:
    return FIXTURES / f"schema-{name}.sqlite"


@contextlib.contextmanager
def schema_as_of(versions: dict[str, int]):
    """The migration lists cut to ``versions`` (search left whole: see the module doc)."""
    from datasette_imageclust.store.schema import MIGRATIONS

    saved = {c: list(steps) for c, steps in MIGRATIONS.items()}
    try:
        for c in MIGRATIONS:
            if c != "search":
                MIGRATIONS[c][:] = saved[c][:versions.get(c, 0)]
        yield
    finally:
        for c, steps in saved.items():
            MIGRATIONS[c][:] = steps


def _photos(folder: Path) -> None:
    from imagefactory import photo, save

    for i in range(10):
        save(photo(64, 48, seed=i), folder / ("shapes" if i < 5 else "waves") / f"img{i:02d}.jpg", quality=85)
    save(photo(64, 48, seed=3), folder / "shapes" / "img03-copy.png")  # the same picture, re-encoded
    shutil.copy(folder / "shapes" / "img01.jpg", folder / "waves" / "exact-copy.jpg")  # an exact duplicate
    photo(64, 48, seed=7).save(folder / "waves" / "anim.gif", save_all=True,
                               append_images=[photo(64, 48, seed=8)], duration=100)


def write(name: str, dest: Path, photos: Path, model: str) -> None:
    import numpy as np

    from datasette_imageclust.analysis import clusterstore, labels, search
    from datasette_imageclust.pipeline import build_map, cluster_images, load
    from datasette_imageclust.store import connection as dbmod
    from datasette_imageclust.store.collection import ImageCollection
    from datasette_imageclust.store.schema import migrate, now, versions

    want = EPOCHS[name]
    if dest.exists():
        dest.unlink()
    # 1 KiB pages instead of 4 KiB: a third of the size in git, nothing else changes.
    raw = dbmod.sqlite3.connect(str(dest))
    raw.execute("PRAGMA page_size = 1024")
    raw.execute("VACUUM")
    raw.close()
    with schema_as_of(want):
        load(str(dest), [str(photos)], model)
        db = dbmod.connect(dest)
        x, model_row = ImageCollection(db).vectors()[1], ImageCollection(db).model()
        for run, default in (("default", True), ("k3", False)):
            cluster_images(db, name=run, **({"n_clusters": 3} if run == "k3" else {"min_size": 2, "max_size": 4}),
                           labels=["terms"], make_default=default, duplicates=False, layout=False)
        cid = db.execute("SELECT c.id FROM clusters c JOIN cluster_runs r ON r.id = c.run_id "
                         "WHERE r.name = 'default' AND c.kind = 'cluster' ORDER BY c.id LIMIT 1").fetchone()[0]
        clusterstore.set_user_label(db, cid, USER_LABEL)
        migrate(db, "clusters")
        pair = [r[0] for r in db.execute(
            "SELECT i.id FROM images i JOIN files f ON f.image_id = i.id WHERE f.relpath LIKE 'shapes/img03%' "
            "ORDER BY i.id")]
        with db.conn:  # a near-duplicate group (the re-encoded copy), as `cluster` stores it
            gid = db.execute("INSERT INTO duplicate_groups (kind, size) VALUES ('near', 2)").lastrowid
            db.conn.executemany("INSERT INTO duplicate_members (group_id, image_id) VALUES (?, ?)",
                                [(gid, i) for i in pair])
            if want["clusters"] >= 2:
                db.execute("INSERT INTO duplicate_pairs (group_id, image_a, image_b, phash_distance, dhash_distance, "
                           "similarity, rank) VALUES (?, ?, ?, 0, 2, 0.99, 1)", [gid, *pair])
                vec = np.ones(len(x[0]), np.float32) / np.sqrt(len(x[0]))
                db.conn.executemany(
                    "INSERT INTO vocabulary_vectors (model_sha256, term, prompt, vector) VALUES (?, ?, ?, ?)",
                    [(model_row["sha256"], t, labels.PROMPT.format(t), vec.tobytes()) for t in ("circle", "wave")])
        build_map(db, method="tsne", seed=0, levels=(16,), sheet_size=1024)
        if "search" not in want:
            for t in (search.BITS_TABLE, search.META_TABLE, search.COPY_TABLE, search.PACKED_TABLE):
                db.execute(f"DROP TABLE IF EXISTS {t}")
            db.execute("DELETE FROM schema_versions WHERE component = 'search'")
        elif want["search"] == 1:
            db.execute(f"DROP TABLE {search.PACKED_TABLE}")
            db.execute("UPDATE schema_versions SET version = 1, applied = ? WHERE component = 'search'", [now()])
        db.conn.commit()
        got = versions(db)
        dbmod.finish(db)
        db.execute("VACUUM")
        db.conn.close()
    if got != want:
        raise SystemExit(f"{dest}: schema {got}, expected {want}")


def main() -> None:
    from tinyclip import make_tiny_clip

    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = str(make_tiny_clip(tmp / "model", dim=8, text=False))
        _photos(tmp / "photos")
        for name in EPOCHS:
            write(name, path_of(name), tmp / "photos", model)
            print(f"{path_of(name).relative_to(HERE.parent)}: {EPOCHS[name]}, {path_of(name).stat().st_size:,} bytes",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
