"""The plugin setting ``search_memory_mb``: how much a server process holds per database in
vector copies for search (the float scan, the int8 codes). Parsed strictly at startup (a bad
value stops ``datasette serve`` with one line); 0 leaves the bits alone, and search still
answers. Run under Datasette 0.65 and 1.0 (.ci/run)."""
from __future__ import annotations

import json
import subprocess
import sys

import datasette
import pytest

from datasette_imageclust.analysis import search, searchcodes
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.web.settings import SettingError
from synthdb import make_db
from test_plugin_pages import make_ds

@pytest.fixture
def photos(tmp_path) -> str:
    path = make_db(str(tmp_path / "photos.db"), 300, clusters=6, thumb_px=16, distinct_thumbs=8)
    db = dbmod.connect(path)
    search.build_index(db)
    dbmod.close(db)
    return path


@pytest.fixture(autouse=True)
def restore_limit():
    before = searchcodes.memory_limit()
    yield
    searchcodes.set_memory_limit(before // 2**20)
    search.clear_cache()


@pytest.mark.asyncio
@pytest.mark.parametrize("value,megabytes", [(None, searchcodes.DEFAULT_MEMORY_MB), (0, 0), ("256", 256),
                                             (2048, 2048)])
async def test_setting_sets_the_limit_and_search_answers(photos, value, megabytes):
    searchcodes.set_memory_limit(1)  # something else, so the startup's own value shows
    ds = make_ds([photos], plugin={} if value is None else {"search_memory_mb": value})
    await ds.invoke_startup()
    assert searchcodes.memory_limit() == megabytes * 2**20
    search.clear_cache()
    r = await ds.client.get("/photos/-/imageclust/search.json?like=1&k=5")
    assert r.status_code == 200, r.text[:300]
    ids = [hit["image_id"] for hit in r.json()["results"]]
    db = dbmod.connect(photos, readonly=True)
    exact = [i for i, _ in search.similar(db, 1, 5, exact=True)]
    assert ids == exact
    # What the process holds follows the limit: the float scan at the default, only the
    # bits with 0.
    (entry,) = search._CACHE.values()
    assert (entry.scan is not None) is (megabytes > 0)


@pytest.mark.asyncio
@pytest.mark.parametrize("value", ["abc", -1, 1.5, True, "", " 12", "١٢", "12MB", [], 10**12])
async def test_bad_setting_is_refused_in_one_line(photos, value):
    ds = make_ds([photos], plugin={"search_memory_mb": value})
    with pytest.raises(SettingError) as err:
        await ds.invoke_startup()
    message = err.value.format_message()
    assert "search_memory_mb" in message and "\n" not in message


def test_serve_with_a_bad_setting_says_so_in_one_line(photos, tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"plugins": {"datasette-imageclust": {"search_memory_mb": "lots"}}}))
    flag = "--metadata" if datasette.__version__.startswith("0.") else "--config"
    out = subprocess.run([sys.executable, "-m", "datasette", "serve", photos, flag, str(conf), "--get", "/"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    assert "search_memory_mb must be a whole number" in out.stderr, out.stderr
