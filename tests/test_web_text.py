"""Descriptions and tags on the pages: the image page lists them, the cluster page shows
each member's description and the tags most members carry, the search page searches the
descriptions' words (FTS5) beside CLIP text, Datasette's own table pages facet and search
them; all escaped, all under view-table. Run under Datasette 0.65 and 1.0 (.ci/run)."""
from __future__ import annotations

import pytest

import plugin_dbs
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.schema import migrate, now
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio

XSS = plugin_dbs.XSS
# Descriptions of image 1 by two models (the newer wins unless description_model says otherwise).
OLD_TEXT = "An older account: a small parrot on a branch."
NEW_TEXT = f"A red and blue rosella perched on a branch; a caption reads {XSS}."
OTHER_MODEL_TEXT = "Bird, colourful, branch (by the other model)."


@pytest.fixture(scope="module")
def photos(tux_db, tmp_path_factory) -> str:
    path = plugin_dbs.clustered(tux_db, tmp_path_factory.mktemp("text") / "photos.db")
    db = dbmod.connect(path)
    migrate(db, "text")
    with db.conn:
        p = db.execute("INSERT INTO prompts (sha256, text, created) VALUES ('abc', ?, ?)",
                       [f"Describe the image. {XSS}", now()]).lastrowid
        rows = [(1, "llava", OLD_TEXT, "2026-01-01T00:00:00+00:00"),
                (1, "llava:13b", NEW_TEXT, "2026-02-01T00:00:00+00:00"),
                (1, "gpt-4o-mini", OTHER_MODEL_TEXT, "2026-01-15T00:00:00+00:00"),
                (2, "llava:13b", "A green frog on a lily pad.", "2026-02-01T00:00:00+00:00"),
                (3, "llava:13b", "Three red apples in a bowl.", "2026-02-01T00:00:00+00:00")]
        for iid, model, text, created in rows:
            db.execute("INSERT INTO descriptions (image_id, model, api, prompt_id, text, input, created) "
                       "VALUES (?, ?, 'ollama', ?, ?, 'thumbnail', ?)", [iid, model, p, text, created])
        for iid in (1, 2, 3):
            for rank, tag in enumerate(("bird", "animal", f"tag{iid}"), 1):
                db.execute("INSERT INTO image_tags (image_id, source, tag, score, rank, created) "
                           "VALUES (?, 'clip', ?, ?, ?, ?)", [iid, tag, 0.3 / rank, rank, now()])
        db.execute("INSERT INTO image_tags (image_id, source, tag, score, rank, created) "
                   "VALUES (1, 'vlm:llava:13b', ?, NULL, 1, ?)", [XSS, now()])
    dbmod.close(db)
    return path


async def _ds(path, **kw):
    d = make_ds([path], **kw)
    await d.invoke_startup()
    return d


async def _json(ds, path, status=200):
    r = await ds.client.get(path)
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    return r.json()


async def test_image_page_lists_descriptions_and_tags(photos):
    ds = await _ds(photos)
    d = await _json(ds, "/photos/-/imageclust/image/1.json")
    assert [x["text"] for x in d["descriptions"]] == [NEW_TEXT, OTHER_MODEL_TEXT, OLD_TEXT]  # newest first
    assert d["descriptions"][0]["model"] == "llava:13b" and "Describe the image" in d["descriptions"][0]["prompt"]
    by_source = {g["source"]: [t["tag"] for t in g["tags"]] for g in d["tags"]}
    assert by_source == {"clip": ["bird", "animal", "tag1"], "vlm:llava:13b": [XSS]}
    html = (await ds.client.get("/photos/-/imageclust/image/1")).text
    assert "A red and blue rosella" in html and XSS not in html and "&lt;script&gt;" in html
    # An image nobody described: empty lists, and the page still answers.
    d = await _json(ds, "/photos/-/imageclust/image/200.json")
    assert d["descriptions"] == [] and d["tags"] == []


async def test_cluster_page_shows_member_descriptions_and_shared_tags(photos):
    ds = await _ds(photos)
    conn = dbmod.connect(photos, readonly=True)
    cid = conn.execute("SELECT cluster_id FROM cluster_members m JOIN cluster_runs r ON r.id = m.run_id "
                       "WHERE m.image_id = 1 AND r.is_default = 1").fetchone()[0]
    members = {r[0] for r in conn.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid])}
    conn.close()
    d = await _json(ds, f"/photos/-/imageclust/cluster/{cid}.json")
    shown = {m["image_id"]: m["description"] for m in d["members"]}
    assert shown[1] == NEW_TEXT  # the newest description of image 1
    assert all(shown[i] is None for i in shown if i not in (1, 2, 3))
    tags = {t["tag"]: t for t in d["tags"]}
    tagged = len(members & {1, 2, 3})
    assert tags["bird"]["images"] == tagged and tags["bird"]["share"] == round(tagged / len(members), 3)
    html = (await ds.client.get(f"/photos/-/imageclust/cluster/{cid}")).text
    assert XSS not in html and "bird" in html
    # The plugin's description_model setting picks whose descriptions the pages show.
    ds2 = await _ds(photos, plugin={"description_model": "gpt-4o-mini"})
    d = await _json(ds2, f"/photos/-/imageclust/cluster/{cid}.json")
    assert {m["image_id"]: m["description"] for m in d["members"]}[1] == OTHER_MODEL_TEXT


async def test_search_finds_words_of_descriptions(photos):
    ds = await _ds(photos)
    d = await _json(ds, "/photos/-/imageclust/search.json?q=rosella")
    assert [r["image_id"] for r in d["description_results"]] == [1]
    assert "[rosella]" in d["description_results"][0]["snippet"]
    d = await _json(ds, "/photos/-/imageclust/search.json?q=apples bowl")
    assert [r["image_id"] for r in d["description_results"]] == [3]
    d = await _json(ds, "/photos/-/imageclust/search.json?q=branch")  # two models describe image 1: one result
    assert [r["image_id"] for r in d["description_results"]] == [1]
    html = (await ds.client.get("/photos/-/imageclust/search?q=caption")).text
    assert "Descriptions that mention" in html and XSS not in html
    # FTS5 syntax from the user is taken as words, never as an error.
    for q in ['"', "rosella AND", "NEAR(", "*", "col:rosella", "OR OR", "-x", "''"]:
        r = await ds.client.get("/photos/-/imageclust/search.json", params={"q": q})
        assert r.status_code == 200, (q, r.text[:200])


async def test_descriptions_and_tags_follow_table_permissions(photos):
    for table, gone in (("descriptions", "descriptions"), ("image_tags", "tags")):
        ds = await _ds(photos, databases={"photos": {"tables": {table: {"allow": False}}}})
        d = await _json(ds, "/photos/-/imageclust/image/1.json")
        assert gone in d["withheld"] and not d[gone]
        assert (d["descriptions"] != []) == (gone != "descriptions")
        d = await _json(ds, "/photos/-/imageclust/search.json?q=rosella")
        assert (d["description_results"] != []) == (gone != "descriptions")
        text = (await ds.client.get("/photos/-/imageclust/image/1")).text
        assert ("perched" in text) == (gone != "descriptions")


async def test_datasette_table_pages_facet_and_search_descriptions(photos):
    ds = await _ds(photos)
    d = await _json(ds, "/photos/descriptions.json?_search=frog&_shape=objects&_extra=facet_results")
    rows = d["rows"]
    assert [r["image_id"] for r in rows] == [2]
    facets = d.get("facet_results", {})
    facets = facets.get("results", facets)
    assert "model" in facets and "prompt_id" in facets
    # Triggers keep the index in step with the table.
    db = dbmod.connect(photos)
    with db.conn:
        db.execute("UPDATE descriptions SET text = 'A heron standing in a pond.' WHERE image_id = 2")
    dbmod.close(db)
    d = await _json(ds, "/photos/-/imageclust/search.json?q=frog")
    assert d["description_results"] == []
    d = await _json(ds, "/photos/-/imageclust/search.json?q=heron")
    assert [r["image_id"] for r in d["description_results"]] == [2]


async def test_run_list_says_what_each_run_clustered(photos):
    ds = await _ds(photos)
    d = await _json(ds, "/photos/-/imageclust.json")
    assert {r["source"] for r in d["runs"]} == {"images"} and d["run"]["source"] == "images"
