"""``--format figure``: a print-ready picture of the map or of a grid of clusters.

``--figure map``: the default layout's map (every selected image as its thumbnail in its
cell) with each cluster's label at its place: the member nearest the members' mean
position, so a label sits on its cluster even when the cluster is not convex. Labels are
placed by :mod:`.placement` (no two boxes overlap; moved away with a leader line or shrunk
to a readable minimum when crowded). ``--figure grid``: one block per cluster (its first
images by rank, its label and size), largest first.

The output file's extension picks PNG (``width`` px wide, ``dpi`` in its metadata), SVG
or PDF (text as text; the page is ``width / dpi`` inches wide): see :mod:`.render`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..store.collection import ImageCollection, raw_connection
from ..store.connection import Connection
from ..store.paths import display
from . import render, thumbs
from .placement import place
from .scene import Page, blank, clean, fit, measure, textbox
from .selection import ExportError, Selection

FIGURES = ("map", "grid")
WIDTH_RANGE = (600, 20000)
DPI_RANGE = (72, 1200)
LABEL_SIZE = 1 / 55      # of the width: ~13 pt at 3,000 px and 300 dpi
MIN_LABEL_SIZE = 1 / 110  # of the width: the smallest a label is shrunk to (~6.5 pt)
LABEL_COVER = 0.2        # of the picture: the most the labels may cover at their starting size
MAX_HEIGHT = 4           # widths: a tall map is scaled down to stay within this
GRID_SIDE = 3            # a grid block shows up to 3 x 3 images


def check_options(out: Path, *, figure: str = "map", width: int = 3000, dpi: float = 300) -> str:
    """The output format (png, svg or pdf) of ``out``; :class:`ExportError` for an option
    out of range (before anything is read or written)."""
    fmt = render.format_of(out)
    if fmt is None:
        raise ExportError(f"a figure is written as .png, .svg or .pdf (by the output's extension), "
                          f"not {display(os.fspath(out))}")
    if figure not in FIGURES:
        raise ExportError(f"--figure must be map or grid, not {figure!r}")
    if not WIDTH_RANGE[0] <= int(width) <= WIDTH_RANGE[1]:
        raise ExportError(f"--width must be {WIDTH_RANGE[0]}..{WIDTH_RANGE[1]} px, not {width}")
    if not DPI_RANGE[0] <= float(dpi) <= DPI_RANGE[1]:
        raise ExportError(f"--dpi must be {DPI_RANGE[0]}..{DPI_RANGE[1]}, not {float(dpi):g}")
    return fmt


def write(db: Connection, selection: Selection, out: Path, *, figure: str | None = "map", width: int | None = 3000,
          dpi: float | None = 300, output: Path | None = None, on_status: Callable[[str], None] | None = None,
          **_other: object) -> dict:
    """Write the figure to ``out`` (the temporary name :func:`.run.export` gives; ``output``
    is the final name, whose extension picks PNG, SVG or PDF; without it, ``out``'s)."""
    out = Path(out)
    # None: the CLI passes only the options given.
    figure = "map" if figure is None else figure
    width, dpi = 3000 if width is None else int(width), 300.0 if dpi is None else float(dpi)
    fmt = check_options(Path(output or out), figure=figure, width=width, dpi=dpi)
    if not selection.image_ids:
        raise ExportError("the selection holds no images: nothing to draw")
    say = on_status or (lambda _msg: None)
    say(f"drawing a {figure} figure of {len(selection.image_ids):,} images")
    page, facts = (map_page if figure == "map" else grid_page)(db, selection, width, dpi)
    with open(out, "wb") as f:
        facts.update(render.write_pages([page], fmt, f, title=_title(selection)))
    labels = page.labels()
    if facts.get("labels_omitted"):
        say(f"{facts['labels_omitted']} cluster labels found no free place and were left out: "
            "choose fewer clusters (--cluster) or a larger --width")
    return {"figure": figure, "file_format": fmt, "width": page.size[0], "height": page.size[1], "dpi": dpi,
            "labels": len(labels), "min_label_pt": _pt(min((t.size for t in labels), default=0), dpi), **facts}


def _pt(px: float, dpi: float) -> float:
    return round(px / dpi * 72, 1)


def _title(selection: Selection) -> str:
    return f"imageclust: {selection.run['name']}" if selection.run else "imageclust"


def _label_of(cluster: dict) -> str:
    """The label as drawn: cleaned, else (a cluster no labeller could name) its id."""
    return clean(cluster.get("label")) or f"cluster {cluster['id']}"


def map_page(db: Connection, selection: Selection, width: int, dpi: float) -> tuple[Page, dict]:
    """The map figure's page: thumbnails in their cells, the clusters' labels placed."""
    layout = ImageCollection(db).layout()
    if layout is None:
        raise ExportError("this database has no map layout: run `imageclust layout` first (or use --figure grid)")
    rows = raw_connection(db).execute("SELECT image_id, x, y FROM layout_points WHERE layout_id = ?",
                                      [layout["id"]]).fetchall()
    pts = np.array(rows, np.float64).reshape(-1, 3)
    pts = pts[np.isin(pts[:, 0], np.asarray(selection.image_ids, np.float64))]
    if not len(pts):
        raise ExportError(f"none of the selected images is on the map (layout {layout['name']!r}): "
                          "run `imageclust layout` again to place new images")
    ids = pts[:, 0].astype(np.int64)
    lo = pts[:, 1:].min(0) - 0.5  # cells are 1 x 1 squares centred on their points
    span = np.maximum(pts[:, 1:].max(0) + 0.5 - lo, 1.0)
    margin = width * 0.03
    scale = min((width - 2 * margin) / span[0], (MAX_HEIGHT * width - 2 * margin) / span[1])
    height = int(math.ceil(span[1] * scale + 2 * margin))
    left = (width - span[0] * scale) / 2  # centred when the height limit narrowed it
    xy = np.column_stack([left + (pts[:, 1] - lo[0]) * scale, margin + (pts[:, 2] - lo[1]) * scale])
    px = max(1, int(scale * 0.92))  # a hairline gap between thumbnails
    inset = (scale - px) / 2
    cells = {int(i): (int(x - scale / 2 + inset), int(y - scale / 2 + inset)) for i, (x, y) in zip(ids, xy)}
    raster = blank(width, height)
    source = thumbs.paint_squares(db, raster, cells, px)
    del cells

    wanted: list[tuple[str, float, float]] = []
    clusters = []
    cid_of = np.array([selection.cluster_of.get(int(i)) or 0 for i in ids], np.int64)
    for c in selection.clusters:
        if c.get("kind", "cluster") != "cluster":
            continue  # the unclustered group is scattered: a label would mark no place
        member = cid_of == c["id"]
        if not member.any():
            continue
        p = xy[member]
        anchor = p[np.argmin(((p - p.mean(0)) ** 2).sum(1))]
        wanted.append((_label_of(c), float(anchor[0]), float(anchor[1])))
        clusters.append(c["id"])
    placed = place(wanted, canvas=(width, height), size=_label_size(wanted, width, height),
                   min_size=width * MIN_LABEL_SIZE, measure=measure)
    page = Page(raster, dpi)
    for cid, t in zip(clusters, placed):
        if t is not None:
            t.cluster_id = cid
            page.items.append(t)
    omitted = sum(t is None for t in placed)
    return page, {"layout": layout["name"], "thumbnails_from": source, "images_drawn": len(ids),
                  "labels_omitted": omitted}


def _label_size(labels: list[tuple[str, float, float]], width: int, height: int) -> float:
    """The labels' starting size: ``LABEL_SIZE`` of the width, smaller when the labels at
    that size would cover more than ``LABEL_COVER`` of the picture (many clusters), so
    they shrink together instead of the first ones crowding out the rest."""
    size = width * LABEL_SIZE
    area = sum(w * h for w, h in (measure(t, size) for t, _, _ in labels)) * 1.6  # with padding and gaps
    if area > LABEL_COVER * width * height:
        size *= math.sqrt(LABEL_COVER * width * height / area)
    return max(size, width * MIN_LABEL_SIZE)


def grid_page(db: Connection, selection: Selection, width: int, dpi: float) -> tuple[Page, dict]:
    """The grid figure's page: per cluster a block of its first images, label and size."""
    members: dict[int, list[int]] = {}
    for iid in selection.image_ids:  # export order: rank order within each cluster
        cid = selection.cluster_of.get(iid)
        if cid is not None and len(members.setdefault(cid, [])) < GRID_SIDE ** 2:
            members[cid].append(iid)
    clusters = [c for c in selection.clusters if members.get(c["id"])]
    if not clusters:
        raise ExportError("the selection has no clustered images: a grid shows clusters "
                          "(run `imageclust cluster`, or use --figure map)")
    margin = width * 0.03
    min_size = width * MIN_LABEL_SIZE
    cols = max(1, min(math.ceil(math.sqrt(len(clusters))), width // 350))
    while True:  # narrower blocks until the page is at most MAX_HEIGHT widths tall
        gutter = width * 0.015
        block = (width - 2 * margin - (cols - 1) * gutter) / cols
        size = max(min_size, block / 13)
        line = measure("Ag", size)[1]
        block_h = block + 2.2 * line + gutter
        fits = int((MAX_HEIGHT * width - 2 * margin) // block_h) * cols
        if fits >= len(clusters) or block / 13 <= min_size:
            break
        cols += 1
    shown = clusters[:max(fits, cols)]
    rows = math.ceil(len(shown) / cols)
    more = len(clusters) - len(shown)
    height = int(math.ceil(2 * margin + rows * block_h + (2 * line if more else 0)))
    raster = blank(width, height)
    page = Page(raster, dpi)
    thumb = int((block - (GRID_SIDE - 1) * block * 0.02) / GRID_SIDE)
    step = (block - thumb) / (GRID_SIDE - 1) if GRID_SIDE > 1 else 0
    where: dict[int, tuple[int, int]] = {}
    for k, c in enumerate(shown):
        bx = margin + (k % cols) * (block + gutter)
        by = margin + (k // cols) * block_h
        for j, iid in enumerate(members[c["id"]]):
            where[iid] = (int(bx + (j % GRID_SIDE) * step), int(by + (j // GRID_SIDE) * step))
        label = fit(_label_of(c), size, block)
        page.items.append(textbox(label, bx, by + block + 0.2 * line, size, cluster_id=c["id"], role="label"))
        info = f"{c['size']:,} image{'' if c['size'] == 1 else 's'}" if c.get("size") is not None else ""
        if c.get("kind") == "cluster":
            info += f" \u00b7 cluster {c['id']}"
        page.items.append(textbox(fit(info, size * 0.8, block), bx, by + block + 1.2 * line, size * 0.8))
    for iid, im in thumbs.stored(db, list(where)):
        raster.paste(thumbs.square(im, thumb), where[iid])
    if more:
        note = f"+ {more:,} more cluster{'' if more == 1 else 's'} not shown (select fewer with --cluster)"
        page.items.append(textbox(fit(note, size, width - 2 * margin), margin, height - margin - line, size))
    return page, {"clusters_drawn": len(shown), "clusters_omitted": more}
