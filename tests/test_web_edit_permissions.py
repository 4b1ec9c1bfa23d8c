"""The edit API x table permissions (web/editapi.py, web/access.py): an actor who HAS the
``imageclust-edit`` permission but may not view a table an edit reads or writes
(``clusters``, ``cluster_members``, ``cluster_runs``: what a move / merge / split / label
works on) is refused (403) and the database is left as it was. A real Datasette on a real
clustered database, one fresh copy per case."""
from __future__ import annotations

import shutil

import plugin_dbs
import pytest
from test_web_edit import (
    bodies,
    clusters,
    ds_for,
    file_bytes,
    members,
    post,
    q,
    user_label,
)

pytestmark = pytest.mark.asyncio

GRANT = {"imageclust-edit": {"id": "alice"}}  # alice may edit; nobody else
EDITS = ("label", "note", "review", "move", "merge", "split")
TABLES = ("clusters", "cluster_members", "cluster_runs")


@pytest.fixture(scope="module")
def template(tux_db, tmp_path_factory) -> str:
    return plugin_dbs.clustered(tux_db, tmp_path_factory.mktemp("editperm") / "template.db")


@pytest.fixture
def photos(template, tmp_path) -> str:
    """A fresh copy of the clustered database for one case to write."""
    shutil.copy(template, tmp_path / "photos.db")
    return str(tmp_path / "photos.db")


def _ds(photos: str, deny: str | None = None):
    tables = {deny: {"allow": False}} if deny else {}
    return ds_for(photos, permissions=GRANT, databases={"photos": {"tables": tables}})


def _state(photos: str) -> list:
    """What an edit changes, read straight from the file."""
    return [q(photos, "SELECT id, run_id, kind, size, label FROM clusters ORDER BY id"),
            q(photos, "SELECT run_id, cluster_id, image_id FROM cluster_members ORDER BY run_id, image_id"),
            q(photos, "SELECT cluster_id, source, label FROM cluster_labels ORDER BY cluster_id, source, label"),
            q(photos, "SELECT name FROM sqlite_master WHERE name IN ('cluster_ops', 'cluster_notes')")]


@pytest.mark.parametrize("op", EDITS)
async def test_alice_may_make_the_edit_when_she_may_view_every_table(photos, op):
    # The control: the same actor, body and database without a denied table is obeyed,
    # so the 403s below come from the table rules, not from a bad body or a missing grant.
    c = clusters(photos)
    before = _state(photos)
    r = await post(_ds(photos), op, bodies(photos)[op], actor="alice")
    assert r.status_code == 200, (op, r.text)
    assert _state(photos) != before
    assert q(photos, "SELECT op, actor FROM cluster_ops") == [(op, "alice")]
    if op == "label":
        assert user_label(photos, c[2]) == "renamed"
    if op == "merge":
        assert not q(photos, "SELECT 1 FROM clusters WHERE id = ?", [c[3]])


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("op", EDITS)
async def test_an_editor_who_may_not_view_a_cluster_table_is_refused(photos, table, op):
    body = bodies(photos)[op]
    c = clusters(photos)
    moved = members(photos, c[3])[:2]
    before_bytes, before = file_bytes(photos), _state(photos)
    r = await post(_ds(photos, table), op, body, actor="alice")
    assert r.status_code == 403, (table, op, r.status_code, r.text)
    assert r.json()["ok"] is False and table in r.json()["errors"][0]
    assert _state(photos) == before
    assert file_bytes(photos) == before_bytes
    assert user_label(photos, c[2]) is None
    assert members(photos, c[3])[:2] == moved
    assert not q(photos, "SELECT 1 FROM sqlite_master WHERE name = 'cluster_ops'")
