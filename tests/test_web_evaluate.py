"""The evaluation pages over HTTP (a real Datasette, real databases): coding a task,
answering through the write route, the results; permissions (anonymous, an actor without
imageclust-edit, a permitted actor, tables the actor may not view, immutable databases),
anonymous coding by configuration, and strict parameters. Run under Datasette 0.65 and 1.0."""
from __future__ import annotations

import shutil
import sqlite3

import datasette
import pytest
from datasette.app import Datasette

from datasette_imageclust.analysis import evaluate as ev
from datasette_imageclust.analysis.evaluate_report import report
from datasette_imageclust.store import connection as dbmod
from synthdb import make_db

pytestmark = pytest.mark.asyncio

XSS = '<img src=x onerror="window.__xss=1">'

def editors() -> dict:  # a new dict each time: Datasette 1.0 rewrites its config in place
    return {"id": ["alice", "root"]}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    """60 images in 4 clusters (hostile labels), a sets task "t" and a pairs task "p"."""
    path = str(tmp_path_factory.mktemp("evw") / "ev.db")
    make_db(path, 60, clusters=4, thumb_px=32, distinct_thumbs=16, label_prefix=XSS)
    db = dbmod.connect(path)
    ev.create_task(db, "t", seed=5)
    ev.create_task(db, "p", pairs=3)
    dbmod.close(db)
    return path


@pytest.fixture
def path(template, tmp_path) -> str:
    p = tmp_path / "ev.db"
    shutil.copy(template, p)
    return str(p)


async def make(path: str, *, immutable: bool = False, plugin: dict | None = None, tables: dict | None = None,
         permissions: object = None) -> Datasette:
    conf: dict = {"permissions": {"imageclust-edit": permissions or editors()}}
    if plugin:
        conf["plugins"] = {"datasette-imageclust": plugin}
    if tables:
        conf["databases"] = {"ev": {"tables": tables}}
    kw = {"immutables": [path]} if immutable else {"files": [path]}
    # (not inspect.signature(Datasette.__init__): Datasette 1.0's pytest plugin wraps __init__)
    if not datasette.__version__.startswith("0."):
        ds = Datasette(config=conf, **kw)
    else:
        ds = Datasette(metadata=conf, **kw)
    await ds.invoke_startup()  # (1.0 registers the plugin's permission at startup)
    return ds


def cookie(ds: Datasette, actor_id: str) -> dict:
    return {"ds_actor": ds.sign({"a": {"id": actor_id}}, "actor")}


def answers(path: str) -> list[tuple]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT coder, set_id, cluster_id FROM eval_answers ORDER BY coder, set_id").fetchall()


def truth(path: str) -> dict[int, int]:
    with sqlite3.connect(path) as c:
        return dict(c.execute("SELECT set_no, cluster_id FROM eval_sets s JOIN eval_tasks t ON t.id = s.task_id "
                              "WHERE t.name = 't'").fetchall())


async def post(ds, body, who: str | None = "alice", task: str = "t", **kw):
    return await ds.client.post(f"/ev/-/imageclust/evaluate/{task}/answer", json=body,
                                cookies=cookie(ds, who) if who else None, **kw)


async def test_a_permitted_actor_codes_sets_one_at_a_time(path):
    ds = await make(path)
    c = cookie(ds, "alice")
    page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json", cookies=c)).json()
    assert page["coder"] == "alice" and page["can_answer"] and page["why_not"] is None
    assert page["set"]["set_no"] == 1 and len(page["set"]["images"]) == 4 and page["answered"] == 0
    assert "cluster_id" not in page["set"] and "truth" not in str(page)  # nothing gives the cluster away
    with sqlite3.connect(path) as conn:
        cands = {r[0]: r[1] for r in conn.execute("SELECT cluster_id, label FROM eval_candidates")}
    assert {l["cluster_id"]: l["label"] for l in page["labels"]} == cands
    t = truth(path)
    r = await post(ds, {"set": 1, "cluster": t[1]})
    assert r.status_code == 200 and r.json()["ok"] and r.json()["next_set"] == 2, r.text
    r = await post(ds, {"set": 2, "cluster": None})
    assert r.json()["answered"] == 2 and r.json()["next_set"] == 3
    page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json", cookies=c)).json()
    assert page["set"]["set_no"] == 3 and page["answered"] == 2
    again = (await ds.client.get("/ev/-/imageclust/evaluate/t.json?set=2", cookies=c)).json()
    assert again["set"]["answer"] is None  # answered "none fits"
    await post(ds, {"set": 2, "cluster": t[2]})  # a re-answer replaces
    rows = answers(path)
    assert [(coder, cid) for coder, _, cid in rows] == [("alice", t[1]), ("alice", t[2])]
    res = (await ds.client.get("/ev/-/imageclust/evaluate/t/results.json", cookies=c)).json()
    db = dbmod.connect(path, readonly=True)
    assert res["report"] == report(db, "t") and res["report"]["accuracy"] == 1.0
    html = (await ds.client.get("/ev/-/imageclust/evaluate/t", cookies=c)).text
    assert XSS not in html and "&lt;img src=x" in html  # labels are escaped
    assert "/-/imageclust/image/" not in html  # no link to an image page (it shows the cluster)
    assert XSS not in (await ds.client.get("/ev/-/imageclust/evaluate/t/results", cookies=c)).text


async def test_each_coder_has_a_fixed_shuffled_order(path):
    ds = await make(path)
    orders = {}
    for who in ("alice", "root"):
        for _ in range(2):
            page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json", cookies=cookie(ds, who))).json()
            orders.setdefault(who, []).append([l["cluster_id"] for l in page["labels"]])
    db = dbmod.connect(path, readonly=True)
    t = ev.task(db, "t")
    for who, seen in orders.items():
        assert seen[0] == seen[1] == [c["cluster_id"] for c in ev.shuffled_candidates(db, t, who)]
    assert orders["alice"][0] != orders["root"][0]  # (these two seeds give different orders)


async def test_anonymous_and_unpermitted_actors_see_the_sets_but_cannot_answer(path):
    ds = await make(path)
    page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json")).json()
    assert not page["can_answer"] and "sign in" in page["why_not"] and page["set"]["set_no"] == 1
    html = (await ds.client.get("/ev/-/imageclust/evaluate/t")).text
    assert "Answering is off" in html and "disabled" in html
    r = await post(ds, {"set": 1, "cluster": None}, who=None)
    assert r.status_code == 403 and not r.json()["ok"]
    page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json", cookies=cookie(ds, "bob"))).json()
    assert not page["can_answer"] and "imageclust-edit" in page["why_not"]
    r = await post(ds, {"set": 1, "cluster": None}, who="bob")
    assert r.status_code == 403 and "imageclust-edit" in r.json()["errors"][0]
    assert answers(path) == []
    assert (await post(ds, {"set": 1, "cluster": None}, who="root")).status_code == 200


async def test_an_immutable_database_refuses_answers(path):
    ds = await make(path, immutable=True)
    page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json", cookies=cookie(ds, "alice"))).json()
    assert not page["can_answer"] and "immutable" in page["why_not"]
    r = await post(ds, {"set": 1, "cluster": None})
    assert r.status_code == 403 and "immutable" in r.json()["errors"][0]
    ds = await make(path, immutable=True, plugin={"evaluation_anonymous": True})
    r = await post(ds, {"set": 1, "cluster": None, "coder": "Ann"}, who=None)
    assert r.status_code == 403 and "immutable" in r.json()["errors"][0]
    assert answers(path) == []


async def test_anonymous_coding_when_the_configuration_allows_it(path):
    # Every step says what it got when it fails (it failed once in a full run, never since).
    ds = await make(path, plugin={"evaluation_anonymous": True})
    r = await ds.client.get("/ev/-/imageclust/evaluate/t.json")
    page = r.json()
    assert not page["can_answer"] and "type your name" in page["why_not"], (r.status_code, r.text[:300])
    r = await ds.client.get("/ev/-/imageclust/evaluate/t")
    assert 'name="coder"' in r.text, (r.status_code, r.text[-500:])
    r = await ds.client.get("/ev/-/imageclust/evaluate/t.json?coder=Ann")
    page = r.json()
    assert page["can_answer"] and page["coder"] == "Ann", (r.status_code, r.text[:300])
    for bad in ("%E2%80%AEnnA", "x" * 101, "%00"):
        r = await ds.client.get(f"/ev/-/imageclust/evaluate/t.json?coder={bad}")
        assert r.status_code == 400, (bad, r.status_code, r.text[:300])
    r = await post(ds, {"set": 3, "cluster": None, "coder": "Ann"}, who=None)
    assert r.status_code == 200 and r.json()["coder"] == "Ann", r.text
    r = await post(ds, {"set": 3, "cluster": None}, who=None)  # no name
    assert r.status_code == 403, (r.status_code, r.text)
    r = await post(ds, {"set": 3, "cluster": None, "coder": "A\u202enn"}, who=None)
    assert r.status_code == 400 and "control characters" in r.json()["errors"][0], (r.status_code, r.text)
    r = await post(ds, {"set": 4, "cluster": None}, who="bob")  # a signed-in actor codes as itself
    assert r.status_code == 200 and r.json()["coder"] == "bob", (r.status_code, r.text)
    r = await ds.client.post("/ev/-/imageclust/evaluate/t/answer", content=b'{"set": 1}',
                             headers={"content-type": "text/plain"})
    assert r.status_code == 400, (r.status_code, r.text)
    assert [(c, s) for c, s, _ in answers(path)] == [("Ann", 3), ("bob", 4)], answers(path)
    # a setting that is not exactly true does not open coding
    ds = await make(path, plugin={"evaluation_anonymous": "no"})
    r = await post(ds, {"set": 5, "cluster": None, "coder": "Eve"}, who=None)
    assert r.status_code == 403, (r.status_code, r.text)


@pytest.mark.parametrize("query", ["set=abc", "set=0", "set=1&set=2", "set=%EF%BC%91", "set=-1", "set=1e3"])
async def test_bad_parameters_are_400(path, query):
    ds = await make(path)
    r = await ds.client.get(f"/ev/-/imageclust/evaluate/t.json?{query}", cookies=cookie(ds, "alice"))
    assert r.status_code == 400, (query, r.status_code, r.text[:200])


BAD_BODIES = [
    ({"set": "1", "cluster": None}, "set must be a whole number"),
    ({"set": 1, "cluster": 999999}, "not one of the task's labels"),
    ({"set": 99, "cluster": None}, "set 99 is not a set"),
    ({"set": 1, "colour": 2}, "unknown key"),
    ({"cluster": 1}, "set is required"),
    ({"set": True}, "set must be a whole number"),
]


@pytest.mark.parametrize("body,message", BAD_BODIES)
async def test_bad_answers_are_400_and_write_nothing(path, body, message):
    ds = await make(path)
    r = await post(ds, body)
    assert r.status_code == 400 and message in r.json()["errors"][0], r.text
    assert answers(path) == []


async def test_other_refusals(path):
    ds = await make(path)
    c = cookie(ds, "alice")
    assert (await ds.client.get("/ev/-/imageclust/evaluate/t/answer", cookies=c)).status_code == 405
    r = await ds.client.post("/ev/-/imageclust/evaluate/t/answer", content=b"{nope", cookies=c,
                             headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["errors"][0]
    assert (await post(ds, {"set": 1, "cluster": None}, task="nope")).status_code == 404
    assert (await ds.client.get("/ev/-/imageclust/evaluate/nope", cookies=c)).status_code == 404
    assert (await ds.client.get("/ev/-/imageclust/evaluate/nope/results.json")).status_code == 404
    r = await ds.client.get("/ev/-/imageclust/evaluate/t.json?set=13", cookies=c)
    assert r.status_code == 404 and "sets 1-12" in r.json()["error"]
    r = (await post(ds, {"set": 1, "cluster": None}, task="p"))
    assert r.status_code == 400 and "rates pairs" in r.json()["errors"][0]
    page = (await ds.client.get("/ev/-/imageclust/evaluate/p.json", cookies=c)).json()
    assert page["set"] is None and not page["can_answer"]
    res = (await ds.client.get("/ev/-/imageclust/evaluate/p/results.json")).json()
    assert res["report"]["kind"] == "pairs" and res["report"]["runs"][0]["within"]["pairs"] == 3
    assert answers(path) == []


async def test_a_database_without_tasks_is_404(tmp_path):
    p = make_db(str(tmp_path / "plain.db"), 12, clusters=2, thumb_px=16, distinct_thumbs=4)
    shutil.move(p, tmp_path / "ev.db")
    ds = await make(str(tmp_path / "ev.db"))
    for url in ("/ev/-/imageclust/evaluate/t.json", "/ev/-/imageclust/evaluate/t/results.json"):
        r = await ds.client.get(url)
        assert r.status_code == 404 and "no evaluation tasks" in r.json()["error"]
    assert (await ds.client.get("/ev/-/imageclust/evaluate.json")).json()["tasks"] == []


@pytest.mark.parametrize("table", ["eval_sets", "eval_answers", "eval_candidates", "images"])
async def test_tables_the_actor_may_not_view_close_the_pages(path, table):
    ds = await make(path, tables={table: {"allow": False}})
    c = cookie(ds, "alice")
    for url in ("/ev/-/imageclust/evaluate/t.json", "/ev/-/imageclust/evaluate/t/results.json",
                "/ev/-/imageclust/evaluate.json"):
        assert (await ds.client.get(url, cookies=c)).status_code == 403, url
    assert (await post(ds, {"set": 1, "cluster": None})).status_code == 403
    assert answers(path) == []


async def test_without_thumbnails_the_sets_show_no_images_and_pairs_need_their_tables(path):
    ds = await make(path, tables={"thumbnails": {"allow": False}, "eval_ratings": {"allow": False}})
    page = (await ds.client.get("/ev/-/imageclust/evaluate/t.json", cookies=cookie(ds, "alice"))).json()
    assert all(im["thumbnail_url"] is None for im in page["set"]["images"])
    assert (await ds.client.get("/ev/-/imageclust/evaluate/t/results.json")).status_code == 200
    assert (await ds.client.get("/ev/-/imageclust/evaluate/p/results.json")).status_code == 403


async def test_the_task_list(path):
    ds = await make(path)
    body = (await ds.client.get("/ev/-/imageclust/evaluate.json")).json()
    assert [(t["name"], t["kind"], t["sets"], t["pairs"]) for t in body["tasks"]] == [("t", "sets", 12, 0),
                                                                                      ("p", "pairs", 0, 6)]
    assert body["tasks"][0]["url"] == "/ev/-/imageclust/evaluate/t"
    html = (await ds.client.get("/ev/-/imageclust/evaluate")).text
    assert 'href="/ev/-/imageclust/evaluate/t/results"' in html


async def test_task_names_are_tilde_encoded_in_urls(path):
    db = dbmod.connect(path)
    ev.create_task(db, "a/b.json ?", seed=1)
    dbmod.close(db)
    ds = await make(path)
    body = (await ds.client.get("/ev/-/imageclust/evaluate.json")).json()
    url = next(t["url"] for t in body["tasks"] if t["name"] == "a/b.json ?")
    page = (await ds.client.get(url + ".json")).json()
    assert page["task"]["name"] == "a/b.json ?"
    assert (await ds.client.get(url + "/results.json")).json()["report"]["task"] == "a/b.json ?"
