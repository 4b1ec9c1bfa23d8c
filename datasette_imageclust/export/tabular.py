"""``csv``, ``json`` and ``parquet``: one row per selected image (columns:
:data:`.records.COLUMNS`), written as the rows are read, so memory stays flat.

CSV cells that hold lists or objects (``paths``, ``tags``, ``post_ids``, ``first_post``) are JSON, and every cell
follows :mod:`..store.csvsafe` (no formulas; ``bom``: a UTF-8 BOM first, for Excel); dates are ISO 8601 text.
JSON is one array of objects; Parquet needs the ``[parquet]`` extra (pyarrow), keeps lists as lists and
``created`` as a UTC timestamp.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..store import csvsafe
from ..store.connection import Connection
from .records import COLUMNS, records
from .selection import ExportError, Selection

FORMATS = ("csv", "json", "parquet")
BATCH = 1000  # rows per Parquet row group write


def write(db: Connection, selection: Selection, out: Path, *, format: str = "csv",
          omit: frozenset[str] = frozenset(), bom: bool = False, **options) -> dict:
    """Write the selection's rows to ``out`` (a temporary name: see :mod:`.atomic`); ``omit``: see
    :func:`.records.records`; ``bom``: csv only."""
    if format not in FORMATS:
        raise ExportError(f"unknown table format {format!r} (formats: {', '.join(FORMATS)})")
    rows = records(db, selection, omit=frozenset(omit))
    if bom and format != "csv":
        raise ExportError(f"--bom is for CSV files, not {format}")
    if format == "csv":
        n = _csv(rows, out, bom=bom)
    elif format == "json":
        n = _json(rows, out)
    else:
        n = _parquet(rows, out)
    return {"format": format, "rows": n}


def _csv(rows, out: Path, *, bom: bool = False) -> int:
    n = 0
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csvsafe.writer(f, bom=bom)
        w.writerow(COLUMNS)
        for r in rows:
            r = dict(r, paths=json.dumps(r["paths"], ensure_ascii=False),
                     tags=json.dumps(r["tags"], ensure_ascii=False) if r["tags"] else "",
                     post_ids=_json_cell(r["post_ids"]), first_post=_json_cell(r["first_post"]),
                     path_escaped=int(r["path_escaped"]), representative=int(r["representative"]))
            w.writerow([r[c] for c in COLUMNS])
            n += 1
    return n


def _json_cell(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _json(rows, out: Path) -> int:
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        f.write("[")
        for r in rows:
            f.write(("\n" if n == 0 else ",\n") + json.dumps(r, ensure_ascii=False))
            n += 1
        f.write("\n]\n")
    return n


def timestamp(text: str | None) -> dt.datetime | None:
    """ISO 8601 text (``2024-03-02T10:11:12Z``; no zone: UTC) as an aware UTC datetime; None if it is not one."""
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)
    return when.replace(microsecond=0)  # the column is in seconds, as posts.created is


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _parquet(rows, out: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportError("parquet needs pyarrow: pip install 'datasette-imageclust[parquet]' "
                          "(or export --format csv)") from None
    tag = pa.struct([("tag", pa.string()), ("score", pa.float64())])
    schema = pa.schema([
        ("image_id", pa.int64()), ("path", pa.string()), ("paths", pa.list_(pa.string())),
        ("path_escaped", pa.bool_()), ("sha256", pa.string()), ("run", pa.string()), ("cluster_id", pa.int64()),
        ("cluster_label", pa.string()), ("distance", pa.float64()), ("rank", pa.int64()),
        ("representative", pa.bool_()), ("x", pa.float64()), ("y", pa.float64()), ("tags", pa.list_(tag)),
        ("description", pa.string()), ("taken", pa.string()), ("camera", pa.string()), ("format", pa.string()),
        ("width", pa.int64()), ("height", pa.int64()), ("url", pa.string()), ("post_url", pa.string()),
        ("author", pa.string()), ("created", pa.timestamp("s", tz="UTC")),
        ("posts", pa.int64()), ("post_ids", pa.list_(pa.string())),
        ("first_post", pa.string()),  # its columns vary by export: JSON text
    ])
    assert tuple(schema.names) == COLUMNS
    n = 0
    with pq.ParquetWriter(str(out), schema) as w:
        batch: list[dict] = []
        for r in rows:
            batch.append(dict(r, post_ids=None if r["post_ids"] is None else [str(p) for p in r["post_ids"]],
                              first_post=_json_cell(r["first_post"]), created=timestamp(r["created"])))
            if len(batch) == BATCH:
                w.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch = []
        if batch or n == 0:
            w.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    return n
