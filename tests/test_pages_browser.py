"""The plugin's pages in a real browser (Debian Chromium driven by Playwright) against a
real `datasette` server: clusters index -> cluster gallery -> image page -> more like
this, every thumbnail decoded, no script from hostile labels or file names ever runs."""
from __future__ import annotations

import json

import pytest

import plugin_dbs
from browser import chromium, datasette_server, need_browser

@pytest.fixture(scope="module")
def server(tux_db, tux_dir, tmp_path_factory):
    need_browser()
    d = tmp_path_factory.mktemp("browser")
    db = plugin_dbs.clustered(tux_db, d / "photos.db")
    meta = d / "meta.json"
    meta.write_text(json.dumps({"plugins": {"datasette-imageclust": {"originals_root": str(tux_dir)}}}))
    import datasette

    flag = "-m" if datasette.__version__.startswith("0.") else "-c"
    with datasette_server("-i", db, flag, str(meta)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _page(browser, dialogs: list):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # A hostile label or file name that ran as script would open an alert().
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    return page


def _all_images_decoded(page) -> bool:
    page.wait_for_load_state("networkidle")
    # Lazy images load only near the viewport (a jump to the bottom skips the middle ones):
    # make every one eager, then check them all.
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
    page.wait_for_load_state("networkidle")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=20000)
    return page.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0)")


def test_browse_index_cluster_image_and_search(server, browser, tmp_path):
    dialogs: list = []
    page = _page(browser, dialogs)
    page.goto(server + "/photos/-/imageclust")
    cards = page.locator(".ic-card")
    assert cards.count() >= 16
    assert _all_images_decoded(page)
    page.screenshot(path=str(tmp_path / "index.png"))
    # The hostile label is shown as text.
    assert page.locator(".ic-card h2 a").first.inner_text() == plugin_dbs.XSS
    # Open the second cluster (its title link) and then its nearest member.
    title = page.locator(".ic-card h2 a").nth(1)
    size = int(page.locator(".ic-card .ic-meta").nth(1).inner_text().split()[0])
    title.click()
    page.wait_for_url("**/-/imageclust/cluster/*")
    assert page.locator(".ic-grid .ic-tile").count() == size
    assert _all_images_decoded(page)
    # The arrow keys move between clusters.
    here = page.url
    nxt = page.locator("a[data-ic-key=ArrowRight]").get_attribute("href")
    page.keyboard.press("ArrowRight")
    page.wait_for_url("**" + nxt)
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(here)
    first = page.locator(".ic-grid .ic-tile").first
    href = first.get_attribute("href")
    first.click()
    page.wait_for_url("**" + href)
    assert page.locator("h2", has_text="Most similar").count() == 1
    assert page.locator(".ic-grid .ic-tile").count() >= 12
    assert _all_images_decoded(page)
    # The original file is served from under the configured root.
    original = page.locator("a", has_text="original").first
    resp = page.request.get(server + original.get_attribute("href"))
    assert resp.status == 200 and resp.headers["content-type"].startswith("image/")
    page.screenshot(path=str(tmp_path / "image.png"))
    page.locator("a", has_text="More like this").click()
    page.wait_for_url("**/-/imageclust/search?like=*")
    assert page.locator(".ic-grid .ic-tile").count() == 48
    assert _all_images_decoded(page)
    # Back on the index, sort by cohesion through the form.
    page.goto(server + "/photos/-/imageclust")
    page.select_option("select[name=sort]", "cohesion")
    page.locator(".ic-controls button").click()
    page.wait_for_url("**sort=cohesion*")
    assert page.locator(".ic-card").count() >= 16
    assert dialogs == []
    print(f"screenshots in {tmp_path}")


def test_hostile_names_never_run(server, browser):
    dialogs: list = []
    page = _page(browser, dialogs)
    for path in ["/photos/-/imageclust/image/1", "/photos/files",
                 "/photos/-/imageclust/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
                 "/photos/-/imageclust?run=%3Cimg%20src%3Dx%20onerror%3Dalert(3)%3E"]:
        page.goto(server + path)
        page.wait_for_load_state("networkidle")
    page.goto(server + "/photos/-/imageclust/image/1")
    assert plugin_dbs.XSS + ".png" in page.locator(".ic-files").inner_text()
    assert dialogs == []


def test_action_menu_and_cell_thumbnails(server, browser):
    dialogs: list = []
    page = _page(browser, dialogs)
    page.goto(server + "/photos/cluster_members")
    assert _all_images_decoded(page)
    assert page.locator("img.ic-cell-thumb").count() >= 50
    page.goto(server + "/photos")
    page.locator("details.actions-menu-links summary, details summary:has-text('Database actions')").first.click()
    page.locator("a", has_text="Image clusters").first.click()
    page.wait_for_url("**/photos/-/imageclust")
    assert page.locator(".ic-card").count() >= 16


def test_upload_search_in_browser(server, browser, tux_dir):
    dialogs: list = []
    page = _page(browser, dialogs)
    page.goto(server + "/photos/-/imageclust/search")
    sample = sorted((tux_dir / "fish").iterdir())[0]
    page.set_input_files("input[type=file][name=image]", str(sample))
    page.locator("form.ic-upload button").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("figure.ic-uploaded img").count() == 1
    assert page.locator(".ic-grid .ic-tile").count() == 48
    assert _all_images_decoded(page)
    # The uploaded file is in the collection: the first result is that very image.
    page.locator(".ic-grid .ic-tile").first.click()
    page.wait_for_url("**/-/imageclust/image/*")
    assert str(sample) in page.locator(".ic-files").inner_text()
    assert dialogs == []
