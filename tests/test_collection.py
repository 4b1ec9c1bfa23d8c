"""The one home of the rules (store/collection.py) and the one cache (store/cache.py)."""
from __future__ import annotations

import os
import sqlite3
import threading
import time

import numpy as np
import pytest

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.cache import TokenCache
from datasette_imageclust.store.collection import (LABEL_PRECEDENCE, ImageCollection, NotFound, change_token,
                                                  label_rank_sql)
from datasette_imageclust.store.schema import migrate, now


def _runs_db(path) -> "dbmod.sqlite_utils.Database":
    db = dbmod.connect(str(path))
    migrate(db, "core")
    migrate(db, "clusters")
    with db.conn:
        for name, default in (("a", 0), ("b", 1), ("7", 0), ("c", 0)):
            db.execute("INSERT INTO cluster_runs (name, method, params, is_default, n_images, n_clusters, created) "
                       "VALUES (?, 'ward', '{}', ?, 0, 0, ?)", [name, default, now()])
    return db


def test_which_run(tmp_path):
    coll = ImageCollection(_runs_db(tmp_path / "r.db"))
    ids = {r["name"]: r["id"] for r in coll.runs()}
    assert coll.run()["name"] == "b"                                   # the default
    assert coll.run("a")["name"] == "a" and coll.run(ids["c"])["name"] == "c"  # by name, by id
    assert coll.run("7")["name"] == "7"                                 # a name wins over an id
    assert coll.run(configured="c")["name"] == "c"                      # the plugin's setting
    assert coll.run(configured="gone")["name"] == "b"                   # ... when it exists
    with pytest.raises(NotFound, match="no clustering run named 'nope'"):
        coll.run("nope")
    coll.conn.execute("UPDATE cluster_runs SET is_default = 0")
    assert coll.run()["name"] in {"c", "7"} and coll.run()["id"] == max(ids.values())  # the newest


def test_labels_best_first(tmp_path):
    db = _runs_db(tmp_path / "l.db")
    with db.conn:
        cid = db.execute("INSERT INTO clusters (run_id, kind, size) VALUES (1, 'cluster', 3)").lastrowid
        for source in ("terms", "other", "clip", "tags", "user", "ollama"):
            db.execute("INSERT INTO cluster_labels (cluster_id, source, label, detail, created) VALUES (?, ?, ?, ?, ?)",
                       [cid, source, source + " label", '{"k": 1}', now()])
    got = ImageCollection(db).labels([cid])[cid]
    assert LABEL_PRECEDENCE == ("user", "ollama", "clip", "tags", "terms")
    assert [l["source"] for l in got] == [*LABEL_PRECEDENCE, "other"]
    assert got[0]["detail"] == {"k": 1}
    order = db.execute(f"SELECT source FROM cluster_labels ORDER BY {label_rank_sql()}").fetchall()
    assert [r[0] for r in order] == [*LABEL_PRECEDENCE, "other"]


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_change_token_sees_every_commit_of_another_connection(tmp_path, mode):
    # Quick commits land within one file-timestamp tick and may keep the file's size: the
    # token must still change every time (stale index status or map arrays otherwise).
    path = str(tmp_path / "t.db")
    writer = sqlite3.connect(path)
    writer.execute(f"PRAGMA journal_mode={mode}")
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("INSERT INTO t VALUES (0)")
    writer.commit()
    reader = dbmod.connect(path, readonly=True).conn
    seen = [change_token(reader)]
    frozen = {p: os.stat(p).st_mtime_ns for p in (path, path + "-wal") if os.path.exists(p)}
    for i in range(1, 40):
        writer.execute("UPDATE t SET x = ?", [i])  # same size, same page
        writer.commit()
        for p, ns in frozen.items():  # as on a filesystem with coarse timestamps (FAT, some NFS)
            os.utime(p, ns=(ns, ns))
        seen.append(change_token(reader))
    assert None not in seen and len(set(seen)) == len(seen)
    writer.close()
    reader.close()


def test_no_token_in_memory_or_inside_a_write(tmp_path):
    assert change_token(sqlite3.connect(":memory:")) is None
    conn = sqlite3.connect(str(tmp_path / "w.db"))
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")  # uncommitted: not in the files yet
    assert conn.in_transaction and change_token(conn) is None


def test_token_cache_computes_once_and_again_after_a_change(tmp_path):
    cache = TokenCache(4)
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return len(calls)

    token = ("db", 1)
    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get(token, "k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == [1, 1, 1, 1] and len(calls) == 1          # concurrent callers shared one computation
    assert cache.get(("db", 2), "k", slow) == 2              # the database changed: computed again
    assert cache.get(("other", 2), "k", lambda: "x") == "x"  # another database: its own entry
    assert cache.get(("db", 2), "k", slow) == 2 and len(calls) == 2
    assert cache.get(None, "k", lambda: "never cached") == "never cached"


def test_vectors_are_the_current_models(tmp_path):
    from datasette_imageclust.store import vectors

    db = dbmod.connect(str(tmp_path / "v.db"))
    migrate(db, "core")
    with db.conn:
        for mid in (1, 2):
            db.execute("INSERT INTO models (id, name, dimensions, sha256, created) VALUES (?, ?, 4, ?, ?)",
                       [mid, f"m{mid}", f"sha{mid}", now()])
        db.execute("INSERT INTO imageclust_meta (key, value) VALUES ('model_id', '2')")
        for iid, mid in ((1, 2), (2, 1), (3, 2)):
            db.execute("INSERT INTO images (id, sha256, bytes, model_id, created) VALUES (?, ?, 1, ?, ?)",
                       [iid, f"s{iid}", mid, now()])
        vectors.ensure_table(db, 4)
        vectors.put(db, [1, 2, 3], np.array([[3, 0, 0, 4], [1, 0, 0, 0], [0, 2, 0, 0]], np.float32))
    coll = ImageCollection(db)
    assert coll.model()["name"] == "m2"
    ids, x = coll.vectors()
    assert ids.tolist() == [1, 3]                              # image 2 was embedded by another model
    assert np.allclose(x, [[0.6, 0, 0, 0.8], [0, 1, 0, 0]])   # L2-normalised
