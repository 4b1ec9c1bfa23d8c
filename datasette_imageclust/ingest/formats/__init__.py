"""The export formats that ``load --from`` recognises without mapping flags: one module
per tool, each a list ``FORMATS`` of :class:`~.base.Format`, tried in the order below
(the most specific first), and the registry that finds one for a file's sample."""
from __future__ import annotations

from . import fourcat, fourcat_zip, gallerydl, instaloader, tcat, zeeschuimer
from .base import Format, Post, RowError, Sample

# Zeeschuimer's items and TCAT's columns are unmistakable; 4CAT's columns are checked
# after them (its NDJSON of Zeeschuimer imports *is* Zeeschuimer's items).
ALL: list[Format] = [*zeeschuimer.FORMATS, *tcat.FORMATS, *fourcat.FORMATS, *fourcat_zip.FORMATS,
                     *gallerydl.FORMATS, *instaloader.FORMATS]

__all__ = ["ALL", "Format", "Post", "RowError", "Sample", "by_name", "recognise"]


def by_name(name: str) -> Format | None:
    return next((f for f in ALL if f.name == name), None)


def recognise(sample: Sample) -> tuple[Format, str] | None:
    """The first format (of those for the sample's kind) that knows the sample, with its detail."""
    for fmt in ALL:
        if sample.kind in fmt.kinds:
            detail = fmt.detect(sample)
            if detail is not None:
                return fmt, detail
    return None
