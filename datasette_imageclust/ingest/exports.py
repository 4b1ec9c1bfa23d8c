"""Reading platform exports (4CAT / TCAT / Zeeschuimer CSVs, Zeeschuimer / 4CAT NDJSON,
JSON lists of posts): each record a post, recognised by its format (``formats/``) or
mapped by the user's column flags, with its image URLs, its normalised fields and the
original columns to keep.

Nothing in an export is trusted: a record that cannot be read is yielded as a
:class:`BadRow` (recorded and skipped), URLs are only data (the downloader judges them),
and column names and values are stored as given, never interpreted beyond their type.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ..store.paths import display
from ..store.postcolumns import AUTHOR_NAMES, HASHTAG_NAMES
from . import formats
from .exportfiles import SAMPLE, ExportError, export_kind, open_records
from .formats.base import Format, Post, RowError, Sample, first, hashtag_list, iso_utc, text_of, values_at

__all__ = ["BadRow", "Export", "ExportError", "ExportRow", "Mapping", "column_value", "read_export", "split_urls",
           "typed"]

_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # no leading zeros: "007" is a code, not a number
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")
_SQLITE_INT = range(-2**63, 2**63)
_MANY_URLS = re.compile(r"https?://.*?[\s,;|]+\s*https?://", re.S)


@dataclass
class ExportRow:
    row: int  # 1 = the first post
    post_id: str
    urls: list[str]
    columns: dict[str, Any] = field(default_factory=dict)  # the kept columns, typed
    post: Post | None = None  # the normalised fields


@dataclass
class BadRow:
    row: int
    reason: str


@dataclass
class Mapping:
    """The user's flags for an export no format knows (or to override one)."""
    url_column: str
    id_column: str | None = None
    separator: str | None = None
    author: str | None = None
    date: str | None = None
    text: str | None = None
    hashtags: str | None = None
    permalink: str | None = None


# Where a mapped export's normalised fields are looked for when no flag names them.
# (The first names are the older guess's of store/postcolumns.py, which still reads v1 databases.)
GUESS = {"author": (*AUTHOR_NAMES, "from_user_name", "screen_name"),
         "date": ("created", "created_at", "timestamp", "date", "time", "taken_at", "published"),
         "text": ("text", "body", "caption", "description", "desc", "full_text", "content"),
         "hashtags": HASHTAG_NAMES,
         "permalink": ("permalink", "post_url", "link")}


def typed(value: Any) -> Any:
    """A cell as SQLite should keep it: numbers as numbers (an integer SQLite cannot hold
    as text), dates as ISO 8601, lists and objects as JSON text, empty as NULL; anything
    else as the text it was."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value in _SQLITE_INT else str(value)
    if value is None or isinstance(value, float):
        return value
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
        except (ValueError, RecursionError):
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
            except (ValueError, RecursionError):
                parsed = None
            items = parsed if isinstance(parsed, list) else None
        if items is None:
            items = text.split(separator) if separator else [text]
    out = []
    for item in items:
        if isinstance(item, dict):  # {"url": ...} entries of some JSON exports
            item = item.get("url") or item.get("src")
        if item is not None and not isinstance(item, (dict, list)) and str(item).strip():
            out.append(str(item).strip())
    return out


def column_value(record: dict, name: str) -> Any:
    """``record[name]``; failing that, a dotted ``name`` (with ``[N]``/``[*]``) walks nested
    objects (NDJSON from Zeeschuimer nests a post under ``data``: ``data.image_url``).
    A ``[*]`` path gives the list of what it reaches."""
    if name in record:
        return record[name]
    try:
        found = values_at(record, name)
    except ValueError:
        return None
    if "[*]" in name:
        return found
    return found[0] if found else None


@dataclass
class Export:
    """An export opened for reading: what it is, and its rows (iterate the object)."""
    path: str
    kind: str  # csv, tsv, ndjson, json
    format: Format | None  # None: mapped by the user's flags
    detail: str
    rows: Iterator[ExportRow | BadRow]
    delimiter: str | None = None
    hints: list[str] = field(default_factory=list)  # things the user should know, said once each

    def __iter__(self) -> Iterator[ExportRow | BadRow]:
        return self.rows

    def close(self) -> None:
        close = getattr(self.rows, "close", None)
        if close:
            close()

    def recognised(self, items: int) -> str:
        """The one stderr line saying what was read."""
        what = self.format.title if self.format else f"a {self.kind.upper()} export mapped by --url-column"
        return "recognised: " + ", ".join(p for p in (what, self.detail, f"{items} items") if p)


def read_export(path: str, *, url_column: str | None = None, id_column: str | None = None,
                columns: Sequence[str] | None = None, all_columns: bool = False, separator: str | None = None,
                export_format: str | None = None, delimiter: str | None = None,
                mapping: Mapping | None = None) -> Export:
    """Open the export at ``path``: recognised by its format (``export_format`` names one),
    or mapped by ``url_column`` (and the rest of ``mapping``). Raises :class:`ExportError`
    at once (before any row is read) when the file cannot be read, no format knows it and
    no URL column is given, or a named column is in no CSV header."""
    if mapping is None and url_column:
        mapping = Mapping(url_column, id_column, separator)
    kind = export_kind(path)
    if kind == "zip":
        raise ExportError(f"{display(path)} is a ZIP: load it with load --from (4CAT's image download)")
    header, records, used = open_records(path, kind, delimiter)
    try:
        head = list(itertools.islice(records, SAMPLE))
        sample = Sample(kind, header, [r for _, r in head if isinstance(r, dict)], used)
        fmt, detail = _choose(path, sample, export_format, mapping)
        if mapping is not None and kind in ("csv", "tsv"):
            _check_columns(path, header, [mapping.url_column, mapping.id_column, *(columns or ())], used)
        keep_all = all_columns or (fmt is not None and kind in ("csv", "tsv") and not columns)
        export = Export(path, kind, fmt, detail, iter(()), used)
        export.rows = _rows(itertools.chain(head, records), records, fmt, mapping, columns, keep_all, export.hints)
        return export
    except BaseException:
        records.close()
        raise


def _choose(path: str, sample: Sample, name: str | None, mapping: Mapping | None) -> tuple[Format | None, str]:
    if name:
        fmt = formats.by_name(name)
        if fmt is None:
            raise ExportError(f"no export format {name!r} (imageclust formats lists them: "
                              f"{', '.join(f.name for f in formats.ALL)})")
        if sample.kind not in fmt.kinds:
            raise ExportError(f"{display(path)} is {sample.kind.upper()}; the {name} format reads "
                              f"{', '.join(k.upper() for k in fmt.kinds)}")
        detail = fmt.detect(sample)
        return fmt, detail or ""
    found = formats.recognise(sample)
    if mapping is not None:
        return None, (f"(it looks like {found[0].title}: drop --url-column to read it as such)" if found else "")
    if found is None:
        shown = ", ".join(sample.header[:12]) if sample.header else ", ".join(
            list(sample.records[0])[:12]) if sample.records else "none"
        raise ExportError(f"cannot tell which tool wrote {display(path)} (its fields: {shown}): give --url-column "
                          f"(the column of image URLs), or --export-format NAME (imageclust formats lists them)")
    fmt, detail = found
    if not fmt.images:
        raise ExportError(f"{display(path)} is {fmt.title}{', ' + detail if detail else ''}: {fmt.note}")
    return fmt, detail


def _check_columns(path: str, header: list[str], names: list[str | None], delimiter: str | None) -> None:
    for name in names:
        if name is None or name in header:
            continue
        if name.split(".")[0].split("[")[0] in header:
            continue  # a path into a column of JSON text
        shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
        hint = ""
        if len(header) == 1 and any(c in header[0] for c in ",;\t|"):
            hint = f" -- the header reads as one column: give --delimiter (it was read with {delimiter!r})"
        raise ExportError(f"{display(path)} has no column {name!r} (its columns: {shown}){hint}")


def _rows(records: Iterator[tuple[int, dict | str]], source: Any, fmt: Format | None, mapping: Mapping | None,
          columns: Sequence[str] | None, keep_all: bool, hints: list[str]) -> Iterator[ExportRow | BadRow]:
    try:
        for row, rec in records:
            if not isinstance(rec, dict):
                yield BadRow(row, rec)
                continue
            try:
                post = fmt.post(rec) if fmt is not None else _mapped(rec, mapping, hints)
                keep = [k for k in rec if isinstance(k, str)] if keep_all else list(columns or ())
                kept = {k: typed(column_value(rec, k)) for k in keep}
            except RowError as e:
                yield BadRow(row, str(e))
                continue
            except RecursionError:
                yield BadRow(row, "nested too deeply")
                continue
            except (TypeError, ValueError, KeyError, AttributeError, IndexError) as e:
                # A format module met a shape it did not expect: this row is lost, not the run.
                yield BadRow(row, f"cannot be read as a post ({type(e).__name__}: {e})"[:300])
                continue
            post_id = post.post_id if post.post_id else str(row)
            yield ExportRow(row, post_id, post.urls, kept, post)
    finally:
        source.close()  # the file, when the rows are not read to the end


def _mapped(rec: dict, m: Mapping, hints: list[str]) -> Post:
    post_id = None
    if m.id_column is not None:
        value = column_value(rec, m.id_column)
        if value is None or isinstance(value, (dict, list)) or not str(value).strip():
            raise RowError(f"no post id in column {m.id_column!r}")
        post_id = str(value).strip()
    urls = split_urls(column_value(rec, m.url_column), m.separator)
    if m.separator is None and not hints and any(_MANY_URLS.search(u) for u in urls):
        hints.append(f"the column {m.url_column!r} holds several URLs in one cell (e.g. {urls[0][:80]!r}): "
                     "give --separator (4CAT joins with ',', TCAT with ';')")

    def pick(flag: str | None, names: tuple[str, ...]) -> Any:
        if flag:
            return column_value(rec, flag)
        return first(rec, *(n for n in names if n != m.url_column))

    author = text_of(pick(m.author, GUESS["author"]))
    return Post(post_id, urls, author=author.lstrip("@") if author else None,
                created=iso_utc(pick(m.date, GUESS["date"])), text=text_of(pick(m.text, GUESS["text"])),
                hashtags=hashtag_list(pick(m.hashtags, GUESS["hashtags"])),
                permalink=text_of(pick(m.permalink, GUESS["permalink"])))
