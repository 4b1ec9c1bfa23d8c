"""What ``load`` wrote to a database, keyed by content, so two databases can be compared
(an interrupted and resumed run against an uninterrupted one; a Dask run against a local one)."""
from __future__ import annotations

import numpy as np

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import vectors


def snapshot(path):
    """(images, files, thumbnails, {sha256: vector}, errors), each in a stable order."""
    d = dbmod.connect(path, readonly=True)
    try:
        assert d.execute("pragma integrity_check").fetchone()[0] == "ok"
        images = d.execute(
            "select sha256, bytes, format, mode, width, height, frames, phash, dhash, taken, camera, exif "
            "from images order by sha256"
        ).fetchall()
        files = d.execute(
            "select f.relpath, f.path_bytes, i.sha256, f.size from files f join images i on i.id = f.image_id "
            "order by relpath, path_bytes"
        ).fetchall()
        thumbs = d.execute(
            "select i.sha256, t.format, t.width, t.height, t.data from thumbnails t "
            "join images i on i.id = t.image_id order by sha256"
        ).fetchall()
        ids, vecs = vectors.read_all(d)
        sha = dict(d.execute("select id, sha256 from images").fetchall())
        by_sha = {sha[i]: v for i, v in zip(ids, vecs)}
        errors = d.execute("select path, path_bytes, reason, size from errors order by path, path_bytes").fetchall()
        return images, files, thumbs, by_sha, errors
    finally:
        d.conn.close()


def assert_same(a_path, b_path, atol: float = 1e-5) -> None:
    """The two databases hold the same images, files, thumbnails and errors, and vectors
    equal within ``atol`` (a different thread count may change the last float bits)."""
    a, b = snapshot(a_path), snapshot(b_path)
    assert a[0] == b[0], "images differ"
    assert a[1] == b[1], "files differ"
    assert a[2] == b[2], "thumbnails differ"
    assert a[4] == b[4], "errors differ"
    assert a[3].keys() == b[3].keys() and len(a[3]) == len(a[0])
    for k in a[3]:
        assert np.allclose(a[3][k], b[3][k], atol=atol), k
