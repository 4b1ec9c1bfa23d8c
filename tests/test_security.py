"""Security of the plugin pages: escaping (XSS), no path from a URL reaches the
filesystem, originals only under the configured root, bad input never a 500."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import plugin_dbs
from datasette_imageclust.store import connection as dbmod
from filestate import file_state
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio
RAW = [plugin_dbs.XSS, plugin_dbs.XSS_ATTR, "<script>alert", "<img src=x"]  # Datasette has its own <script>


@pytest.fixture(scope="module")
def photos(tux_db, tmp_path_factory) -> str:
    return plugin_dbs.clustered(tux_db, tmp_path_factory.mktemp("sec") / "photos.db")


def assert_escaped(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"unescaped {raw!r}"


async def test_labels_names_and_exif_are_escaped(photos):
    ds = make_ds([photos])
    idx = (await ds.client.get("/photos/-/imageclust.json")).json()
    hostile = idx["clusters"][0]["id"]
    pages = ["/photos/-/imageclust", f"/photos/-/imageclust/cluster/{hostile}", "/photos/-/imageclust/image/1",
             "/photos/-/imageclust/search?like=2", "/photos/-/imageclust/image/2",
             "/photos/files", "/photos/cluster_labels"]
    for path in pages:
        r = await ds.client.get(path)
        assert r.status_code == 200, path
        assert_escaped(r.text)
    image = (await ds.client.get("/photos/-/imageclust/image/1")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in image  # the hostile file name, shown as text
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in image  # the camera
    cluster = (await ds.client.get(f"/photos/-/imageclust/cluster/{hostile}")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cluster


async def test_reflected_parameters_are_escaped(photos):
    ds = make_ds([photos])
    for path in ["/photos/-/imageclust/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
                 "/photos/-/imageclust?run=%3Cscript%3Ealert(1)%3C/script%3E",
                 "/photos/-/imageclust?sort=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(2)%3E",
                 "/%3Cscript%3Ealert(1)%3C%2Fscript%3E/-/imageclust",
                 "/photos/-/imageclust/image/%3Cscript%3E"]:
        r = await ds.client.get(path)
        assert r.status_code in (200, 400, 404), (path, r.status_code)
        assert_escaped(r.text)
    r = await ds.client.get("/photos/-/imageclust/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in r.text


async def test_originals_are_not_served_without_a_root(photos):
    ds = make_ds([photos])
    r = await ds.client.get("/photos/-/imageclust/original/1")
    assert r.status_code == 404 and "originals_root" in r.text


async def test_originals_only_under_the_root(photos, tux_dir, tmp_path):
    path = str(tmp_path / "p.db")
    shutil.copy(photos, path)
    outside = tmp_path / "secret.txt"
    outside.write_text("top secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link.jpg").symlink_to(outside)
    db = dbmod.connect(path)
    f = db.execute("SELECT root, size, mtime, added FROM files WHERE image_id = 3").fetchone()
    ids = {}
    for name, p in [("outside", str(outside)), ("passwd", "/etc/passwd"), ("symlink", str(root / "link.jpg")),
                    ("dotdot", str(tux_dir) + "/../../../../etc/passwd")]:
        ids[name] = db["files"].insert({"path": p, "root": f[0], "relpath": name, "image_id": 3, "size": f[1],
                                        "mtime": f[2], "added": f[3]}).last_pk
    db.conn.commit()
    db.conn.close()
    for cfg_root in (str(tux_dir), str(root)):
        ds = make_ds([path], plugin={"originals_root": cfg_root})
        for name, fid in ids.items():
            r = await ds.client.get(f"/p/-/imageclust/original/{fid}")
            assert r.status_code == 404, (cfg_root, name, r.status_code)
            assert b"top secret" not in r.content and b"root:" not in r.content
    ds = make_ds([path], plugin={"originals_root": str(tux_dir)})
    real = (await ds.client.get("/p/-/imageclust/image/1.json")).json()["files"]
    ok = [f for f in real if f["original_url"]]
    assert len(ok) == 1 and ok[0]["path"].startswith(str(tux_dir))  # the hostile name does not exist
    r = await ds.client.get(ok[0]["original_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == Path(ok[0]["path"]).read_bytes()
    assert r.headers["x-content-type-options"] == "nosniff"
    # Nothing from the URL is a path: traversal attempts are just bad ids.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "1%00", "-1", "1.5", "0x10", "9" * 40]:
        r = await ds.client.get(f"/p/-/imageclust/original/{bad}")
        assert r.status_code in (400, 404), (bad, r.status_code)
        assert b"root:" not in r.content
        r = await ds.client.get(f"/p/-/imageclust/thumb/{bad}")
        assert r.status_code in (400, 404), (bad, r.status_code)


async def test_per_database_root_and_database_level_config(photos, tux_dir):
    ds = make_ds([photos], databases={"photos": {"plugins": {"datasette-imageclust": {
        "originals_root": str(tux_dir)}}}})
    files = (await ds.client.get("/photos/-/imageclust/image/3.json")).json()["files"]
    assert files[0]["original_url"] and (await ds.client.get(files[0]["original_url"])).status_code == 200


async def test_no_500_on_odd_input(photos):
    before = file_state(photos)
    ds = make_ds([photos])
    odd = ["/photos/-/imageclust/cluster/%FF.json", "/photos/-/imageclust/image/%27%20OR%201%3D1.json",
           "/photos/-/imageclust/search.json?like=1%27%3B--", "/photos/-/imageclust/search.json?k=1e9&like=1",
           "/photos/-/imageclust/search.json?q=%00%01%02", "/photos/-/imageclust.json?page=-5",
           "/photos/-/imageclust.json?page=99999999999999999999999", "/photos/-/imageclust/image/1.json?k=-1",
           "/photos/-/imageclust/search.json?q=" + "%F0%9F%90%9B" * 10, "/photos/-/imageclust/cluster/.json",
           "/photos/-/imageclust/search.json?exact=maybe&like=1"]
    for path in odd:
        r = await ds.client.get(path)
        assert r.status_code < 500, (path, r.status_code, r.text[:300])
    # The database is untouched (the plugin never writes): same bytes, same mtime, and
    # no -wal/-shm/-journal file was ever created beside it.
    assert file_state(photos) == before and before["companions"] == []
