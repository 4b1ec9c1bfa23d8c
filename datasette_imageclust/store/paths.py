"""File names between the operating system, the database and the screen.

On Linux a file name is any bytes; Python hands names that are not valid UTF-8 back as
``str`` with surrogate escapes (PEP 383), which SQLite, JSON and HTML cannot hold. The
rule, kept here only:

* ``files.path`` (and ``errors.path``, ``root``, ``relpath``) hold readable text: the
  name itself when it is valid UTF-8, else its UTF-8 parts with each other byte as
  ``\\xNN``;
* ``path_bytes`` holds the exact bytes only for names that are not valid UTF-8 (NULL
  otherwise, so SQL users see plain text), and rows are unique on ``KEY_SQL``;
* anything that goes back to the disk uses :func:`os_path` of both columns.
"""
from __future__ import annotations

import os
import re

#: The unique key of a path row: the exact bytes where stored, else the text.
KEY_SQL = "coalesce(path_bytes, path)"


def text(s: str) -> str:
    """Readable, storable text of an OS string: surrogate-escaped bytes become ``\\xNN``."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return os.fsencode(s).decode("utf-8", "backslashreplace")


def to_db(path: str) -> tuple[str, bytes | None]:
    """An OS path -> (display text, raw bytes or None when the name is valid UTF-8)."""
    shown = text(path)
    return shown, (None if shown == path else os.fsencode(path))


def key(path: str) -> str | bytes:
    """What ``KEY_SQL`` is for this OS path (bind it to find the path's row)."""
    shown, raw = to_db(path)
    return shown if raw is None else raw


def os_path(shown: str, raw: bytes | None) -> str:
    """The exact OS path of a stored (path, path_bytes) pair."""
    return shown if raw is None else os.fsdecode(raw)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def display(path: str) -> str:
    """One printable line for logs and plain-text output: ``text`` with control, line
    and direction-override characters escaped, so ``skipping PATH: reason`` stays one
    line and reads as it is."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text(path))
