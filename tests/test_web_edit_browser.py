"""Editing in a real browser (Debian Chromium driven by Playwright) against a real
`datasette` server: rename, move, undo on the cluster and image pages, the feedback shown,
and no controls for an actor without the permission or on an immutable database. Under
Datasette 0.65 and 1.0 (.ci/run): the same-origin JSON POSTs pass each version's CSRF check."""
from __future__ import annotations


import pytest
from datasette.app import Datasette

import plugin_dbs
from browser import editor_servers, need_browser
from dbrows import rows as _q

SECRET = "imageclust-edit-browser-test-secret"


@pytest.fixture(scope="module")
def setup(tux_db, tmp_path_factory):
    need_browser()
    d = tmp_path_factory.mktemp("editbrowser")
    db = plugin_dbs.clustered(tux_db, d / "photos.db")
    with editor_servers(db, d, SECRET) as servers:
        yield servers


def _page(setup, actor: str | None, dialogs: list):
    ctx = setup["browser"].new_context(viewport={"width": 1280, "height": 1000})
    if actor:
        value = Datasette([], secret=SECRET).sign({"a": {"id": actor}}, "actor")
        for url in (setup["url"], setup["frozen"]):
            ctx.add_cookies([{"name": "ds_actor", "value": value, "url": url}])
    page = ctx.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return page


def _clusters(path: str) -> list[int]:
    return [r[0] for r in _q(path, "SELECT c.id FROM clusters c JOIN cluster_runs r ON r.id = c.run_id WHERE "
                                   "r.name = 'kmeans16' AND c.kind = 'cluster' ORDER BY c.size DESC, c.id")]


def _members(path: str, cid: int) -> list[int]:
    return [r[0] for r in _q(path, "SELECT image_id FROM cluster_members WHERE cluster_id = ? ORDER BY rank", [cid])]


def _status(page) -> str:
    page.wait_for_function("document.querySelector('.ic-edit-status').textContent.trim() !== '' && "
                           "!document.querySelector('.ic-edit-status').textContent.startsWith('Saving')")
    return page.locator(".ic-edit-status").inner_text()


def test_rename_move_undo_on_the_cluster_page(setup, tmp_path):
    db, dialogs = setup["db"], []
    c = _clusters(db)
    here, other = c[2], c[3]
    page = _page(setup, "editor", dialogs)
    page.goto(f"{setup['url']}/photos/-/imageclust/cluster/{here}")
    page.wait_for_load_state("networkidle")
    # Nothing to undo yet: the server's refusal is shown, nothing reloads.
    page.locator("form[data-op=undo] button").click()
    assert "Not saved" in _status(page) and "undo" in page.locator(".ic-edit-status").inner_text().lower()
    assert page.locator(".ic-edit-status.ic-edit-error").count() == 1
    # Move with nothing ticked: said so.
    page.locator("form[data-op=move] button").click()
    assert "Tick the images" in _status(page)
    # Rename.
    page.fill("form[data-op=label] input[name=label]", "Moths & <friends>")
    page.locator("form[data-op=label] button").click()
    page.wait_for_function("document.querySelector('h1').textContent.includes('Moths') && document.documentElement.dataset.icEditReady === '1'")
    assert page.locator("h1").inner_text() == "Moths & <friends>"
    assert _status(page).startswith("Renamed cluster")
    # Tick two images and move them to the other cluster.
    size = page.locator(".ic-grid .ic-tile").count()
    tiles = page.locator(".ic-grid .ic-tile")
    picked = [int(tiles.nth(i).get_attribute("data-image-id")) for i in (0, 1)]
    for i in (0, 1):
        tiles.nth(i).locator("input.ic-pick").check()
    assert page.url.endswith(f"/cluster/{here}")  # ticking does not follow the tile's link
    assert page.locator("[data-ic-selected]").inner_text() == "2"
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(tmp_path / "edit-cluster.png"), full_page=False)
    page.select_option("form[data-op=move] select[name=to]", str(other))
    page.locator("form[data-op=move] button").click()
    page.wait_for_function(f"document.querySelectorAll('.ic-grid .ic-tile').length === {size - 2} && document.documentElement.dataset.icEditReady === '1'")
    assert _status(page) == "Moved 2 images."
    assert set(picked) <= set(_members(db, other)) and not set(picked) & set(_members(db, here))
    # Undo the move: the images are back.
    page.locator("form[data-op=undo] button").click()
    page.wait_for_function(f"document.querySelectorAll('.ic-grid .ic-tile').length === {size} && document.documentElement.dataset.icEditReady === '1'")
    assert _status(page) == "Undid the last move."
    assert set(picked) <= set(_members(db, here))
    assert page.locator("h1").inner_text() == "Moths & <friends>"  # the rename stays
    ops = _q(db, "SELECT op, actor, undone IS NOT NULL FROM cluster_ops ORDER BY id")
    assert ops == [("label", "editor", 0), ("move", "editor", 1)]
    assert dialogs == []
    print(f"screenshots in {tmp_path}")


def test_move_this_image_on_the_image_page(setup, tmp_path):
    db, dialogs = setup["db"], []
    c = _clusters(db)
    image = _members(db, c[5])[0]
    page = _page(setup, "editor", dialogs)
    page.goto(f"{setup['url']}/photos/-/imageclust/image/{image}")
    page.wait_for_load_state("networkidle")
    form = page.locator("form[data-op=move][data-run=kmeans16]")
    form.locator("select[name=to]").select_option(str(c[6]))
    page.screenshot(path=str(tmp_path / "edit-image.png"), full_page=False)
    form.locator("button").click()
    page.wait_for_function("document.querySelector('.ic-edit-status').textContent.startsWith('Moved')")
    assert _status(page) == "Moved 1 image."
    assert image in _members(db, c[6])
    assert page.locator(f"a[href$='/cluster/{c[6]}']").count() >= 1  # the page shows its new cluster
    assert dialogs == []


@pytest.mark.parametrize("who", [None, "visitor"])
def test_no_controls_without_the_permission(setup, who):
    dialogs: list = []
    page = _page(setup, who, dialogs)
    cid = _clusters(setup["db"])[0]
    page.goto(f"{setup['url']}/photos/-/imageclust/cluster/{cid}")
    page.wait_for_load_state("networkidle")
    assert page.locator(".ic-grid .ic-tile").count() > 0
    assert page.locator("#ic-edit").count() == 0 and page.locator("input.ic-pick").count() == 0
    page.goto(f"{setup['url']}/photos/-/imageclust/image/1")
    assert page.locator("#ic-edit").count() == 0
    # A POST from the page's own origin is still refused.
    answer = page.evaluate("""async (url) => {
        const r = await fetch(url, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                    body: JSON.stringify({cluster: %d, label: 'x'})});
        return [r.status, await r.json()];
    }""" % cid, f"{setup['url']}/photos/-/imageclust/edit/label")
    assert answer[0] == 403 and answer[1]["ok"] is False
    assert dialogs == []


def test_no_controls_on_an_immutable_database(setup):
    dialogs: list = []
    page = _page(setup, "editor", dialogs)
    cid = _clusters(setup["db"])[0]
    page.goto(f"{setup['frozen']}/photos/-/imageclust/cluster/{cid}")
    page.wait_for_load_state("networkidle")
    assert page.locator(".ic-grid .ic-tile").count() > 0
    assert page.locator("#ic-edit").count() == 0
    page.goto(f"{setup['url']}/photos/-/imageclust/cluster/{cid}")  # the same actor, writable: controls
    assert page.locator("#ic-edit").count() == 1
