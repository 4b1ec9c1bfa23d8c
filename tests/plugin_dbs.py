"""Databases for the plugin tests, made with the project's own library (real images,
real stand-in vectors, real clustering) plus hostile names and labels for XSS tests."""
from __future__ import annotations

import shutil
from pathlib import Path

from datasette_imageclust.analysis import clusterstore, search
from datasette_imageclust.pipeline import build_index, cluster_images
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.schema import migrate

XSS = '<script>alert(1)</script>'
XSS_ATTR = '"><img src=x onerror=alert(2)>'


def clustered(tux_db: str, dest: Path) -> str:
    """The tux database with a search index, two clustering runs (one default), labels
    (one hostile), a near-duplicate group, an exact duplicate file, hostile EXIF."""
    path = str(dest)
    shutil.copy(tux_db, path)
    db = dbmod.connect(path)
    build_index(db)
    for name, k, default in (("kmeans16", 16, True), ("kmeans8", 8, False)):
        cluster_images(db, method="kmeans", name=name, n_clusters=k, small="merge", labels=(),
                       make_default=default, duplicates=False, layout=False)
    run = db.execute("SELECT id FROM cluster_runs WHERE name = 'kmeans16'").fetchone()[0]
    cids = [r[0] for r in db.execute("SELECT id FROM clusters WHERE run_id = ? AND kind = 'cluster' "
                                     "ORDER BY size DESC", [run])]
    with db.conn:
        clusterstore.put_label(db, cids[0], "user", XSS)
        clusterstore.put_label(db, cids[0], "terms", XSS_ATTR)
        clusterstore.put_label(db, cids[1], "clip", "a bird")
        clusterstore.refresh_best_labels(db, run)
        migrate(db, "clusters")
        g = db["duplicate_groups"].insert({"kind": "near", "size": 2}).last_pk
        db["duplicate_members"].insert_all([{"group_id": g, "image_id": 1}, {"group_id": g, "image_id": 2}])
        # An exact duplicate: a second file with image 1's bytes, and a hostile file name.
        f = db.execute("SELECT path, root, size, mtime, added FROM files WHERE image_id = 1").fetchone()
        db["files"].insert({"path": f[1] + "/" + XSS + ".png", "root": f[1], "relpath": XSS + ".png",
                            "image_id": 1, "size": f[2], "mtime": f[3], "added": f[4]})
        db.execute("UPDATE images SET exif = ?, camera = ? WHERE id = 1",
                   ['{"Artist": "%s"}' % XSS.replace('"', '\\"'), XSS_ATTR])
    dbmod.finish(db)
    db.conn.close()
    return path


def unclustered(tux_db: str, dest: Path) -> str:
    """The tux database with no clusters and no similarity index (as an older `load`
    left it), to check the exact-search fallback."""
    shutil.copy(tux_db, dest)
    db = dbmod.connect(str(dest))
    for t in (search.BITS_TABLE, search.META_TABLE, search.COPY_TABLE):
        db.execute(f"DROP TABLE IF EXISTS {t}")
    db.execute("DELETE FROM schema_versions WHERE component = 'search'")
    db.conn.commit()
    dbmod.finish(db)
    db.conn.close()
    return str(dest)


def empty(dest: Path) -> str:
    db = dbmod.connect(str(dest))
    migrate(db, "core")
    dbmod.finish(db)
    db.conn.close()
    return str(dest)


def foreign(dest: Path) -> str:
    """Not an imageclust database, though it has a table called images."""
    db = dbmod.connect(str(dest))
    db["images"].insert({"id": 1, "url": "x"}, pk="id")
    dbmod.finish(db)
    db.conn.close()
    return str(dest)
