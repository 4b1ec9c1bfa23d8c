"""What every export format shares: the normalised :class:`Post` a record becomes, the
:class:`Format` that says how, and the few rules of normalisation (dates to ISO 8601 UTC,
hashtags to a list, nested paths with ``[*]``), so each format module is a small map
from its tool's field names to these.

A format never trusts its input: a record that lacks what the format needs raises
:class:`RowError` with a one-line reason (that row is recorded in ``export_errors``);
any other field that is missing or of the wrong type is simply left empty.
"""
from __future__ import annotations

import datetime as _dt
import email.utils
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


class RowError(ValueError):
    """This record cannot be read as a post (the reason is the message, one line)."""


@dataclass
class Post:
    """One post of an export, normalised: the fields are the posts columns
    ``store.postcolumns.NORMALISED`` (``image_count`` is counted when it is written)."""
    post_id: str | None  # None: the row number is the id
    urls: list[str] = field(default_factory=list)  # image URLs in the post's order
    platform: str | None = None  # 'instagram', 'tiktok', 'x', ... (lower case, no domain)
    permalink: str | None = None  # the post's own page
    author: str | None = None  # the author's user name (handle, without '@')
    created: str | None = None  # ISO 8601 UTC, e.g. '2024-03-02T10:11:12Z' (use iso_utc)
    text: str | None = None  # the post's text (caption, tweet, description)
    hashtags: list[str] = field(default_factory=list)  # without '#', lower case (use hashtag_list)
    files: list[str] = field(default_factory=list)  # images given as files, not URLs (ZIP members)


@dataclass
class Sample:
    """The start of a file, for recognising its format: its kind (``csv``, ``tsv``,
    ``ndjson``, ``json``, ``zip``, ``sidecar``), the CSV header (else empty) and the first
    records (dicts; for a CSV, header name -> cell text)."""
    kind: str
    header: list[str]
    records: list[dict]
    delimiter: str | None = None  # a CSV's (Zeeschuimer writes ';', 4CAT ',' under the same columns)


@dataclass(frozen=True)
class Format:
    """One export format a tool writes.

    ``detect(sample)`` returns a short detail for the recognition line (e.g.
    ``'instagram.com'``; ``''`` when there is none) when the sample is this format,
    else None. ``post(record)`` maps one record to a :class:`Post` (raising
    :class:`RowError` for one it cannot read). ``fields`` are (column, what it is read
    from) pairs for ``imageclust formats``; ``source`` names the upstream source files
    the mapping was read from."""
    name: str  # what --export-format takes, e.g. 'zeeschuimer'
    title: str  # e.g. 'Zeeschuimer NDJSON'
    kinds: tuple[str, ...]
    detect: Callable[[Sample], str | None]
    post: Callable[[dict], Post]
    fields: tuple[tuple[str, str], ...] = ()
    source: str = ""
    note: str = ""  # anything a user must know (e.g. 'carries no image URLs: use ...')
    images: bool = True  # False: this export carries no image URLs (loading it stops, saying ``note``)


# --- values -------------------------------------------------------------------------------

_TWITTER = "%a %b %d %H:%M:%S %z %Y"  # 'Sat Mar 02 10:11:12 +0000 2024'
_DIGITS = re.compile(r"-?\d+(\.\d+)?")
_ISO_START = re.compile(r"\d{4}-\d{2}-\d{2}")


def iso_utc(value: Any) -> str | None:
    """A date as ISO 8601 UTC (``2024-03-02T10:11:12Z``), or None when it is none.

    Reads epoch seconds or milliseconds (numbers or digit strings; above 10^11 is read as
    milliseconds, i.e. any date after 1973), Twitter's ``Sat Mar 02 10:11:12 +0000 2024``,
    RFC 2822's ``Sat, 02 Mar 2024 10:11:12 +0000`` (Pinterest), and ISO 8601 / 4CAT's
    ``2024-03-02 10:11:12`` (a time without an offset is UTC, as 4CAT and TCAT write them).
    A date alone stays a date (``2024-03-02``)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and _DIGITS.fullmatch(value.strip())):
        try:
            seconds = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        if abs(seconds) >= 1e11:
            seconds /= 1000.0
        if not 0 < seconds < 4102444800:  # 1970 .. 2100: anything else is no post's date
            return None
        when = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text:
        return None
    try:
        when = _dt.datetime.strptime(text, _TWITTER)
    except ValueError:
        when = None
    if when is None and "," in text[:5]:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if when is None and _ISO_START.match(text):
        if len(text) == 10:
            try:
                return _dt.date.fromisoformat(text).isoformat()
            except ValueError:
                return None
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
        except ValueError:
            return None
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(_dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


_TAG_KEYS = ("name", "tag", "text", "hashtag", "hashtagName", "title")


def hashtag_list(value: Any) -> list[str]:
    """Hashtags as a list: without ``#``, trimmed, lower case, each once, in order.

    Reads a list (of strings, or of objects with one of ``name``, ``tag``, ``text``,
    ``hashtag``, ``hashtagName``, ``title``), JSON text of one, or text: split on ``,``
    and ``;`` when it has either (TCAT joins with ``"; "``, 4CAT with ``,``), else on
    white space (``#cats #dogs``)."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return hashtag_list(parsed)
        parts: Iterable[Any] = re.split(r"[,;]", text) if re.search(r"[,;]", text) else text.split()
    elif isinstance(value, list):
        parts = []
        for item in value:
            if isinstance(item, dict):
                item = next((item[k] for k in _TAG_KEYS if isinstance(item.get(k), str)), None)
            if isinstance(item, str):
                parts.append(item)
    else:
        return []
    out: list[str] = []
    for part in parts:
        tag = str(part).strip().lstrip("#").strip().lower()
        if tag and tag not in out:
            out.append(tag)
    return out


_TAG_IN_TEXT = re.compile(r"#(\w+)")


def tags_in(text: str | None, longest: int | None = None) -> list[str]:
    """Hashtags written in a post's text (``#cats``), for exports without a hashtag field,
    as :func:`hashtag_list`; ``longest`` cuts each at that many characters (Instaloader's
    own rule reads at most 150)."""
    found = _TAG_IN_TEXT.findall(text or "")
    return hashtag_list([t[:longest] for t in found] if longest else found)


def text_of(value: Any) -> str | None:
    """A text field as text (None when empty or not text-like)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def id_of(value: Any) -> str | None:
    """A post id as text (ids are text: a 19-digit id must not become a float)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    if isinstance(value, str):
        return value.strip() or None
    return None


def unique(items: Iterable[Any]) -> list[str]:
    """Non-empty strings, each once, in order (a post's URLs)."""
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if item and item not in out:
                out.append(item)
    return out


# --- paths ----------------------------------------------------------------------------------

_STEP = re.compile(r"([^.\[\]]+)|\[(\*|\d+)\]|\.")


def _steps(path: str) -> list[str | int | None]:
    """``a.b[0].c[*].d`` -> ['a', 'b', 0, 'c', None, 'd'] (None: every item)."""
    steps: list[str | int | None] = []
    pos = 0
    for m in _STEP.finditer(path):
        if m.start() != pos:
            raise ValueError(f"cannot read the path {path!r}")
        pos = m.end()
        if m.group(1) is not None:
            part = m.group(1)
            steps.append(int(part) if part.isdigit() else part)  # 'a.0.b' still indexes a list
        elif m.group(2) is not None:
            steps.append(None if m.group(2) == "*" else int(m.group(2)))
    if pos != len(path) or not steps:
        raise ValueError(f"cannot read the path {path!r}")
    return steps


def values_at(record: Any, path: str) -> list[Any]:
    """Every value at ``path`` in a nested record: dotted keys, ``[N]`` for the N-th item
    of a list and ``[*]`` for each item (``data.carousel_media[*].image_versions2.
    candidates[0].url``). A key the record has whole (``"data.url"`` as one key) wins.
    Missing steps give nothing; a value that is a list at the end is returned as one value."""
    if isinstance(record, dict) and path in record:
        return [record[path]]
    values = [record]
    for step in _steps(path):
        nxt: list[Any] = []
        for v in values:
            if step is None:
                if isinstance(v, list):
                    nxt.extend(v)
            elif isinstance(step, int) and isinstance(v, list):
                if -len(v) <= step < len(v):
                    nxt.append(v[step])
            elif isinstance(v, dict):
                key = str(step)
                if key in v:
                    nxt.append(v[key])
        values = nxt
    return values


def value_at(record: Any, path: str) -> Any:
    """The first value at ``path`` (see :func:`values_at`), or None."""
    found = values_at(record, path)
    return found[0] if found else None


def first(record: Any, *paths: str) -> Any:
    """The first non-empty value among ``paths``."""
    for path in paths:
        v = value_at(record, path)
        if v not in (None, "", [], {}):
            return v
    return None
