"""Map selection in a real browser: Debian Chromium (Playwright) against a real `datasette`
serving a 600-image map on 127.0.0.1 (0.65 and, in .ci/run's second pass, 1.0).

`?sql=` and `?ids=` highlight exactly their images; a shift-drag rectangle and a lasso select
exactly the images inside them (computed here from the stored coordinates), whose CSV has
exactly those rows; colouring by a column shows its legend; "Show on map" from a table
and from a query opens the map with the rows' images selected."""
from __future__ import annotations

import csv
import io
import os

import pytest

from browser import chromium, datasette_server, need_browser
from dbrows import rows as _rows

API = "window.__imageclustMap"


def shift_drag(page, a, b) -> None:
    """Shift-drag from screen point ``a`` to ``b``: the map's rectangle selection."""
    page.keyboard.down("Shift")
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=10)
    page.mouse.up()
    page.keyboard.up("Shift")


@pytest.fixture(scope="module")
def db_path(tmp_path_factory) -> str:
    need_browser()
    from synthdb import make_map_db

    path = str(tmp_path_factory.mktemp("mapsel") / "sel.db")
    return make_map_db(path, 600, clusters=12, thumb_px=48, distinct_thumbs=120)


@pytest.fixture(scope="module")
def server(db_path):
    with datasette_server(db_path) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as b:
        yield b


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function(f"window.__imageclustPainted && {API}.ready", timeout=60_000)
    return page, errors


def _selection(page) -> list[int]:
    return sorted(page.evaluate("window.__imageclustSelection"))


def test_sql_and_ids_selection_highlight_exactly_their_images(browser, server, db_path):
    cid = _rows(db_path, "SELECT id FROM clusters WHERE kind = 'cluster' ORDER BY id LIMIT 1 OFFSET 3")[0][0]
    want = sorted(r[0] for r in _rows(db_path, "SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid]))
    assert 10 < len(want) < 200
    page, errors = _open(browser, f"{server}/sel/-/imageclust/map?sql=select+image_id+from+cluster_members"
                                  f"+where+cluster_id+%3D+:c&c={cid}")
    assert _selection(page) == want
    assert page.evaluate(f"{API}.highlighted") == len(want)
    assert page.inner_text("#icm-sel-count") == f"{len(want)} selected"
    # Zoomed to the selection on load; Fit, then "Zoom to selection" comes back to it.
    s_sel = page.evaluate(f"{API}.view.s")
    page.click("#icm-fit")
    assert page.evaluate(f"{API}.view.s") < s_sel
    page.click("#icm-sel-zoom")
    assert page.evaluate(f"{API}.view.s") == pytest.approx(s_sel)
    if os.environ.get("IMAGECLUST_DOCS_SCREENSHOT_SELECTION"):
        page.wait_for_timeout(300)
        page.screenshot(path=os.environ["IMAGECLUST_DOCS_SCREENSHOT_SELECTION"])
    page.click("#icm-sel-clear")
    assert page.evaluate("window.__imageclustSelection") == []
    assert page.evaluate(f"{API}.highlighted") == 0
    assert "sql=" not in page.url
    page.close()

    # ?ids=: one of them is not an image on the map.
    page, errors2 = _open(browser, f"{server}/sel/-/imageclust/map?ids=5,3,9,3,999999")
    assert _selection(page) == [3, 5, 9, 999999]
    assert page.evaluate(f"{API}.highlighted") == 3
    assert page.inner_text("#icm-sel-count") == "4 selected, 1 not on the map"
    assert errors == errors2 == []
    page.close()


def _world(page, px: float, py: float) -> tuple[float, float]:
    """A point of the page in map coordinates (as the map's view defines them)."""
    v = page.evaluate(f"(() => {{ const v = {API}.view, r = document.getElementById('icm-map')"
                      f".getBoundingClientRect(); return [v.cx, v.cy, v.s, v.w, v.h, r.left, r.top]; }})()")
    cx, cy, s, w, h, left, top = v
    return cx + (px - left - w / 2) / s, cy + (py - top - h / 2) / s


def _inside(poly: list[tuple[float, float]], x: float, y: float) -> bool:
    inside = False
    for k in range(len(poly)):
        (xa, ya), (xb, yb) = poly[k], poly[k - 1]
        if (ya > y) != (yb > y) and x < (xb - xa) * (y - ya) / (yb - ya) + xa:
            inside = not inside
    return inside


def _csv_ids(page, href: str) -> tuple[list[str], list[int]]:
    r = page.request.get(href)
    assert r.status == 200, r.text()[:300]
    rows = list(csv.reader(io.StringIO(r.text())))
    return rows[0], sorted(int(row[0]) for row in rows[1:])


def test_rectangle_and_lasso_select_and_export_csv(browser, server, db_path):
    page, errors = _open(browser, f"{server}/sel/-/imageclust/map")
    points = _rows(db_path, "SELECT image_id, x, y FROM layout_points")
    box = page.locator("#icm-map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    # Shift-drag: a rectangle.
    a, b = (cx - 150, cy - 120), (cx + 60, cy + 90)
    (wx0, wy0), (wx1, wy1) = _world(page, *a), _world(page, *b)
    want = sorted(i for i, x, y in points if wx0 <= x <= wx1 and wy0 <= y <= wy1)
    assert 20 < len(want) < 500
    shift_drag(page, a, b)
    page.wait_for_function("window.__imageclustSelection.length > 0")
    assert _selection(page) == want
    assert page.inner_text("#icm-sel-count") == f"{len(want)} selected"
    assert page.evaluate(f"{API}.highlighted") == len(want)

    # Lasso: a triangle drawn in lasso mode.
    page.click("#icm-lasso")
    tri = [(cx - 200, cy + 150), (cx, cy - 200), (cx + 220, cy + 120)]
    poly = [_world(page, *p) for p in tri]
    want = sorted(i for i, x, y in points if _inside(poly, x, y))
    assert 20 < len(want) < 550
    page.mouse.move(*tri[0])
    page.mouse.down()
    for p in tri[1:]:
        page.mouse.move(*p, steps=15)
    page.mouse.move(*tri[0], steps=15)
    page.mouse.up()
    page.wait_for_function(f"window.__imageclustSelection.length === {len(want)}")
    # The outline followed the mouse in 15 steps a side: every point more than a hair
    # inside the drawn triangle is selected, none outside.
    assert _selection(page) == want
    # The URL keeps a selection small enough for it.
    assert "ids=" in page.url

    # The selection as a Datasette query (all columns of images) and as its CSV.
    header, ids = _csv_ids(page, page.evaluate("document.getElementById('icm-sel-csv').href"))
    columns = [r[1] for r in _rows(db_path, "PRAGMA table_info(images)")]
    assert header == columns
    assert ids == want
    page.click("#icm-sel-query")
    page.wait_for_load_state()
    assert page.locator("table.rows-and-columns tbody tr").count() == len(want)
    page.close()
    assert errors == []


def test_colour_by_a_column_shows_a_legend(browser, server, db_path):
    page, errors = _open(browser, f"{server}/sel/-/imageclust/map")
    opts = page.evaluate("Array.from(document.querySelectorAll('#icm-colour-by option')).map(o => o.value)")
    assert "folder" in opts and any(o.startswith("cluster:") for o in opts)
    page.select_option("#icm-colour-by", "folder")
    page.wait_for_function(f"{API}.colouredBy === 'folder'")
    folders = _rows(db_path, "SELECT rtrim(path, replace(path, '/', '')) AS f, count(*) FROM files "
                             "GROUP BY f ORDER BY count(*) DESC, f LIMIT 12")
    labels = page.evaluate("Array.from(document.querySelectorAll('#icm-legend .icm-legend-label'))"
                           ".map(e => e.textContent)")
    counts = page.evaluate("Array.from(document.querySelectorAll('#icm-legend .icm-legend-count'))"
                           ".map(e => e.textContent)")
    assert labels == [f for f, _ in folders]
    assert counts == [str(n) for _, n in folders]
    assert page.is_visible("#icm-legend")
    if os.environ.get("IMAGECLUST_DOCS_SCREENSHOT_COLOUR"):
        page.wait_for_timeout(300)
        page.screenshot(path=os.environ["IMAGECLUST_DOCS_SCREENSHOT_COLOUR"])
    page.select_option("#icm-colour-by", "")
    assert page.is_hidden("#icm-legend")
    assert errors == []
    page.close()


def test_show_on_map_from_a_table_and_a_query(browser, server, db_path):
    cid = _rows(db_path, "SELECT id FROM clusters WHERE kind = 'cluster' ORDER BY id DESC LIMIT 1")[0][0]
    want = sorted(r[0] for r in _rows(db_path, "SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid]))
    page = browser.new_page()
    page.goto(f"{server}/sel/cluster_members?cluster_id={cid}")
    link = page.locator("a", has_text="Show on map")
    assert link.count() == 1
    page.goto(link.evaluate("a => a.href"))
    page.wait_for_function(f"window.__imageclustPainted && {API}.ready", timeout=60_000)
    assert _selection(page) == want
    assert page.evaluate(f"{API}.highlighted") == len(want)

    # A query result with an image_id column (1.0: its actions menu; 0.65: a link above).
    page.goto(f"{server}/sel?sql=select+image_id,+path+from+files+where+image_id+<+:n&n=8")
    link = page.locator("a", has_text="Show on map")
    assert link.count() == 1
    page.goto(link.evaluate("a => a.href"))
    page.wait_for_function(f"window.__imageclustPainted && {API}.ready", timeout=60_000)
    assert _selection(page) == list(range(1, 8))
    # ... and none for a result without one.
    page.goto(f"{server}/sel?sql=select+id+from+files")
    page.wait_for_load_state()
    assert page.locator("a", has_text="Show on map").count() == 0
    page.close()


@pytest.fixture(scope="module")
def big_db(tmp_path_factory) -> str:
    """2,000 images on a t-SNE map: a whole-map selection's download link would pass 8,000
    characters."""
    need_browser()
    from synthdb import make_db

    from datasette_imageclust.pipeline import build_map
    from datasette_imageclust.store import connection

    path = make_db(str(tmp_path_factory.mktemp("bigsel") / "big.db"), 2000, clusters=12, thumb_px=32,
                   distinct_thumbs=60)
    db = connection.connect(path)
    build_map(db, method="tsne")
    connection.close(db)
    return path


def test_a_selection_too_long_for_a_link_downloads_by_post(browser, big_db):
    with datasette_server(big_db) as server:
        page, errors = _open(browser, f"{server}/big/-/imageclust/map")
        points = _rows(big_db, "SELECT image_id, x, y FROM layout_points")
        box = page.locator("#icm-map").bounding_box()
        a, b = (box["x"] + 3, box["y"] + 3), (box["x"] + box["width"] - 3, box["y"] + box["height"] - 3)
        (wx0, wy0), (wx1, wy1) = _world(page, *a), _world(page, *b)
        want = sorted(i for i, x, y in points if wx0 <= x <= wx1 and wy0 <= y <= wy1)
        assert len(want) > 1500
        shift_drag(page, a, b)
        page.wait_for_function(f"window.__imageclustSelection.length === {len(want)}")
        assert _selection(page) == want
        # Too long for a link (the query links are not offered and say so), but the
        # downloads are: posted by the page's form.
        assert page.is_hidden("#icm-sel-query") and "too many to open as a query" in page.inner_text("#icm-sel-note")
        assert page.is_visible("#icm-sel-export-csv") and page.get_attribute("#icm-sel-export-csv", "href") is None
        with page.expect_download() as got:
            page.click("#icm-sel-export-csv")
        assert got.value.suggested_filename == "big-selection.csv"
        with open(got.value.path(), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert sorted(int(r["image_id"]) for r in rows) == want and {r["run"] for r in rows} == {"default"}
        with page.expect_download() as got:
            page.click("#icm-sel-export-zip")
        import zipfile

        with zipfile.ZipFile(got.value.path()) as z:
            manifest = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode("utf-8"))))
        assert sorted(int(m["image_id"]) for m in manifest) == want
        # The map stayed open with its selection.
        assert _selection(page) == want and errors == []
        page.close()
