"""Coding an evaluation task in a real browser (Debian Chromium, Playwright) against a real
`datasette` server: a permitted actor picks labels with the mouse and the keyboard and the
answers land in the database; a visitor who is not signed in sees the sets with answering
off; with ``evaluation_anonymous: true`` a visitor types a name and codes under it."""
from __future__ import annotations

import json
import shutil
import sqlite3

import datasette
import pytest
from datasette.app import Datasette

from browser import chromium, datasette_server, need_browser
from datasette_imageclust.analysis import evaluate as ev
from datasette_imageclust.store import connection as dbmod
from synthdb import make_db

SECRET = "evaluate-browser-test-secret"
XSS = '<img src=x onerror="alert(1)">'


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> str:
    need_browser()
    path = str(tmp_path_factory.mktemp("evb") / "ev.db")
    make_db(path, 48, clusters=4, thumb_px=64, distinct_thumbs=16, label_prefix=XSS)
    db = dbmod.connect(path)
    ev.create_task(db, "study", seed=2, sets_per_cluster=2)
    dbmod.close(db)
    return path


@pytest.fixture(scope="module")
def browser(template):
    with chromium() as b:
        yield b


def serve(path: str, folder, plugin: dict | None = None):
    conf = {"permissions": {"imageclust-edit": {"id": ["alice"]}},
            "plugins": {"datasette-imageclust": plugin or {}}}
    (folder / "conf.json").write_text(json.dumps(conf))
    flag = "-m" if datasette.__version__.startswith("0.") else "-c"
    return datasette_server(path, flag, str(folder / "conf.json"), "--secret", SECRET)


def signed_in(browser, url: str, actor_id: str):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    value = Datasette(secret=SECRET).sign({"a": {"id": actor_id}}, "actor")
    context.add_cookies([{"name": "ds_actor", "value": value, "url": url}])
    return context


def stored(path: str) -> list[tuple]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT a.coder, s.set_no, a.cluster_id FROM eval_answers a JOIN eval_sets s "
                         "ON s.id = a.set_id ORDER BY a.coder, s.set_no").fetchall()


def labels_on(page) -> dict[str, int | None]:
    out = {}
    for b in page.locator("button.ic-choice").all():
        c = b.get_attribute("data-cluster")
        out[b.inner_text()] = int(c) if c else None
    return out


def on_set(page, n: int) -> None:
    """Wait until set ``n`` is shown and its buttons answer (the page's script has run: a
    click before that would do nothing)."""
    page.wait_for_selector(f".ic-set h2:text('Set {n} of 8')")
    page.wait_for_selector("form.ic-answer[data-ready]", state="attached")


def test_a_permitted_actor_codes_sets_with_mouse_and_keys(template, browser, tmp_path):
    path = str(tmp_path / "ev.db")
    shutil.copy(template, path)
    dialogs: list = []
    with serve(path, tmp_path) as url:
        context = signed_in(browser, url, "alice")
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(url + "/ev/-/imageclust/evaluate/study")
        assert page.locator(".ic-set h2").inner_text() == "Set 1 of 8"
        assert page.locator(".ic-set-images img").count() == 4
        page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        choices = labels_on(page)
        assert len(choices) == 5 and sum(XSS in k for k in choices) == 4  # hostile labels shown as text
        # set 1: the first label, by mouse
        first = page.locator("button.ic-choice").first
        picked = int(first.get_attribute("data-cluster"))
        first.click()
        on_set(page, 2)
        # set 2: "none fits"
        page.locator("button.ic-none").click()
        on_set(page, 3)
        # set 3: key 2 picks the second label
        second = int(page.locator("button.ic-choice").nth(1).get_attribute("data-cluster"))
        page.keyboard.press("2")
        on_set(page, 4)
        assert page.locator(".ic-progress").inner_text() == "3 of 8 sets answered"
        page.screenshot(path=str(tmp_path / "coding.png"))
        assert stored(path) == [("alice", 1, picked), ("alice", 2, None), ("alice", 3, second)]
        # back to set 2: its answer is marked; change it
        page.locator("nav.ic-sets a", has_text="2").first.click()
        on_set(page, 2)
        assert "ic-chosen" in page.locator("button.ic-none").get_attribute("class")
        page.locator("button.ic-choice").first.click()
        on_set(page, 4)
        assert stored(path)[1] == ("alice", 2, picked)
        page.goto(url + "/ev/-/imageclust/evaluate/study/results")
        assert page.locator(".ic-results tbody tr").count() == 4
        assert page.locator(".ic-alpha").inner_text().startswith("–")  # one coder
        context.close()
    assert dialogs == []


def test_answering_is_off_for_visitors_and_open_to_typed_names_when_configured(template, browser, tmp_path):
    path = str(tmp_path / "ev.db")
    shutil.copy(template, path)
    with serve(path, tmp_path) as url:
        page = browser.new_page()
        page.goto(url + "/ev/-/imageclust/evaluate/study")
        assert "sign in" in page.locator(".ic-why-not").inner_text()
        assert page.locator("button.ic-choice:not([disabled])").count() == 0
        # a forged request from the page's own script is refused too
        status = page.evaluate("""fetch(location.pathname + '/answer', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({set: 1, cluster: null})})
            .then(r => r.status)""")
        assert status == 403
        page.close()
    assert stored(path) == []
    with serve(path, tmp_path, {"evaluation_anonymous": True}) as url:
        page = browser.new_page()
        page.goto(url + "/ev/-/imageclust/evaluate/study")
        page.fill("input[name=coder]", "Ann Coder")
        page.click(".ic-coder-form button")
        page.wait_for_selector(".ic-coder:text('Ann Coder')")
        on_set(page, 1)
        page.locator("button.ic-none").click()
        on_set(page, 2)
        page.locator("button.ic-choice").first.click()
        on_set(page, 3)
        page.close()
    assert [(c, s) for c, s, _ in stored(path)] == [("Ann Coder", 1), ("Ann Coder", 2)]
