"""4CAT's image-download ZIP (or the folder it unpacks to) as an export: the images are in the ZIP, and its
``.metadata.json`` says which URL each file was downloaded from and which posts linked
it (``formats/fourcat_zip.py`` reads it). Nothing is downloaded: each file is taken
from the ZIP into the content-addressed cache exactly as a download would be (same
checks, same ``downloads`` row, with the URL it came from), so a later export of the
same posts, or a re-run, finds it there.

The ZIP is untrusted: member names are never used as paths (the bytes are read and
cached under their sha256), each member is read at most ``--max-size`` bytes, and
``.metadata.json`` at most :data:`MAX_METADATA` bytes.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Iterator

import sqlite_utils

from ..store.paths import display
from .download import Fetched, Limits, keep
from .exportfiles import ExportError
from .exports import BadRow, ExportRow
from .formats import fourcat_zip
from .formats.base import Format, Post, Sample
from .posts import ExportSummary, record_download

MAX_METADATA = 256 * 1024 * 1024
METADATA = ".metadata.json"


class Unpacked:
    """An unpacked ZIP (a folder) read as ``zipfile.ZipFile`` is: its top-level files by
    plain name, never a path out of it."""

    def __init__(self, folder: str):
        self.folder = folder
        self._names = sorted(e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False))

    def namelist(self) -> list[str]:
        return list(self._names)

    def open(self, name: str) -> IO[bytes]:
        if name not in self._names:
            raise KeyError(name)
        return open(os.path.join(self.folder, name), "rb")

    def close(self) -> None:
        pass


@dataclass
class ZipExport:
    path: str
    zf: zipfile.ZipFile | Unpacked
    format: Format
    detail: str
    metadata: Any
    members: dict[str, str] = field(default_factory=dict)  # URL -> the member holding its image
    hints: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[ExportRow | BadRow]:
        for row, item in enumerate(fourcat_zip.zip_posts(self.zf, self.metadata), 1):
            if isinstance(item, Post):
                for url, member in zip(item.urls, item.files):
                    if member:
                        self.members.setdefault(url, member)
                yield ExportRow(row, item.post_id or str(row), item.urls, {}, item)
            else:
                what, reason = item
                yield BadRow(row, f"{what}: {reason}"[:300])

    def recognised(self, items: int) -> str:
        return "recognised: " + ", ".join(p for p in (self.format.title, self.detail, f"{items} posts") if p)

    def close(self) -> None:
        self.zf.close()


def open_zip(path: str) -> ZipExport:
    """Open a ZIP export, raising :class:`ExportError` when it is none 4CAT made."""
    try:
        zf: zipfile.ZipFile | Unpacked = Unpacked(path) if os.path.isdir(path) else zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise ExportError(f"cannot read {display(path)} as a ZIP: {getattr(e, 'strerror', None) or e}") from None
    try:
        names = zf.namelist()
        meta_name = next((n for n in names if n.rsplit("/", 1)[-1] == METADATA), None)
        metadata: Any = None
        if meta_name is not None:
            with zf.open(meta_name) as fh:
                raw = fh.read(MAX_METADATA + 1)
            if len(raw) > MAX_METADATA:
                raise ExportError(f"{display(path)}: its {METADATA} is larger than {MAX_METADATA // 2**20} MB")
            try:
                metadata = json.loads(raw.decode("utf-8", errors="replace"))
            except (ValueError, RecursionError) as e:
                raise ExportError(f"{display(path)}: its {METADATA} is not JSON: {e}") from None
        sample = Sample("zip", names, [metadata] if isinstance(metadata, dict) else [])
        for fmt in fourcat_zip.FORMATS:
            detail = fmt.detect(sample)
            if detail is not None:
                return ZipExport(path, zf, fmt, detail, metadata)
        raise ExportError(f"{display(path)} is a ZIP without 4CAT's {METADATA}: to load its images without "
                          f"posts, unpack it and load the folder")
    except BaseException:
        zf.close()
        raise
    # (zipfile.BadZipFile and RuntimeError for an encrypted member are met per member, in unpack)


def unpack(db: sqlite_utils.Database, source: ZipExport, todo: list[str], cache: str, limits: Limits,
           summary: ExportSummary, on_skip: Callable[[str, str], None]) -> None:
    """Take the image of each URL in ``todo`` from the ZIP into ``cache`` (a ``downloads``
    row each, as a download); a URL the ZIP has no file for fails, saying so."""
    for url in todo:
        member = source.members.get(url)
        if member is None:
            f = Fetched(url, "failed", error="not in the ZIP (4CAT could not download it)")
        else:
            try:
                with source.zf.open(member) as fh:
                    body = fh.read(limits.max_bytes + 1)
            except (OSError, KeyError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError) as e:
                f = Fetched(url, "failed", error=f"cannot read {display(member)} in the ZIP: {e}"[:300])
            else:
                if len(body) > limits.max_bytes:
                    f = Fetched(url, "failed", error=f"too large: more than {limits.max_bytes} bytes")
                else:
                    f = keep(url, body, cache, None)
        record_download(db, f)
        if f.status == "ok":
            summary.unpacked += 1
        else:
            summary.failed += 1
            on_skip(url, f.error or "failed")
