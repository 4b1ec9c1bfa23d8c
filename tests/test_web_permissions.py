"""Table-level permissions x every route: a table the actor may not view (a Datasette
``allow`` block) is left out of every page, JSON and binary answer, or the route that
exists to show it refuses (403). Run under Datasette 0.65 and 1.0 (.ci/run)."""
from __future__ import annotations

import json
import struct

import pytest

import plugin_dbs
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio

FILE_NAME = "adelaide-rosella"  # image 1's file name
LABEL = "a bird"  # the CLIP label (and so the best label) of the second biggest cluster


@pytest.fixture(scope="module")
def dbs(tux_db, map_db, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("perm")
    return {"photos": plugin_dbs.clustered(tux_db, d / "photos.db"), "map": map_db}


def _ds(dbs, tux_dir, deny: str | None = None, allow: object = False):
    def tables() -> dict:  # a dict each: Datasette 1.0 rewrites its config in place
        return {deny: {"allow": allow}} if deny else {}

    return make_ds(list(dbs.values()), plugin={"originals_root": str(tux_dir)},
                   databases={"photos": {"tables": tables()}, "map": {"tables": tables()}})


async def _collect(ds, cookies=None) -> dict:
    """Every route's answer: JSON bodies parsed, others as (status, bytes)."""
    get = lambda path: ds.client.get(path, cookies=cookies)  # noqa: E731
    out: dict = {}
    idx = await get("/photos/-/imageclust.json")
    out["index"] = idx
    cluster = 1
    out["cluster"] = await get(f"/photos/-/imageclust/cluster/{cluster}.json")
    out["image"] = await get("/photos/-/imageclust/image/1.json?k=3")
    out["like"] = await get("/photos/-/imageclust/search.json?like=1&k=3")
    out["search_form"] = await get("/photos/-/imageclust/search.json")
    out["map"] = await get("/map/-/imageclust/map.json")
    out["points"] = await get("/map/-/imageclust/map/points.bin")
    out["sheet"] = await get("/map/-/imageclust/map/atlas/16/0")
    out["thumb"] = await get("/photos/-/imageclust/thumb/1")
    out["original"] = await get("/photos/-/imageclust/original/1")
    for name in ("index", "cluster", "image", "search"):
        path = {"index": "/photos/-/imageclust", "cluster": f"/photos/-/imageclust/cluster/{cluster}",
                "image": "/photos/-/imageclust/image/1", "search": "/photos/-/imageclust/search?like=1"}[name]
        out[name + "_html"] = await get(path)
    out["map_html"] = await get("/map/-/imageclust/map")
    out["cells"] = await get("/photos/cluster_members")
    out["db_page"] = await get("/photos")
    for key, r in out.items():
        assert r.status_code < 500, (key, r.status_code, r.text[:300])
    return out


def _points(body: bytes) -> dict:
    n = struct.unpack("<I", body[4:8])[0]
    return {"cluster": struct.unpack(f"<{n}i", body[16 + 12 * n:16 + 16 * n]),
            "atlas": struct.unpack(f"<{n}I", body[16 + 16 * n:16 + 20 * n])}


def _j(r) -> dict:
    return r.json() if r.status_code == 200 else {}


def _text(out: dict, *keys: str) -> str:
    return "".join(out[k].text for k in keys if out[k].status_code == 200)


PAGES = ("index", "cluster", "image", "like", "index_html", "cluster_html", "image_html", "search_html")


async def test_without_rules_everything_is_shown(dbs, tux_dir):
    # What an actor who may see every table sees (so each check below can fail).
    out = await _collect(_ds(dbs, tux_dir))
    assert all(out[k].status_code == 200 for k in out), {k: r.status_code for k, r in out.items()}
    assert FILE_NAME in _text(out, "image", "index", "like", "image_html")
    assert "/thumb/" in _text(out, "index", "cluster", "image", "like", "index_html", "image_html")
    assert _j(out["index"])["clusters"] and _j(out["image"])["clusters"] and _j(out["map"])["clusters"]
    assert _j(out["index"])["clusters"][0]["labels"] and _j(out["cluster"])["cluster"]["labels"]
    assert LABEL in _text(out, "index", "index_html")
    assert _j(out["image"])["near_duplicates"] and _j(out["image"])["similar"] and _j(out["like"])["results"]
    assert _j(out["map"])["atlas"]["levels"] and _j(out["index"])["summary"]["model"]
    assert any(c >= 0 for c in _points(out["points"].content)["cluster"])
    assert "ic-cell-thumb" in out["cells"].text and "/-/imageclust" in out["db_page"].text


async def test_images_denied_refuses_every_route(dbs, tux_dir):
    out = await _collect(_ds(dbs, tux_dir, "images"))
    for key in ("index", "cluster", "image", "like", "search_form", "map", "points", "sheet", "thumb", "original",
                "index_html", "cluster_html", "image_html", "search_html", "map_html"):
        assert out[key].status_code == 403, (key, out[key].status_code)
    assert "ic-cell-thumb" not in out["cells"].text
    assert "/-/imageclust" not in out["db_page"].text  # no menu links to pages that refuse


async def test_files_denied(dbs, tux_dir):
    out = await _collect(_ds(dbs, tux_dir, "files"))
    assert _j(out["image"])["files"] == [] and out["image"].status_code == 200
    assert FILE_NAME not in _text(out, *PAGES)
    assert out["original"].status_code == 403
    assert _j(out["index"])["summary"]["files"] is None


async def test_thumbnails_denied(dbs, tux_dir):
    out = await _collect(_ds(dbs, tux_dir, "thumbnails"))
    assert out["thumb"].status_code == 403
    assert out["image"].status_code == 200 and _j(out["image"])["thumbnail"] is None
    assert "/thumb/" not in _text(out, *PAGES, "map", "map_html")
    # The atlas is made of thumbnails.
    assert out["sheet"].status_code == 403 and _j(out["map"])["atlas"]["levels"] == []
    assert set(_points(out["points"].content)["atlas"]) == {0xFFFFFFFF}
    assert "ic-cell-thumb" not in out["cells"].text


@pytest.mark.parametrize("table", ["clusters", "cluster_members", "cluster_runs"])
async def test_clusters_denied(dbs, tux_dir, table):
    out = await _collect(_ds(dbs, tux_dir, table))
    idx = _j(out["index"])
    assert out["index"].status_code == 200 and idx["clusters"] == [] and idx["runs"] == [] and idx["run"] is None
    assert out["cluster"].status_code == 403 and out["cluster_html"].status_code == 403
    assert _j(out["image"])["clusters"] == []
    assert all(r["cluster_id"] is None for r in _j(out["like"])["results"])
    assert _j(out["map"])["clusters"] == [] and _j(out["map"])["run_id"] is None
    assert set(_points(out["points"].content)["cluster"]) == {-1}
    assert LABEL not in _text(out, *PAGES, "map")


async def test_cluster_labels_denied(dbs, tux_dir):
    out = await _collect(_ds(dbs, tux_dir, "cluster_labels"))
    assert all(c["labels"] == [] for c in _j(out["index"])["clusters"])
    assert _j(out["cluster"])["cluster"]["labels"] == []
    assert "onerror=alert(2)" not in _text(out, "index", "cluster")  # the 'terms' label


@pytest.mark.parametrize("table", ["duplicate_groups", "duplicate_members"])
async def test_duplicates_denied(dbs, tux_dir, table):
    out = await _collect(_ds(dbs, tux_dir, table))
    assert out["image"].status_code == 200 and _j(out["image"])["near_duplicates"] == []


async def test_vectors_denied(dbs, tux_dir):
    out = await _collect(_ds(dbs, tux_dir, "image_vectors"))
    assert out["image"].status_code == 200 and _j(out["image"])["similar"] == []
    assert out["like"].status_code == 403 and out["search_html"].status_code == 403


@pytest.mark.parametrize("table", ["layouts", "layout_points"])
async def test_map_denied(dbs, tux_dir, table):
    out = await _collect(_ds(dbs, tux_dir, table))
    for key in ("map", "points", "map_html"):
        assert out[key].status_code == 403, key
    assert out["index"].status_code == 200


@pytest.mark.parametrize("table", ["atlas_sheets", "atlas_cells"])
async def test_atlas_denied(dbs, tux_dir, table):
    out = await _collect(_ds(dbs, tux_dir, table))
    assert out["sheet"].status_code == 403 and out["map"].status_code == 200
    assert _j(out["map"])["atlas"]["levels"] == []
    assert set(_points(out["points"].content)["atlas"]) == {0xFFFFFFFF}


async def test_models_denied(dbs, tux_dir):
    out = await _collect(_ds(dbs, tux_dir, "models"))
    assert _j(out["index"])["summary"]["model"] is None
    assert "efficientnet" not in json.dumps(_j(out["index"])) + json.dumps(_j(out["like"]))


async def test_an_allowed_actor_sees_what_anonymous_may_not(dbs, tux_dir):
    ds = _ds(dbs, tux_dir, "files", allow={"id": "root"})
    cookies = {"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")}
    assert FILE_NAME not in (await ds.client.get("/photos/-/imageclust/image/1.json")).text
    assert FILE_NAME in (await ds.client.get("/photos/-/imageclust/image/1.json", cookies=cookies)).text


@pytest.mark.parametrize("table, query, params", [
    ("files", "imageclust_exact_duplicates", ""),
    ("files", "imageclust_similar", "?id=1&k=2"),
    ("image_vectors", "imageclust_similar_fast", "?id=1&k=2"),
    ("cluster_members", "imageclust_cluster_images", "?cluster=1"),
    ("duplicate_members", "imageclust_near_duplicates", ""),
])
async def test_ready_made_queries_respect_table_permissions(dbs, tux_dir, table, query, params):
    # The plugin's own queries must not show a table the actor may not view (Datasette
    # runs a canned or stored query without checking the tables it reads).
    ds = _ds(dbs, tux_dir, table, allow={"id": "root"})
    await ds.invoke_startup()
    cookies = {"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")}
    allowed = await ds.client.get(f"/photos/{query}.json{params}", cookies=cookies)
    assert allowed.status_code == 200 and allowed.json()["rows"], allowed.text[:300]
    denied = await ds.client.get(f"/photos/{query}.json{params}")
    assert denied.status_code in (403, 404), (query, denied.status_code, denied.text[:300])
    assert f'/photos/{query}"' not in (await ds.client.get("/photos")).text
