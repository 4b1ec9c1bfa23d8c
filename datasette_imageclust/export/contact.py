"""``--format contact-sheet``: a PDF with one A4 page per cluster, the way photo
researchers review sets.

Each page: the cluster's label, its size and cohesion (mean cosine similarity of its
members to the centroid, as the clustering stored it; computed from the vectors when a
run did not store it), then its selected images in rank order (closest to the centroid
first), each whole (not cropped) with its name (``store/imagenames.py``: an image of an
export by its first post, on two lines, ``@author · date`` then ``platform id``; any
other by its path under the load folder), as many as fit, and how many more
there are. Images outside every cluster of the run get a last page of their own. Pages
are written one by one, so a sheet of a thousand clusters keeps one page in memory.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..store import imagenames
from ..store.collection import ImageCollection, raw_connection
from ..store.connection import Connection
from ..store.paths import display
from ..store.postcolumns import has_posts
from . import render, thumbs
from .scene import Page, blank, clean, fit, measure, textbox
from .selection import ExportError, Selection

A4_MM = (210.0, 297.0)
MARGIN_MM = 12.0
COLUMNS = 5
DPI_RANGE = (72, 600)
#: A cell is ~35 mm wide: at 200 dpi that is ~270 px, the stored thumbnails' own size (256 px
#: by default), so more would only upscale them and slow every page down.
DEFAULT_DPI = 200


def write(db: Connection, selection: Selection, out: Path, *, dpi: float | None = None, output: Path | None = None,
          on_status: Callable[[str], None] | None = None, **_other: object) -> dict:
    """Write the contact sheet PDF to ``out`` (the temporary name :func:`.run.export`
    gives; ``output``: the final name, which must end in .pdf)."""
    dpi = float(DEFAULT_DPI if dpi is None else dpi)
    name = Path(output or out)
    if render.format_of(name) != "pdf":
        raise ExportError(f"a contact sheet is a PDF: name the output ….pdf, not {display(os.fspath(name))}")
    if not DPI_RANGE[0] <= dpi <= DPI_RANGE[1]:
        raise ExportError(f"--dpi for a contact sheet must be {DPI_RANGE[0]}..{DPI_RANGE[1]}, not {dpi:g}")
    groups = _groups(selection)
    if not groups:
        raise ExportError("the selection holds no images: nothing to put on a contact sheet")
    say = on_status or (lambda _msg: None)
    say(f"contact sheet: {len(groups):,} pages")
    run = selection.run["name"] if selection.run else None
    shown = [0]

    def pages() -> Iterator[Page]:
        for n, (cluster, ids) in enumerate(groups, 1):
            page, k = sheet(db, cluster, ids, dpi, run=run, number=(n, len(groups)))
            shown[0] += k
            yield page

    with open(out, "wb") as f:
        facts = render.write_pages(pages(), "pdf", f, title=f"imageclust contact sheet: {run or 'all images'}")
    return {"pages": facts["pages"], "clusters_shown": len(groups), "images_shown": shown[0], "dpi": dpi,
            "replaced_characters": facts["replaced_characters"]}


def _groups(selection: Selection) -> list[tuple[dict | None, list[int]]]:
    """(cluster entry or None for images outside the run, its selected image ids by rank)."""
    ids_of: dict[int | None, list[int]] = {}
    for iid in selection.image_ids:
        ids_of.setdefault(selection.cluster_of.get(iid), []).append(iid)
    out: list[tuple[dict | None, list[int]]] = [(c, ids_of[c["id"]]) for c in selection.clusters
                                                if ids_of.get(c["id"])]
    if ids_of.get(None):
        out.append((None, ids_of[None]))
    return out


def cohesion(db: Connection, cluster: dict) -> float | None:
    """The cluster's stored cohesion, else the mean cosine of its members' vectors to their
    normalised mean (None for the unclustered group or without vectors)."""
    if cluster.get("kind", "cluster") != "cluster":
        return None
    if cluster.get("cohesion") is not None:
        return float(cluster["cohesion"])
    members = [r[0] for r in raw_connection(db).execute(
        "SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cluster["id"]])]
    ids, x = ImageCollection(db).vectors()
    x = x[np.isin(ids, members)]
    if not len(x):
        return None
    centre = x.mean(0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    return float((x @ centre).mean())


def _captions(db: Connection, ids: list[int]) -> dict[int, list[str]]:
    """image id -> its caption lines: its name, a post's name cut before its last part
    (``platform id``), which a 35 mm cell has no room for on the same line."""
    conn = raw_connection(db)
    posts = imagenames.first_posts(conn, ids)
    out = {}
    for iid, name in imagenames.image_names(conn, ids).items():
        head, sep, tail = name.rpartition(" \u00b7 ")
        out[iid] = [head, tail] if iid in posts and sep else [name]
    return out


def sheet(db: Connection, cluster: dict | None, ids: list[int], dpi: float, *, run: str | None,
          number: tuple[int, int]) -> tuple[Page, int]:
    """One page: (the page, how many images it shows)."""
    mm = dpi / 25.4
    width, height = int(A4_MM[0] * mm), int(A4_MM[1] * mm)
    margin = MARGIN_MM * mm
    pt = dpi / 72
    page = Page(blank(width, height), dpi)
    room = width - 2 * margin
    title = (clean(cluster.get("label"), 120) or f"cluster {cluster['id']}") if cluster else "not in any cluster"
    page.items.append(textbox(fit(title, 16 * pt, room), margin, margin, 16 * pt,
                              cluster_id=cluster["id"] if cluster else None, role="label"))
    facts = []
    if cluster is not None:
        if cluster.get("kind", "cluster") == "cluster":
            facts.append(f"cluster {cluster['id']}")
        size = cluster.get("size") or len(ids)
        facts.append(f"{size:,} image{'' if size == 1 else 's'}")
        c = cohesion(db, cluster)
        if c is not None:
            facts.append(f"cohesion {c:.3f} (mean cosine to the centroid)")
    else:
        facts.append(f"{len(ids):,} image{'' if len(ids) == 1 else 's'} outside the run's clusters")
    if run:
        facts.append(f"run {clean(run, 60)}")
    y = margin + measure("Ag", 16 * pt)[1] + 2 * pt
    page.items.append(textbox(fit(" \u00b7 ".join(facts), 9 * pt, room), margin, y, 9 * pt))
    top = y + measure("Ag", 9 * pt)[1] + 8 * pt

    cap = 6.5 * pt
    lines = 2 if has_posts(raw_connection(db)) else 1  # post names take two lines
    cap_h = measure("Ag", cap)[1] * lines
    gap = 3 * mm
    cell = (room - (COLUMNS - 1) * gap) / COLUMNS
    row_h = cell + cap_h + gap
    foot_h = measure("Ag", 8 * pt)[1] + 4 * pt
    rows = max(1, int((height - margin - foot_h - top) // row_h))
    show = ids[: rows * COLUMNS]
    names = _captions(db, show)
    for k, (iid, im) in enumerate(thumbs.stored(db, show)):
        x0, y0 = margin + (k % COLUMNS) * (cell + gap), top + (k // COLUMNS) * row_h
        tile = thumbs.inside(im, int(cell), int(cell))
        # Centred in its square cell, sitting on the caption.
        page.raster.paste(tile, (int(x0 + (cell - tile.width) / 2), int(y0 + cell - tile.height)))
        for n, line in enumerate(names.get(iid) or [f"image {iid}"]):
            text = fit(clean(line, 200), cap, cell)
            page.items.append(textbox(text, x0, y0 + cell + 0.5 * mm + n * cap_h / lines, cap))
    more = len(ids) - len(show)
    foot = f"{len(show):,} of {len(ids):,} selected images, by rank"
    if more:
        foot += f" \u00b7 + {more:,} more not shown"
    foot += f" \u00b7 page {number[0]} of {number[1]}"
    page.items.append(textbox(fit(foot, 8 * pt, room), margin, height - margin - foot_h + 4 * pt, 8 * pt))
    return page, len(show)
