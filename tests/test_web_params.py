"""Every parameter of every plugin route, fed hostile values: never a 5xx, and an integer
parameter (query or path) that is not plain ASCII digits in range is a 400 (404 where
the route itself does not match)."""
from __future__ import annotations

from urllib.parse import quote

import pytest
import pytest_asyncio

import plugin_dbs
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio

REPEAT = object()  # the parameter given twice
HOSTILE = ["²", "١", "٣", "１", "-0", "-1", "+1", " 1", "1 ", "1e3", "0x10", "1_0", "1.0", "9" * 40, "",
           "\x00", "1\x00", "%", "abc", REPEAT]


@pytest.fixture(scope="module")
def dbs(tux_db, map_db, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("params")
    return {"photos": plugin_dbs.clustered(tux_db, d / "photos.db"), "map": map_db}


@pytest_asyncio.fixture
async def ds(dbs, tux_dir):
    d = make_ds(list(dbs.values()), plugin={"originals_root": str(tux_dir)})
    await d.invoke_startup()
    return d


def _query(name: str, value, fixed: str = "") -> str:
    q = f"{name}=1&{name}=2" if value is REPEAT else f"{name}={quote(value, safe='')}"
    return "?" + (fixed + "&" if fixed else "") + q


# (path, parameter, a good value, other parameters, is an integer): a slot for hostile values.
QUERY_SLOTS = [
    ("/photos/-/imageclust{fmt}", "page", "1", "", True),
    ("/photos/-/imageclust{fmt}", "run", "kmeans8", "", False),
    ("/photos/-/imageclust{fmt}", "sort", "label", "", False),
    ("/photos/-/imageclust/cluster/{cluster}{fmt}", "page", "1", "", True),
    ("/photos/-/imageclust/image/1{fmt}", "k", "3", "", True),
    ("/photos/-/imageclust/search{fmt}", "like", "1", "", True),
    ("/photos/-/imageclust/search{fmt}", "k", "3", "like=1", True),
    ("/photos/-/imageclust/search{fmt}", "exact", "1", "like=1", False),
    ("/photos/-/imageclust/search{fmt}", "q", "a bird", "", False),
    ("/map/-/imageclust/map{fmt}", "layout", "1", "", True),
    ("/map/-/imageclust/map{fmt}", "run", "1", "", True),
    ("/map/-/imageclust/map.json", "points", "1", "", False),
    ("/map/-/imageclust/map/points.bin", "layout", "1", "", True),
    ("/map/-/imageclust/map/points.bin", "run", "1", "", True),
    ("/map/-/imageclust/map/points.bin", "atlas", "x", "", False),
    ("/map/-/imageclust/map/points.bin", "v", "x", "", False),
    ("/map/-/imageclust/map/atlas/16/0", "v", "x", "", False),
]
PATH_SLOTS = [
    "/photos/-/imageclust/cluster/{v}{fmt}",
    "/photos/-/imageclust/image/{v}{fmt}",
    "/photos/-/imageclust/thumb/{v}",
    "/photos/-/imageclust/original/{v}",
    "/map/-/imageclust/map/atlas/{v}/0",
    "/map/-/imageclust/map/atlas/16/{v}",
    "/{v}/-/imageclust{fmt}",
]


def _formats(path: str) -> list[str]:
    return ["", ".json"] if "{fmt}" in path else [""]


async def _cluster(ds) -> int:
    return (await ds.client.get("/photos/-/imageclust.json")).json()["clusters"][0]["id"]


async def test_hostile_query_values_on_every_route(ds):
    cluster = await _cluster(ds)
    seen = []
    for path, name, good_value, fixed, is_int in QUERY_SLOTS:
        for fmt in _formats(path):
            base = path.format(fmt=fmt, cluster=cluster)
            # The slot works with a good value (so a 400 below is about the value).
            good = await ds.client.get(base + _query(name, good_value, fixed))
            assert good.status_code == 200, (base, name, good.status_code, good.text[:200])
            for value in HOSTILE:
                url = base + _query(name, value, fixed)
                r = await ds.client.get(url)
                seen.append(r.status_code)
                assert r.status_code < 500, (url, r.status_code, r.text[:300])
                if is_int and value != "":
                    assert r.status_code == 400, (url, r.status_code, r.text[:300])
                    if fmt == ".json" or path.endswith(".bin"):
                        assert r.json()["ok"] is False and name in r.json()["error"], url
    assert 400 in seen and 200 in seen


async def test_hostile_path_segments_on_every_route(ds):
    for path in PATH_SLOTS:
        for fmt in _formats(path):
            for value in HOSTILE:
                if value is REPEAT:
                    continue
                url = path.format(v=quote(value, safe=""), fmt=fmt)
                r = await ds.client.get(url)
                # (An empty segment leaves a trailing slash, which Datasette redirects away.)
                assert r.status_code in (400, 404) or value == "" and r.status_code == 302, \
                    (url, r.status_code, r.text[:300])


async def test_hostile_values_in_upload_search(ds, tux_dir):
    sample = sorted((tux_dir / "birds").iterdir())[0]
    files = {"image": (sample.name, sample.read_bytes(), "image/jpeg")}
    for fmt in ("", ".json"):
        ok = await ds.client.post(f"/photos/-/imageclust/search{fmt}?k=3", files=files)
        assert ok.status_code == 200, ok.text[:300]
        for value in HOSTILE:
            if value == "":
                continue
            r = await ds.client.post(f"/photos/-/imageclust/search{fmt}" + _query("k", value), files=files)
            assert r.status_code == 400, (value, r.status_code, r.text[:300])


async def test_good_integers_still_work(ds):
    d = (await ds.client.get("/photos/-/imageclust/search.json?like=0007&k=0010")).json()
    assert d["like"] == 7 and d["k"] == 10 and len(d["results"]) == 10
    assert (await ds.client.get("/photos/-/imageclust/image/0001.json?k=200")).status_code == 200
    assert (await ds.client.get("/photos/-/imageclust/image/1.json?k=201")).status_code == 400
    assert (await ds.client.get("/map/-/imageclust/map/atlas/016/000")).status_code == 200
