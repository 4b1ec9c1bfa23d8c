"""The atlas is switched atomically for readers: while another connection rebuilds it
again and again (other levels, format and order each time), a map reader that loaded
map.json keeps getting that build's sheets and points: never a 404, never a mix."""
from __future__ import annotations

import asyncio
import io
import shutil
import struct
import threading
import time

import pytest
from PIL import Image

from datasette_imageclust.analysis import atlas
from datasette_imageclust.store import connection as dbmod
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio
REBUILDS = 8


def _atlas_index(body: bytes) -> dict[int, int]:
    n = struct.unpack("<I", body[4:8])[0]
    ids = struct.unpack(f"<{n}I", body[16 + 8 * n:16 + 12 * n])
    cells = struct.unpack(f"<{n}I", body[16 + 16 * n:16 + 20 * n])
    return dict(zip(ids, cells))


async def test_readers_never_see_a_hole_or_a_mix_during_rebuilds(map_db, tmp_path):
    path = str(tmp_path / "swap.db")
    shutil.copy(map_db, path)
    db = dbmod.connect(path)
    layout_id = db.execute("SELECT id FROM layouts WHERE is_default = 1").fetchone()[0]
    order = atlas.layout_order(db, layout_id)
    build0 = db.execute("SELECT value FROM imageclust_meta WHERE key = 'atlas_build'").fetchone()[0]
    # Every build's atlas index of each image (one sheet at every level here: its position).
    expected = {build0: {i: k for k, i in enumerate(order)}}
    done = threading.Event()
    errors: list[BaseException] = []

    def rebuild() -> None:
        try:
            for k in range(REBUILDS):
                ids = order[::-1] if k % 2 == 0 else order
                s = atlas.build_atlas(db, ids, levels=(32,) if k % 2 == 0 else (16, 64),
                                      fmt="jpeg" if k % 2 == 0 else "webp", workers=1)
                expected[s.build] = {i: p for p, i in enumerate(ids)}
                time.sleep(0.05)
        except BaseException as e:  # reported by the test below
            errors.append(e)
        finally:
            done.set()

    ds = make_ds([path])
    writer = threading.Thread(target=rebuild)
    writer.start()
    reads = raced = 0
    try:
        while not done.is_set() or reads < 3:
            d = (await ds.client.get("/swap/-/imageclust/map.json")).json()
            build = d["atlas"]["build"]
            await asyncio.sleep(0.03)
            points = await ds.client.get(d["points"]["url"])
            assert points.status_code == 200, points.text
            for lv in d["atlas"]["levels"]:
                for sheet in lv["sheets"]:
                    r = await ds.client.get(sheet["url"])
                    assert r.status_code == 200, (sheet["url"], r.status_code, r.text[:200])
                    assert r.headers["content-type"] == f"image/{sheet['format']}", (build, sheet)
                    assert Image.open(io.BytesIO(r.content)).size == (sheet["width"], sheet["height"]), sheet
            for _ in range(200):  # the writer records a build just after committing it
                if build in expected:
                    break
                await asyncio.sleep(0.05)
            assert _atlas_index(points.content) == expected[build], build
            now = (await ds.client.get("/swap/-/imageclust/map.json")).json()["atlas"]["build"]
            raced += now != build
            reads += 1
    finally:
        done.wait(120)
        writer.join(120)
        db.conn.close()
    assert not errors, errors
    assert raced >= 1, "no read overlapped a rebuild: the test did not exercise the switch"


OLD_ATLAS = """
CREATE TABLE atlas_sheets (id INTEGER PRIMARY KEY, level INTEGER NOT NULL, sheet INTEGER NOT NULL,
    format TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE (level, sheet));
CREATE TABLE atlas_cells (image_id INTEGER NOT NULL REFERENCES images(id), level INTEGER NOT NULL,
    sheet INTEGER NOT NULL, cell INTEGER NOT NULL, PRIMARY KEY (image_id, level));
"""


async def test_an_atlas_from_before_builds_is_served_and_migrated(map_db, tmp_path):
    """A database written before map schema v3 (one atlas, no build column): the plugin
    serves it as it is (it never writes), and the next `layout` migrates it in place."""
    import sqlite3

    from datasette_imageclust.store.schema import migrate, versions

    path = str(tmp_path / "old.db")
    shutil.copy(map_db, path)
    conn = sqlite3.connect(path)
    # (legacy_alter_table: the renames leave the trigger naming atlas_cells alone.)
    conn.executescript("PRAGMA legacy_alter_table = ON; ALTER TABLE atlas_sheets RENAME TO s; "
                       "ALTER TABLE atlas_cells RENAME TO c;" + OLD_ATLAS + """
        INSERT INTO atlas_sheets SELECT id, level, sheet, format, width, height, data FROM s;
        INSERT INTO atlas_cells SELECT image_id, level, sheet, cell FROM c;
        DROP TABLE s; DROP TABLE c; UPDATE schema_versions SET version = 2 WHERE component = 'map';""")
    conn.close()
    ds = make_ds([path])
    d = (await ds.client.get("/old/-/imageclust/map.json")).json()
    assert [lv["level"] for lv in d["atlas"]["levels"]] == [16, 64]
    for lv in d["atlas"]["levels"]:
        for sheet in lv["sheets"]:
            assert (await ds.client.get(sheet["url"])).status_code == 200
    assert sorted(_atlas_index((await ds.client.get(d["points"]["url"])).content).values()) == list(range(600))

    db = dbmod.connect(path)
    build = db.execute("SELECT value FROM imageclust_meta WHERE key = 'atlas_build'").fetchone()[0]
    before = db.execute("SELECT count(*) FROM atlas_cells").fetchone()[0]
    migrate(db, "map")
    assert versions(db)["map"] == 3
    assert db.execute("SELECT count(*) FROM atlas_cells WHERE build = ?", [build]).fetchone()[0] == before
    assert {r[0] for r in db.execute("SELECT DISTINCT build FROM atlas_sheets")} == {build}
    # The trigger that makes a pruned image leave the map survived the table rebuild.
    with db.conn:
        for table in ("files", "thumbnails"):
            db.execute(f"DELETE FROM {table} WHERE image_id = 1")
        db.execute("DELETE FROM images WHERE id = 1")
    assert db.execute("SELECT count(*) FROM atlas_cells WHERE image_id = 1").fetchone()[0] == 0
    db.conn.close()
    d = (await make_ds([path]).client.get("/old/-/imageclust/map.json")).json()
    assert d["atlas"]["build"] == build and d["points"]["count"] == 599
