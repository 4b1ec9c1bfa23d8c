"""The map page and its data routes through a real Datasette(...).client."""
from __future__ import annotations

import sqlite3
import struct

import numpy as np
import pytest
from datasette.app import Datasette

from datasette_imageclust.store import connection as dbmod
from synthdb import make_db


async def _ds(*paths, immutable=False, metadata=None) -> Datasette:
    ds = Datasette([] if immutable else list(paths), immutables=list(paths) if immutable else [],
                   metadata=metadata)
    await ds.invoke_startup()
    return ds


def _parse(body: bytes) -> dict:
    assert body[:4] == b"ICM1"
    n = struct.unpack("<I", body[4:8])[0]
    o = 16
    out = {}
    for name, dt in (("x", "<f4"), ("y", "<f4"), ("id", "<u4"), ("cluster", "<i4"), ("atlas", "<u4")):
        out[name] = np.frombuffer(body, dt, n, o)
        o += 4 * n
    assert o == len(body)
    return out


@pytest.mark.asyncio
async def test_map_json_and_points(map_db):
    ds = await _ds(map_db)
    r = await ds.client.get("/map/-/imageclust/map.json")
    assert r.status_code == 200
    d = r.json()
    assert d["ok"] and d["message"] is None and d["n_images"] == 600
    assert d["layout"]["name"] == "default" and d["layout"]["n_images"] == 600
    assert [lv["level"] for lv in d["atlas"]["levels"]] == [16, 64]
    assert len(d["clusters"]) == 12 and sum(c["on_map"] for c in d["clusters"]) == 600
    r = await ds.client.get(d["points"]["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    p = _parse(r.content)
    assert len(p["id"]) == 600 == d["points"]["count"]
    # Everything matches the database.
    conn = sqlite3.connect(map_db)
    pos = {i: (x, y) for i, x, y in conn.execute("SELECT image_id, x, y FROM layout_points")}
    assert set(p["id"].tolist()) == set(pos)
    for k in (0, 299, 599):
        assert (p["x"][k], p["y"][k]) == pos[int(p["id"][k])]
    member = dict(conn.execute("SELECT image_id, cluster_id FROM cluster_members"))
    for k in range(0, 600, 37):
        assert d["clusters"][p["cluster"][k]]["id"] == member[int(p["id"][k])]
    # Points come in atlas order: atlas index i is the point's position.
    assert p["atlas"].tolist() == list(range(600))
    cells = dict(conn.execute("SELECT image_id, sheet * 16384 + cell FROM atlas_cells WHERE level = 16"))
    assert all(cells[int(i)] == a for i, a in zip(p["id"], p["atlas"]))
    # Cluster centres are the mean of their members' positions.
    c0 = d["clusters"][0]
    xs = [pos[i] for i, c in member.items() if c == c0["id"]]
    assert c0["x"] == pytest.approx(np.mean([x for x, _ in xs]), abs=0.01)
    # Conditional GET.
    etag = r.headers["etag"]
    r2 = await ds.client.get(d["points"]["url"], headers={"if-none-match": etag})
    assert r2.status_code == 304 and r2.content == b""


@pytest.mark.asyncio
async def test_points_as_json_arrays(map_db):
    ds = await _ds(map_db)
    d = (await ds.client.get("/map/-/imageclust/map.json?points=1")).json()
    a = d["points"]["arrays"]
    assert len(a["id"]) == len(a["x"]) == len(a["cluster"]) == 600
    assert a["atlas_index"] == list(range(600))


@pytest.mark.asyncio
async def test_atlas_sheet_route(map_db):
    ds = await _ds(map_db)
    d = (await ds.client.get("/map/-/imageclust/map.json")).json()
    sheet = d["atlas"]["levels"][1]["sheets"][0]
    r = await ds.client.get(sheet["url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert len(r.content) == sheet["bytes"] and r.content[:4] == b"RIFF"
    r2 = await ds.client.get(sheet["url"], headers={"if-none-match": r.headers["etag"]})
    assert r2.status_code == 304
    # Without the build id (or an old one) the URL is only briefly cacheable.
    r3 = await ds.client.get(sheet["url"].split("?")[0] + "?v=old")
    assert r3.status_code == 200 and r3.headers["cache-control"] == "public, max-age=300"
    # The hover preview uses the plugin's thumbnail route.
    assert d["urls"]["thumb"] == "/map/-/imageclust/thumb/"
    r4 = await ds.client.get(d["urls"]["thumb"] + "1")
    assert r4.status_code == 200 and r4.headers["content-type"] == "image/webp"


@pytest.mark.asyncio
async def test_map_page_html_escapes_labels(map_db):
    ds = await _ds(map_db)
    r = await ds.client.get("/map/-/imageclust/map")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert 'id="icm-config"' in html and "/-/static-plugins/datasette-imageclust/map.js" in html
    # Labels carry HTML: they are fetched as JSON by the script, never markup.
    assert '<img src=x onerror' not in html
    js = await ds.client.get("/-/static-plugins/datasette-imageclust/map.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "innerHTML" not in js.text  # labels and paths only ever go through textContent / canvas
    assert (await ds.client.get("/-/static-plugins/datasette-imageclust/secret.py")).status_code == 404


@pytest.mark.asyncio
async def test_layout_names_are_escaped(map_db, tmp_path):
    import shutil

    from datasette_imageclust.analysis.layout import compute_layout

    path = str(tmp_path / "xss.db")
    shutil.copy(map_db, path)
    db = dbmod.connect(path)
    compute_layout(db, name="<script>alert(1)</script>", landmarks=60)
    db.conn.close()
    ds = await _ds(path)
    html = (await ds.client.get("/xss/-/imageclust/map")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # the layout selector
    assert "<script>alert(1)" not in html


@pytest.mark.asyncio
async def test_immutable_mode(map_db):
    ds = await _ds(map_db, immutable=True)
    d = (await ds.client.get("/map/-/imageclust/map.json")).json()
    assert d["points"]["count"] == 600
    assert (await ds.client.get(d["points"]["url"])).status_code == 200


@pytest.mark.asyncio
async def test_empty_database(tmp_path):
    path = str(tmp_path / "empty.db")
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    ds = await _ds(path)
    d = (await ds.client.get("/empty/-/imageclust/map.json")).json()
    assert d["ok"] and d["layout"] is None and "no images" in d["message"]
    r = await ds.client.get("/empty/-/imageclust/map")
    assert r.status_code == 200 and "no images" in r.text
    assert (await ds.client.get("/empty/-/imageclust/map/points.bin")).status_code == 404
    assert (await ds.client.get("/empty/-/imageclust/map/atlas/16/0")).status_code == 404


@pytest.mark.asyncio
async def test_database_without_layout(tmp_path):
    path = make_db(str(tmp_path / "nolayout.db"), 50, clusters=3, thumb_px=16, distinct_thumbs=3)
    ds = await _ds(path)
    d = (await ds.client.get("/nolayout/-/imageclust/map.json")).json()
    assert d["layout"] is None and "no map yet" in d["message"] and d["n_images"] == 50
    r = await ds.client.get("/nolayout/-/imageclust/map/points.bin")
    assert r.status_code == 404 and "imageclust layout" in r.json()["error"]


@pytest.mark.asyncio
async def test_layout_without_atlas_and_without_clusters(tmp_path):
    from datasette_imageclust.analysis.layout import compute_layout

    path = make_db(str(tmp_path / "bare.db"), 80, clusters=3, thumb_px=16, distinct_thumbs=3, with_run=False)
    db = dbmod.connect(path)
    compute_layout(db, landmarks=50)
    dbmod.finish(db)
    db.conn.close()
    ds = await _ds(path)
    d = (await ds.client.get("/bare/-/imageclust/map.json")).json()
    assert d["clusters"] == [] and d["atlas"]["levels"] == [] and "atlas" in d["message"]
    p = _parse((await ds.client.get(d["points"]["url"])).content)
    assert len(p["id"]) == 80 and (p["cluster"] == -1).all() and (p["atlas"] == 0xFFFFFFFF).all()


@pytest.mark.asyncio
@pytest.mark.parametrize("url, status", [
    ("/map/-/imageclust/map.json?layout=abc", 400),
    ("/map/-/imageclust/map.json?layout=-1", 400),
    ("/map/-/imageclust/map.json?layout=99", 404),
    ("/map/-/imageclust/map.json?run=99", 404),
    ("/map/-/imageclust/map?layout=1%27%20OR%201=1", 400),
    ("/map/-/imageclust/map/points.bin?layout=99", 404),
    ("/map/-/imageclust/map/points.bin?layout=x", 400),
    ("/map/-/imageclust/map/atlas/16/99", 404),
    ("/map/-/imageclust/map/atlas/7/0", 404),
    ("/map/-/imageclust/map/atlas/x/0", 400),
    ("/map/-/imageclust/map/atlas/~2E~2E~2F~2E~2E~2Fetc~2Fpasswd/0", 400),
    ("/map/-/imageclust/map/atlas/../../etc/passwd", 404),
    ("/nope/-/imageclust/map.json", 404),
    ("/nope/-/imageclust/map", 404),
])
async def test_bad_parameters(map_db, url, status):
    ds = await _ds(map_db)
    r = await ds.client.get(url)
    assert r.status_code == status, r.text
    assert b"root:" not in r.content


@pytest.mark.asyncio
async def test_run_parameter_and_configured_default(map_db, tmp_path):
    import shutil

    from synthdb import add_run

    path = str(tmp_path / "runs.db")
    shutil.copy(map_db, path)
    db = dbmod.connect(path)
    second = add_run(db, np.arange(600) % 2, name="halves", label_prefix="half")
    db.execute("UPDATE cluster_runs SET is_default = 0 WHERE id = ?", [second])
    db.conn.commit()
    db.conn.close()
    ds = await _ds(path)
    d = (await ds.client.get("/runs/-/imageclust/map.json")).json()
    assert len(d["clusters"]) == 12
    d = (await ds.client.get(f"/runs/-/imageclust/map.json?run={second}")).json()
    assert [c["label"] for c in d["clusters"]] == ["half 0", "half 1"] and d["run_id"] == second
    p = _parse((await ds.client.get(d["points"]["url"])).content)
    assert set(p["cluster"].tolist()) == {0, 1}
    ds = await _ds(path, metadata={"plugins": {"datasette-imageclust": {"default_run": "halves"}}})
    d = (await ds.client.get("/runs/-/imageclust/map.json")).json()
    assert d["run_id"] == second


@pytest.mark.asyncio
async def test_permissions(map_db):
    ds = await _ds(map_db, metadata={"databases": {"map": {"allow": {"id": "root"}}}})
    for url in ("/map/-/imageclust/map", "/map/-/imageclust/map.json", "/map/-/imageclust/map/points.bin",
                "/map/-/imageclust/map/atlas/16/0"):
        r = await ds.client.get(url)
        assert r.status_code == 403, url
    cookies = {"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")}
    assert (await ds.client.get("/map/-/imageclust/map.json", cookies=cookies)).status_code == 200
    ds = await _ds(map_db, metadata={"databases": {"map": {"tables": {"images": {"allow": False}}}}})
    assert (await ds.client.get("/map/-/imageclust/map.json")).status_code == 403


@pytest.mark.asyncio
async def test_database_name_needing_encoding(map_db, tmp_path):
    import shutil

    path = str(tmp_path / "my photos.v2.db")
    shutil.copy(map_db, path)
    ds = await _ds(path)
    d = (await ds.client.get("/my~20photos~2Ev2/-/imageclust/map.json")).json()
    assert d["database"] == "my photos.v2"
    # URLs are built the way Datasette builds its own (tilde encoding, '+' for spaces).
    assert d["points"]["url"].startswith(ds.urls.database("my photos.v2") + "/-/imageclust/map/points.bin?")
    assert (await ds.client.get(d["points"]["url"])).status_code == 200
    sheet = d["atlas"]["levels"][0]["sheets"][0]["url"]
    assert (await ds.client.get(sheet)).status_code == 200
