"""Downloads (/<db>/-/imageclust/export) through a real Datasette: CSV, JSON and ZIP read
back, strict parameters, and the permission rules of the pages (every table the file
carries must be viewable, or its columns are left out). Run under Datasette 0.65 and 1.0."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import zipfile

import pytest

import plugin_dbs
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio
DS1 = not __import__("datasette").__version__.startswith("0.")


@pytest.fixture(scope="module")
def dbs(tux_db, tmp_path_factory) -> dict[str, str]:
    """The plugin tests' clustered tux database, plus a map layout (t-SNE, no atlas)."""
    from datasette_imageclust.pipeline import build_map
    from datasette_imageclust.store import connection

    path = plugin_dbs.clustered(tux_db, tmp_path_factory.mktemp("downloads") / "photos.db")
    db = connection.connect(path)
    build_map(db, method="tsne", atlas=False)
    connection.close(db)
    return {"photos": path}


def _ds(dbs, *, root: str | None = None, deny: str | None = None):
    def tables() -> dict:  # a dict each: Datasette 1.0 rewrites its config in place
        return {deny: {"allow": False}} if deny else {}

    return make_ds(list(dbs.values()), plugin={"originals_root": root} if root else None,
                   databases={"photos": {"tables": tables()}})


def _rows(body: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def _biggest_cluster(path: str) -> tuple[int, set[int]]:
    c = sqlite3.connect(path)
    cid = c.execute("SELECT c.id FROM clusters c JOIN cluster_runs r ON r.id = c.run_id WHERE r.is_default "
                    "AND c.kind = 'cluster' ORDER BY c.size DESC, c.id LIMIT 1").fetchone()[0]
    members = {r[0] for r in c.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid])}
    c.close()
    return cid, members


async def test_csv_json_and_zip_of_a_cluster(dbs, tux_dir):
    ds = _ds(dbs, root=str(tux_dir))
    cid, members = _biggest_cluster(dbs["photos"])
    r = await ds.client.get(f"/photos/-/imageclust/export?format=csv&cluster={cid}")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
    rows = _rows(r.content)
    assert {int(x["image_id"]) for x in rows} == members and all(int(x["cluster_id"]) == cid for x in rows)
    r = await ds.client.get(f"/photos/-/imageclust/export?format=json&cluster={cid}&run=kmeans16")
    assert r.status_code == 200 and {x["image_id"] for x in json.loads(r.content)} == members
    r = await ds.client.get("/photos/-/imageclust/export?format=csv&run=kmeans8")
    assert r.status_code == 200 and {x["run"] for x in _rows(r.content)} == {"kmeans8"}
    r = await ds.client.get(f"/photos/-/imageclust/export?format=zip&cluster={cid}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        manifest = _rows(z.read("manifest.csv"))
        assert {int(m["image_id"]) for m in manifest} == members
        assert {m["source"] for m in manifest} == {"original"}  # under originals_root
        for m in manifest:
            assert hashlib.sha256(z.read(m["file"])).hexdigest() == m["sha256"]


async def test_zip_without_originals_root_holds_thumbnails(dbs, tmp_path):
    cid, members = _biggest_cluster(dbs["photos"])
    for ds in (_ds(dbs), _ds(dbs, root=str(tmp_path))):  # none set; set, but the files lie elsewhere
        r = await ds.client.get(f"/photos/-/imageclust/export?format=zip&cluster={cid}")
        assert r.status_code == 200, r.text[:300]
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            manifest = _rows(z.read("manifest.csv"))
            assert len(manifest) == len(members) and {m["source"] for m in manifest} == {"thumbnail"}
            assert all("originals are not served from here" in m["note"] for m in manifest)
            assert all(z.read(m["file"]) for m in manifest)


async def test_a_selection_of_ids_exports_exactly_those_images(dbs):
    """The map's selection downloads (``ids=``): exactly those images, each with its
    cluster in the run asked for, as CSV and in a ZIP."""
    cid, members = _biggest_cluster(dbs["photos"])
    c = sqlite3.connect(dbs["photos"])
    others = [r[0] for r in c.execute("SELECT image_id FROM cluster_members m JOIN cluster_runs r ON "
                                      "r.id = m.run_id WHERE r.name = 'kmeans8' AND m.cluster_id != ? "
                                      "ORDER BY image_id LIMIT 3", [cid])]
    c.close()
    wanted = list(dict.fromkeys(sorted(members)[:2] + others))  # distinct, in this order
    ds = _ds(dbs)
    r = await ds.client.get(f"/photos/-/imageclust/export?format=csv&run=kmeans8&ids={','.join(map(str, wanted))}")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-disposition"].endswith('-selection.csv"')
    rows = _rows(r.content)
    assert sorted(int(x["image_id"]) for x in rows) == sorted(wanted)
    assert {x["run"] for x in rows} == {"kmeans8"}
    r = await ds.client.get(f"/photos/-/imageclust/export?format=zip&ids={wanted[0]},{wanted[-1]}")
    assert r.status_code == 200, r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(int(m["image_id"]) for m in _rows(z.read("manifest.csv"))) == sorted({wanted[0], wanted[-1]})


@pytest.mark.parametrize("query,status,words", [
    ("format=xlsx", 400, "format must be one of"),
    ("format=csv&cluster=abc", 400, "whole number"),
    ("format=csv&cluster=1&cluster=2", 400, "once"),
    ("format=csv&bogus=1", 400, "unknown parameter 'bogus'"),
    ("format=csv&cluster=999999", 404, "no cluster 999999"),
    ("format=csv&run=nope", 404, "no clustering run named 'nope'"),
    ("format=csv&run=" + "x" * 300, 400, "longer than"),
    ("format=csv&ids=1,x", 400, "whole number"),
    ("format=csv&ids=", 400, "must list image ids"),
    ("format=csv&ids=1,,2", 400, "empty item"),
    ("format=csv&ids=0", 400, "each id in ids"),
    ("format=csv&ids=1&ids=2", 400, "once"),
    ("format=csv&ids=1&cluster=1", 400, "either cluster or ids"),
    ("format=csv&ids=" + ",".join(["1"] * 20_001), 400, "at most 20,000"),
])
async def test_parameters_are_strict(dbs, query, status, words):
    r = await _ds(dbs).client.get(f"/photos/-/imageclust/export?{query}")
    assert r.status_code == status and words in r.text, (r.status_code, r.text[:300])


@pytest.mark.parametrize("table,fmt", [("images", "csv"), ("files", "csv"), ("clusters", "json"),
                                       ("cluster_members", "csv"), ("cluster_labels", "csv"),
                                       ("thumbnails", "zip")])
async def test_a_table_the_file_carries_must_be_viewable(dbs, table, fmt):
    r = await _ds(dbs, deny=table).client.get(f"/photos/-/imageclust/export?format={fmt}")
    assert r.status_code == 403, (r.status_code, r.text[:300])
    r = await _ds(dbs).client.get(f"/photos/-/imageclust/export?format={fmt}")
    assert r.status_code == 200, r.text[:300]


async def test_map_positions_left_out_unless_viewable(dbs):
    r = await _ds(dbs).client.get("/photos/-/imageclust/export?format=csv")
    assert r.status_code == 200
    assert all(x["x"] and x["y"] for x in _rows(r.content))
    r = await _ds(dbs, deny="layout_points").client.get("/photos/-/imageclust/export?format=csv")
    assert r.status_code == 200
    rows = _rows(r.content)
    assert rows and all(x["x"] == "" and x["y"] == "" for x in rows)


async def test_the_pages_link_to_downloads(dbs):
    ds = _ds(dbs)
    cid, members = _biggest_cluster(dbs["photos"])
    page = (await ds.client.get(f"/photos/-/imageclust/cluster/{cid}")).text
    link = f"/photos/-/imageclust/export?format=zip&amp;cluster={cid}&amp;run=kmeans16"
    assert link in page
    r = await ds.client.get(link.replace("&amp;", "&"))
    assert r.status_code == 200
    index = (await ds.client.get("/photos/-/imageclust")).text
    assert "/photos/-/imageclust/export?format=csv&amp;run=kmeans16" in index


async def test_downloads_beyond_the_slots_wait_then_get_429(dbs, monkeypatch):
    """Each export holds a thread: with every slot taken, another download waits, then is
    refused with 429 and Retry-After; once a slot is free it runs."""
    from datasette_imageclust.web import downloads

    monkeypatch.setattr(downloads, "SLOT_WAIT", 0.2)
    ds = _ds(dbs)
    holders = [downloads.SLOTS.held(0) for _ in range(downloads.DOWNLOADSLOTS)]
    for h in holders:
        await h.__aenter__()
    try:
        r = await ds.client.get("/photos/-/imageclust/export?format=csv")
        assert r.status_code == 429 and r.headers["retry-after"] == "5", r.text[:200]
        assert f"{downloads.DOWNLOADSLOTS} at a time" in r.text
    finally:
        for h in holders:
            await h.__aexit__(None, None, None)
    assert downloads.SLOTS.used == 0
    assert (await ds.client.get("/photos/-/imageclust/export?format=csv")).status_code == 200


# --- a selection too long for a URL: POST /export with a form body -----------------------------

BIG = 6000


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> str:
    """A database of 6,000 images (one run, "default"): selections of thousands."""
    from synthdb import make_db

    return make_db(str(tmp_path_factory.mktemp("bigselect") / "big.db"), BIG, clusters=12, thumb_px=16,
                   distinct_thumbs=24)


def _picked(n: int) -> list[int]:
    """``n`` distinct ids of the big database, in no particular order (as a lasso gives them)."""
    import numpy as np

    return [int(i) for i in np.random.default_rng(7).permutation(np.arange(1, BIG + 1))[:n]]


async def _map_token(ds, db: str = "big") -> tuple[str, dict]:
    """The CSRF token the map page's download form carries, and the cookies it set
    (0.65: asgi-csrf's ds_csrftoken, which the token must match)."""
    import re

    r = await ds.client.get(f"/{db}/-/imageclust/map")
    assert r.status_code == 200, r.text[:300]
    found = re.search(r'<form id="icm-sel-export-form" method="post" action="/' + db +
                      r'/-/imageclust/export"[^>]*>\s*<input type="hidden" name="csrftoken" value="([^"]+)"', r.text)
    assert found, "the map page has no download form with a CSRF token"
    return found.group(1), dict(r.cookies)


def _form(**fields) -> tuple[str, dict]:
    from urllib.parse import urlencode

    return urlencode(fields), {"content-type": "application/x-www-form-urlencoded"}


async def test_a_post_of_5000_ids_exports_exactly_those_images(big, monkeypatch):
    from datasette_imageclust.web import downloads

    ds = make_ds([big])
    token, cookies = await _map_token(ds)
    wanted = _picked(5000)
    body, headers = _form(csrftoken=token, format="csv", run="default", ids=",".join(map(str, wanted)))
    assert len(body) > 20_000  # far beyond any URL a server accepts
    r = await ds.client.post("/big/-/imageclust/export", content=body, headers=headers, cookies=cookies)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-disposition"].endswith('-selection.csv"')
    rows = _rows(r.content)
    assert len(rows) == len(wanted) and sorted(int(x["image_id"]) for x in rows) == sorted(wanted)
    assert {x["run"] for x in rows} == {"default"} and all(x["cluster_id"] for x in rows)
    # ZIP too (the map's other download), from the same kind of body.
    body, _ = _form(csrftoken=token, format="zip", ids=",".join(map(str, wanted[:1500])))
    r = await ds.client.post("/big/-/imageclust/export", content=body, headers=headers, cookies=cookies)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert sorted(int(m["image_id"]) for m in _rows(z.read("manifest.csv"))) == sorted(wanted[:1500])
    # The same download slots as the GET.
    monkeypatch.setattr(downloads, "SLOT_WAIT", 0.2)
    holders = [downloads.SLOTS.held(0) for _ in range(downloads.DOWNLOADSLOTS)]
    for h in holders:
        await h.__aenter__()
    try:
        r = await ds.client.post("/big/-/imageclust/export", content=body, headers=headers, cookies=cookies)
        assert r.status_code == 429 and r.headers["retry-after"] == "5", r.text[:200]
    finally:
        for h in holders:
            await h.__aexit__(None, None, None)


async def test_a_post_needs_datasettes_csrf_check(big):
    """0.65: asgi-csrf's token (the map page's) must match its cookie; 1.0: the origin must be
    this site. Either way a forged POST is a 403 before the export runs, never a 500."""
    ds = make_ds([big])
    token, cookies = await _map_token(ds)
    ids = ",".join(map(str, _picked(3000)))
    url = "/big/-/imageclust/export"
    if DS1:
        body, headers = _form(csrftoken=token, format="csv", ids=ids)
        r = await ds.client.post(url, content=body, cookies=cookies,
                                 headers={**headers, "origin": "http://localhost", "sec-fetch-site": "same-origin"})
        assert r.status_code == 200 and len(_rows(r.content)) == 3000, r.text[:300]
        r = await ds.client.post(url, content=body, cookies=cookies,
                                 headers={**headers, "origin": "http://evil.example", "sec-fetch-site": "cross-site"})
        assert r.status_code == 403 and "text/csv" not in r.headers["content-type"], r.text[:300]
        return
    assert "ds_csrftoken" in cookies
    body, headers = _form(csrftoken=token, format="csv", ids=ids)
    r = await ds.client.post(url, content=body, headers=headers, cookies=cookies)
    assert r.status_code == 200 and len(_rows(r.content)) == 3000, r.text[:300]
    for forged in ({"csrftoken": token[:-2] + "xx"}, {}):  # a wrong token, none
        body, headers = _form(**forged, format="csv", ids=ids)
        r = await ds.client.post(url, content=body, headers=headers, cookies=cookies)
        assert r.status_code == 403 and "did not match cookie" in r.text, (r.status_code, r.text[:300])


async def test_a_bad_post_from_a_browser_is_a_4xx_before_the_csrf_check(big):
    """With the map's cookies (as a browser sends them), Datasette 0.65's CSRF check would
    read any body into memory first and fail with a 500 on one that is not UTF-8 or a
    multipart type without a boundary: the body is checked (and bounded) before it."""
    ds = make_ds([big])
    token, cookies = await _map_token(ds)
    url, form = "/big/-/imageclust/export", {"content-type": "application/x-www-form-urlencoded"}
    bad = [(b"csrftoken=" + token.encode() + b"&ids=1&run=\xff", form, 400, "ASCII"),
           (b"csrftoken=" + token.encode() + b"&ids=1", {"content-type": "multipart/form-data"}, 400,
            "x-www-form-urlencoded"),
           (b"ids=" + b"%2C".join([b"1" * 30] * 20_000), form, 413, "form body is over"),
           (b"ids=1", {**form, "content-length": str(10**9)}, 413, "form body is over")]
    for body, headers, status, words in bad:
        r = await ds.client.post(url, content=body, headers=headers, cookies=cookies)
        assert r.status_code == status and words in r.text, (status, r.status_code, r.text[:300])
    # ... and a good one still passes the check and downloads exactly its ids.
    body, headers = _form(csrftoken=token, format="csv", ids="5,3,9")
    r = await ds.client.post(url, content=body, headers=headers, cookies=cookies)
    assert r.status_code == 200 and sorted(int(x["image_id"]) for x in _rows(r.content)) == [3, 5, 9], r.text[:300]


@pytest.mark.parametrize("body,status,words", [
    ("format=csv&ids=1%2Cx", 400, "whole number"),
    ("format=csv&ids=", 400, "must list image ids"),
    ("format=csv&ids=1%2C%2C2", 400, "empty item"),
    ("format=csv&ids=1&ids=2", 400, "once"),
    ("format=xlsx&ids=1", 400, "format must be one of"),
    ("format=csv&ids=1&bogus=1", 400, "unknown parameter 'bogus'"),
    ("format=csv&ids=1&cluster=1", 400, "either cluster or ids"),
    ("format=csv&ids=" + "%2C".join(["1"] * 20_001), 400, "at most 20,000"),
    ("format=csv&ids=" + "%2C".join(["1" * 30] * 20_000), 413, "form body is over"),
    ("format=csv&ids=1&junk", 400, "malformed form body"),
    ("format=csv&ids=1&run=%ff", 400, "UTF-8"),
    ("format=csv&ids=1&run=\u00e9", 400, "ASCII"),
    ("format=csv&ids=1&run=a%00b", 400, "NUL"),
    ("format=csv&ids=1&run=nope", 404, "no clustering run named 'nope'"),
])
async def test_a_posts_body_is_parsed_strictly(big, body, status, words):
    r = await make_ds([big]).client.post("/big/-/imageclust/export", content=body.encode("utf-8"),
                                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == status and words in r.text, (r.status_code, r.text[:300])


async def test_a_post_gives_its_fields_as_a_form_only(big):
    ds = make_ds([big])
    url = "/big/-/imageclust/export"
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await ds.client.post(url + "?format=csv", content="ids=1", headers=form)
    assert r.status_code == 400 and "in the form body, not in the URL" in r.text, r.text[:300]
    r = await ds.client.post(url, content='{"ids": "1"}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "x-www-form-urlencoded" in r.text, r.text[:300]
    r = await ds.client.request("PUT", url, content="ids=1", headers=form)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST", r.text[:300]
    # Content-Length over the bound: refused before the body is read.
    r = await ds.client.post(url, content=b"ids=1", headers={**form, "content-length": "999999999"})
    assert r.status_code == 413, r.text[:300]


async def test_a_post_checks_the_tables_as_the_get(big):
    """Every table the file carries must be viewable (403 as the GET), and then a POST
    downloads exactly its ids."""
    wanted = _picked(2000)
    body, headers = _form(format="csv", ids=",".join(map(str, wanted)))
    for deny in ("files", "cluster_labels", None):
        ds = make_ds([big], databases={"big": {"tables": {deny: {"allow": False}} if deny else {}}})
        r = await ds.client.post("/big/-/imageclust/export", content=body, headers=headers)
        if deny:
            get = await ds.client.get("/big/-/imageclust/export?format=csv&ids=" + ",".join(map(str, wanted[:5])))
            assert r.status_code == get.status_code == 403 and "permission denied" in r.text, (deny, r.text[:300])
        else:
            assert r.status_code == 200 and sorted(int(x["image_id"]) for x in _rows(r.content)) == sorted(wanted)


async def test_a_post_works_on_an_immutable_database(big, tmp_path):
    import shutil

    frozen = tmp_path / "frozen.db"
    shutil.copy(big, frozen)
    before = hashlib.sha256(frozen.read_bytes()).hexdigest()
    ds = make_ds([], immutables=[str(frozen)])
    token, cookies = await _map_token(ds, "frozen")
    wanted = _picked(4000)
    body, headers = _form(csrftoken=token, format="csv", ids=",".join(map(str, wanted)))
    r = await ds.client.post("/frozen/-/imageclust/export", content=body, headers=headers, cookies=cookies)
    assert r.status_code == 200, r.text[:300]
    assert sorted(int(x["image_id"]) for x in _rows(r.content)) == sorted(wanted)
    assert hashlib.sha256(frozen.read_bytes()).hexdigest() == before
