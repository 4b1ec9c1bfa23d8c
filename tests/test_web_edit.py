"""The curation write API over HTTP (web/editapi.py, web/writes.py): a real Datasette
(in-process client) on real clustered databases, under Datasette 0.65 and 1.0 (.ci/run).

Every write route as anonymous, as an actor without the permission, as root, as an
actor an ``allow`` block grants it, with an API token; against an immutable database and
a read-only file (403, the file's bytes unchanged); malformed bodies (400, never 500);
CSRF as Datasette handles it; concurrent edits."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

import plugin_dbs
from datasette.app import Datasette

pytestmark = pytest.mark.asyncio

DS1 = not __import__("datasette").__version__.startswith("0.")
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def template(tux_db, tmp_path_factory) -> str:
    return plugin_dbs.clustered(tux_db, tmp_path_factory.mktemp("edit") / "template.db")


@pytest.fixture
def photos(template, tmp_path) -> str:
    """A fresh copy of the clustered database for one test to write."""
    path = tmp_path / "photos.db"
    shutil.copy(template, path)
    return str(path)


def make_ds(paths: list[str], *, permissions: dict | None = None, databases: dict | None = None, **kw) -> Datasette:
    """A Datasette with this configuration: 1.0's ``config``, 0.65's ``metadata``. (Decided
    by version: under pytest, 1.0's Datasette.__init__ is wrapped and shows no signature.)"""
    conf: dict = {}
    if permissions:
        conf["permissions"] = permissions
    if databases:
        conf["databases"] = databases
    return Datasette(paths, **({"config": conf} if DS1 else {"metadata": conf}), **kw)


def ds_for(path: str, *, immutable: bool = False, root: bool = True, **kw):
    ds = make_ds([] if immutable else [path], immutables=[path] if immutable else None, **kw)
    ds.root_enabled = root  # 1.0: what `datasette --root` sets (0.65 has no such switch)
    return ds


def cookie(ds, actor_id: str | None) -> dict:
    return {} if actor_id is None else {"ds_actor": ds.sign({"a": {"id": actor_id}}, "actor")}


async def post(ds, op: str, body, actor: str | None = "root", headers: dict | None = None, db: str = "photos"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await ds.client.post(f"/{db}/-/imageclust/edit/{op}", content=data,
                                headers=JSON if headers is None else headers, cookies=cookie(ds, actor))


def q(path: str, sql: str, params=()) -> list:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


def clusters(path: str, run: str = "kmeans16") -> list[int]:
    """The run's clusters, biggest first."""
    return [r[0] for r in q(path, "SELECT c.id FROM clusters c JOIN cluster_runs r ON r.id = c.run_id "
                                  "WHERE r.name = ? AND c.kind = 'cluster' ORDER BY c.size DESC, c.id", [run])]


def members(path: str, cluster_id: int) -> list[int]:
    return [r[0] for r in q(path, "SELECT image_id FROM cluster_members WHERE cluster_id = ? ORDER BY rank",
                            [cluster_id])]


def user_label(path: str, cluster_id: int):
    rows = q(path, "SELECT label FROM cluster_labels WHERE cluster_id = ? AND source = 'user'", [cluster_id])
    return rows[0][0] if rows else None


def bodies(path: str) -> dict:
    """A valid body for every operation."""
    c = clusters(path)
    return {"label": {"cluster": c[2], "label": "renamed"}, "note": {"cluster": c[2], "note": "two themes"},
            "review": {"cluster": c[2], "reviewed": True}, "move": {"images": members(path, c[3])[:2], "to": c[2]},
            "merge": {"clusters": [c[2], c[3]]}, "split": {"images": members(path, c[2])[:3], "label": "new"},
            "undo": {}}


def file_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


OPS = ("label", "note", "review", "move", "merge", "split", "undo")


# --- who may write ----------------------------------------------------------------------


@pytest.mark.parametrize("who", [None, "alice"])
async def test_anonymous_and_unpermitted_get_403_and_change_nothing(photos, who):
    ds = ds_for(photos)
    before = file_bytes(photos)
    for op, body in bodies(photos).items():
        r = await post(ds, op, body, actor=who)
        assert r.status_code == 403, (op, r.status_code, r.text)
        assert r.json()["ok"] is False
        assert "imageclust-edit" in r.json()["errors"][0]
    assert file_bytes(photos) == before


async def test_root_makes_every_edit_and_each_is_an_operation(photos):
    ds = ds_for(photos)
    c = clusters(photos)
    moved = members(photos, c[3])[:2]
    steps = [("label", {"cluster": c[2], "label": "moths"}), ("note", {"cluster": c[2], "note": "two themes?"}),
             ("review", {"cluster": c[2], "reviewed": True}), ("move", {"images": moved, "to": c[2]}),
             ("merge", {"clusters": [c[4], c[5]]}), ("split", {"images": members(photos, c[6])[:3], "label": "x"})]
    results = {}
    for op, body in steps:
        r = await post(ds, op, body)
        assert r.status_code == 200, (op, r.text)
        assert r.json()["ok"] is True and r.json()["operation"]["op"] == op
        results[op] = r.json()["operation"]
    assert user_label(photos, c[2]) == "moths"
    assert set(moved) <= set(members(photos, c[2]))
    assert q(photos, "SELECT note, reviewed, reviewed_by FROM cluster_notes WHERE cluster_id = ?", [c[2]]) == \
        [("two themes?", 1, "root")]
    assert not q(photos, "SELECT 1 FROM clusters WHERE id = ?", [c[5]])  # merged into c[4]
    new = results["split"]["clusters"][0]
    assert len(members(photos, new)) == 3 and user_label(photos, new) == "x"
    # Undo takes back the split, then the merge.
    r = await post(ds, "undo", {})
    assert r.status_code == 200 and r.json()["operation"]["undid"] == "split"
    assert not q(photos, "SELECT 1 FROM clusters WHERE id = ?", [new])
    # The operations, oldest first, by root, readable by anyone who may view the tables.
    r = await ds.client.get("/photos/-/imageclust/operations.json")
    assert r.status_code == 200
    ops = r.json()["operations"]
    assert [o["op"] for o in ops] == [op for op, _ in steps]
    assert {o["actor"] for o in ops} == {"root"}
    assert ops[-1]["undone"] and not ops[-2]["undone"]


@pytest.mark.parametrize("level", ["instance", "database"])
async def test_a_permissions_block_grants_the_permission(photos, level):
    grant = {"imageclust-edit": {"id": "alice"}}
    kw = {"databases": {"photos": {"permissions": grant}}} if level == "database" else {}
    ds = ds_for(photos, **kw) if level == "database" else ds_for(photos, permissions=grant)
    c = clusters(photos)[1]
    r = await post(ds, "label", {"cluster": c, "label": "by alice"}, actor="alice")
    assert r.status_code == 200, r.text
    assert user_label(photos, c) == "by alice"
    assert q(photos, "SELECT actor FROM cluster_ops") == [("alice",)]
    r = await post(ds, "label", {"cluster": c, "label": "by bob"}, actor="bob")
    assert r.status_code == 403
    assert user_label(photos, c) == "by alice"


async def test_api_token(photos):
    ds = ds_for(photos, permissions={"imageclust-edit": {"id": "alice"}})
    c = clusters(photos)[1]
    if not DS1:
        # Datasette 0.65 has no API tokens: a Bearer header names no actor, so 403.
        r = await post(ds, "label", {"cluster": c, "label": "t"}, actor=None,
                       headers={**JSON, "authorization": "Bearer dstok_whatever"})
        assert r.status_code == 403 and user_label(photos, c) is None
        return
    token = await ds.create_token("alice")
    r = await post(ds, "label", {"cluster": c, "label": "by token"}, actor=None,
                   headers={**JSON, "authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert user_label(photos, c) == "by token"
    # A token of an actor without the permission: 403; a forged one: Datasette's 401.
    other = await ds.create_token("bob")
    for t, status in ((other, 403), (token[:-3] + "xyz", 401)):
        r = await post(ds, "label", {"cluster": c, "label": "no"}, actor=None,
                       headers={**JSON, "authorization": f"Bearer {t}"})
        assert r.status_code == status, r.text
    assert user_label(photos, c) == "by token"
    # A token of alice restricted to other actions cannot edit.
    from datasette.tokens import TokenRestrictions

    narrow = await ds.create_token("alice", restrictions=TokenRestrictions().allow_all("view-instance"))
    r = await post(ds, "label", {"cluster": c, "label": "narrow"}, actor=None,
                   headers={**JSON, "authorization": f"Bearer {narrow}"})
    assert r.status_code == 403, r.text
    assert user_label(photos, c) == "by token"


async def test_true_grants_everyone(photos):
    ds = ds_for(photos, permissions={"imageclust-edit": True})
    c = clusters(photos)[1]
    r = await post(ds, "label", {"cluster": c, "label": "anyone"}, actor=None)
    assert r.status_code == 200, r.text
    assert user_label(photos, c) == "anyone"


HOLD = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


async def test_a_database_locked_by_another_program_answers_503(photos):
    ds = ds_for(photos)
    c = clusters(photos)[1]
    # Another program (a process: SQLite's locks do not separate two libraries in one) writes.
    holder = subprocess.Popen([sys.executable, "-c", HOLD, photos], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        r = await post(ds, "label", {"cluster": c, "label": "later"})
    finally:
        holder.communicate(b"done\n", timeout=30)
    assert r.status_code == 503 and r.headers["retry-after"] == "2", r.text
    assert r.json()["ok"] is False and "busy" in r.json()["errors"][0]
    r = await post(ds, "label", {"cluster": c, "label": "later"})
    assert r.status_code == 200 and user_label(photos, c) == "later"


async def test_pages_show_controls_only_to_editors(photos):
    ds = ds_for(photos, permissions={"imageclust-edit": {"id": ["alice", "root"]}})
    c = clusters(photos)[0]
    image = members(photos, c)[0]
    for who, shown in ((None, False), ("bob", False), ("alice", True), ("root", True)):
        for path in (f"/photos/-/imageclust/cluster/{c}", f"/photos/-/imageclust/image/{image}"):
            page = await ds.client.get(path, cookies=cookie(ds, who))
            assert page.status_code == 200
            assert ('id="ic-edit"' in page.text) == shown, (who, path)
            assert ("imageclust-edit.js" in page.text) == shown
            data = (await ds.client.get(path + ".json", cookies=cookie(ds, who))).json()
            assert (data["edit"] is not None) == shown


# --- databases that cannot be written ---------------------------------------------------------


async def test_immutable_database_refuses_with_a_reason(photos):
    ds = ds_for(photos, immutable=True)
    before = file_bytes(photos)
    for op, body in bodies(photos).items():
        r = await post(ds, op, body)
        assert r.status_code == 403, (op, r.text)
        assert "immutable" in r.json()["errors"][0]
    assert file_bytes(photos) == before
    # The pages show no edit controls.
    c = clusters(photos)[0]
    page = await ds.client.get(f"/photos/-/imageclust/cluster/{c}", cookies=cookie(ds, "root"))
    assert page.status_code == 200 and 'id="ic-edit"' not in page.text


async def test_read_only_file_refuses_with_a_reason(photos):
    os.chmod(photos, 0o444)
    try:
        ds = ds_for(photos)
        before = file_bytes(photos)
        r = await post(ds, "label", {"cluster": clusters(photos)[0], "label": "x"})
        assert r.status_code == 403 and "read-only" in r.json()["errors"][0]
        assert file_bytes(photos) == before
        page = await ds.client.get(f"/photos/-/imageclust/cluster/{clusters(photos)[0]}",
                                   cookies=cookie(ds, "root"))
        assert page.status_code == 200 and 'id="ic-edit"' not in page.text
    finally:
        os.chmod(photos, 0o644)


# --- bad requests -----------------------------------------------------------------------


async def test_malformed_requests_get_4xx_never_500(photos):
    ds = ds_for(photos)
    c = clusters(photos)
    before = file_bytes(photos)
    bad = [
        ("label", b"{", JSON, 400), ("label", b"[1, 2]", JSON, 400), ("label", b"\xff\xfe", JSON, 400),
        ("label", b"", JSON, 400), ("label", b'{"cluster": NaN}', JSON, 400),
        ("label", b'{"cluster": 1, "cluster": 2}', JSON, 400), ("label", b"[" * 100000 + b"]" * 100000, JSON, 400),
        # Not JSON: 0.65's CSRF check refuses a cookie-signed POST of another type first.
        ("label", {"cluster": c[0], "label": "x"}, {"content-type": "text/plain"}, 400 if DS1 else 403),
        ("label", {"cluster": c[0], "label": "x"}, {}, 400 if DS1 else 403),
        ("label", {"cluster": "1", "label": "x"}, JSON, 400), ("label", {"cluster": True, "label": "x"}, JSON, 400),
        ("label", {"cluster": 1.5, "label": "x"}, JSON, 400), ("label", {"cluster": -1, "label": "x"}, JSON, 400),
        ("label", {"cluster": 2**70, "label": "x"}, JSON, 400), ("label", {"label": "x"}, JSON, 400),
        ("label", {"cluster": c[0], "label": 5}, JSON, 400), ("label", {"cluster": c[0], "label": "x" * 5000}, JSON, 400),
        ("label", {"cluster": c[0], "label": "a\x00b"}, JSON, 400),
        ("label", {"cluster": c[0], "lable": "typo"}, JSON, 400),
        ("label", {"cluster": 999999, "label": "x"}, JSON, 400),  # no such cluster
        ("label", {"cluster": c[0], "label": "x", "run": "nope"}, JSON, 400),
        ("label", {"cluster": c[0], "label": "x", "run": ["a"]}, JSON, 400),
        ("move", {"images": [], "to": c[0]}, JSON, 400), ("move", {"images": [1, 1], "to": c[0]}, JSON, 400),
        ("move", {"images": "1,2", "to": c[0]}, JSON, 400), ("move", {"images": [1]}, JSON, 400),
        ("move", {"images": [10**9], "to": c[0]}, JSON, 400),
        ("merge", {"clusters": [c[0]]}, JSON, 400), ("merge", {"clusters": [c[0], c[0]]}, JSON, 400),
        ("review", {"cluster": c[0], "reviewed": "yes"}, JSON, 400),
        ("split", {"images": [None]}, JSON, 400),
        ("undo", {}, JSON, 400),  # nothing to undo yet
        ("frobnicate", {}, JSON, 404),
        ("label", b"x" * (3 * 1024 * 1024), JSON, 413),
    ]
    for op, body, headers, status in bad:
        r = await post(ds, op, body, headers=headers)
        assert r.status_code == status, (op, str(body)[:80], r.status_code, r.text[:300])
        if r.headers["content-type"].startswith("application/json"):
            assert r.json()["ok"] is False and r.json()["errors"], (op, r.text[:300])
        else:
            assert status == 403 and not DS1 and "content-type" in r.text.lower(), r.text[:300]
    r = await ds.client.get("/photos/-/imageclust/edit/label", cookies=cookie(ds, "root"))
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    r = await ds.client.post("/nope/-/imageclust/edit/label", content=b"{}", headers=JSON, cookies=cookie(ds, "root"))
    assert r.status_code == 404
    assert file_bytes(photos) == before


# --- CSRF -------------------------------------------------------------------------------------


async def test_csrf_as_datasette_handles_it(photos):
    ds = ds_for(photos)
    c = clusters(photos)[1]
    # A same-origin JSON POST signed in by cookie works (the browser's edit controls).
    r = await post(ds, "label", {"cluster": c, "label": "ok"},
                   headers={**JSON, "origin": "http://localhost", "sec-fetch-site": "same-origin"})
    assert r.status_code == 200, r.text
    # A cross-site form POST with the actor's cookie never writes.
    r = await ds.client.post("/photos/-/imageclust/edit/label", content="cluster=1&label=evil",
                             headers={"content-type": "application/x-www-form-urlencoded",
                                      "origin": "http://evil.example", "sec-fetch-site": "cross-site"},
                             cookies=cookie(ds, "root"))
    assert r.status_code == 403
    if DS1:  # 1.0 refuses any cross-origin browser POST, whatever its type
        r = await post(ds, "label", {"cluster": c, "label": "evil"},
                       headers={**JSON, "origin": "http://evil.example", "sec-fetch-site": "cross-site"})
        assert r.status_code == 403
    assert user_label(photos, c) == "ok"


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_edits_keep_the_run_consistent(photos):
    ds = ds_for(photos)
    c = clusters(photos)
    target = c[0]
    movers = [i for cid in c[1:5] for i in members(photos, cid)[:3]]
    total = q(photos, "SELECT COUNT(*) FROM cluster_members m JOIN cluster_runs r ON r.id = m.run_id "
                      "WHERE r.name = 'kmeans16'")[0][0]
    edits = [post(ds, "move", {"images": [i], "to": target}) for i in movers]
    edits += [post(ds, "label", {"cluster": cid, "label": f"name {n}"}) for n, cid in enumerate(c[5:9])]
    edits += [post(ds, "note", {"cluster": target, "note": f"note {n}"}) for n in range(4)]
    answers = await asyncio.gather(*edits)
    assert [r.status_code for r in answers] == [200] * len(edits), [r.text for r in answers if r.status_code != 200]
    assert set(movers) <= set(members(photos, target))
    # Every image is in exactly one cluster of the run, sizes match, every edit recorded once.
    assert q(photos, "SELECT COUNT(*), COUNT(DISTINCT image_id) FROM cluster_members m JOIN cluster_runs r "
                     "ON r.id = m.run_id WHERE r.name = 'kmeans16'")[0] == (total, total)
    assert q(photos, "SELECT COUNT(*) FROM clusters c WHERE size != (SELECT COUNT(*) FROM cluster_members m "
                     "WHERE m.cluster_id = c.id)")[0][0] == 0
    assert q(photos, "SELECT COUNT(*), COUNT(DISTINCT id) FROM cluster_ops")[0] == (len(edits), len(edits))
    assert [user_label(photos, cid) for cid in c[5:9]] == [f"name {n}" for n in range(4)]
    assert q(photos, "PRAGMA integrity_check") == [("ok",)]


# --- reading the operations ------------------------------------------------------------------


async def test_operations_need_view_permission(photos):
    ds = ds_for(photos, databases={"photos": {"tables": {"cluster_ops": {"allow": False}}}})
    r = await post(ds, "label", {"cluster": clusters(photos)[0], "label": "x"})
    assert r.status_code == 200, r.text
    r = await ds.client.get("/photos/-/imageclust/operations.json")
    assert r.status_code == 403 and r.json()["ok"] is False
    r = await ds.client.get("/photos/-/imageclust/operations.json?run=nope")
    assert r.status_code in (403, 404)
    ds = ds_for(photos)
    r = await ds.client.get("/photos/-/imageclust/operations.json?run=kmeans8")
    assert r.status_code == 200 and r.json()["operations"] == []
    r = await ds.client.get("/photos/-/imageclust/operations.json?run=nope")
    assert r.status_code == 404 and r.json()["ok"] is False


# --- the "done when": web edits survive a re-run ---------------------------------------


async def test_web_edits_survive_rerunning_the_run(photos):
    from datasette_imageclust.pipeline import cluster_images
    from datasette_imageclust.store import connection as dbmod

    ds = ds_for(photos)
    c = clusters(photos)
    renamed, target, merged_into, merged = c[1], c[2], c[3], c[4]
    image = members(photos, c[5])[0]
    union = set(members(photos, merged_into)) | set(members(photos, merged))
    for op, body in (("label", {"cluster": renamed, "label": "birds, really"}),
                     ("move", {"images": [image], "to": target}),
                     ("merge", {"clusters": [merged_into, merged]})):
        r = await post(ds, op, body)
        assert r.status_code == 200, (op, r.text)
    db = dbmod.connect(photos)
    cluster_images(db, method="kmeans", name="kmeans16", n_clusters=16, small="merge", labels=(),
                   duplicates=False, layout=False)  # the same run, as plugin_dbs.clustered made it
    dbmod.close(db)
    ops = (await ds.client.get("/photos/-/imageclust/operations.json?run=kmeans16")).json()["operations"]
    assert [(o["op"], o["status"]) for o in ops] == [("label", "applied"), ("move", "applied"), ("merge", "applied")]
    assert user_label(photos, renamed) == "birds, really"
    assert image in members(photos, target)
    home = q(photos, "SELECT m.cluster_id, COUNT(*) FROM cluster_members m JOIN cluster_runs r ON r.id = m.run_id "
                     "WHERE r.name = 'kmeans16' AND m.image_id IN (SELECT value FROM json_each(?)) "
                     "GROUP BY m.cluster_id ORDER BY 2 DESC", [json.dumps(sorted(union))])
    assert home[0][0] in (merged_into, merged) and home[0][1] >= 0.9 * len(union), home
