"""`imageclust cluster / clusters / label / duplicates` on real databases."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli


@pytest.fixture
def db(tux_db, tmp_path):
    p = tmp_path / "t.db"
    shutil.copy(tux_db, p)
    return str(p)


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return r


def lines(out):
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def test_cluster_store_list_and_stable_user_label(db):
    r = run("cluster", db, "--labels", "terms,clip", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["clusters"] > 20
    assert "no text tower" in summary["labels"]["clip"]  # the stand-in: skipped, not a crash
    cl = lines(run("clusters", db, "--json").stdout)
    real = [c for c in cl if c["kind"] == "cluster"]
    assert all({"id", "label", "labels", "size", "representatives", "members"} <= set(c) for c in cl)
    assert all(len(c["representatives"]) == 3 and c["size"] == len(c["members"]) for c in real)
    assert sum(c["size"] for c in cl) == 353
    assert any(c["labels"] and c["labels"][0]["source"] == "terms" for c in real)
    un = [c for c in cl if c["kind"] == "unclustered"]
    assert not un or "unclustered" in un[0]["label"]
    target = real[0]
    assert run("label", db, target["id"], "my favourites").exit_code == 0
    # same parameters again: clusters match, ids and the person's label survive
    assert run("cluster", db, "--labels", "terms").exit_code == 0
    again = {c["id"]: c for c in lines(run("clusters", db, "--json").stdout)}
    assert again[target["id"]]["label"] == "my favourites"
    assert again[target["id"]]["labels"][0]["source"] == "user"
    assert set(again[target["id"]]["members"]) == set(target["members"])


def test_several_runs_and_default(db):
    assert run("cluster", db, "--labels", "none", "--no-duplicates").exit_code == 0
    r = run("cluster", db, "--name", "k16", "--clusters", "16", "--labels", "none", "--no-duplicates")
    assert r.exit_code == 0, r.output
    runs = lines(run("clusters", db, "--runs", "--json").stdout)
    assert [(x["name"], x["is_default"]) for x in runs] == [("default", True), ("k16", False)]
    k16 = lines(run("clusters", db, "--name", "k16", "--json").stdout)
    assert len(k16) == 16 and sum(c["size"] for c in k16) == 353
    assert run("clusters", db, "--name", "k16", "--set-default").exit_code == 0
    assert len(lines(run("clusters", db, "--json").stdout)) == 16
    assert run("clusters", db, "--name", "k16", "--delete").exit_code == 0
    assert [x["name"] for x in lines(run("clusters", db, "--runs", "--json").stdout)] == ["default"]


@pytest.mark.parametrize("args, message", [
    (["--clusters", "0"], "--clusters"),
    (["--max-size", "1"], "--max-size"),
    (["--labels", "magic"], "unknown label source"),
    (["--clusters", "5", "--max-size", "10"], "cannot hold"),
    (["--method", "hdbscan", "--clusters", "5"], "hdbscan"),
])
def test_bad_flags(db, args, message):
    r = run("cluster", db, *args)
    assert r.exit_code == 1 and message in r.stderr and "Traceback" not in r.output
    assert r.stdout == ""


def test_errors_for_unknown_run_and_cluster(db):
    r = run("clusters", db)
    assert r.exit_code == 1 and "imageclust cluster" in r.stderr
    assert run("cluster", db, "--labels", "none", "--no-duplicates").exit_code == 0
    for args, message in [(("clusters", db, "--name", "nope"), "no clustering run named"),
                          (("clusters", db, "--set-default"), "need --name"),
                          (("label", db, "999999", "x"), "no cluster with id")]:
        r = run(*args)
        assert r.exit_code == 1 and message in r.stderr and r.stdout == "", (args, r.exit_code, r.output)
    r = run("label", db, "abc", "x")  # not an id: a usage error
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_hdbscan_and_kmeans_runs(db):
    for m in ("hdbscan", "kmeans"):
        r = run("cluster", db, "--method", m, "--name", m, "--labels", "none", "--no-duplicates", "--json")
        assert r.exit_code == 0, r.output
        cl = lines(run("clusters", db, "--name", m, "--json").stdout)
        assert sum(c["size"] for c in cl) == 353
        if m == "kmeans":
            assert max(c["size"] for c in cl if c["kind"] == "cluster") <= 10


def test_ids_follow_matching_clusters(tmp_path):
    """Re-running a name keeps the id of every cluster that still matches (Jaccard >= 0.5),
    drops vanished clusters with their labels, and gives new clusters new ids."""
    import numpy as np

    from datasette_imageclust.analysis import clusterstore
    from datasette_imageclust.store.connection import connect
    from datasette_imageclust.store.schema import migrate

    db = connect(tmp_path / "s.db")
    migrate(db, "core")
    with db.conn:
        for i in range(1, 13):
            db.execute("INSERT INTO images (id, sha256, bytes, created) VALUES (?, ?, 1, 'x')", [i, str(i)])
    ids = np.arange(1, 13)
    x = np.random.default_rng(0).standard_normal((12, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    first = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, -1])
    clusterstore.store_run(db, "r", "ward", {}, ids, x, first, model_id=None, seconds=0)
    cid = {k: db.execute("SELECT cluster_id FROM cluster_members WHERE image_id = ?", [i]).fetchone()[0]
           for k, i in ((0, 1), (1, 5), (2, 9), (-1, 12))}
    for k, text in ((0, "zero"), (2, "two")):
        clusterstore.set_user_label(db, cid[k], text)
    # cluster 0 loses one member (3/4 overlap: kept), cluster 1 grows (4/6: kept), cluster 2
    # falls apart (its rest overlaps it by 1/4: a new cluster), the unclustered group stays
    second = np.array([0, 0, 0, -1, 1, 1, 1, 1, 1, 1, 2, 2])
    clusterstore.store_run(db, "r", "ward", {}, ids, x, second, model_id=None, seconds=0)
    now = {k: db.execute("SELECT cluster_id FROM cluster_members WHERE image_id = ?", [i]).fetchone()[0]
           for k, i in ((0, 1), (1, 5), (2, 11), (-1, 4))}
    assert now[0] == cid[0] and now[1] == cid[1] and now[-1] == cid[-1]
    assert now[2] != cid[2]
    assert db.execute("SELECT label FROM clusters WHERE id = ?", [cid[0]]).fetchone()[0] == "zero"
    assert db.execute("SELECT COUNT(*) FROM cluster_labels WHERE label = 'two'").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM clusters WHERE id = ?", [cid[2]]).fetchone()[0] == 0
    ranks = db.execute("SELECT rank FROM cluster_members WHERE cluster_id = ? ORDER BY rank", [cid[1]]).fetchall()
    assert [r[0] for r in ranks] == [1, 2, 3, 4, 5, 6]
    assert db.execute("SELECT label FROM clusters WHERE kind = 'unclustered'").fetchone()[0] == "unclustered (1 image)"


def test_prune_after_clustering(tmp_path, tux_dir, stand_in_model):
    """`load --prune` can delete images that are in clusters and duplicate groups."""
    from datasette_imageclust.store.connection import connect
    from datasette_imageclust.pipeline import load

    src = tmp_path / "imgs"
    src.mkdir()
    files = sorted((tux_dir / "birds").iterdir())[:12]
    for f in files:
        shutil.copy(f, src / f.name)
    shutil.copy(files[0], src / "copy.jpg")
    p = str(tmp_path / "p.db")
    load(p, [str(src)], stand_in_model)
    assert run("cluster", p, "--labels", "terms").exit_code == 0
    db = connect(p)
    with db.conn:  # a stored near-duplicate group holding the image we will delete
        gid = db["duplicate_groups"].insert({"kind": "near", "size": 2}).last_pk
        a, b = [r[0] for r in db.execute(
            "SELECT image_id FROM files GROUP BY image_id HAVING COUNT(*) = 1 ORDER BY image_id LIMIT 2")]
        db.execute("INSERT INTO duplicate_members VALUES (?, ?), (?, ?)", [gid, a, gid, b])
        db.execute("INSERT INTO duplicate_pairs (group_id, image_a, image_b) VALUES (?, ?, ?)", [gid, a, b])
    gone = db.execute("SELECT path FROM files WHERE image_id = ? ORDER BY path", [b]).fetchone()[0]
    db.conn.close()
    os.remove(gone)
    s = load(p, [str(src)], stand_in_model, prune=True)
    assert s.pruned == 1
    cl = lines(run("clusters", p, "--json").stdout)
    assert sum(c["size"] for c in cl) == 11
    assert gone not in {m for c in cl for m in c["members"]}
    db = connect(p)
    assert db.execute("SELECT size FROM duplicate_groups WHERE id = ?", [gid]).fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM duplicate_pairs").fetchone()[0] == 0
