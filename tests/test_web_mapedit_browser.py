"""Curation and downloads from a map selection in a real browser (Debian Chromium via
Playwright) against a real `datasette` (0.65; 1.0 in .ci/run's second pass): an actor with
``imageclust-edit`` splits a ``?ids=`` selection off as a new cluster and moves one to
another cluster (the database then holds exactly that); the selection's "Download CSV"
has exactly its rows; an actor without the permission, anonymous, or the same actor on
an immutable database sees no curation actions."""
from __future__ import annotations

import csv
import io

import pytest
from datasette.app import Datasette

from browser import editor_servers, need_browser
from dbrows import rows as _q

API = "window.__imageclustMap"
SECRET = "imageclust-mapedit-browser-test-secret"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    need_browser()
    from synthdb import make_map_db

    d = tmp_path_factory.mktemp("mapedit")
    db = make_map_db(str(d / "sel.db"), 300, clusters=6, thumb_px=32, distinct_thumbs=40)
    with editor_servers(db, d, SECRET) as servers:
        yield servers


def _open(setup, actor: str | None, url: str):
    ctx = setup["browser"].new_context(viewport={"width": 1200, "height": 800})
    if actor:
        value = Datasette([], secret=SECRET).sign({"a": {"id": actor}}, "actor")
        for base in (setup["url"], setup["frozen"]):
            ctx.add_cookies([{"name": "ds_actor", "value": value, "url": base}])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function(f"window.__imageclustPainted && {API}.ready", timeout=60_000)
    return page, errors


def _actions(page) -> list[str]:
    # Read in the page: Playwright's descendant CSS matching trips over Datasette 1.0's page.
    return page.evaluate("Array.from(document.getElementById('icm-sel-actions').children, b => b.textContent)")


def _click_action(page, label: str) -> None:
    page.evaluate("label => Array.from(document.getElementById('icm-sel-actions').children)"
                  ".find(b => b.textContent === label).click()", label)


def _cluster_of(path: str, ids: list[int]) -> dict[int, int | None]:
    got = dict(_q(path, "SELECT m.image_id, m.cluster_id FROM cluster_members m JOIN clusters c ON "
                        "c.id = m.cluster_id WHERE c.kind = 'cluster' AND m.image_id IN (%s)"
                  % ",".join(map(str, ids))))
    return {i: got.get(i) for i in ids}


def test_split_and_move_a_selection_and_download_it(setup):
    db = setup["db"]
    ids = [r[0] for r in _q(db, "SELECT image_id FROM cluster_members ORDER BY image_id LIMIT 7 OFFSET 40")]
    before = {r[0] for r in _q(db, "SELECT id FROM clusters")}
    page, errors = _open(setup, "editor", f"{setup['url']}/sel/-/imageclust/map?ids={','.join(map(str, ids))}")
    assert _actions(page) == ["Move to cluster…", "Split off as a new cluster"]

    # "Download CSV": exactly the selection's rows, with their clusters in the map's run.
    href = page.evaluate("document.getElementById('icm-sel-export-csv').href")
    r = page.request.get(href)
    assert r.status == 200, r.text()[:300]
    rows = list(csv.DictReader(io.StringIO(r.text())))
    assert sorted(int(x["image_id"]) for x in rows) == sorted(ids)
    assert {int(x["image_id"]): int(x["cluster_id"]) for x in rows} == _cluster_of(db, ids)
    assert page.evaluate("document.getElementById('icm-sel-export-zip').href").endswith("format=zip")

    # Split off as a new cluster, with a label.
    _click_action(page, "Split off as a new cluster")
    page.fill("#icm-edit-label", "split from the map")
    with page.expect_navigation(timeout=30_000):  # the page reloads after the edit
        page.click("#icm-edit-apply")
    page.wait_for_function(f"{API}.ready", timeout=60_000)
    new = {r[0] for r in _q(db, "SELECT id FROM clusters")} - before
    assert len(new) == 1
    (cid,) = new
    assert sorted(r[0] for r in _q(db, "SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid])) \
        == sorted(ids)
    label = _q(db, "SELECT label FROM cluster_labels WHERE cluster_id = ? AND source = 'user'", [cid])
    assert label == [("split from the map",)]
    assert page.inner_text("#icm-edit-status") == f"Split {len(ids)} images off as cluster {cid}."
    assert sorted(page.evaluate("window.__imageclustSelection")) == sorted(ids)  # kept by the URL

    # Move the same selection to another cluster of the run (offered in the picker).
    target = _q(db, "SELECT id FROM clusters WHERE kind = 'cluster' AND id != ? ORDER BY id LIMIT 1", [cid])[0][0]
    _click_action(page, "Move to cluster…")
    page.select_option("#icm-edit-to", str(target))
    with page.expect_navigation(timeout=30_000):
        page.click("#icm-edit-apply")
    page.wait_for_function(f"{API}.ready", timeout=60_000)
    assert page.inner_text("#icm-edit-status") == f"Moved {len(ids)} images."
    assert _cluster_of(db, ids) == {i: target for i in ids}
    assert errors == []
    page.close()


@pytest.mark.parametrize("who,where", [(None, "url"), ("visitor", "url"), ("editor", "frozen")])
def test_no_curation_actions_without_the_permission_or_on_an_immutable_database(setup, who, where):
    ids = [r[0] for r in _q(setup["db"], "SELECT image_id FROM cluster_members ORDER BY image_id LIMIT 3")]
    page, errors = _open(setup, who, f"{setup[where]}/sel/-/imageclust/map?ids={','.join(map(str, ids))}")
    assert page.inner_text("#icm-sel-count") == "3 selected"
    assert _actions(page) == [] and page.locator("#icm-edit").count() == 0
    assert page.evaluate("JSON.parse(document.getElementById('icm-config').textContent).edit") is None
    # The downloads are for everyone who may view the tables.
    r = page.request.get(page.evaluate("document.getElementById('icm-sel-export-csv').href"))
    assert r.status == 200 and sorted(int(x["image_id"]) for x in csv.DictReader(io.StringIO(r.text()))) == ids
    assert errors == []
    page.close()
