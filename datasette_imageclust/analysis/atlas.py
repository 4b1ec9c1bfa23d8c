"""Sprite atlases for the map: small square thumbnails packed into WebP/JPEG sheets.

Several levels of detail (cell sizes in px, default 16 and 64). Images are packed in
the map's spatial order (Z-order of their layout cell), so one sheet of the large
level covers one compact region of the map and the browser loads only the sheets in
view when zoomed in; the small level is loaded whole for the overview (a few MB at
100,000 images). Every image of the layout gets a cell at every level (a neutral
placeholder when it has no thumbnail), so the browser never has to special-case.

Cells are centre-cropped squares ("cover"): a mosaic of squares reads better than
letterboxed shapes at 16 px; the hover preview and image page show the whole picture.

Atomic for readers: every row carries the id of its build. A rebuild writes its rows
beside the current atlas and switches ``imageclust_meta.atlas_build`` in the same
transaction; the build it replaces is kept until the next rebuild, so a map page
opened before the switch still gets the sheets and cells it was given (never a hole,
never a mix), and older builds are dropped then.
"""
from __future__ import annotations

import io
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import sqlite_utils
from PIL import Image, ImageOps

from ..store.connection import Connection
from ..store.schema import migrate

Status = Callable[[str], None]
FORMATS = ("webp", "jpeg")
PLACEHOLDER = (64, 64, 64)
BACKGROUND = (40, 40, 40)  # behind transparent thumbnails (dark, like the map)


class AtlasError(Exception):
    """Bad atlas options."""


def _quiet(msg: str) -> None:
    pass


@dataclass
class AtlasSummary:
    levels: list[int]
    sheets: dict[int, int]       # level -> number of sheets
    bytes: dict[int, int]        # level -> total encoded bytes
    images: int
    build: str
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def auto_levels(n: int) -> list[int]:
    """16 and 64 px cells; above 30,000 images also 8 px for the overview, so the first
    paint loads ~1.5 MB (2 sheets) instead of ~6 MB (7 sheets) at 100,000."""
    return [8, 16, 64] if n > 30_000 else [16, 64]


def parse_levels(text: str | Sequence[int]) -> list[int]:
    """'16,64' -> [16, 64]; each level a cell size in px, 4..256, at most 4 levels."""
    try:
        levels = [int(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except ValueError:
        raise AtlasError(f"atlas levels must be comma-separated cell sizes in px, not {text!r}")
    if not levels or len(levels) > 4:
        raise AtlasError("give 1 to 4 atlas levels, e.g. 16,64")
    for v in levels:
        if not 4 <= v <= 256:
            raise AtlasError(f"atlas cell size {v} px is out of range 4..256")
    if len(set(levels)) != len(levels):
        raise AtlasError("atlas levels must differ")
    return sorted(levels)


def _square(data: bytes | None, size: int) -> Image.Image:
    """The thumbnail as a ``size`` x ``size`` RGB centre crop."""
    if data is None:
        return Image.new("RGB", (size, size), PLACEHOLDER)
    try:
        im = Image.open(io.BytesIO(data))
        if im.format == "JPEG":
            im.draft("RGB", (size, size))  # decode at 1/2..1/8 scale: much faster
        if im.mode in ("RGBA", "LA", "P", "PA"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, BACKGROUND + (255,))
            im = Image.alpha_composite(bg, im)
        return ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.BILINEAR)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        # A thumbnail we cannot decode must not stop the atlas: draw a placeholder.
        return Image.new("RGB", (size, size), PLACEHOLDER)


def _encode(sheet: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "webp":
        # method 2: 3.5x faster than the default 4 for ~6% larger sheets (measured on 2048-px sheets).
        sheet.save(buf, "WEBP", quality=quality, method=2)
    else:
        sheet.save(buf, "JPEG", quality=quality, optimize=True, progressive=False)
    return buf.getvalue()


def build_atlas(db: sqlite_utils.Database, image_ids: Sequence[int], *, levels: Sequence[int] = (16, 64),
                fmt: str = "webp", quality: int = 70, sheet_size: int = 2048, workers: int | None = None,
                on_status: Status = _quiet) -> AtlasSummary:
    """Replace the atlas with one holding ``image_ids`` in this order."""
    levels = parse_levels(levels)
    if fmt not in FORMATS:
        raise AtlasError(f"atlas format must be webp or jpeg, not {fmt!r}")
    if not 1 <= quality <= 100:
        raise AtlasError("atlas quality must be 1..100")
    if sheet_size not in (1024, 2048, 4096):
        # WebGL guarantees 2048-px textures only on the weakest devices; 4096 is common.
        raise AtlasError("atlas sheet size must be 1024, 2048 or 4096 px")
    if max(levels) > sheet_size:
        raise AtlasError("atlas cell size larger than the sheet")
    migrate(db, "core")
    migrate(db, "map")
    t0 = time.perf_counter()
    ids = [int(i) for i in image_ids]
    n = len(ids)
    big = max(levels)
    per_row = {lv: sheet_size // lv for lv in levels}
    per_sheet = {lv: per_row[lv] ** 2 for lv in levels}
    # Sheets are only as tall as needed (to a power of two): the last one is often part-filled.
    sheets: dict[int, Image.Image | None] = {lv: None for lv in levels}
    sheet_no = {lv: 0 for lv in levels}
    out_bytes = {lv: 0 for lv in levels}
    n_sheets = {lv: 0 for lv in levels}
    build = secrets.token_hex(6)
    workers = workers or min(4, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers)  # Pillow releases the GIL while decoding/resizing

    def new_sheet(lv: int, start: int) -> Image.Image:
        rows = -(-min(per_sheet[lv], n - start) // per_row[lv])
        # Power-of-two height: WebGL 1 can then mipmap it (smooth zoomed-out views).
        height = 1 << max(0, (rows * lv - 1).bit_length())
        return Image.new("RGB", (sheet_size, min(height, sheet_size)), PLACEHOLDER)

    encoding: list = []  # (level, sheet, width, height, future): encoded in the pool

    def flush(lv: int) -> None:
        im = sheets[lv]
        if im is None:
            return
        encoding.append((lv, sheet_no[lv], im.width, im.height, pool.submit(_encode, im, fmt, quality)))
        sheets[lv] = None
        sheet_no[lv] += 1

    def store(wait: bool) -> None:
        while encoding and (wait or encoding[0][4].done()):
            lv, no, w, h, fut = encoding.pop(0)
            data = fut.result()
            db.execute(
                "INSERT INTO atlas_sheets (build, level, sheet, format, width, height, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [build, lv, no, fmt, w, h, data],
            )
            out_bytes[lv] += len(data)
            n_sheets[lv] += 1

    def fetch(chunk: list[int]) -> dict[int, bytes]:
        marks = ",".join("?" * len(chunk))
        return {r[0]: r[1] for r in db.execute(
            f"SELECT image_id, data FROM thumbnails WHERE image_id IN ({marks})", chunk)}

    def cells_for(data: bytes | None) -> dict[int, Image.Image]:
        top = _square(data, big)
        return {lv: top if lv == big else top.resize((lv, lv), Image.Resampling.BOX) for lv in levels}

    try:
        with db.conn:
            # Readers keep seeing ``previous`` (current until this transaction commits).
            previous = current_build(db.conn) or build
            chunk_size = 512
            for start in range(0, n, chunk_size):
                chunk = ids[start:start + chunk_size]
                thumbs = fetch(chunk)
                crops = list(pool.map(cells_for, [thumbs.get(i) for i in chunk]))
                rows = []
                for k, (image_id, cell) in enumerate(zip(chunk, crops)):
                    index = start + k
                    for lv in levels:
                        within = index % per_sheet[lv]
                        if within == 0:
                            flush(lv)
                            sheets[lv] = new_sheet(lv, index)
                        x, y = (within % per_row[lv]) * lv, (within // per_row[lv]) * lv
                        sheets[lv].paste(cell[lv], (x, y))
                        rows.append((image_id, build, lv, index // per_sheet[lv], within))
                db.conn.executemany("INSERT INTO atlas_cells (image_id, build, level, sheet, cell) "
                                    "VALUES (?, ?, ?, ?, ?)", rows)
                store(wait=len(encoding) > 2 * workers)  # bound the sheets held in memory
                if start and start % (chunk_size * 20) == 0:
                    on_status(f"atlas: {start}/{n} images")
            for lv in levels:
                flush(lv)
            store(wait=True)
            meta = {"atlas_build": build, "atlas_levels": ",".join(map(str, levels)),
                    "atlas_sheet_size": str(sheet_size)}
            db.conn.executemany("INSERT OR REPLACE INTO imageclust_meta (key, value) VALUES (?, ?)", meta.items())
            for table in ("atlas_cells", "atlas_sheets"):
                db.execute(f"DELETE FROM {table} WHERE build NOT IN (?, ?)", [build, previous])
    finally:
        pool.shutdown()
    return AtlasSummary(levels, n_sheets, out_bytes, n, build, round(time.perf_counter() - t0, 3))


# --- reading (the map routes; also databases from before builds were kept) -------------


def _has_builds(conn: Connection) -> bool:
    return any(r[1] == "build" for r in conn.execute("PRAGMA table_info(atlas_sheets)"))


def current_build(conn: Connection) -> str | None:
    """The build id of the atlas the map shows (None: no atlas)."""
    if conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('atlas_sheets', 'imageclust_meta')"
                    ).fetchone()[0] < 2:
        return None
    row = conn.execute("SELECT value FROM imageclust_meta WHERE key = 'atlas_build'").fetchone()
    return row[0] if row else None


def readable_build(conn: Connection, wanted: str | None) -> str | None:
    """``wanted`` if that build is still stored (the current one or the one it replaced),
    else the current build."""
    current = current_build(conn)
    if wanted and wanted != current and _has_builds(conn) and conn.execute(
            "SELECT 1 FROM atlas_sheets WHERE build = ? LIMIT 1", [wanted]).fetchone():
        return wanted
    return current


def _where(conn: Connection, build: str | None) -> tuple[str, list]:
    # Databases from before map schema v3 hold one atlas and no build column.
    return ("build = ?", [build]) if _has_builds(conn) else ("1", [])


def levels(conn: Connection, build: str | None) -> list[dict]:
    """The levels of build ``build``: cell size, cells per row and per sheet, its sheets."""
    if build is None:
        return []
    where, params = _where(conn, build)
    out: dict[int, dict] = {}
    for level, sheet, fmt, w, h, nbytes in conn.execute(
            f"SELECT level, sheet, format, width, height, length(data) FROM atlas_sheets WHERE {where} "
            "ORDER BY level, sheet", params):
        # Every sheet is the build's sheet size wide (only the height is cut to what is used).
        lv = out.setdefault(level, {"level": level, "per_row": w // level, "sheets": [], "bytes": 0})
        lv["per_sheet"] = lv["per_row"] ** 2
        lv["sheets"].append({"sheet": sheet, "format": fmt, "width": w, "height": h, "bytes": nbytes})
        lv["bytes"] += nbytes
    return [out[k] for k in sorted(out)]


def sheet_data(conn: Connection, build: str | None, level: int, sheet: int) -> tuple[str, bytes] | None:
    """(format, encoded image) of one sheet of build ``build``."""
    if build is None:
        return None
    where, params = _where(conn, build)
    row = conn.execute(f"SELECT format, data FROM atlas_sheets WHERE {where} AND level = ? AND sheet = ?",
                       params + [level, sheet]).fetchone()
    return (row[0], row[1]) if row else None


def cell_rows(conn: Connection, build: str | None, level: dict) -> list[tuple[int, int]]:
    """(image_id, atlas index: sheet * cells per sheet + cell) at ``level`` of ``build``."""
    where, params = _where(conn, build)
    return conn.execute(f"SELECT image_id, sheet * ? + cell FROM atlas_cells WHERE {where} AND level = ?",
                        [level["per_sheet"]] + params + [level["level"]]).fetchall()


def layout_order(db: sqlite_utils.Database, layout_id: int) -> list[int]:
    """Image ids of a layout in map (Z-curve) order."""
    from .packing import spatial_order

    rows = db.execute("SELECT image_id, x, y FROM layout_points WHERE layout_id = ?", [layout_id]).fetchall()
    if not rows:
        return []
    arr = np.array(rows, dtype=np.float64)
    order = spatial_order(arr[:, 1:3])
    return [int(arr[k, 0]) for k in order]
