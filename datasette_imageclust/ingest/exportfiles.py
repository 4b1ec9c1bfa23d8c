"""An export file's kind and its records, read as a stream: CSV and TSV (a BOM dropped,
the delimiter given or sniffed from the header), NDJSON (one object a line, a line cut
off at :data:`MAX_LINE`), JSON (a list of objects, or an object holding one list).

A record is ``(row, dict)``, or ``(row, reason)`` for one that cannot be read: the reader
never stops on a bad record, only on a file it cannot read at all (:class:`ExportError`).
"""
from __future__ import annotations

import csv
import json
import os
import sys
from typing import IO, Any, Iterator

from ..store.paths import display
from .summary import LoadError

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".ndjson": "ndjson", ".jsonl": "ndjson",
              ".json": "json", ".zip": "zip"}
SAMPLE = 20  # records looked at to recognise a format
MAX_LINE = 64 * 1024 * 1024  # an NDJSON line (a post) longer than this is refused, not read into memory
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "|": "|"}


class ExportError(LoadError):
    """The export as a whole cannot be read (missing, unknown format, no such column)."""


def export_kind(path: str) -> str:
    """``csv``, ``tsv``, ``ndjson``, ``json`` or ``zip``: by the extension, else by the
    first bytes (Zeeschuimer and 4CAT name theirs, a renamed file still reads). A folder
    holding 4CAT's ``.metadata.json`` is an unpacked ZIP (``zip``)."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, ".metadata.json")):
            return "zip"  # 4CAT's image-download ZIP, unpacked
        raise ExportError(f"{display(path)} is a folder: load it as PATH (imageclust load DATABASE FOLDER), "
                          f"not with --from")
    ext = os.path.splitext(path)[1].lower()
    if ext in EXTENSIONS:
        return EXTENSIONS[ext]
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as e:
        raise ExportError(f"cannot read {display(path)}: {e.strerror or e}") from e
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if text.startswith(b"{"):
        return "ndjson"
    if text.startswith(b"["):
        return "json"
    if b"\x00" not in head and head and any(c in head.split(b"\n", 1)[0] for c in b",;\t"):
        return "csv"
    raise ExportError(f"cannot tell the format of {display(path)}: name it .csv, .tsv, .ndjson, .jsonl, .json "
                      f"or .zip")


def _open(path: str) -> IO[str]:
    try:  # streamed (exports run to gigabytes); a stray byte spoils one value, not the run
        return open(path, encoding="utf-8-sig", errors="replace", newline="")
    except OSError as e:
        raise ExportError(f"cannot read {display(path)}: {e.strerror or e}") from e


def sniff_delimiter(line: str) -> str:
    """The delimiter of a CSV header line: the most frequent of ``,``, ``;`` and tab
    outside quotes (Zeeschuimer's CSV uses ``;``), ``,`` on a tie."""
    counts = {",": 0, ";": 0, "\t": 0}
    quoted = False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif not quoted and c in counts:
            counts[c] += 1
    best = max(counts, key=lambda c: (counts[c], c == ","))
    return best if counts[best] else ","


def open_records(path: str, kind: str, delimiter: str | None = None
                 ) -> tuple[list[str], Iterator[tuple[int, dict | str]], str | None]:
    """(CSV header or [], the records, the delimiter used)."""
    if delimiter is not None and delimiter not in DELIMITERS:
        raise ExportError(f"--delimiter must be one of , ; | tab (not {delimiter!r})")
    fh = _open(path)
    try:
        if kind in ("csv", "tsv"):
            if delimiter is None:
                first = fh.readline(1024 * 1024)
                fh.seek(0)
                used = "\t" if kind == "tsv" else sniff_delimiter(first)
            else:
                used = DELIMITERS[delimiter]
            reader = csv.reader(fh, delimiter=used)
            header = _csv_header(reader, path)
            return header, _csv_records(fh, reader, header), used
        if kind == "ndjson":
            return [], _ndjson_records(fh), None
        text = fh.read()
        fh.close()
        return [], _json_list(text, path), None
    except BaseException:
        fh.close()
        raise


def _csv_header(reader: Any, path: str) -> list[str]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # post bodies can be long
    try:
        header = next(reader)
    except StopIteration:
        raise ExportError(f"{display(path)} is empty") from None
    except csv.Error as e:
        raise ExportError(f"cannot read the header of {display(path)}: {e}") from None
    return header


def _csv_records(fh: IO[str], reader: Any, header: list[str]) -> Iterator[tuple[int, dict | str]]:
    with fh:
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


def _lines(fh: IO[str]) -> Iterator[str | None]:
    """Each line, or None for one longer than MAX_LINE (skipped to its end)."""
    while True:
        line = fh.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith("\n"):
            while True:
                rest = fh.readline(MAX_LINE)
                if not rest or rest.endswith("\n"):
                    break
            yield None
            continue
        yield line


def _ndjson_records(fh: IO[str]) -> Iterator[tuple[int, dict | str]]:
    with fh:
        row = 0
        for line in _lines(fh):
            if line is not None and not line.strip():
                continue
            row += 1
            if line is None:
                yield row, f"a line longer than {MAX_LINE // (1024 * 1024)} MB"
                continue
            yield row, _object(line)


def _object(text: Any, parse: bool = True) -> dict | str:
    if parse:
        try:
            text = json.loads(text)
        except RecursionError:
            return "not JSON: nested too deeply"
        except ValueError as e:
            return f"not JSON: {e}"
    if not isinstance(text, dict):
        return f"not a JSON object but {type(text).__name__}"
    return text


def _json_list(text: str, path: str) -> Iterator[tuple[int, dict | str]]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise ExportError(f"{display(path)} is nested too deeply to read") from None
    except ValueError as e:
        raise ExportError(f"{display(path)} is not JSON: {e}") from None
    if isinstance(data, dict):  # {"data": [...]} and the like: the one list it holds
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list):
        raise ExportError(f"{display(path)} is not a JSON list of posts")
    return ((row, _object(item, parse=False)) for row, item in enumerate(data, 1))
