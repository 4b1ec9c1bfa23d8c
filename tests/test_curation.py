"""Curation (analysis/curation.py) on real databases: the 353 tuxpaint stamps embedded by
the real stand-in model and clustered by `imageclust cluster`. Every operation, the undo of
each, the user's mistakes, concurrent writers, and re-applying the edits after re-runs."""
from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from datasette_imageclust import pipeline
from datasette_imageclust.analysis import curation
from datasette_imageclust.store import connection
from datasette_imageclust.store.collection import ImageCollection

FAST = dict(labels=["terms"], duplicates=False, layout=False)


@pytest.fixture(scope="module")
def clustered(tux_db, tmp_path_factory) -> str:
    """tux_db with a ward run 'default' and a k-means run 'k8' (no unclustered group)."""
    path = tmp_path_factory.mktemp("curation") / "c.db"
    shutil.copy(tux_db, path)
    db = connection.connect(path)
    pipeline.cluster_images(db, **FAST)
    pipeline.cluster_images(db, name="k8", method="kmeans", n_clusters=8, make_default=False, **FAST)
    connection.close(db)
    return str(path)


@pytest.fixture
def db(clustered, tmp_path):
    p = tmp_path / "c.db"
    shutil.copy(clustered, p)
    d = connection.connect(p)
    yield d
    connection.close(d)


def run_id(db, name="default") -> int:
    return db.execute("SELECT id FROM cluster_runs WHERE name = ?", [name]).fetchone()[0]


def clusters(db, name="default") -> dict[int, list[int]]:
    """cluster id -> member image ids by rank."""
    out: dict[int, list[int]] = {}
    for cid, iid in db.execute("SELECT cluster_id, image_id FROM cluster_members WHERE run_id = ? "
                               "ORDER BY cluster_id, rank", [run_id(db, name)]):
        out.setdefault(cid, []).append(iid)
    return out


def real(db, name="default") -> list[int]:
    """The run's real clusters, largest first."""
    return [r[0] for r in db.execute("SELECT id FROM clusters WHERE run_id = ? AND kind = 'cluster' "
                                     "ORDER BY size DESC, id", [run_id(db, name)])]


def dump(db) -> dict:
    """Everything a run's pages show, to compare before and after."""
    tables = {"clusters": "SELECT * FROM clusters ORDER BY id",
              "cluster_members": "SELECT * FROM cluster_members ORDER BY run_id, image_id",
              "cluster_labels": "SELECT cluster_id, source, label, detail FROM cluster_labels ORDER BY 1, 2"}
    if db["cluster_notes"].exists():
        tables["cluster_notes"] = "SELECT * FROM cluster_notes ORDER BY cluster_id"
    out = {k: [tuple(r) for r in db.execute(q)] for k, q in tables.items()}
    out.setdefault("cluster_notes", [])
    return out


def consistent(db, name="default") -> None:
    """Sizes are member counts, ranks run 1..n by distance, no cluster is empty, and the
    run still holds every image it had, once."""
    rid = run_id(db, name)
    n_images = db.execute("SELECT n_images FROM cluster_runs WHERE id = ?", [rid]).fetchone()[0]
    members = db.execute("SELECT image_id FROM cluster_members WHERE run_id = ?", [rid]).fetchall()
    assert len(members) == len({m[0] for m in members}) == n_images
    for cid, size, kind in db.execute("SELECT id, size, kind FROM clusters WHERE run_id = ?", [rid]).fetchall():
        rows = db.execute("SELECT rank, distance FROM cluster_members WHERE cluster_id = ? ORDER BY rank",
                          [cid]).fetchall()
        assert size == len(rows) > 0, (cid, size, len(rows))
        assert [r[0] for r in rows] == list(range(1, size + 1)), cid
        assert [r[1] for r in rows] == sorted(r[1] for r in rows), cid


def test_label_note_review_and_their_undo(db):
    before = dump(db)
    c = real(db)[0]
    r = curation.label(db, c, "  my birds ")
    assert (r.op, r.clusters, r.images, r.run) == ("label", [c], 0, "default")
    assert db.execute("SELECT label FROM clusters WHERE id = ?", [c]).fetchone()[0] == "my birds"
    curation.note(db, c, "mixed with fish?", actor="alice")
    curation.review(db, c)
    state = curation.cluster_state(db, [c, real(db)[1]])
    assert state[c]["note"] == "mixed with fish?" and state[c]["note_by"] == "alice"
    assert state[c]["reviewed"] is True and state[c]["reviewed_by"].startswith("cli:")
    assert state[real(db)[1]] == {"note": None, "note_by": None, "note_at": None, "reviewed": False,
                                  "reviewed_by": None, "reviewed_at": None}
    curation.review(db, c, False)
    assert curation.cluster_state(db, [c])[c]["reviewed"] is False
    undone = [curation.undo(db).undid for _ in range(4)]
    assert undone == ["review", "review", "note", "label"]
    assert dump(db) == before
    with pytest.raises(curation.CurationError, match="nothing to undo in run 'default'"):
        curation.undo(db)
    ops = curation.operations(db)
    assert [o["op"] for o in ops] == ["label", "note", "review", "review"] and all(o["undone"] for o in ops)


def user_label(db, cid) -> tuple | None:
    row = db.execute("SELECT label, detail FROM cluster_labels WHERE cluster_id = ? AND source = 'user'",
                     [cid]).fetchone()
    return None if row is None else tuple(row)


def test_undoing_a_label_that_replaced_a_user_label_restores_its_text_and_detail(db):
    # The detail says which operation made a user label: a re-run deletes and rebuilds
    # exactly those, so an undo must put back the replaced label's detail too.
    c = real(db)[0]
    assert (curation.label(db, c, "birds").op_id, curation.label(db, c, "fish").op_id) == (1, 2)
    assert user_label(db, c) == ("fish", '{"op": 2}')
    assert curation.undo(db).undid == "label"
    assert user_label(db, c) == ("birds", '{"op": 1}')
    assert db.execute("SELECT label FROM clusters WHERE id = ?", [c]).fetchone()[0] == "birds"
    # A user label no operation made (set directly, with a detail of its own) comes back as it was.
    from datasette_imageclust.analysis.clusterstore import set_user_label

    d = real(db)[1]
    set_user_label(db, d, "by hand", {"source": "import"})
    curation.label(db, d, "renamed")
    assert user_label(db, d) == ("renamed", '{"op": 3}')
    curation.undo(db)
    assert user_label(db, d) == ("by hand", '{"source": "import"}')
    set_user_label(db, d, "no detail")
    curation.label(db, d, "renamed again")
    curation.undo(db)
    assert user_label(db, d) == ("no detail", None)


def test_move_keeps_the_run_consistent_and_ranks_by_the_new_centroid(db):
    before = dump(db)
    a, b = real(db)[:2]
    rep = clusters(db)[a][0]  # a representative (rank 1)
    r = curation.move(db, [rep], b)
    assert (r.op, r.images, r.clusters) == ("move", 1, [b, a])
    consistent(db)
    assert rep in clusters(db)[b] and rep not in clusters(db)[a]
    # its distance is the cosine distance of its vector to b's (kept) centroid
    ids, x = ImageCollection(db).vectors()
    v = x[list(ids).index(rep)]
    cent = np.frombuffer(db.execute("SELECT centroid FROM clusters WHERE id = ?", [b]).fetchone()[0], np.float32)
    dist = db.execute("SELECT distance FROM cluster_members WHERE image_id = ? AND run_id = ?",
                      [rep, run_id(db)]).fetchone()[0]
    assert dist == pytest.approx(1 - float(v @ cent), abs=1e-5)
    curation.undo(db)
    assert dump(db) == before


def test_move_to_unclustered_makes_the_group_when_the_run_has_none(db):
    before = dump(db)
    assert not db.execute("SELECT 1 FROM clusters WHERE run_id = ? AND kind = 'unclustered'",
                          [run_id(db, "k8")]).fetchone()
    c = real(db, "k8")[0]
    imgs = clusters(db, "k8")[c][:3]
    r = curation.move(db, imgs, None, run="k8")
    un = r.clusters[0]
    assert db.execute("SELECT kind, label FROM clusters WHERE id = ?", [un]).fetchone() == \
        ("unclustered", "unclustered (3 images)")
    assert sorted(clusters(db, "k8")[un]) == sorted(imgs)
    consistent(db, "k8")
    curation.undo(db, run="k8")
    assert dump(db) == before


def test_a_cluster_emptied_by_a_move_goes_and_comes_back_on_undo(db):
    curation.note(db, real(db)[-1], "small one")
    before = dump(db)
    small, big = real(db)[-1], real(db)[0]
    curation.move(db, clusters(db)[small], big)
    assert small not in clusters(db)
    assert not db.execute("SELECT 1 FROM clusters WHERE id = ?", [small]).fetchone()
    consistent(db)
    curation.undo(db)
    assert dump(db) == before


def test_merge_and_its_undo(db):
    curation.label(db, real(db)[1], "second")
    before = dump(db)
    a, b, c = real(db)[:3]
    union = set(clusters(db)[a]) | set(clusters(db)[b]) | set(clusters(db)[c])
    moving = len(clusters(db)[b]) + len(clusters(db)[c])
    r = curation.merge(db, [a, b, c])
    assert (r.op, r.clusters, r.images) == ("merge", [a, b, c], moving)
    assert set(clusters(db)[a]) == union and b not in clusters(db) and c not in clusters(db)
    consistent(db)
    curation.undo(db)
    assert dump(db) == before  # b's label came back with it


def test_split_and_its_undo(db):
    before = dump(db)
    a, b = real(db)[:2]
    take = clusters(db)[a][:2] + clusters(db)[b][-1:]
    r = curation.split(db, take, label="odd ones")
    new = r.clusters[0]
    assert r.images == 3 and set(r.clusters) == {new, a, b}
    assert sorted(clusters(db)[new]) == sorted(take)
    assert db.execute("SELECT label FROM clusters WHERE id = ?", [new]).fetchone()[0] == "odd ones"
    assert db.execute("SELECT centroid IS NOT NULL FROM clusters WHERE id = ?", [new]).fetchone()[0] == 1
    consistent(db)
    curation.undo(db)
    assert dump(db) == before


def test_mistakes_are_refused_and_write_nothing(db):
    before = dump(db)
    a = real(db)[0]
    other = real(db, "k8")[0]
    un = db.execute("SELECT id FROM clusters WHERE run_id = ? AND kind = 'unclustered'", [run_id(db)]).fetchone()
    outside = db.execute("SELECT max(id) + 1 FROM images").fetchone()[0]
    cases = [
        (lambda: curation.label(db, 999999, "x"), "no cluster with id 999999 in run 'default'"),
        (lambda: curation.label(db, other, "x"), f"cluster {other} belongs to run 'k8', not 'default'"),
        (lambda: curation.move(db, [outside], a), f"image {outside} is not in run 'default'"),
        (lambda: curation.move(db, clusters(db)[a][:2], a), "already in cluster"),
        (lambda: curation.move(db, [], a), "no image ids"),
        (lambda: curation.merge(db, [a, a]), "two or more different clusters"),
        (lambda: curation.split(db, [outside, outside + 1]), "2 images are not in run 'default'"),
        (lambda: curation.note(db, a, "x", run="nope"), "no clustering run named 'nope'"),
        (lambda: curation.undo(db), "nothing to undo"),
    ]
    if un:
        cases.append((lambda: curation.merge(db, [a, un[0]]), "is the unclustered group"))
    for call, message in cases:
        with pytest.raises(curation.CurationError) as e:
            call()
        assert message in str(e.value) and "\n" not in str(e.value)
    assert dump(db) == before
    assert "curation" not in {r[0] for r in db.execute("SELECT component FROM schema_versions")}  # not even tables


def test_concurrent_writers_serialise(db, tmp_path):
    """Two threads, each on its own connection, move images and relabel at once: every
    operation is recorded once and the run stays consistent."""
    path = db.execute("PRAGMA database_list").fetchone()[2]
    curation.label(db, real(db)[0], "start")  # the component's tables exist before the race
    a, b = real(db)[:2]
    movers = {a: clusters(db)[b][:6], b: clusters(db)[a][1:7]}
    errors = []

    def work(target, images):
        conn = connection.connect(path)
        try:
            for i in images:
                curation.move(conn, [i], target, actor=f"t{target}")
                curation.label(conn, target, f"label {i}", actor=f"t{target}")
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            connection.close(conn)

    threads = [threading.Thread(target=work, args=item) for item in movers.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ops = curation.operations(db)
    assert len(ops) == 1 + 2 * 12 and [o["id"] for o in ops] == sorted(o["id"] for o in ops)
    for target, images in movers.items():
        assert set(images) <= set(clusters(db)[target])
        mine = [o for o in ops if o["actor"] == f"t{target}"]
        assert [o["args"]["images"][0] for o in mine if o["op"] == "move"] == images
    consistent(db)


def test_two_first_edits_at_once_make_the_tables_once(clustered, tmp_path):
    """Two writers' first edits at once: both bring the component's tables in; the one that
    waited for the other finds them made (it used to fail: 'table cluster_ops already exists')."""
    from datasette_imageclust.store.schema import migrate

    p = tmp_path / "m.db"
    shutil.copy(clustered, p)
    first, second = connection.connect(p), connection.connect(p)
    first.execute("BEGIN IMMEDIATE")  # the first writer holds the lock...
    failed = []

    def other():
        try:
            migrate(second, "curation")  # ...while the second reads the versions and waits
        except Exception as e:  # reported below
            failed.append(e)

    t = threading.Thread(target=other)
    t.start()
    time.sleep(1.0)
    migrate(first, "curation")  # the first makes the tables and commits
    t.join()
    assert not failed, failed
    assert curation.label(second, real(second)[0], "x").op_id == 1
    connection.close(first)
    connection.close(second)


def test_deleting_a_run_deletes_its_edits(db):
    curation.label(db, real(db, "k8")[0], "x", run="k8")
    curation.label(db, real(db)[0], "y")
    from datasette_imageclust.analysis.clusterstore import delete_run

    delete_run(db, "k8")
    assert [o["op"] for o in curation.operations(db)] == ["label"]
    assert db.execute("SELECT count(*) FROM cluster_ops").fetchone()[0] == 1


# --- re-runs ---------------------------------------------------------------------------------


def holder(db, images, name="default") -> int:
    """The cluster holding most of ``images``."""
    where = {i: c for c, ms in clusters(db, name).items() for i in ms}
    counts: dict[int, int] = {}
    for i in images:
        counts[where[i]] = counts.get(where[i], 0) + 1
    return max(counts, key=counts.get)


def edit(db):
    """Rename, move, merge, note, review; returns what to check afterwards."""
    big = real(db)
    a, b, c, d = big[0], big[1], big[2], big[3]
    ca, cb, cc, cd = (clusters(db)[x] for x in (a, b, c, d))
    curation.label(db, a, "renamed")
    moved = cb[:2]
    curation.move(db, moved, c)
    curation.merge(db, [d, big[4]])
    curation.note(db, c, "has two of b")
    curation.review(db, a)
    return {"label": ca, "moved": moved, "target": cc, "merged": (cd, clusters(db)[d]), "noted": cc}


def check_edits_hold(db, want):
    a = holder(db, want["label"])
    assert db.execute("SELECT label FROM clusters WHERE id = ?", [a]).fetchone()[0] == "renamed"
    assert curation.cluster_state(db, [a])[a]["reviewed"] is True
    target = holder(db, want["target"])
    assert {holder(db, [i]) for i in want["moved"]} == {target}
    assert curation.cluster_state(db, [target])[target]["note"] == "has two of b"
    first, merged = want["merged"]
    assert set(merged) <= set(clusters(db)[holder(db, first)])  # the two clusters are still one
    consistent(db)


@pytest.mark.parametrize("params", [{}, {"max_size": 12}], ids=["same-params", "other-params"])
def test_edits_hold_after_a_re_run(db, params):
    n_before = len(real(db))
    want = edit(db)
    summary = pipeline.cluster_images(db, **FAST, **params)
    assert (summary.clusters == n_before) == (not params)  # other parameters: another clustering
    assert summary.edits == {"applied": 5, "partial": [], "stale": []}
    check_edits_hold(db, want)
    assert [o["status"] for o in curation.operations(db)] == ["applied"] * 5
    # undo still works on what the re-run re-applied: the review goes
    a = holder(db, want["label"])
    assert curation.undo(db).undid == "review" and curation.cluster_state(db, [a])[a]["reviewed"] is False
    consistent(db)


def test_an_edit_whose_images_partly_left_applies_to_the_rest(db):
    from datasette_imageclust.ingest.tidy import delete_orphans

    a, b = real(db)[:2]
    members_a = clusters(db)[a]
    imgs = clusters(db)[b][:3]
    curation.move(db, imgs, a)
    with db.conn:  # the image's only file is gone: what `load --prune` does
        db.execute("DELETE FROM files WHERE image_id = ?", [imgs[0]])
        delete_orphans(db)
    summary = pipeline.cluster_images(db, **FAST)
    assert summary.edits["partial"] == [{"op_id": 1, "op": "move",
                                         "reason": "1 of its 3 images is no longer in the run"}]
    assert summary.edits["applied"] == 1 and summary.edits["stale"] == []
    assert {holder(db, [i]) for i in imgs[1:]} == {holder(db, members_a)}
    assert curation.operations(db)[0]["status"] == "partial"
    consistent(db)


def test_an_edit_that_no_longer_applies_is_kept_and_reported(db):
    want = edit(db)
    small = real(db)[-1]
    curation.label(db, small, "the small one")
    lines = []
    summary = pipeline.cluster_images(db, method="kmeans", n_clusters=2, on_status=lines.append, **FAST)
    stale = summary.edits["stale"]
    assert stale and all(s["reason"] for s in stale)
    assert any(s["op"] == "label" and "no longer exists" in s["reason"] for s in stale)
    line = next(l for l in lines if "re-applied" in l)
    assert f"{summary.edits['applied']} edits re-applied, {len(stale)} no longer apply: #" in line
    ops = curation.operations(db)
    assert len(ops) == 6  # nothing dropped
    assert {o["id"] for o in ops if o["status"] == "stale"} == {s["op_id"] for s in stale}
    assert all(o["message"] for o in ops if o["status"] == "stale")
    # back to the first clustering: every edit applies again
    summary = pipeline.cluster_images(db, **FAST)
    assert summary.edits["stale"] == [] and summary.edits["applied"] == 6
    check_edits_hold(db, want)
