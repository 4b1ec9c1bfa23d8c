"""Thumbnails painted into a figure's raster, a few at a time.

Memory stays bounded by the output, not the collection: stored thumbnails are read in
chunks and each is scaled to its cell and pasted at once; for the map, the sprite atlas
is read one sheet at a time (its sheets cover compact regions of the map, so each sheet is
decoded once). An image without a stored thumbnail (or whose thumbnail cannot be decoded)
gets a neutral placeholder, so a figure never stops for one image.
"""
from __future__ import annotations

import io
import json
from typing import Iterable, Iterator

from PIL import Image, ImageOps

from ..analysis import atlas
from ..store.collection import raw_connection
from ..store.connection import Connection

PLACEHOLDER = (200, 200, 200)
CHUNK = 256


def _decode(data: bytes | None) -> Image.Image | None:
    if not data:
        return None
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception:  # a broken thumbnail is drawn as a placeholder, not a crash
        return None
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def stored(db: Connection, image_ids: Iterable[int]) -> Iterator[tuple[int, Image.Image | None]]:
    """(image id, its stored thumbnail decoded, or None), in the order given, a chunk at a time."""
    conn = raw_connection(db)
    ids = list(image_ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        rows = dict(conn.execute("SELECT image_id, data FROM thumbnails WHERE image_id IN "
                                 "(SELECT value FROM json_each(?))", [json.dumps(chunk)]).fetchall())
        for iid in chunk:
            yield iid, _decode(rows.get(iid))


def square(im: Image.Image | None, px: int) -> Image.Image:
    """``im`` centre-cropped to a ``px`` square (the map's and the grid's cells)."""
    if im is None:
        return Image.new("RGB", (px, px), PLACEHOLDER)
    return ImageOps.fit(im, (px, px), Image.Resampling.LANCZOS)


def inside(im: Image.Image | None, w: int, h: int) -> Image.Image:
    """``im`` scaled to fit within w x h, whole (the contact sheet shows the full frame)."""
    if im is None:
        return Image.new("RGB", (w, h), PLACEHOLDER)
    return ImageOps.contain(im, (w, h), Image.Resampling.LANCZOS)


def paint_squares(db: Connection, raster: Image.Image, cells: dict[int, tuple[int, int]], px: int) -> str:
    """Paste each image of ``cells`` (image id -> top-left corner in ``raster``) as a
    ``px`` square; returns where the pictures came from ('atlas' or 'thumbnails')."""
    conn = raw_connection(db)
    build = atlas.current_build(conn)
    levels = atlas.levels(conn, build)
    if not levels:
        for iid, im in stored(db, list(cells)):
            raster.paste(square(im, px), cells[iid])
        return "thumbnails"
    # The smallest atlas level at least as large as the cell (downscaling looks better
    # than upscaling), else the largest there is.
    level = next((lv for lv in levels if lv["level"] >= px), levels[-1])
    size, per_row, per_sheet = level["level"], level["per_row"], level["per_sheet"]
    by_sheet: dict[int, list[tuple[int, int]]] = {}
    for iid, index in atlas.cell_rows(conn, build, level):
        if iid in cells:
            by_sheet.setdefault(index // per_sheet, []).append((iid, index % per_sheet))
    missing = set(cells)
    for sheet, members in sorted(by_sheet.items()):
        got = atlas.sheet_data(conn, build, size, sheet)
        im = _decode(got[1]) if got else None
        if im is None:
            continue
        for iid, cell in members:
            x, y = (cell % per_row) * size, (cell // per_row) * size
            tile = im.crop((x, y, x + size, y + size))
            raster.paste(tile if size == px else tile.resize((px, px), Image.Resampling.LANCZOS), cells[iid])
            missing.discard(iid)
        del im
    # Images added after the atlas was built: their stored thumbnails.
    for iid, thumb in stored(db, sorted(missing)):
        raster.paste(square(thumb, px), cells[iid])
    return "atlas"
