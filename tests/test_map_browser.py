"""The map in a real browser: Debian Chromium (Playwright) against a real Datasette
serving a 10,000-image database on 127.0.0.1."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from browser import chromium, datasette_server, need_browser

N = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    need_browser()
    from synthdb import make_map_db

    path = str(tmp_path_factory.mktemp("browser") / "big.db")
    make_map_db(path, N, clusters=100, thumb_px=48, distinct_thumbs=300, landmarks=300,
                label_prefix='<img src=x onerror="window.__xss=1">')
    with datasette_server(path) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _open(browser, server, init_script: str | None = None):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(f"{server}/big/-/imageclust/map")
    page.wait_for_function("window.__imageclustPainted", timeout=60_000)
    return page, errors


def _distinct_colours(png: bytes) -> int:
    import io

    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB").resize((200, 120))
    return len(set(map(tuple, np.asarray(im).reshape(-1, 3).tolist())))


def test_map_pans_zooms_and_opens_an_image(browser, server, tmp_path):
    page, errors = _open(browser, server)
    api = "window.__imageclustMap"
    assert page.evaluate(f"{api}.count") == N
    assert page.evaluate(f"{api}.renderer") in ("webgl2", "webgl")
    assert "10,000 images" in page.inner_text("#icm-count")
    canvas = page.locator("#icm-gl")
    shot = tmp_path / "overview.png"
    page.screenshot(path=str(shot))
    assert _distinct_colours(canvas.screenshot()) > 200  # thumbnails and cluster colours, not a blank canvas
    assert page.evaluate(f"{api}.pointMode") is True  # small thumbnails: point sprites
    if os.environ.get("IMAGECLUST_DOCS_SCREENSHOT"):
        page.screenshot(path=os.environ["IMAGECLUST_DOCS_SCREENSHOT"])

    # Keyboard: + zooms in, 0 fits again.
    s_fit = page.evaluate(f"{api}.view.s")
    page.focus("#icm-map")
    page.keyboard.press("+")
    assert page.evaluate(f"{api}.view.s") == pytest.approx(1.5 * s_fit)
    page.keyboard.press("0")
    assert page.evaluate(f"{api}.view.s") == pytest.approx(s_fit)

    # Pan: drag the map.
    box = page.locator("#icm-map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = page.evaluate(f"[{api}.view.cx, {api}.view.cy]")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 200, cy - 100, steps=8)
    page.mouse.up()
    after = page.evaluate(f"[{api}.view.cx, {api}.view.cy]")
    assert after[0] > before[0] and after[1] > before[1]

    # Zoom in with the wheel, over an image, until the detail atlas level is used and its
    # sheets load (zooming keeps the point under the cursor in place).
    s0 = page.evaluate(f"{api}.view.s")
    page.evaluate(f"{api}.fit()")
    page.wait_for_timeout(100)
    p = page.evaluate(f"{api}.screenOf(1234)")
    cx, cy = p["x"], p["y"]
    page.mouse.move(cx, cy)
    for _ in range(12):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(30)
    page.wait_for_function(f"{api}.level === 64 && {api}.detailLoaded > 0", timeout=30_000)
    assert page.evaluate(f"{api}.view.s") > 8 * s0
    page.wait_for_timeout(300)
    page.screenshot(path=str(tmp_path / "zoomed.png"))
    assert _distinct_colours(canvas.screenshot()) > 30

    # Deeper still: whole thumbnails replace the largest atlas cells for the images in view.
    page.evaluate(f"{api}.zoomTo(1234, 200)")
    page.wait_for_function(f"{api}.thumbsLoaded > 0", timeout=30_000)
    assert _distinct_colours(canvas.screenshot()) > 30
    assert page.evaluate(f"{api}.pointMode") is False  # large thumbnails: quads
    page.evaluate(f"{api}.zoomTo(1234, 64)")
    page.wait_for_timeout(200)
    cx, cy = page.evaluate(f"[{api}.screenOf(1234).x, {api}.screenOf(1234).y]")

    # Hover an image: the preview shows its thumbnail and the label as text.
    target = page.evaluate(f"{api}.idAt({cx}, {cy})")
    assert target == 1234
    p = page.evaluate(f"{api}.screenOf({target})")
    page.mouse.move(p["x"], p["y"])
    page.wait_for_selector("#icm-tip:not([hidden])")
    assert f"image {target}" in page.inner_text("#icm-tip-text")
    page.wait_for_function("document.getElementById('icm-tip-img').complete && "
                           "document.getElementById('icm-tip-img').naturalWidth > 0")
    assert page.evaluate("window.__xss") is None  # labels with HTML never became markup

    # Click: land on the image page.
    # The view is written to the URL (#x,y,zoom) after a pause: wait until it is there.
    page.wait_for_function(f"(() => {{ const v = {api}.view; return location.hash === "
                           f"'#' + v.cx.toFixed(1) + ',' + v.cy.toFixed(1) + ',' + v.s.toFixed(3); }})()",
                           timeout=15_000)
    view = page.evaluate(f"[{api}.view.cx, {api}.view.cy, {api}.view.s]")
    page.mouse.click(p["x"], p["y"])
    page.wait_for_url(re.compile(rf"/big/-/imageclust/image/{target}$"), timeout=15_000)
    # Back: the map opens where it was.
    page.go_back()
    page.wait_for_function("window.__imageclustPainted", timeout=60_000)
    back = page.evaluate(f"[{api}.view.cx, {api}.view.cy, {api}.view.s]")
    assert back == pytest.approx(view, abs=0.1)

    # Find a cluster by (part of) its label: the view centres on it.
    meta = page.evaluate(f"fetch('{server}/big/-/imageclust/map.json').then(r => r.json())")
    target_cluster = max(meta["clusters"], key=lambda c: c["on_map"])
    page.fill("#icm-find", target_cluster["label"])
    page.press("#icm-find", "Enter")
    page.wait_for_function(f"Math.abs({api}.view.cx - {target_cluster['x']}) < 0.01")
    assert page.evaluate(f"{api}.view.cy") == pytest.approx(target_cluster["y"], abs=0.01)
    assert page.evaluate("document.querySelectorAll('#icm-clusters option').length") == 100

    # Shift-click opens the image's cluster.
    page.evaluate(f"{api}.zoomTo({target}, 64)")
    page.wait_for_timeout(100)
    p = page.evaluate(f"{api}.screenOf({target})")
    page.keyboard.down("Shift")
    page.mouse.click(p["x"], p["y"])
    page.keyboard.up("Shift")
    page.wait_for_url(re.compile(r"/big/-/imageclust/cluster/\d+$"), timeout=15_000)
    assert errors == []
    page.close()


def test_canvas2d_fallback_without_webgl(browser, server, tmp_path):
    no_webgl = """
      const orig = HTMLCanvasElement.prototype.getContext;
      HTMLCanvasElement.prototype.getContext = function (kind, opts) {
        if (String(kind).indexOf('webgl') >= 0) return null;
        return orig.call(this, kind, opts);
      };"""
    page, errors = _open(browser, server, no_webgl)
    assert page.evaluate("window.__imageclustMap.renderer") == "canvas2d"
    assert _distinct_colours(page.locator("#icm-gl").screenshot()) > 50
    page.evaluate("window.__imageclustMap.zoomTo(42, 60)")
    page.wait_for_function("window.__imageclustMap.detailLoaded > 0", timeout=30_000)
    page.screenshot(path=str(tmp_path / "canvas2d.png"))
    assert _distinct_colours(page.locator("#icm-gl").screenshot()) > 50
    assert errors == []
    page.close()


def test_unknown_layout_is_a_404_page(browser, server):
    # The same server also serves the database list: a missing layout is a message.
    page = browser.new_page()
    r = page.goto(f"{server}/big/-/imageclust/map?layout=999")
    assert r.status == 404
    page.close()
