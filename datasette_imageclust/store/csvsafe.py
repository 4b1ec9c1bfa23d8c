"""Every CSV file the package writes goes through here: one home for the rule that no cell
runs as a formula when the file is opened in a spreadsheet (CSV injection, OWASP).

The rule, cell by cell:

* ``None`` is an empty cell; ``True``/``False`` are ``1``/``0``; an ``int`` or ``float`` is
  written as Python writes it (``-1.5`` stays the number -1.5).
* A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
  single quote ``'`` in front (``=HYPERLINK("x")`` -> ``'=HYPERLINK("x")``), which
  spreadsheets show as text and do not run; unless the whole text is a plain decimal number
  (``-1.5``, ``+3``, ``-2e-05``), which a spreadsheet reads as that number and never runs.
* Any other text is written as it is.

The quote is a change of the data: a reader of the CSV in R or pandas sees ``'=...`` for
such a cell (the JSON and Parquet exports carry the text unchanged). ``bom``: start the
file with the UTF-8 byte order mark, so Excel reads it as UTF-8 rather than the local
code page.
"""
from __future__ import annotations

import csv
import re
from typing import IO, Any, Iterable

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
BOM = "\ufeff"


def cell(value: Any) -> Any:
    """``value`` as the CSV cell the rule above writes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(FORMULA_START) and not NUMBER.fullmatch(text):
        return "'" + text
    return text


class Writer:
    """``csv.writer`` over ``f`` (opened with ``newline=""``) whose rows follow :func:`cell`."""

    def __init__(self, f: IO[str], *, bom: bool = False, **options: Any) -> None:
        if bom:
            f.write(BOM)
        self._w = csv.writer(f, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(f: IO[str], *, bom: bool = False, **options: Any) -> Writer:
    """The package's CSV writer (see the module's docstring)."""
    return Writer(f, bom=bom, **options)
