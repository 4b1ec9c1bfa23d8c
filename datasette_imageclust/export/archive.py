"""``folder`` and ``zip``: the selected images, one subfolder per cluster, plus ``manifest.csv``.

* subfolders ``<cluster id>-<label slug>`` (``unclustered`` for the rest);
* each image's original file when one of its paths is still on disk with the same
  sha256 (checked by reading it), else its stored thumbnail; ``manifest.csv`` says which;
* names: the original base name, made unique within its folder (``name-2.jpg``); a
  folder keeps a name that is not UTF-8 as it is, a ZIP (UTF-8 names only) gets the
  readable form (``\\xNN``) and the manifest's ``note`` says so;
* streamed: a ZIP is written member by member in 1 MiB blocks (already-compressed
  formats stored, others deflated), so memory stays flat whatever its size;
* ``symlink`` (folders only): links to the originals instead of copies.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import unicodedata
import zipfile
from pathlib import Path
from typing import IO, Iterator

from ..store import csvsafe, paths
from ..store.collection import raw_connection
from ..store.connection import Connection
from .records import CHUNK
from .selection import ExportError, Selection

BLOCK = 1 << 20
#: Formats already compressed: deflating them again costs time and saves nothing.
STORED = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".heic", ".heif", ".avif"}
MANIFEST = ("file", "source", "image_id", "cluster_id", "cluster_label", "rank", "sha256", "original", "note")


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe lower-case slug of a label ('' when nothing is left)."""
    text = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].strip("-")


def folder_name(cluster: dict | None) -> str:
    """``<id>-<label slug>`` of a cluster; ``unclustered`` for None or the unclustered group."""
    if cluster is None or cluster["kind"] != "cluster":
        return "unclustered"
    s = slug(cluster["label"])
    return f"{cluster['id']}-{s}" if s else str(cluster["id"])


def _unique(name: str, taken: set[str]) -> str:
    stem, ext = os.path.splitext(name)
    n, out = 1, name
    while out in taken:
        n += 1
        out = f"{stem}-{n}{ext}"
    taken.add(out)
    return out


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(BLOCK):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


def _usable(path: str, originals: bool, under: str | None) -> bool:
    if not originals:
        return False
    if under is None:
        return True
    # realpath on both sides: a symlink inside the folder cannot point outside it.
    real, root = os.path.realpath(path), os.path.realpath(under)
    return os.path.commonpath([real, root]) == root


def _why(files: list, originals: bool, under: str | None) -> str:
    """Why an image has no original in the archive, for the manifest."""
    if any(_usable(p, originals, under) for p, _ in files):
        return "the original is gone or changed"
    return "originals are not served from here"


def _items(db: Connection, selection: Selection) -> Iterator[tuple[int, str, list[tuple[str, str | None]], tuple]]:
    """(image id, sha256, [(OS path, stored path text)], (thumbnail format, rank)) per image, by chunks."""
    conn = raw_connection(db)
    run_id = selection.run["id"] if selection.run else None
    for start in range(0, len(selection.image_ids), CHUNK):
        ids = selection.image_ids[start:start + CHUNK]
        arg = json.dumps(ids)
        sha = dict(conn.execute("SELECT id, sha256 FROM images WHERE id IN (SELECT value FROM json_each(?))", [arg]))
        files: dict[int, list[tuple[str, str]]] = {}
        for iid, text, raw in conn.execute("SELECT image_id, path, path_bytes FROM files "
                                           "WHERE image_id IN (SELECT value FROM json_each(?)) ORDER BY path", [arg]):
            files.setdefault(iid, []).append((paths.os_path(text, raw), text))
        thumbs = dict(conn.execute("SELECT image_id, format FROM thumbnails "
                                   "WHERE image_id IN (SELECT value FROM json_each(?))", [arg]))
        ranks = dict(conn.execute("SELECT image_id, rank FROM cluster_members WHERE run_id = ? "
                                  "AND image_id IN (SELECT value FROM json_each(?))", [run_id, arg]))
        for iid in ids:
            if iid in sha:
                yield iid, sha[iid], files.get(iid, []), (thumbs.get(iid), ranks.get(iid))


class _Sink:
    """Where members go: a folder on disk or a ZIP being streamed."""

    def __init__(self, out: Path, kind: str, symlink: bool) -> None:
        self.out, self.kind, self.symlink = out, kind, symlink
        self.zip = zipfile.ZipFile(out, "w", allowZip64=True) if kind == "zip" else None
        self.made: set[str] = set()

    def name_of(self, os_name: str) -> tuple[str, str]:
        """(the name used here, a manifest note): ZIP names must be UTF-8."""
        shown = paths.text(os_name)
        if shown == os_name:
            return os_name, ""
        if self.zip is not None:
            return shown, "name is not UTF-8: stored as its readable form (\\xNN for other bytes)"
        return os_name, "name is not UTF-8: kept as is; the manifest shows its readable form"

    def _folder(self, folder: str) -> None:
        if self.zip is None and folder not in self.made:
            (self.out / folder).mkdir()
            self.made.add(folder)

    def add_file(self, folder: str, name: str, source: str) -> None:
        if self.zip is None:
            self._folder(folder)
            dest = self.out / folder / name
            if self.symlink:
                os.symlink(os.path.abspath(source), dest)
            else:
                shutil.copyfile(source, dest)
            return
        info = zipfile.ZipInfo.from_file(source, f"{folder}/{name}", strict_timestamps=False)
        info.compress_type = zipfile.ZIP_STORED if os.path.splitext(name)[1].lower() in STORED \
            else zipfile.ZIP_DEFLATED
        with open(source, "rb") as src, self.zip.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, BLOCK)

    def add_bytes(self, name: str, data: bytes | IO[bytes], folder: str | None = None) -> None:
        member = f"{folder}/{name}" if folder else name
        if self.zip is None:
            if folder:
                self._folder(folder)
            with open(self.out / member, "wb") as f:
                shutil.copyfileobj(data, f, BLOCK) if not isinstance(data, bytes) else f.write(data)
            return
        info = zipfile.ZipInfo(member, time.localtime()[:6])
        info.compress_type = zipfile.ZIP_STORED if os.path.splitext(name)[1].lower() in STORED \
            else zipfile.ZIP_DEFLATED
        with self.zip.open(info, "w", force_zip64=True) as dst:
            dst.write(data) if isinstance(data, bytes) else shutil.copyfileobj(data, dst, BLOCK)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def write(db: Connection, selection: Selection, out: Path, *, format: str = "zip", symlink: bool = False,
          originals: bool = True, originals_under: str | None = None, bom: bool = False, **options) -> dict:
    """Write the archive to ``out`` (a temporary file, or an empty folder, from :mod:`.atomic`).

    ``originals`` false: stored thumbnails only; ``originals_under``: only originals whose real
    path is inside this folder (a web download serves no file outside the plugin's ``originals_root``);
    ``bom``: the manifest starts with a UTF-8 BOM (see :mod:`..store.csvsafe`)."""
    if format not in ("folder", "zip"):
        raise ExportError(f"unknown archive format {format!r} (formats: folder, zip)")
    if symlink and format != "folder":
        raise ExportError("--symlink works with --format folder only (a ZIP holds copies)")
    conn = raw_connection(db)
    sink = _Sink(Path(out), format, symlink)
    counts = {"original": 0, "symlink": 0, "thumbnail": 0, "missing": 0}
    # The manifest grows with the export: it waits on disk (not in memory) until the end.
    with tempfile.TemporaryFile("w+b") as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as manifest:
        try:
            w = csvsafe.writer(manifest, bom=bom)
            w.writerow(MANIFEST)
            folder, taken = None, set()
            for iid, sha, files, (thumb_format, rank) in _items(db, selection):
                cluster = selection.cluster(selection.cluster_of.get(iid))
                where = folder_name(cluster)
                if where != folder:  # export order is cluster by cluster: one name set at a time
                    folder, taken = where, set()
                original = next((p for p, _ in files if _usable(p, originals, originals_under) and _sha256(p) == sha),
                                None)
                base = os.path.basename(files[0][0]) if files else f"image-{iid}"
                name, note = sink.name_of(os.path.basename(original) if original else base)
                shown = files[0][1] if files else ""
                if original is not None:
                    name = _unique(name, taken)
                    sink.add_file(where, name, original)
                    source = "symlink" if symlink else "original"
                    shown = next(t for p, t in files if p == original)
                elif thumb_format:
                    ext = ".jpg" if thumb_format.lower() in ("jpeg", "jpg") else f".{thumb_format.lower()}"
                    name = _unique(f"{os.path.splitext(name)[0]}.thumbnail{ext}", taken)
                    data = conn.execute("SELECT data FROM thumbnails WHERE image_id = ?", [iid]).fetchone()[0]
                    sink.add_bytes(name, bytes(data), where)
                    source = "thumbnail"
                    note = "; ".join(filter(None, [f"{_why(files, originals, originals_under)}: its stored thumbnail",
                                                   note]))
                else:
                    name, source = "", "missing"
                    note = f"{_why(files, originals, originals_under)} and there is no thumbnail"
                counts[source] += 1
                w.writerow([paths.text(f"{where}/{name}") if name else "", source, iid, cluster["id"] if cluster else "",
                            cluster["label"] if cluster else "", "" if rank is None else rank, sha, shown, note])
            manifest.flush()
            raw.seek(0)
            sink.add_bytes("manifest.csv", raw)
        finally:
            sink.close()
    return {"format": format, "images": sum(counts.values()), "originals": counts["original"] + counts["symlink"],
            "thumbnails": counts["thumbnail"], "missing": counts["missing"], "symlinks": symlink}
