"""Every option of `cluster`, `label` and `layout` that the README promises does what it
says, on the real tuxpaint vectors (stand-in embedder)."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.cli import cli

FAST = ("--labels", "none", "--no-duplicates", "--no-layout")


@pytest.fixture
def db(tux_db, tmp_path) -> str:
    p = tmp_path / "t.db"
    shutil.copy(tux_db, p)
    return str(p)


def ok(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def listing(db, *args) -> list[dict]:
    return [json.loads(l) for l in ok("clusters", db, "--json", *args).stdout.splitlines()]


def summary(r) -> dict:
    return json.loads(r.stdout.strip().splitlines()[-1])


def sql(db, query, params=()):
    d = dbmod.connect(db, readonly=True)
    try:
        return d.execute(query, params).fetchall()
    finally:
        d.conn.close()


def membership(db, name) -> set[frozenset]:
    rows = sql(db, "SELECT m.cluster_id, m.image_id FROM cluster_members m JOIN cluster_runs r ON r.id = m.run_id "
                   "JOIN clusters c ON c.id = m.cluster_id WHERE r.name = ? AND c.kind = 'cluster'", [name])
    by: dict[int, set] = {}
    for c, i in rows:
        by.setdefault(c, set()).add(i)
    return {frozenset(v) for v in by.values()}


def test_default_and_no_default(db):
    ok("cluster", db, "--name", "a", *FAST)
    ok("cluster", db, "--name", "b", "--default", *FAST)
    ok("cluster", db, "--name", "c", "--no-default", *FAST)
    ok("cluster", db, "--name", "d", *FAST)  # neither flag: not the first run, so not the default
    assert sql(db, "SELECT name FROM cluster_runs WHERE is_default = 1") == [("b",)]
    ok("cluster", db, "--name", "a", "--default", *FAST)
    assert sql(db, "SELECT name FROM cluster_runs WHERE is_default = 1") == [("a",)]
    ok("cluster", db, "--name", "a", "--no-default", *FAST)  # re-running the default without it:
    assert sql(db, "SELECT name FROM cluster_runs WHERE is_default = 1") == [("d",)]  # the newest other run


def test_no_layout_and_layout(db):
    r = ok("cluster", db, "--labels", "none", "--no-duplicates", "--no-layout")
    assert "laying out" not in r.stderr
    assert not sql(db, "SELECT name FROM sqlite_master WHERE name = 'layouts'") or \
        sql(db, "SELECT count(*) FROM layouts") == [(0,)]
    r = ok("cluster", db, "--labels", "none", "--no-duplicates")
    assert "laying out the map" in r.stderr
    assert sql(db, "SELECT count(*) FROM layout_points")[0][0] == 353
    # A run that is not the default does not touch the map.
    before = sql(db, "SELECT created FROM layouts")
    r = ok("cluster", db, "--name", "other", "--labels", "none", "--no-duplicates")
    assert "laying out" not in r.stderr and sql(db, "SELECT created FROM layouts") == before


@pytest.mark.parametrize("min_size", [3, 5])
def test_min_size_and_small(db, min_size):
    unc = summary(ok("cluster", db, "--name", "u", "--min-size", min_size, "--small", "unclustered", "--json", *FAST))
    mer = summary(ok("cluster", db, "--name", "m", "--min-size", min_size, "--small", "merge", "--json", *FAST))
    for name in ("u", "m"):
        sizes = [c["size"] for c in listing(db, "--name", name) if c["kind"] == "cluster"]
        assert sizes and min(sizes) >= min_size and max(sizes) <= 10, (name, sizes)
        assert sum(c["size"] for c in listing(db, "--name", name)) == 353
    # Undersized clusters' images join a cluster with room instead of the unclustered group.
    assert unc["info"]["undersized_images"] > 0
    assert mer["info"]["merged_into_nearest"] > 0
    assert mer["unclustered"] < unc["unclustered"]
    params = {n: json.loads(p) for n, p in sql(db, "SELECT name, params FROM cluster_runs")}
    assert params["m"]["small"] == "merge" and params["u"]["small"] == "unclustered"
    assert params["m"]["min_size"] == min_size


def test_representatives(db):
    ok("cluster", db, "--representatives", "5", *FAST)
    cl = [c for c in listing(db) if c["kind"] == "cluster"]
    assert all(len(c["representatives"]) == min(5, c["size"]) for c in cl)
    assert any(len(c["representatives"]) == 5 for c in cl)
    # The representatives are the members nearest the centroid, in order.
    assert all(c["representatives"] == c["members"][:len(c["representatives"])] for c in cl)
    assert sql(db, "SELECT representatives FROM cluster_runs") == [(5,)]


def test_knn_changes_the_smoothing(db):
    ok("cluster", db, "--name", "k0", "--knn", "0", *FAST)
    ok("cluster", db, "--name", "k20", "--knn", "20", *FAST)
    ok("cluster", db, "--name", "auto", *FAST)
    params = {n: json.loads(p) for n, p in sql(db, "SELECT name, params FROM cluster_runs")}
    assert params["k0"]["knn_k"] == 0 and params["k20"]["knn_k"] == 20 and "knn_k" not in params["auto"]
    assert membership(db, "k0") != membership(db, "k20")
    assert membership(db, "auto") == membership(db, "k20")  # 20 is the default without K


def test_seed(db):
    args = ("--method", "kmeans", "--clusters", "16", *FAST)
    ok("cluster", db, "--name", "s1", "--seed", "1", *args)
    ok("cluster", db, "--name", "s1again", "--seed", "1", *args)
    ok("cluster", db, "--name", "s2", "--seed", "2", *args)
    assert membership(db, "s1") == membership(db, "s1again")
    assert membership(db, "s1") != membership(db, "s2")
    params = {n: json.loads(p)["seed"] for n, p in sql(db, "SELECT name, params FROM cluster_runs")}
    assert params == {"s1": 1, "s1again": 1, "s2": 2}


def test_label_set_and_removed(db):
    ok("cluster", db, "--labels", "terms", *FAST[2:])
    target = next(c for c in listing(db) if c["kind"] == "cluster" and c["labels"])
    computed = target["label"]
    r = ok("label", db, target["id"], "my picks")
    assert "label set" in r.stderr
    again = {c["id"]: c for c in listing(db)}[target["id"]]
    assert again["label"] == "my picks" and again["labels"][0]["source"] == "user"
    r = ok("label", db, target["id"], "")
    assert "removed" in r.stderr
    after = {c["id"]: c for c in listing(db)}[target["id"]]
    assert after["label"] == computed and all(l["source"] != "user" for l in after["labels"])
    assert sql(db, "SELECT count(*) FROM cluster_labels WHERE source = 'user'") == [(0,)]


def test_layout_default_format_and_sheet_size(db):
    ok("cluster", db, *FAST)
    ok("layout", db, "--method", "tsne")
    ok("layout", db, "--name", "second", "--method", "tsne", "--format", "jpeg", "--sheet-size", "1024",
       "--levels", "16,64")
    assert sql(db, "SELECT name FROM layouts WHERE is_default = 1") == [("default",)]
    # The atlas is rebuilt by the last layout: JPEG sheets of at most 1024 px.
    current = "build = (SELECT value FROM imageclust_meta WHERE key = 'atlas_build')"
    sheets = sql(db, f"SELECT format, width, height, data FROM atlas_sheets WHERE {current}")
    assert sheets and all(f == "jpeg" and w <= 1024 and h <= 1024 and d[:3] == b"\xff\xd8\xff" for f, w, h, d in sheets)
    assert any(w == 1024 for _, w, _, _ in sheets)
    meta = dict(sql(db, "SELECT key, value FROM imageclust_meta WHERE key LIKE 'atlas_%'"))
    assert meta["atlas_sheet_size"] == "1024" and meta["atlas_levels"] == "16,64"
    # 353 cells of 64 px: 256 fit a 1024-px sheet, so two sheets (one with 2048 px: one).
    assert sql(db, f"SELECT count(*) FROM atlas_sheets WHERE level = 64 AND {current}") == [(2,)]
    ok("layout", db, "--name", "second", "--method", "tsne", "--default", "--no-atlas")
    assert sql(db, "SELECT name FROM layouts WHERE is_default = 1") == [("second",)]
    ok("layout", db, "--name", "third", "--method", "tsne", "--not-default", "--no-atlas")
    assert sql(db, "SELECT name FROM layouts WHERE is_default = 1") == [("second",)]


def test_ollama_concurrency_option(db):
    from test_labels import FakeOllama  # the local Ollama stand-in
    import threading

    srv = FakeOllama(["together"] * 3, together=3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = ok("cluster", db, "--clusters", "6", "--labels", "ollama", "--ollama-host", srv.url,
               "--ollama-concurrency", "3", "--ollama-timeout", "30", *FAST[2:])
    finally:
        srv.shutdown()
        srv.server_close()
    assert "(3 at a time)" in r.stderr
    assert srv.max_active == 3 and len(srv.requests) == 6
