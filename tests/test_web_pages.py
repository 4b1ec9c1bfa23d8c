"""Page papercuts: the text-search box only where text search works; a look-alike
database (the table names but not the schema) is not taken for an imageclust one."""
from __future__ import annotations

import shutil
import sqlite3

import pytest

from datasette_imageclust.analysis import embed_query
from test_plugin_pages import make_ds

pytestmark = pytest.mark.asyncio
TEXT_BOX = 'name="q"'


async def test_index_offers_text_search_only_when_it_works(tux_db, tiny_clip, tux_dir, tmp_path):
    from datasette_imageclust.pipeline import load

    embed_query.clear_cache()
    ds = make_ds([tux_db])  # the stand-in model: no text tower
    d = (await ds.client.get("/tux/-/imageclust.json")).json()
    assert d["text_search"]["available"] is False and "text tower" in d["text_search"]["note"]
    assert TEXT_BOX not in (await ds.client.get("/tux/-/imageclust")).text
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((tux_dir / "fish").iterdir())[:3]:
        shutil.copy(p, folder / p.name)
    path = str(tmp_path / "clip.db")
    assert load(path, [str(folder)], tiny_clip).new == 3
    ds = make_ds([path])
    assert (await ds.client.get("/clip/-/imageclust.json")).json()["text_search"]["available"] is True
    assert TEXT_BOX in (await ds.client.get("/clip/-/imageclust")).text


@pytest.fixture
def look_alike(tmp_path) -> str:
    """The four tables the plugin used to look for, but not an imageclust database."""
    path = str(tmp_path / "alike.db")
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE images (id INTEGER PRIMARY KEY, url TEXT);
        CREATE TABLE files (id INTEGER PRIMARY KEY, image_id INTEGER, path TEXT);
        CREATE TABLE thumbnails (image_id INTEGER PRIMARY KEY, data BLOB);
        CREATE TABLE imageclust_meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO images VALUES (1, 'x'); INSERT INTO files VALUES (1, 1, '/x.jpg');
        INSERT INTO thumbnails VALUES (1, x'00');
    """)
    conn.commit()
    conn.close()
    return path


async def test_a_look_alike_database_is_not_imageclust(look_alike):
    ds = make_ds([look_alike])
    for path in ("/alike/-/imageclust.json", "/alike/-/imageclust/image/1.json", "/alike/-/imageclust/search.json",
                 "/alike/-/imageclust/cluster/1.json", "/alike/-/imageclust", "/alike/-/imageclust/thumb/1"):
        r = await ds.client.get(path)
        assert r.status_code == 404 and "not an imageclust database" in r.text, (path, r.status_code, r.text[:300])
    r = await ds.client.get("/alike/-/imageclust/map.json")
    assert r.status_code == 200 and "no map yet" in r.json()["message"]
    files = (await ds.client.get("/alike/files")).text
    assert "ic-cell-thumb" not in files and "/-/imageclust" not in files
