"""Write a :class:`~.scene.Page` as PNG, SVG or PDF (the output file's extension chooses).

PNG: the raster with the items drawn in (DejaVu Sans or Pillow's built-in font), the DPI
in its ``pHYs`` chunk. SVG: the raster embedded once as a JPEG data URL (one file to send
to a journal, no links to break), every item a ``<text>`` (with its ``<rect>`` and
leader ``<line>``), fitted to its measured box with ``textLength``. PDF: :mod:`.pdf`.
"""
from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

from PIL import Image, ImageDraw

from .pdf import PDF
from .scene import Page, Text, font, leader_ends

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
INK = (20, 20, 20)


def format_of(out: Path) -> str | None:
    """'png', 'svg' or 'pdf' by the file name's extension (None: none of them)."""
    return FORMATS.get(Path(out).suffix.lower())


def write_pages(pages: Iterable[Page], fmt: str, f: BinaryIO, *, title: str = "") -> dict:
    """Write ``pages`` (one for PNG and SVG; PDF pages are written as they come, so a
    generator keeps one page in memory) in ``fmt``; returns facts for the summary."""
    if fmt == "pdf":
        pdf = PDF(f, title)
        for p in pages:
            pdf.add(p)
        pdf.close()
        return {"pages": len(pdf.kids), "replaced_characters": pdf.replaced}
    pages = list(pages)
    if len(pages) != 1:
        raise ValueError(f"{fmt} holds one page, not {len(pages)}")
    (png if fmt == "png" else svg)(pages[0], f)
    return {"pages": 1}


def png(page: Page, f: BinaryIO) -> None:
    im = page.raster.convert("RGB")
    draw_items(im, page.items)
    im.save(f, "PNG", dpi=(page.dpi, page.dpi))


def draw_items(im: Image.Image, items: Sequence[Text]) -> None:
    """Draw ``items`` into ``im`` (in place): every leader line first, so no line crosses
    a label box drawn after it."""
    d = ImageDraw.Draw(im)
    for t in items:
        if t.leader is not None:
            (ex, ey), (ax, ay) = leader_ends(t)
            d.line([(ex, ey), (ax, ay)], fill=INK, width=max(1, round(t.size * 0.06)))
            r = max(t.size * 0.12, 1.5)
            d.ellipse([ax - r, ay - r, ax + r, ay + r], fill=INK)
    for t in items:
        x0, y0, x1, y1 = t.box
        if t.backed:
            d.rounded_rectangle([x0, y0, x1, y1], radius=t.size * 0.2, fill=(255, 255, 255),
                                outline=(60, 60, 60), width=max(1, round(t.size * 0.04)))
        d.text((x0 + t.pad, y0 + t.pad), t.text, font=font(t.size), fill=(0, 0, 0))


def svg(page: Page, f: BinaryIO) -> None:
    w, h = page.size
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    root = ET.Element(f"{{{SVG_NS}}}svg", {
        "version": "1.1", "viewBox": f"0 0 {w} {h}",
        # Physical size from the DPI, so the figure lands in a layout at its intended size.
        "width": f"{w / page.dpi * 25.4:.2f}mm", "height": f"{h / page.dpi * 25.4:.2f}mm"})
    buf = io.BytesIO()
    page.raster.convert("RGB").save(buf, "JPEG", quality=90)
    ET.SubElement(root, f"{{{SVG_NS}}}image", {
        "x": "0", "y": "0", "width": str(w), "height": str(h), "preserveAspectRatio": "none",
        f"{{{XLINK_NS}}}href": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()})
    leaders = ET.SubElement(root, f"{{{SVG_NS}}}g", {"class": "leaders"})  # under every label box
    for t in page.items:
        attrs = {"class": "cluster-label" if t.role == "label" else "caption"}
        if t.cluster_id is not None:
            attrs["data-cluster-id"] = str(t.cluster_id)
        g = ET.SubElement(root, f"{{{SVG_NS}}}g", attrs)
        x0, y0, x1, y1 = t.box
        if t.leader is not None:
            (ex, ey), (ax, ay) = leader_ends(t)
            ET.SubElement(leaders, f"{{{SVG_NS}}}line", {
                "x1": f"{ex:.1f}", "y1": f"{ey:.1f}", "x2": f"{ax:.1f}", "y2": f"{ay:.1f}",
                "stroke": "#141414", "stroke-width": f"{max(1.0, t.size * 0.06):.1f}"})
            ET.SubElement(leaders, f"{{{SVG_NS}}}circle", {
                "cx": f"{ax:.1f}", "cy": f"{ay:.1f}", "r": f"{max(t.size * 0.12, 1.5):.1f}", "fill": "#141414"})
        if t.backed:
            ET.SubElement(g, f"{{{SVG_NS}}}rect", {
                "x": f"{x0:.1f}", "y": f"{y0:.1f}", "width": f"{x1 - x0:.1f}", "height": f"{y1 - y0:.1f}",
                "rx": f"{t.size * 0.2:.1f}", "fill": "#ffffff", "stroke": "#3c3c3c",
                "stroke-width": f"{max(1.0, t.size * 0.04):.1f}"})
        text = ET.SubElement(g, f"{{{SVG_NS}}}text", {
            "x": f"{x0 + t.pad:.1f}", "y": f"{(y0 + y1) / 2:.1f}", "dominant-baseline": "central",
            "font-family": "DejaVu Sans, Helvetica, Arial, sans-serif", "font-size": f"{t.size:.1f}",
            "textLength": f"{max(1.0, x1 - x0 - 2 * t.pad):.1f}", "lengthAdjust": "spacingAndGlyphs"})
        text.text = t.text
    f.write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    ET.ElementTree(root).write(f, encoding="utf-8", xml_declaration=False)
