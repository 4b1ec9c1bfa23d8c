"""Databases written by every earlier schema (tests/fixtures/schema-*.sqlite, made by
tests/make_schema_fixtures.py) open with the current package: the plugin reads them as
they are (without writing), `load` migrates them and adds a new folder, `cluster` runs,
and every page answers 200 afterwards, with the person's own label kept."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.cli import cli
from datasette_imageclust.pipeline import load
from datasette_imageclust.store.schema import MIGRATIONS, versions
from filestate import file_state
from imagefactory import photo_folder
from make_schema_fixtures import EPOCHS, USER_LABEL, path_of
from test_plugin_pages import make_ds

PAGES = ["/f/-/imageclust", "/f/-/imageclust.json", "/f/-/imageclust/image/1", "/f/-/imageclust/image/2.json",
         "/f/-/imageclust/search.json?like=1&k=5", "/f/-/imageclust/search?like=3", "/f/-/imageclust/thumb/1",
         "/f/-/imageclust/map", "/f/-/imageclust/map.json", "/f/-/imageclust/map/points.bin", "/f/files"]


async def _pages(path: str) -> dict[str, int]:
    ds = make_ds([path])
    codes = {}
    for p in PAGES:
        codes[p] = (await ds.client.get(p)).status_code
    cid = (await ds.client.get("/f/-/imageclust.json")).json()["clusters"][0]["id"]
    codes["cluster"] = (await ds.client.get(f"/f/-/imageclust/cluster/{cid}")).status_code
    return codes


def test_every_schema_state_has_a_fixture():
    """One fixture per state, the last being today's schema (a new migration needs a new
    fixture: run tests/make_schema_fixtures.py after adding the new state to EPOCHS)."""
    for name, want in EPOCHS.items():
        d = dbmod.connect(path_of(name), readonly=True)
        assert versions(d) == want, name
        d.conn.close()
    latest = list(EPOCHS.values())[-1]
    assert len(set(map(str, EPOCHS.values()))) == len(EPOCHS)
    today = {c: len(steps) for c, steps in MIGRATIONS.items()}
    assert all(latest[c] <= today[c] for c in latest)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", list(EPOCHS))
async def test_old_database_opens_migrates_and_works(name, tmp_path, tiny_clip):
    path = str(tmp_path / "f.db")
    shutil.copy(path_of(name), path)
    old = dbmod.connect(path, readonly=True)
    n_images = old.execute("SELECT count(*) FROM images").fetchone()[0]
    old.conn.close()

    # The plugin reads the old schema as it is, and leaves it untouched.
    before = file_state(path)
    codes = await _pages(path)
    assert all(c == 200 for c in codes.values()), codes
    assert file_state(path) == before

    # load: migrates every component, re-embeds the old images (a new model) and adds a folder.
    photo_folder(tmp_path / "new", 3, start=50)
    s = load(path, [str(tmp_path / "new")], tiny_clip, reembed=True)
    assert (s.new, s.reembedded, s.errors) == (3, n_images, 0)
    d = dbmod.connect(path, readonly=True)
    assert versions(d) == {c: len(MIGRATIONS[c]) for c in (*EPOCHS[name], "search")}
    assert d.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert d.execute("PRAGMA foreign_key_check").fetchall() == []
    d.conn.close()
    runner = CliRunner()
    listed = [json.loads(l) for l in runner.invoke(cli, ["clusters", path, "--json"]).stdout.splitlines()]
    assert any(c["label"] == USER_LABEL and c["labels"][0]["source"] == "user" for c in listed)

    # cluster (with near-duplicates and the map) on the migrated database, then every page.
    r = runner.invoke(cli, ["cluster", path, "--name", "new", "--default", "--labels", "terms", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["images"] == n_images + 3
    assert runner.invoke(cli, ["clusters", path, "--runs"]).stdout.count("\n") == 3  # default, k3, new
    codes = await _pages(path)
    assert all(c == 200 for c in codes.values()), codes
    d = dbmod.connect(path, readonly=True)
    assert d.execute("SELECT count(*) FROM layout_points p JOIN layouts l ON l.id = p.layout_id "
                     "WHERE l.is_default").fetchone()[0] == n_images + 3
    d.conn.close()
