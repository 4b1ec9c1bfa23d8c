"""Every plugin page and its JSON through a real Datasette: a clustered database, one
as `load` leaves it (no clusters, no index), an empty one and a non-imageclust one."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from datasette.app import Datasette
from datasette.version import __version__ as datasette_version

import plugin_dbs
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.analysis import search, embed_query
from datasette_imageclust.store import vectors

pytestmark = pytest.mark.asyncio


def make_ds(paths: list[str], plugin: dict | None = None, databases: dict | None = None, **kw) -> Datasette:
    """A Datasette with plugin settings / database config, on 0.65 (metadata) or 1.0 (config)."""
    conf: dict = {}
    if plugin:
        conf["plugins"] = {"datasette-imageclust": plugin}
    if databases:
        conf["databases"] = databases
    # (Not inspect.signature(Datasette.__init__): 1.0a41's pytest plugin wraps __init__ in
    # an (*args, **kwargs) function, which hid `config` and sent 1.0 the 0.65 metadata.)
    if not datasette_version.startswith("0."):
        return Datasette(paths, config=conf, **kw)
    return Datasette(paths, metadata=conf, **kw)


@pytest.fixture(scope="module")
def dbs(tux_db, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("plugin")
    return {
        "photos": plugin_dbs.clustered(tux_db, d / "photos.db"),
        "fresh": plugin_dbs.unclustered(tux_db, d / "fresh.db"),  # no clusters, no index
        "empty": plugin_dbs.empty(d / "empty.db"),
        "other": plugin_dbs.foreign(d / "other.db"),
    }


@pytest_asyncio.fixture
async def ds(dbs):
    search.clear_cache()
    d = make_ds(list(dbs.values()))
    await d.invoke_startup()
    return d


async def get_json(ds, path: str, status: int = 200) -> dict:
    r = await ds.client.get(path)
    assert r.status_code == status, (path, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


# --- clusters index -------------------------------------------------------------------


async def test_index_lists_clusters_of_the_default_run(ds):
    d = await get_json(ds, "/photos/-/imageclust.json")
    assert d["run"]["name"] == "kmeans16" and d["run"]["is_default"]
    assert {r["name"] for r in d["runs"]} == {"kmeans16", "kmeans8"}
    assert d["total"] == len(d["clusters"]) >= 16  # 16 clusters (+ an unclustered group if any)
    real = [c for c in d["clusters"] if c["kind"] == "cluster"]
    assert [c["size"] for c in real] == sorted((c["size"] for c in real), reverse=True)
    assert sum(c["size"] for c in d["clusters"]) == 353
    first = d["clusters"][0]
    assert first["label"] == plugin_dbs.XSS  # the user's label wins
    assert [lab["source"] for lab in first["labels"]] == ["user", "terms"]
    assert 1 <= len(first["representatives"]) <= 4
    r = await ds.client.get(first["representatives"][0]["thumbnail_url"])
    assert r.status_code == 200 and r.headers["content-type"] in ("image/webp", "image/jpeg")
    html_page = (await ds.client.get("/photos/-/imageclust")).text
    assert 'href="/photos/-/imageclust/cluster/%d"' % first["id"] in html_page
    assert "kmeans8" in html_page  # the run selector


async def test_index_sort_run_and_pages(ds):
    d = await get_json(ds, "/photos/-/imageclust.json?sort=cohesion")
    coh = [c["cohesion"] for c in d["clusters"] if c["kind"] == "cluster"]
    assert coh == sorted(coh, reverse=True)
    by_name = await get_json(ds, "/photos/-/imageclust.json?run=kmeans8")
    by_id = await get_json(ds, f"/photos/-/imageclust.json?run={by_name['run']['id']}")
    assert by_name["run"]["name"] == by_id["run"]["name"] == "kmeans8"
    assert {c["id"] for c in by_name["clusters"]} == {c["id"] for c in by_id["clusters"]}
    ds2 = make_ds([ds.databases["photos"].path], plugin={"page_size": 5})
    p1 = await get_json(ds2, "/photos/-/imageclust.json")
    assert p1["pages"] == -(-p1["total"] // 5) and len(p1["clusters"]) == 5 and p1["next_url"]
    p2 = await get_json(ds2, p1["next_url"])
    assert p2["page"] == 2 and p2["previous_url"].endswith("/-/imageclust.json")
    assert not {c["id"] for c in p1["clusters"]} & {c["id"] for c in p2["clusters"]}


async def test_index_bad_parameters(ds):
    for path, status in [("sort=rank%3B%20DROP%20TABLE%20images", 400), ("page=abc", 400), ("page=0", 400),
                         ("page=99999", 404), ("run=nope", 404), ("run=1%20OR%201%3D1", 404)]:
        d = await get_json(ds, f"/photos/-/imageclust.json?{path}", status)
        assert d["ok"] is False and d["error"]
        r = await ds.client.get(f"/photos/-/imageclust?{path}")
        assert r.status_code == status and "text/html" in r.headers["content-type"]


async def test_default_run_from_plugin_config(ds):
    d2 = make_ds([ds.databases["photos"].path], plugin={"default_run": "kmeans8"})
    assert (await get_json(d2, "/photos/-/imageclust.json"))["run"]["name"] == "kmeans8"


# --- cluster gallery --------------------------------------------------------------------


async def test_cluster_gallery(ds):
    idx = await get_json(ds, "/photos/-/imageclust.json")
    c0 = idx["clusters"][0]
    d = await get_json(ds, f"/photos/-/imageclust/cluster/{c0['id']}.json")
    assert d["cluster"]["id"] == c0["id"] and d["total"] == c0["size"] == len(d["members"])
    assert [m["rank"] for m in d["members"]] == list(range(1, c0["size"] + 1))
    dist = [m["distance"] for m in d["members"]]
    assert dist == sorted(dist)
    assert [lab["source"] for lab in d["cluster"]["labels"]] == ["user", "terms"]
    assert d["neighbours"] and all(n["url"].startswith("/photos/-/imageclust/cluster/") for n in d["neighbours"])
    sims = [n["similarity"] for n in d["neighbours"]]
    assert sims == sorted(sims, reverse=True)
    assert d["previous_url"] is None and d["next_url"] == f"/photos/-/imageclust/cluster/{idx['clusters'][1]['id']}"
    # The same members as a Datasette table and as SQL.
    t = await ds.client.get(d["table_url"].replace("/cluster_members?", "/cluster_members.json?") + "&_shape=array")
    assert sorted(r["image_id"] for r in t.json()) == sorted(m["image_id"] for m in d["members"])
    path, _, query = d["sql_url"].partition("?")
    q = await ds.client.get(f"{path}.json?{query}&_shape=array")
    assert q.status_code == 200 and {r["image_id"] for r in q.json()} == {m["image_id"] for m in d["members"]}
    page = (await ds.client.get(f"/photos/-/imageclust/cluster/{c0['id']}")).text
    assert page.count('class="ic-tile"') == c0["size"]


async def test_cluster_bad_ids(ds):
    for path, status in [("999999", 404), ("abc", 400), ("-1", 400), ("1" * 30, 400)]:
        await get_json(ds, f"/photos/-/imageclust/cluster/{path}.json", status)
    d = await get_json(ds, "/fresh/-/imageclust/cluster/1.json", 404)
    assert "no clusters yet" in d["error"]


# --- image page ---------------------------------------------------------------------------


async def test_image_page(ds, dbs):
    d = await get_json(ds, "/photos/-/imageclust/image/1.json?k=5")
    assert d["image"]["id"] == 1 and d["image"]["format"] == "JPEG"
    assert len(d["files"]) == 2 and d["exact_duplicates"] == 1
    assert [n["image_id"] for n in d["near_duplicates"]] == [2]
    assert {c["run_name"] for c in d["clusters"]} == {"kmeans16", "kmeans8"}
    assert d["clusters"][0]["is_default"]
    # Similar images: the exact top 5 by cosine, without the image itself.
    db = dbmod.connect(dbs["photos"], readonly=True)
    ids, x = vectors.read_all(db)
    s = x @ x[ids == 1][0]
    s[ids == 1] = -np.inf
    assert [m["image_id"] for m in d["similar"]] == [int(i) for i in ids[np.argsort(-s)[:5]]]
    assert all("/thumb/" in m["thumbnail_url"] for m in d["similar"])
    assert all(f.get("original_url") is None for f in d["files"])  # no originals_root configured
    assert (await get_json(ds, "/photos/-/imageclust/image/1.json?k=0"))["similar"] == []
    page = (await ds.client.get("/photos/-/imageclust/image/1")).text
    assert "Most similar" in page and "Near duplicates" in page and "/photos/-/imageclust/search?like=1" in page


async def test_image_bad_ids(ds):
    for path, status in [("/photos/-/imageclust/image/999999.json", 404), ("/photos/-/imageclust/image/x.json", 400),
                         ("/photos/-/imageclust/image/1.json?k=abc", 400), ("/photos/-/imageclust/image/1.json?k=5000", 400),
                         ("/empty/-/imageclust/image/1.json", 404)]:
        await get_json(ds, path, status)


async def test_image_page_without_clusters_or_index(ds):
    d = await get_json(ds, "/fresh/-/imageclust/image/3.json?k=4")
    assert d["clusters"] == [] and d["near_duplicates"] == [] and len(d["similar"]) == 4


# --- search ---------------------------------------------------------------------------------


async def test_more_like_this(ds):
    d = await get_json(ds, "/photos/-/imageclust/search.json?like=7&k=10")
    assert d["mode"] == "like" and d["index"]["fresh"] and len(d["results"]) == 10
    assert 7 not in [r["image_id"] for r in d["results"]]
    assert [r["distance"] for r in d["results"]] == sorted(r["distance"] for r in d["results"])
    exact = await get_json(ds, "/photos/-/imageclust/search.json?like=7&k=10&exact=1")
    assert [r["image_id"] for r in exact["results"]] == [r["image_id"] for r in d["results"]]
    # Without an index the same answer comes from the exact scan.
    fresh = await get_json(ds, "/fresh/-/imageclust/search.json?like=7&k=10")
    assert not fresh["index"]["present"]
    assert [r["image_id"] for r in fresh["results"]] == [r["image_id"] for r in d["results"]]
    page = (await ds.client.get("/photos/-/imageclust/search?like=7")).text
    assert page.count('class="ic-tile"') == 49  # the query image + 48 results


async def test_search_bad_parameters(ds):
    for q, status in [("like=abc", 400), ("like=1&q=cat", 400), ("like=999999", 404), ("k=0&like=1", 400),
                      ("k=abc&like=1", 400), ("q=" + "x" * 600, 400)]:
        d = await get_json(ds, f"/photos/-/imageclust/search.json?{q}", status)
        assert d["ok"] is False
    assert (await get_json(ds, "/empty/-/imageclust/search.json?like=1", 404))["error"] == "no image 1"
    form = await get_json(ds, "/photos/-/imageclust/search.json")
    assert form["mode"] is None and form["results"] == []


async def test_text_search_unavailable_says_why(ds):
    d = await get_json(ds, "/photos/-/imageclust/search.json?q=a%20red%20moth")
    assert d["results"] == [] and not d["text_search"]["available"]
    assert "text tower" in d["note"]
    page = (await ds.client.get("/photos/-/imageclust/search?q=a%20red%20moth")).text
    assert "Text search needs the text tower" in page and "More like this" in page


async def test_text_search_with_a_clip_shaped_model(tiny_clip, tux_dir, tmp_path):
    from datasette_imageclust.pipeline import load

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((tux_dir / "insects").iterdir())[:3] + sorted((tux_dir / "fish").iterdir())[:3]:
        shutil.copy(p, folder / p.name)
    path = str(tmp_path / "clip.db")
    assert load(path, [str(folder)], tiny_clip).new == 6
    embed_query.clear_cache()
    ds = make_ds([path])
    d = await get_json(ds, "/clip/-/imageclust/search.json?q=a%20red%20moth&k=3")
    assert d["text_search"]["available"] and d["note"] is None and len(d["results"]) == 3
    db = dbmod.connect(path, readonly=True)
    v = embed_query.embed_text(db, "a red moth")
    ids, x = vectors.read_all(db)
    assert [r["image_id"] for r in d["results"]] == [int(i) for i in ids[np.argsort(-(x @ v))[:3]]]
    # The DB records a model directory that this server lacks: the plugin's model setting fixes it.
    moved = str(tmp_path / "moved.db")
    shutil.copy(path, moved)
    w = dbmod.connect(moved)
    w.execute("UPDATE models SET name = ?", [str(tmp_path / "no-such-model")])
    w.conn.commit()
    embed_query.clear_cache()
    ds = make_ds([moved])
    assert not (await get_json(ds, "/moved/-/imageclust/search.json?q=moth"))["text_search"]["available"]
    embed_query.clear_cache()
    ds = make_ds([moved], plugin={"model": tiny_clip})
    assert len((await get_json(ds, "/moved/-/imageclust/search.json?q=moth&k=2"))["results"]) == 2


# --- thumbnails ----------------------------------------------------------------------------------


async def test_thumbnail_caching(ds):
    r = await ds.client.get("/photos/-/imageclust/thumb/5")
    assert r.status_code == 200 and r.content[:4] == b"RIFF" and r.headers["content-type"] == "image/webp"
    etag = r.headers["etag"]
    assert etag.startswith('"') and "max-age" in r.headers["cache-control"]
    r2 = await ds.client.get("/photos/-/imageclust/thumb/5", headers={"if-none-match": etag})
    assert r2.status_code == 304 and not r2.content
    assert (await ds.client.get("/photos/-/imageclust/thumb/6")).headers["etag"] != etag
    assert (await ds.client.get("/photos/-/imageclust/thumb/999999")).status_code == 404
    assert (await ds.client.get("/photos/-/imageclust/thumb/abc")).status_code == 400
    assert (await ds.client.get("/other/-/imageclust/thumb/1")).status_code == 404


# --- empty, unclustered and foreign databases ------------------------------------------------


async def test_database_without_clusters_shows_images(ds):
    d = await get_json(ds, "/fresh/-/imageclust.json")
    assert d["run"] is None and d["clusters"] == [] and d["total"] == 353
    assert len(d["images"]) == 60 and d["images"][0]["image_id"] == 353
    page = (await ds.client.get("/fresh/-/imageclust")).text
    assert "No clusters yet" in page and "imageclust cluster" in page


async def test_empty_database(ds):
    d = await get_json(ds, "/empty/-/imageclust.json")
    assert d["summary"]["images"] == 0 and d["clusters"] == [] and d["images"] == []
    assert "no images yet" in (await ds.client.get("/empty/-/imageclust")).text
    assert (await get_json(ds, "/empty/-/imageclust/search.json"))["text_search"]["available"] is False


async def test_non_imageclust_database(ds):
    for path in ("/other/-/imageclust.json", "/other/-/imageclust/image/1.json", "/other/-/imageclust/search.json",
                 "/nope/-/imageclust.json"):
        d = await get_json(ds, path, 404)
        assert "not an imageclust database" in d["error"] or "not found" in d["error"]
    r = await ds.client.get("/other/images")
    assert r.status_code == 200 and "/-/imageclust/thumb/" not in r.text


# --- Datasette integration ---------------------------------------------------------------------


async def test_vec0_tables_hidden_and_thumbnails_in_cells(ds):
    tables = (await ds.client.get("/photos.json")).json()["tables"]
    hidden = {t["name"] for t in tables if t["hidden"]}
    shown = {t["name"] for t in tables if not t["hidden"]}
    assert {"image_vectors", "image_bits", "search_vectors"} <= hidden
    assert not any(n.startswith(("image_vectors", "image_bits")) for n in shown), shown
    assert {"images", "files", "clusters"} <= shown
    # (images.id and thumbnails.image_id are primary keys, which Datasette links itself.)
    for table in ("files", "cluster_members", "duplicate_members"):
        page = (await ds.client.get(f"/photos/{table}")).text
        assert '<img class="ic-cell-thumb"' in page and "/photos/-/imageclust/thumb/" in page, table


async def test_action_menus_link_to_the_pages(ds):
    db_page = (await ds.client.get("/photos")).text
    assert 'href="/photos/-/imageclust"' in db_page and 'href="/photos/-/imageclust/search"' in db_page
    assert 'href="/photos/-/imageclust/map"' in db_page
    assert 'href="/photos/-/imageclust"' in (await ds.client.get("/photos/images")).text
    assert "/-/imageclust" not in (await ds.client.get("/other")).text


async def test_immutable_mode(dbs):
    ds = Datasette(immutables=[dbs["photos"]])
    d = await get_json(ds, "/photos/-/imageclust/search.json?like=3&k=5")
    assert d["index"]["fresh"] and len(d["results"]) == 5
    assert (await get_json(ds, "/photos/-/imageclust.json"))["run"]["name"] == "kmeans16"


async def test_permissions_are_respected(dbs):
    ds = make_ds([dbs["photos"]], databases={"photos": {"allow": {"id": "root"}}})
    for path in ("/photos/-/imageclust.json", "/photos/-/imageclust/image/1.json",
                 "/photos/-/imageclust/search.json?like=1", "/photos/-/imageclust/cluster/1.json"):
        assert (await ds.client.get(path)).status_code == 403, path
    assert (await ds.client.get("/photos/-/imageclust/thumb/1")).status_code == 403
    cookies = {"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")}
    r = await ds.client.get("/photos/-/imageclust.json", cookies=cookies)
    assert r.status_code == 200
    # A table-level block on images hides the pages too (they show its content).
    ds = make_ds([dbs["photos"]], databases={"photos": {"tables": {"images": {"allow": False}}}})
    assert (await ds.client.get("/photos/-/imageclust/image/1.json")).status_code == 403


async def test_templates_escape_by_default():
    # Guard against a template marking text safe or turning escaping off. (That hostile
    # text is escaped on every page is checked in test_security.py.)
    templates = sorted((Path(__file__).parent.parent / "datasette_imageclust" / "web" / "templates").glob("imageclust_*.html"))
    assert templates
    for p in templates:
        text = p.read_text().replace(" ", "")
        assert "|safe" not in text and "autoescapefalse" not in text, p.name


async def test_ready_made_queries(ds):
    names = {"imageclust_similar", "imageclust_similar_fast", "imageclust_cluster_images", "imageclust_clusters",
             "imageclust_exact_duplicates", "imageclust_near_duplicates"}
    sim = (await ds.client.get("/photos/imageclust_similar.json?id=5&k=4&_shape=array")).json()
    fast = (await ds.client.get("/photos/imageclust_similar_fast.json?id=5&k=4&_shape=array")).json()
    exact = (await get_json(ds, "/photos/-/imageclust/search.json?like=5&k=4&exact=1"))["results"]
    assert [r["image_id"] for r in sim] == [r["image_id"] for r in fast] == [r["image_id"] for r in exact]
    members = (await ds.client.get("/photos/imageclust_cluster_images.json?cluster=1&_shape=array")).json()
    assert [m["rank"] for m in members] == list(range(1, len(members) + 1)) and members
    dupes = (await ds.client.get("/photos/imageclust_exact_duplicates.json?_shape=array")).json()
    assert dupes[0]["image_id"] == 1 and dupes[0]["copies"] == 2
    near = (await ds.client.get("/photos/imageclust_near_duplicates.json?_shape=array")).json()
    assert near[0]["size"] == 2
    assert (await ds.client.get("/photos/imageclust_clusters.json")).status_code == 200
    # Offered where their tables exist, and never for other databases.
    assert (await ds.client.get("/fresh/imageclust_similar_fast.json")).status_code == 404
    assert (await ds.client.get("/fresh/imageclust_similar.json?id=1&k=2")).status_code == 200
    for name in names:
        assert (await ds.client.get(f"/other/{name}.json")).status_code == 404


async def test_search_by_uploaded_image(ds, tux_dir, monkeypatch):
    sample = sorted((tux_dir / "birds").iterdir())[0]
    files = {"image": (sample.name, sample.read_bytes(), "image/jpeg")}
    d = (await ds.client.post("/photos/-/imageclust/search.json?k=5", files=files)).json()
    assert d["mode"] == "upload" and d["upload_search"]["available"] and len(d["results"]) == 5
    # The same file was loaded: it is its own nearest image, at distance ~0.
    first = d["results"][0]
    page = (await get_json(ds, f"/photos/-/imageclust/image/{first['image_id']}.json?k=0"))
    assert any(f["path"] == str(sample) for f in page["files"]) and first["distance"] < 1e-3
    assert d["upload"]["thumbnail"].startswith("data:image/")
    html_page = (await ds.client.post("/photos/-/imageclust/search", files=files)).text
    assert "Upload and search" in html_page and html_page.count('class="ic-tile"') == 48
    for bad_files, status in [({"image": ("x.jpg", b"not an image", "image/jpeg")}, 400),
                              ({"other": ("x.jpg", sample.read_bytes(), "image/jpeg")}, 400)]:
        r = await ds.client.post("/photos/-/imageclust/search.json", files=bad_files)
        assert r.status_code == status and r.json()["ok"] is False
    r = await ds.client.post("/photos/-/imageclust/search.json", data={"image": "x"})
    assert r.status_code == 400
    r = await ds.client.post("/empty/-/imageclust/search.json", files=files)
    assert r.status_code == 400 and "no embedding model" in r.json()["error"]
    from datasette_imageclust.web import upload

    monkeypatch.setattr(upload, "MAX_BYTES", 1000)
    r = await ds.client.post("/photos/-/imageclust/search.json", files=files)
    assert r.status_code == 413 and "limited" in r.json()["error"]


async def test_every_pages_tabs_and_forms_lead_somewhere(ds):
    """The tabs and search forms on each page point at the plugin's pages (Datasette's own
    `urls` template object once shadowed ours and left every tab as href="")."""
    import re

    d = await get_json(ds, "/photos/-/imageclust.json")
    cid = d["clusters"][0]["id"]
    iid = d["clusters"][0]["representatives"][0]["image_id"]
    pages = ["/photos/-/imageclust", f"/photos/-/imageclust/cluster/{cid}", f"/photos/-/imageclust/image/{iid}",
             f"/photos/-/imageclust/search?like={iid}"]
    for page in pages:
        r = await ds.client.get(page)
        assert r.status_code == 200, page
        nav = re.search(r'<nav class="ic-tabs">(.*?)</nav>', r.text, re.S).group(1)
        links = dict((text, href) for href, text in re.findall(r'<a href="([^"]*)"[^>]*>([^<]+)</a>', nav))
        assert links == {"Clusters": "/photos/-/imageclust", "Search": "/photos/-/imageclust/search",
                         "Map": "/photos/-/imageclust/map", "images table": "/photos/images"}, (page, links)
        for href in links.values():
            assert (await ds.client.get(href)).status_code == 200, (page, href)
        for action in re.findall(r'<form class="ic-[^"]*"[^>]*action="([^"]*)"', r.text):
            assert action.startswith("/photos/-/imageclust"), (page, action)
