"""Reading platform exports (4CAT / TCAT CSVs, Zeeschuimer / 4CAT NDJSON, JSON lists of
posts): each row a post, with one or more image URLs and the columns to keep.

Nothing in an export is trusted: a row that cannot be read is yielded as a
:class:`BadRow` (recorded and skipped), URLs are only data (the downloader judges them),
and column names and values are stored as given, never interpreted beyond their type.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..store.paths import display
from .summary import LoadError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "json"}
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # no leading zeros: "007" is a code, not a number
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")


class ExportError(LoadError):
    """The export as a whole cannot be read (missing, unknown format, no such column)."""


@dataclass
class ExportRow:
    row: int  # 1 = the first post
    post_id: str
    urls: list[str]
    columns: dict[str, Any] = field(default_factory=dict)  # the kept columns, typed


@dataclass
class BadRow:
    row: int
    reason: str


def typed(value: Any) -> Any:
    """A cell as SQLite should keep it: numbers as numbers, dates as ISO 8601, lists and
    objects as JSON text, empty as NULL; anything else as the text it was."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    text = str(value).strip()
    if not text:
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _DATE.fullmatch(text):
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            return when.date().isoformat() if len(text) == 10 else when.isoformat()
        except ValueError:
            return text
    if text[0] == "[" and text[-1] == "]":
        try:
            items = json.loads(text)
        except ValueError:
            return text
        return json.dumps(items, ensure_ascii=False) if isinstance(items, list) else text
    return text


def split_urls(value: Any, separator: str | None) -> list[str]:
    """The URLs in a cell: a JSON list (or a list already), text split on ``separator``,
    else the cell as one URL. Blanks are dropped; a URL is never rewritten."""
    if value is None:
        return []
    if isinstance(value, list):
        items = value
    else:
        text = str(value).strip()
        items = None
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            items = parsed if isinstance(parsed, list) else None
        if items is None:
            items = text.split(separator) if separator else [text]
    out = []
    for item in items:
        if isinstance(item, dict):  # {"url": ...} entries of some JSON exports
            item = item.get("url") or item.get("src")
        if item is not None and str(item).strip():
            out.append(str(item).strip())
    return out


def export_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ExportError(f"cannot tell the format of {display(path)}: name it .csv, .tsv, .ndjson, .jsonl or .json")
    return FORMATS[ext]


def read_export(path: str, *, url_column: str, id_column: str | None = None,
                columns: Sequence[str] | None = None, all_columns: bool = False,
                separator: str | None = None) -> Iterator[ExportRow | BadRow]:
    """The posts of the export at ``path``, in order, as :class:`ExportRow` (or
    :class:`BadRow` for a row that cannot be read). Raises :class:`ExportError` at once
    (before any row is read) when the file cannot be read or a named column is in no header."""
    kind = export_format(path)
    try:  # streamed (exports run to gigabytes); a stray byte spoils one value, not the run
        fh = open(path, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as e:
        raise ExportError(f"cannot read {display(path)}: {e.strerror or e}") from e
    try:
        if kind in ("csv", "tsv"):
            reader = csv.reader(fh, delimiter="\t" if kind == "tsv" else ",")
            header = _csv_header(reader, path, [url_column, id_column, *(columns or ())])
            records = _csv_records(reader, header)
        elif kind == "ndjson":
            records = _json_items((line for line in fh if line.strip()), parse=True)
        else:
            records = _json_list(fh.read(), path)
    except BaseException:
        fh.close()
        raise
    return _posts(fh, records, url_column, id_column, columns, all_columns, separator)


def _posts(fh: Any, records: Iterator[tuple[int, dict | str]], *args: Any) -> Iterator[ExportRow | BadRow]:
    with fh:
        for row, rec in records:
            yield _post(row, rec, *args) if isinstance(rec, dict) else BadRow(row, rec)


def column_value(record: dict, name: str) -> Any:
    """``record[name]``; failing that, a dotted ``name`` walks nested objects (NDJSON
    from Zeeschuimer nests a post under ``data``: ``data.image_url``)."""
    if name in record or "." not in name:
        return record.get(name)
    value: Any = record
    for part in name.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def _post(row: int, record: dict, url_column: str, id_column: str | None, columns: Sequence[str] | None,
          all_columns: bool, separator: str | None) -> ExportRow | BadRow:
    post_id = str(row)
    if id_column is not None:
        value = column_value(record, id_column)
        if value is None or not str(value).strip():
            return BadRow(row, f"no post id in column {id_column!r}")
        post_id = str(value).strip()
    keep = [k for k in record if k is not None] if all_columns else list(columns or ())
    return ExportRow(row, post_id, split_urls(column_value(record, url_column), separator),
                     {k: typed(column_value(record, k)) for k in keep})


def _csv_header(reader: Any, path: str, needed: list[str | None]) -> list[str]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # post bodies can be long
    try:
        header = next(reader)
    except StopIteration:
        raise ExportError(f"{display(path)} is empty") from None
    except csv.Error as e:
        raise ExportError(f"cannot read the header of {display(path)}: {e}") from None
    for name in needed:
        if name is not None and name not in header:
            shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
            raise ExportError(f"{display(path)} has no column {name!r} (its columns: {shown})")
    return header


def _csv_records(reader: Any, header: list[str]) -> Iterator[tuple[int, dict | str]]:
    row = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            row += 1
            yield row, f"not readable as CSV: {e}"
            continue
        if not cells:
            continue  # a blank line is not a post
        row += 1
        if len(cells) != len(header):
            yield row, f"{len(cells)} fields where the header has {len(header)}"
            continue
        yield row, dict(zip(header, cells))


def _json_list(text: str, path: str) -> Iterator[tuple[int, dict | str]]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ExportError(f"{display(path)} is not JSON: {e}") from None
    if isinstance(data, dict):  # {"data": [...]} and the like: the one list it holds
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list):
        raise ExportError(f"{display(path)} is not a JSON list of posts")
    return _json_items(iter(data), parse=False)


def _json_items(items: Iterator[Any], parse: bool) -> Iterator[tuple[int, dict | str]]:
    for row, item in enumerate(items, 1):
        if parse:
            try:
                item = json.loads(item)
            except ValueError as e:
                yield row, f"not JSON: {e}"
                continue
        if not isinstance(item, dict):
            yield row, f"not a JSON object but {type(item).__name__}"
            continue
        yield row, item
