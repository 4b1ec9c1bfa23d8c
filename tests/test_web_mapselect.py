"""The map's selection (?ids=, ?sql=), colour by a column (map/colour.json) and "Show on
map" through a real Datasette(...).client: results against the database, every bad value a
400 (never a 500), and Datasette's permissions (execute-sql, view-table). Run under
Datasette 0.65 and 1.0 (.ci/run)."""
from __future__ import annotations

import html
import re
import shutil
from urllib.parse import urlsplit

import pytest

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.schema import migrate, now
from test_plugin_pages import make_ds
from dbrows import rows as _q

pytestmark = pytest.mark.asyncio
MAP = "/map/-/imageclust/map"
ROOT = {"a": {"id": "root"}}
MAX_SELECTION = 20_000  # the README's limit of a selection


async def _ds(path, databases=None, **kw):
    ds = make_ds([path], databases=databases, **kw)
    await ds.invoke_startup()
    return ds


async def _selection(ds, query: str, cookies=None) -> dict:
    r = await ds.client.get(f"{MAP}.json?{query}", cookies=cookies)
    assert r.status_code == 200, r.text[:300]
    return r.json()["selection"]


async def test_ids_and_sql_select_those_images(map_db):
    ds = await _ds(map_db)
    assert (await ds.client.get(f"{MAP}.json")).json()["selection"] is None
    sel = await _selection(ds, "ids=7,3,7,%201")
    assert sel == {"source": "ids", "ids": [7, 3, 1], "truncated": False}
    cid = _q(map_db, "SELECT id FROM clusters WHERE kind = 'cluster' ORDER BY id LIMIT 1")[0][0]
    want = sorted(r[0] for r in _q(map_db, "SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid]))
    # Named parameters come from the same-named arguments, as on Datasette's query page;
    # a trailing ';' and comment do not break it.
    sel = await _selection(ds, f"sql=select+image_id+from+cluster_members+where+cluster_id=:c;+--+c&c={cid}")
    assert sel["source"] == "sql" and sorted(sel["ids"]) == want and not sel["truncated"]
    sel = await _selection(ds, "sql=select+3+as+image_id%3B+--+one%0A--+two%0A")
    assert sel["ids"] == [3]
    # NULLs are skipped, duplicates counted once.
    sel = await _selection(ds, "sql=select+null+as+image_id+union+all+select+2+union+all+select+2")
    assert sel["ids"] == [2]
    # More than the limit: cut to the first MAX_SELECTION distinct ids, and said so.
    many = (f"sql=with+recursive+c(x)+as+(select+1+union+all+select+x%2B1+from+c+where+x<{MAX_SELECTION + 5})"
            "+select+x+as+image_id+from+c")
    sel = await _selection(ds, many)
    assert sel["truncated"] and sel["ids"] == list(range(1, MAX_SELECTION + 1))
    # The page embeds the same selection for its script.
    r = await ds.client.get(f"{MAP}?ids=4,2")
    assert r.status_code == 200 and '"ids": [4, 2]' in r.text


@pytest.mark.parametrize("query, message", [
    ("ids=", "separated by commas"),
    ("ids=a", "digits 0-9"),
    ("ids=1,,2", "empty item"),
    ("ids=1,-2", "digits 0-9"),
    ("ids=0", "between 1 and"),
    ("ids=1.5", "digits 0-9"),
    ("ids=%EF%BC%91", "digits 0-9"),  # a full-width 1
    ("ids=99999999999999999999", "between 1 and"),
    ("ids=1&ids=2", "give ids once"),
    ("ids=1&sql=select+1+as+image_id", "not both"),
    ("sql=", "sql is empty"),
    ("sql=delete+from+images", "must be a SELECT"),
    ("sql=select+id+from+images", "must return an image_id column; it returns: id"),
    ("sql=select+x+from+nope", "no such table: nope"),
    ("sql=select+'abc'+as+image_id", "not 'abc'"),
    ("sql=select+-3+as+image_id", "not -3"),
    ("sql=select+'%3B--'+as+image_id", "not ';--'"),  # a ';' inside a string is kept
    ("sql=select+1.5+as+image_id", "not 1.5"),
    ("sql=select+1+as+image_id+from", "the query failed"),
    ("sql=select+1%00", "without NUL"),
    ("sql=" + "x" * 20_001, "at most 20,000 characters"),
])
async def test_bad_selection_is_a_400_with_a_message(map_db, query, message):
    ds = await _ds(map_db)
    r = await ds.client.get(f"{MAP}.json?{query}")
    assert r.status_code == 400, r.text[:300]
    assert message in r.json()["error"]
    page = await ds.client.get(f"{MAP}?{query}")
    assert page.status_code == 400 and message in html.unescape(page.text)


async def test_a_slow_query_stops_at_datasettes_time_limit(map_db):
    ds = await _ds(map_db, settings={"sql_time_limit_ms": 20})
    slow = ("sql=with+recursive+c(x)+as+(select+1+union+all+select+x%2B1+from+c+where+x<100000000)"
            "+select+max(x)+as+image_id+from+c")
    r = await ds.client.get(f"{MAP}.json?{slow}")
    assert r.status_code == 400 and "time limit (20 ms)" in r.json()["error"]


async def test_sql_selection_needs_execute_sql(map_db):
    ds = await _ds(map_db, databases={"map": {"allow_sql": {"id": "root"}}})
    r = await ds.client.get(f"{MAP}.json?sql=select+1+as+image_id")
    assert r.status_code == 403 and "execute-sql" in r.json()["error"]
    assert (await ds.client.get(f"{MAP}?sql=select+1+as+image_id")).status_code == 403
    assert (await _selection(ds, "ids=1"))["ids"] == [1]  # ids need no SQL
    root = {"ds_actor": ds.sign(ROOT, "actor")}
    assert (await _selection(ds, "sql=select+1+as+image_id", root))["ids"] == [1]


def _folder(path: str) -> str:
    return path[:path.rfind("/") + 1]


async def test_colour_by_folder_cluster_and_column(map_db):
    ds = await _ds(map_db)
    meta = (await ds.client.get(f"{MAP}.json?points=1")).json()
    ids = meta["points"]["arrays"]["id"]
    values = [o["value"] for o in meta["colour_options"]]
    run = _q(map_db, "SELECT id FROM cluster_runs WHERE is_default")[0][0]
    assert values[:2] == [f"cluster:{run}", "folder"] and "column:format" in values
    folder = {i: _folder(p) for i, p in _q(map_db, "SELECT image_id, path FROM files")}
    cluster = {i: label for i, label in _q(map_db, "SELECT m.image_id, c.label FROM cluster_members m "
                                                   "JOIN clusters c ON c.id = m.cluster_id")}
    for by, truth in (("folder", folder), (f"cluster:{run}", cluster)):
        r = await ds.client.get(meta["urls"]["colour"] + "&by=" + by)
        assert r.status_code == 200, r.text[:300]
        d = r.json()
        assert d["count"] == len(ids) == len(d["values"])
        # 12 groups: every one gets its own colour; each point's is its own value's.
        assert len(d["legend"]) == 12 and d["other"] == d["missing"] == 0
        labels = [e["label"] for e in d["legend"]]
        assert all(labels[v] == truth[i] for i, v in zip(ids, d["values"]))
        counts = {}
        for i in ids:
            counts[truth[i]] = counts.get(truth[i], 0) + 1
        assert [e["count"] for e in d["legend"]] == [counts[x] for x in labels]
        assert [e["count"] for e in d["legend"]] == sorted(counts.values(), reverse=True)
    d = (await ds.client.get(meta["urls"]["colour"] + "&by=column:format")).json()
    assert d["legend"] == [{"value": "WEBP", "label": "WEBP", "count": 600}]
    d = (await ds.client.get(meta["urls"]["colour"] + "&by=camera")).json()
    assert d["legend"] == [] and d["missing"] == 600  # no EXIF camera in these images


async def test_colour_by_tag_keeps_the_top_values_and_other(map_db, tmp_path):
    path = str(tmp_path / "map.db")  # served as /map, like map_db
    shutil.copy(map_db, path)
    db = dbmod.connect(path)
    migrate(db, "text")
    # 14 tags: tag k on 20 + k images; rank 2 tags must not count.
    rows, image = [], 1
    for k in range(14):
        for _ in range(20 + k):
            rows.append((image, "clip", f"tag{k:02d}", 0.5, 1, now()))
            rows.append((image, "clip", "second", 0.1, 2, now()))
            image += 1
    with db.conn:
        db.conn.executemany("INSERT INTO image_tags VALUES (?, ?, ?, ?, ?, ?)", rows)
    dbmod.close(db)
    ds = await _ds(path)
    meta = (await ds.client.get(f"{MAP}.json")).json()
    assert {"value": "tag:clip", "label": "top tag (clip)"} in meta["colour_options"]
    d = (await ds.client.get(meta["urls"]["colour"] + "&by=tag:clip")).json()
    assert [e["label"] for e in d["legend"]] == [f"tag{k:02d}" for k in range(13, 1, -1)]
    assert d["other"] == 20 + 21 and d["missing"] == 600 - image + 1 and d["distinct"] == 14
    r = await ds.client.get(meta["urls"]["colour"] + "&by=tag:nope")
    assert r.status_code == 400 and "no tags from source 'nope'" in r.json()["error"]


@pytest.mark.parametrize("by, message", [
    ("", "by is required"),
    ("bad", "by must be"),
    ("folder:x", "by must be"),
    ("cluster:", "by must be"),
    ("cluster:x", "no clustering run 'x'"),
    ("cluster:999", "no clustering run '999'"),
    ("cluster:99999999999999999999999", "no clustering run"),
    ("tag:nope", "no tags from source"),
    ("column:nope", "images has no column 'nope'"),
    ("column:id", "images has no column 'id'"),
    ("folder&by=camera", "give by once"),
])
async def test_bad_colour_choice_is_a_400(map_db, by, message):
    ds = await _ds(map_db)
    r = await ds.client.get(f"{MAP}/colour.json?by={by}")
    assert r.status_code == 400, r.text[:300]
    assert message in r.json()["error"]


async def test_colour_by_a_table_the_actor_may_not_view_is_refused(map_db):
    ds = await _ds(map_db, databases={"map": {"tables": {"files": {"allow": False}}}})
    meta = (await ds.client.get(f"{MAP}.json")).json()
    assert "folder" not in [o["value"] for o in meta["colour_options"]]
    r = await ds.client.get(f"{MAP}/colour.json?by=folder")
    assert r.status_code == 403 and "files" in r.json()["error"]


def _map_links(text: str) -> list[str]:
    """"Show on map" URLs on a Datasette page: menu links, or the 0.65 query page's script."""
    found = [html.unescape(u) for u in re.findall(r'href="([^"]*/-/imageclust/map\?sql=[^"]*)"', text)]
    found += [u.encode().decode("unicode_escape") for u in re.findall(r'a\.href = "([^"]*)"', text)]
    return found


async def _followed(ds, link: str, cookies=None) -> list[int]:
    parts = urlsplit(link)
    r = await ds.client.get(parts.path + ".json?" + parts.query, cookies=cookies)
    assert r.status_code == 200, r.text[:300]
    return sorted(r.json()["selection"]["ids"])


async def test_show_on_map_from_tables_and_queries(map_db):
    ds = await _ds(map_db)
    cid = _q(map_db, "SELECT id FROM clusters WHERE kind = 'cluster' ORDER BY id LIMIT 1 OFFSET 2")[0][0]
    want = sorted(r[0] for r in _q(map_db, "SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid]))
    # A table's filters (column filters, _where) go with the link.
    for page, expect in ((f"/map/cluster_members?cluster_id={cid}", want),
                         ("/map/cluster_members?_where=image_id+<+12&rank__gte=1", list(range(1, 12))),
                         ("/map/images?id__in=3,4,5", [3, 4, 5]),
                         ("/map/images", list(range(1, 601)))):
        r = await ds.client.get(page)
        links = _map_links(r.text)
        assert len(links) == 1, (page, links)
        assert await _followed(ds, links[0]) == expect, page
    # A table without image ids has none.
    assert _map_links((await ds.client.get("/map/clusters")).text) == []
    # Query results with an image_id column (1.0: the query actions menu; 0.65: a script).
    r = await ds.client.get("/map?sql=select+image_id,+path+from+files+where+image_id+<+:n&n=6",
                            follow_redirects=True)
    links = _map_links(r.text)
    assert len(links) == 1 and await _followed(ds, links[0]) == [1, 2, 3, 4, 5]
    r = await ds.client.get("/map?sql=select+id+from+files", follow_redirects=True)
    assert r.status_code == 200 and _map_links(r.text) == []


@pytest.mark.parametrize("databases", [
    {"map": {"allow_sql": {"id": "root"}}},                   # no execute-sql: the map would refuse it
    {"map": {"tables": {"layout_points": {"allow": {"id": "root"}}}}},  # may not view the map
])
async def test_show_on_map_only_for_who_may_use_it(map_db, databases):
    ds = await _ds(map_db, databases=databases)
    root = {"ds_actor": ds.sign(ROOT, "actor")}
    for cookies, n in ((None, 0), (root, 1)):
        r = await ds.client.get("/map/cluster_members?cluster_id=1", cookies=cookies)
        assert r.status_code == 200 and len(_map_links(r.text)) == n
        r = await ds.client.get("/map?sql=select+image_id+from+files", cookies=cookies, follow_redirects=True)
        if r.status_code == 200:
            assert len(_map_links(r.text)) == n
