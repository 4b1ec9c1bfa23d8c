"""Print-ready exports (issue 12): ``figure`` (map, grid; PNG/SVG/PDF) and ``contact-sheet``.

Real databases: the 353 labelled tuxpaint stamps (the real embedder), clustered and laid
out by the pipeline, and synthetic map databases written through the library (600 images
whose labels hold HTML; 1,000 images in many clusters). Every output is read back with
its own reader: Pillow for PNG, an XML parser for SVG, pypdf for PDF.
"""
from __future__ import annotations

import itertools
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from datasette_imageclust.export import figure, placement, scene
from datasette_imageclust.export.selection import ExportError, select
from datasette_imageclust.pipeline import export
from datasette_imageclust.store import connection as dbmod

pypdf = pytest.importorskip("pypdf", reason="pypdf (the test extra) reads the PDFs back")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def tux_map(tmp_path_factory, tux_db) -> str:
    """The tuxpaint stamps clustered (k-means, 20 clusters, file-name labels) with the map."""
    from datasette_imageclust.pipeline import cluster_images

    path = str(tmp_path_factory.mktemp("tuxmap") / "tux.db")
    shutil.copy(tux_db, path)
    db = dbmod.connect(path)
    cluster_images(db, method="kmeans", n_clusters=20, labels=["terms"], duplicates=False)
    dbmod.close(db)
    return path


@pytest.fixture(scope="module")
def crowded_map(tmp_path_factory) -> str:
    """1,000 images in 40 clusters with long labels: a crowded map."""
    from synthdb import make_map_db

    path = str(tmp_path_factory.mktemp("crowded") / "map.db")
    return make_map_db(path, 1000, clusters=40, thumb_px=48, distinct_thumbs=160,
                       label_prefix="protest banner, street scene")


def _open(path: str):
    # Read-only: exports only read, and the shared fixtures must stay as they are
    # (a writable connection left open would leave them in WAL mode).
    return dbmod.connect(path, readonly=True, create=False)


def _svg_labels(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()  # raises if the SVG is not well-formed XML
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "cluster-label"]


def _box(g: ET.Element) -> tuple[float, float, float, float]:
    r = g.find(f"{SVG}rect")
    x, y, w, h = (float(r.get(k)) for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


def _no_overlaps(boxes: list[tuple[float, float, float, float]]) -> None:
    for a, b in itertools.combinations(boxes, 2):
        assert not scene.boxes_overlap(a, b), (a, b)


def _labelled(selection) -> list[dict]:
    return [c for c in selection.clusters if c["kind"] == "cluster"]


def test_map_png_has_the_width_and_dpi(tux_map, tmp_path):
    db = _open(tux_map)
    sel = select(db)
    out = tmp_path / "map.png"
    summary = export(db, "figure", out)  # the defaults: 3,000 px at 300 dpi
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width == 3000
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
        assert im.height == summary["height"]
        # Thumbnails were drawn: the picture is not a blank page.
        assert len(im.convert("RGB").resize((64, 64)).getcolors(64 * 64)) > 50
    assert summary["labels"] == len(_labelled(sel)) and summary["labels_omitted"] == 0
    assert summary["images_drawn"] == 353


def test_map_svg_has_one_text_per_cluster_and_no_overlapping_labels(tux_map, tmp_path):
    db = _open(tux_map)
    sel = select(db)
    out = tmp_path / "map.svg"
    export(db, "figure", out, width=1600, dpi=150)
    labels = _svg_labels(out)
    want = {c["id"]: scene.clean(c["label"]) or f"cluster {c['id']}" for c in _labelled(sel)}
    assert {int(g.get("data-cluster-id")): g.find(f"{SVG}text").text for g in labels} == want
    assert all(len(g.findall(f"{SVG}text")) == 1 for g in labels)
    _no_overlaps([_box(g) for g in labels])
    root = ET.parse(out).getroot()
    assert root.find(f"{SVG}image").get("{http://www.w3.org/1999/xlink}href").startswith("data:image/jpeg;base64,")
    assert root.get("width") == f"{1600 / 150 * 25.4:.2f}mm"


def test_svg_keeps_labels_with_markup_as_text(map_db, tmp_path):
    # map_db's labels begin with an <img onerror=...> tag: text in the SVG, never markup.
    db = _open(map_db)
    out = tmp_path / "map.svg"
    export(db, "figure", out, width=1200)
    texts = [g.find(f"{SVG}text").text for g in _svg_labels(out)]
    assert len(texts) == 12 and all(t.startswith('<img src=x onerror="') for t in texts)
    assert b"<img" not in out.read_bytes()


def test_map_pdf_has_the_labels_as_text(tux_map, tmp_path):
    db = _open(tux_map)
    sel = select(db)
    out = tmp_path / "map.pdf"
    summary = export(db, "figure", out, width=2400, dpi=200)
    reader = pypdf.PdfReader(out)
    assert len(reader.pages) == 1 and summary["pages"] == 1
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (round(2400 / 200 * 72), round(summary["height"] / 200 * 72))
    text = reader.pages[0].extract_text()
    for c in _labelled(sel):
        assert (scene.clean(c["label"]) or f"cluster {c['id']}") in text
    # The picture is one JPEG image, the text is not in it: Helvetica, no embedded font.
    res = reader.pages[0]["/Resources"]
    assert res["/Font"]["/F1"]["/BaseFont"] == "/Helvetica"
    assert [x["/Filter"] for x in res["/XObject"].values()] == ["/DCTDecode"]


def test_thousand_image_map_places_every_label_readably(crowded_map, tmp_path):
    db = _open(crowded_map)
    png = export(db, "figure", tmp_path / "map.png")
    assert png["images_drawn"] == 1000
    assert png["labels"] == 40 and png["labels_omitted"] == 0
    assert png["min_label_pt"] >= 3000 * figure.MIN_LABEL_SIZE / 300 * 72 - 0.1  # >= ~6.5 pt at 300 dpi
    with Image.open(tmp_path / "map.png") as im:
        assert im.width == 3000
    export(db, "figure", tmp_path / "map.svg")
    labels = _svg_labels(tmp_path / "map.svg")
    assert len(labels) == 40
    _no_overlaps([_box(g) for g in labels])
    assert min(float(g.find(f"{SVG}text").get("font-size")) for g in labels) >= 3000 * figure.MIN_LABEL_SIZE - 0.1
    # Crowded: some labels had to move away from their cluster and got a leader line.
    assert ET.parse(tmp_path / "map.svg").getroot().find(f"{SVG}g[@class='leaders']/{SVG}line") is not None


def test_grid_figure_png_and_svg(tux_map, tmp_path):
    db = _open(tux_map)
    sel = select(db)
    summary = export(db, "figure", tmp_path / "grid.png", figure="grid", width=1800, dpi=150)
    with Image.open(tmp_path / "grid.png") as im:
        assert im.width == 1800 and tuple(round(v) for v in im.info["dpi"]) == (150, 150)
    groups = [c for c in sel.clusters if any(sel.cluster_of[i] == c["id"] for i in sel.image_ids)]
    assert summary["clusters_drawn"] == len(groups) and summary["clusters_omitted"] == 0
    export(db, "figure", tmp_path / "grid.svg", figure="grid", width=1800)
    labels = _svg_labels(tmp_path / "grid.svg")
    assert [int(g.get("data-cluster-id")) for g in labels] == [c["id"] for c in groups]


def test_contact_sheet_has_a_page_per_cluster(tux_map, tmp_path):
    db = _open(tux_map)
    sel = select(db)
    out = tmp_path / "sheet.pdf"
    summary = export(db, "contact-sheet", out, dpi=100)
    reader = pypdf.PdfReader(out)
    groups = [c for c in sel.clusters if any(sel.cluster_of[i] == c["id"] for i in sel.image_ids)]
    assert len(reader.pages) == len(groups) == summary["pages"]
    shown = 0
    for page, c in zip(reader.pages, groups):
        text = page.extract_text()
        assert (scene.clean(c["label"], 120) or f"cluster {c['id']}") in text
        assert f"{c['size']:,} image" in text
        if c["kind"] == "cluster":
            assert f"cohesion {c['cohesion']:.3f}" in text
        selected = sum(sel.cluster_of[i] == c["id"] for i in sel.image_ids)
        on_page = int(re.search(r"(\d+) of (\d+) selected images", text).group(1))
        assert f"{on_page} of {selected} selected images" in text and 0 < on_page <= selected
        assert (f"+ {selected - on_page} more not shown" in text) == (on_page < selected)
        shown += on_page
    assert summary["images_shown"] == shown
    # A4 portrait.
    assert [round(float(v)) for v in reader.pages[0].mediabox[2:]] == [595, 842]


def test_contact_sheet_of_chosen_clusters_says_how_many_more(crowded_map, tmp_path):
    db = _open(crowded_map)
    big = max(select(db).clusters, key=lambda c: c["size"])
    summary = export(db, "contact-sheet", tmp_path / "one.pdf", clusters=[big["id"]], dpi=100)
    text = pypdf.PdfReader(tmp_path / "one.pdf").pages[0].extract_text()
    assert summary["pages"] == 1
    shown = summary["images_shown"]
    if shown < big["size"]:
        assert f"+ {big['size'] - shown:,} more not shown" in text
    assert f"{shown:,} of {big['size']:,} selected images" in text


def test_characters_outside_winansi_are_counted_in_pdf_and_kept_in_svg(map_db, tmp_path):
    path = tmp_path / "copy.db"
    shutil.copy(map_db, path)
    db = dbmod.connect(str(path))
    with db.conn:
        db.execute("UPDATE cluster_labels SET label = 'Ελληνικά café ' || cluster_id")
    dbmod.close(db)
    db = _open(str(path))
    pdf = export(db, "figure", tmp_path / "map.pdf", width=1200)
    assert pdf["replaced_characters"] == 8 * 12
    assert "cafe" in pypdf.PdfReader(tmp_path / "map.pdf").pages[0].extract_text().replace("é", "e")
    export(db, "figure", tmp_path / "map.svg", width=1200)
    assert all(g.find(f"{SVG}text").text.startswith("Ελληνικά café") for g in _svg_labels(tmp_path / "map.svg"))


def test_png_renders_without_any_system_font(map_db, tmp_path, monkeypatch):
    monkeypatch.setattr(scene, "FONT_FILES", ())
    scene._font_file.cache_clear()
    scene.font.cache_clear()
    try:
        db = _open(map_db)
        summary = export(db, "figure", tmp_path / "map.png", width=1200)
        assert summary["labels"] == 12 and summary["labels_omitted"] == 0
        with Image.open(tmp_path / "map.png") as im:
            assert im.width == 1200
    finally:
        scene._font_file.cache_clear()
        scene.font.cache_clear()


@pytest.mark.parametrize("name, options, message", [
    ("fig.jpg", {}, "as .png, .svg or .pdf"),
    ("fig.png", {"figure": "mosaic"}, "--figure must be map or grid"),
    ("fig.png", {"width": 50}, "--width must be"),
    ("fig.png", {"dpi": 0}, "--dpi must be"),
])
def test_bad_figure_options_are_one_line_and_write_nothing(map_db, tmp_path, name, options, message):
    db = _open(map_db)
    with pytest.raises(ExportError, match=message):
        export(db, "figure", tmp_path / name, **options)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_force(map_db, tmp_path):
    db = _open(map_db)
    out = tmp_path / "map.png"
    out.write_bytes(b"mine")
    with pytest.raises(ExportError, match="already exists"):
        export(db, "figure", out, width=800)
    assert out.read_bytes() == b"mine"
    with pytest.raises(ExportError, match="contact sheet is a PDF"):
        export(db, "contact-sheet", tmp_path / "sheet.png")
    export(db, "figure", out, width=800, force=True)
    assert Image.open(out).width == 800
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # no temporary left


def test_map_figure_needs_a_layout(tux_db, tmp_path):
    db = _open(tux_db)  # loaded, never laid out
    with pytest.raises(ExportError, match="no map layout"):
        export(db, "figure", tmp_path / "map.png")


def test_placement_never_overlaps_and_leaves_out_what_cannot_fit():
    # 30 labels on one anchor: they spread out (leader lines), none overlapping.
    labels = [(f"label number {i}", 500.0, 500.0) for i in range(30)]
    placed = placement.place(labels, canvas=(1000, 1000), size=24, min_size=12, measure=scene.measure)
    assert all(p is not None for p in placed)
    _no_overlaps([p.box for p in placed])
    assert sum(p.leader is not None for p in placed) >= 29
    # A canvas with room for a few: the rest are left out, never drawn on top.
    tight = placement.place([(t, 150.0, 30.0) for t, _, _ in labels], canvas=(300, 60), size=24, min_size=20,
                            measure=scene.measure)
    kept = [p for p in tight if p is not None]
    assert 0 < len(kept) < 30
    _no_overlaps([p.box for p in kept])


def test_cli_writes_a_figure_and_a_contact_sheet(map_db, tmp_path):
    import json

    from click.testing import CliRunner

    from datasette_imageclust.cli import cli

    out = tmp_path / "grid.svg"
    r = CliRunner().invoke(cli, ["export", map_db, "--format", "figure", "--figure", "grid", "--width", "1000",
                                 "--dpi", "150", "-o", str(out), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["figure"] == "grid" and summary["file_format"] == "svg" and summary["width"] == 1000
    assert len(_svg_labels(out)) == 12
    r = CliRunner().invoke(cli, ["export", map_db, "--format", "contact-sheet", "--dpi", "80",
                                 "-o", str(tmp_path / "sheet.pdf")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert len(pypdf.PdfReader(tmp_path / "sheet.pdf").pages) == 12
    r = CliRunner().invoke(cli, ["export", map_db, "--format", "figure", "-o", str(tmp_path / "map.gif")])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "as .png, .svg or .pdf" in r.output and len(r.output.strip().splitlines()) == 1
