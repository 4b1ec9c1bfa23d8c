"""The plugin only reads: every route leaves the database file as it was, an uploaded
image never touches the disk, originals are served safely and under permissions, and
the `k` cap and the `similar` setting hold. A real Datasette (in-process client) on
real databases."""
from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import plugin_dbs
from audit import watching
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.analysis import search
from datasette_imageclust.store import vectors
from datasette_imageclust.pipeline import build_map
from filestate import file_state
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def dbs(tux_db, tmp_path_factory) -> dict[str, str]:
    """'photos': clustered, indexed, with a map; 'stale': its index out of date (a vector
    added after it was built), which the plugin must work around without rebuilding it."""
    d = tmp_path_factory.mktemp("readonly")
    photos = plugin_dbs.clustered(tux_db, d / "photos.db")
    db = dbmod.connect(photos)
    build_map(db, method="tsne", levels=(16, 64))
    dbmod.close(db)
    stale = str(d / "stale.db")
    shutil.copy(photos, stale)
    db = dbmod.connect(stale)
    with db.conn:
        vectors.put(db, [1_000_000], vectors.read_all(db)[1][:1])
    assert not search.status(db).fresh
    dbmod.finish(db)
    db.conn.close()
    return {"photos": photos, "stale": stale}


def _jpeg(size: tuple[int, int], seed: int = 0, quality: int = 95) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


async def test_no_route_writes_to_the_database(dbs, tux_dir):
    before = {name: file_state(p) for name, p in dbs.items()}
    assert all(b["companions"] == [] for b in before.values())
    search.clear_cache()
    ds = make_ds(list(dbs.values()), plugin={"originals_root": str(tux_dir)})
    await ds.invoke_startup()  # the background thread that loads the similarity bits
    upload = {"image": ("q.jpg", sorted((tux_dir / "birds").iterdir())[0].read_bytes(), "image/jpeg")}
    for name in dbs:
        idx = (await ds.client.get(f"/{name}/-/imageclust.json")).json()
        cid = idx["clusters"][0]["id"]
        meta = (await ds.client.get(f"/{name}/-/imageclust/map.json")).json()
        sheet = meta["atlas"]["sheets"][0] if "atlas" in meta and meta["atlas"].get("sheets") else None
        fid = (await ds.client.get(f"/{name}/-/imageclust/image/3.json")).json()["files"][0]["id"]
        paths = [f"/{name}/-/imageclust", f"/{name}/-/imageclust?sort=cohesion", f"/{name}/-/imageclust/cluster/{cid}",
                 f"/{name}/-/imageclust/cluster/{cid}.json", f"/{name}/-/imageclust/image/1",
                 f"/{name}/-/imageclust/image/1.json?k=20", f"/{name}/-/imageclust/search?like=5",
                 f"/{name}/-/imageclust/search.json?like=5&k=30", f"/{name}/-/imageclust/search.json?like=5&exact=1",
                 f"/{name}/-/imageclust/search.json?q=a%20bird", f"/{name}/-/imageclust/thumb/7",
                 f"/{name}/-/imageclust/original/{fid}", f"/{name}/-/imageclust/map",
                 f"/{name}/-/imageclust/map.json?points=1", f"/{name}/-/imageclust/map/points.bin",
                 f"/{name}", f"/{name}/files", f"/{name}/images", f"/{name}/imageclust_similar_fast.json?id=5&k=4",
                 f"/{name}/imageclust_similar.json?id=5&k=4"]
        if sheet:
            paths.append(sheet["url"])
        for path in paths:
            r = await ds.client.get(path)
            assert r.status_code == 200, (path, r.status_code, r.text[:300])
        r = await ds.client.post(f"/{name}/-/imageclust/search.json?k=5", files=upload)
        assert r.status_code == 200 and len(r.json()["results"]) == 5
        if name == "stale":  # answered by the exact scan, the index left as it was
            d = (await ds.client.get(f"/{name}/-/imageclust/search.json?like=5")).json()
            assert d["index"]["present"] and not d["index"]["fresh"]
    for name, p in dbs.items():
        assert file_state(p) == before[name], name


async def test_uploads_are_never_written_to_disk(dbs):
    """A 6 MB upload (past any in-memory spooling threshold) is searched without a single
    file being opened for writing or created, and the database is unchanged."""
    data = _jpeg((2000, 1500), seed=3, quality=100)
    assert len(data) > 5_000_000
    before = file_state(dbs["photos"])
    ds = make_ds([dbs["photos"]])
    await ds.invoke_startup()
    await ds.client.get("/photos/-/imageclust/search.json?like=1")  # warm: model and bits loaded first
    with watching() as w:
        r = await ds.client.post("/photos/-/imageclust/search.json?k=5", files={"image": ("big.jpg", data, "image/jpeg")})
    assert r.status_code == 200, r.text[:300]
    assert r.json()["mode"] == "upload" and len(r.json()["results"]) == 5
    assert w.writes() == []
    assert file_state(dbs["photos"]) == before


async def test_uploads_watcher_sees_a_write():
    """The watcher above can fail: a temporary file written meanwhile is seen."""
    import tempfile

    with watching() as w:
        with tempfile.TemporaryFile() as f:
            f.write(b"x")
    assert w.writes()


@pytest.fixture
def originals(dbs, tmp_path) -> tuple[str, dict[str, int], str]:
    """A copy of 'photos' with files under a root that are not images (an HTML page and an
    SVG, recorded as files of an image of unknown format) and one real JPEG."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "page.html").write_text("<script>alert(1)</script>")
    (root / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    (root / "photo.jpg").write_bytes(_jpeg((40, 30)))
    path = str(tmp_path / "orig.db")
    shutil.copy(dbs["photos"], path)
    db = dbmod.connect(path)
    ids = {}
    with db.conn:
        db.execute("UPDATE images SET format = NULL WHERE id = 4")  # what a non-image's row could say
        for name, image_id in (("page.html", 4), ("drawing.svg", 4), ("photo.jpg", 1)):
            ids[name] = db["files"].insert({"path": str(root / name), "root": str(root), "relpath": name,
                                            "image_id": image_id, "size": 1, "mtime": 0.0, "added": "x"}).last_pk
    dbmod.finish(db)
    db.conn.close()
    return path, ids, str(root)


async def test_original_serves_only_images_inline(originals):
    path, ids, root = originals
    ds = make_ds([path], plugin={"originals_root": root})
    for name, ctype in (("page.html", "application/octet-stream"), ("drawing.svg", "application/octet-stream"),
                        ("photo.jpg", "image/jpeg")):
        r = await ds.client.get(f"/orig/-/imageclust/original/{ids[name]}")
        assert r.status_code == 200, (name, r.status_code)
        assert r.headers["content-type"] == ctype, name
        assert r.headers["x-content-type-options"] == "nosniff"
        with open(os.path.join(root, name), "rb") as f:
            assert r.content == f.read()


async def test_original_honours_permissions(originals):
    path, ids, root = originals
    url = f"/orig/-/imageclust/original/{ids['photo.jpg']}"
    ds = make_ds([path], plugin={"originals_root": root}, databases={"orig": {"allow": {"id": "root"}}})
    assert (await ds.client.get(url)).status_code == 403
    cookies = {"ds_actor": ds.sign({"a": {"id": "root"}}, "actor")}
    assert (await ds.client.get(url, cookies=cookies)).status_code == 200
    ds = make_ds([path], plugin={"originals_root": root},
                 databases={"orig": {"tables": {"images": {"allow": False}}}})
    r = await ds.client.get(url)
    assert r.status_code == 403 and b"\xff\xd8" not in r.content[:2]


async def test_k_is_capped_at_200(dbs):
    ds = make_ds([dbs["photos"]])
    r = (await ds.client.get("/photos/-/imageclust/search.json?like=1&k=200")).json()
    assert len(r["results"]) == 200
    for path in ("/photos/-/imageclust/search.json?like=1&k=201", "/photos/-/imageclust/image/1.json?k=201"):
        r = await ds.client.get(path)
        assert r.status_code == 400 and "200" in r.json()["error"], path
    assert len((await ds.client.get("/photos/-/imageclust/image/1.json?k=200")).json()["similar"]) == 200


async def test_similar_setting(dbs):
    ds = make_ds([dbs["photos"]], plugin={"similar": 5})
    d = (await ds.client.get("/photos/-/imageclust/image/1.json")).json()
    assert len(d["similar"]) == 5
    assert len((await ds.client.get("/photos/-/imageclust/image/1.json?k=7")).json()["similar"]) == 7
    page = (await ds.client.get("/photos/-/imageclust/image/1")).text
    assert page.count("/-/imageclust/image/") >= 5
    ds = make_ds([dbs["photos"]], databases={"photos": {"plugins": {"datasette-imageclust": {"similar": 0}}}})
    assert (await ds.client.get("/photos/-/imageclust/image/1.json")).json()["similar"] == []
    ds = make_ds([dbs["photos"]])
    assert len((await ds.client.get("/photos/-/imageclust/image/1.json")).json()["similar"]) == 12
