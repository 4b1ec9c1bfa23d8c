"""4CAT's image-download ZIP: the files its "Download images" processor fetched, at the
top of the ZIP, and ``.metadata.json`` saying which URL each came from and for which posts.

Read from github.com/digitalmethodsinitiative/4cat:
``processors/visualisation/download_images.py`` (``ImageDownloader.process``: an object
keyed by the original URL, each ``{"filename", "url" (after redirects), "success",
"from_dataset", "post_ids": [...]}``; a failed download's file is deleted but its entry
kept), ``processors/visualisation/download_telegram_videos.py`` (Telegram images and videos:
keyed by file name, with ``"reason"``; no URL), ``download_tiktok.py`` (the same keys as
images), ``download_videos.py`` (a ``"files"`` list of ``{"filename", "success"}`` per URL)
and ``backend/lib/processor.py`` (``write_archive_and_finish``: each file stored under its
bare name).

Member names and metadata are untrusted: a file is only named when it is a plain name
(no folder, no ``..``) that the ZIP holds; the reader reads its bytes with ``zf.read``.
"""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

from .base import Format, Post, RowError, Sample, id_of

METADATA = ".metadata.json"


def _is_entry(value: Any) -> bool:
    return isinstance(value, dict) and ("post_ids" in value or "filename" in value or "files" in value)


def _detect(sample: Sample) -> str | None:
    if METADATA not in sample.header:
        return None
    meta = sample.records[0] if sample.records else None
    if not isinstance(meta, dict):
        return "unreadable .metadata.json"  # still 4CAT's: zip_posts says why
    entries = [v for v in meta.values() if _is_entry(v)]
    if meta and not entries:
        return None
    if any("reason" in v for v in entries):
        return "telegram media"
    if any(isinstance(v.get("files"), list) for v in entries):
        return "downloaded videos"
    return "downloaded images"


def _no_rows(record: dict) -> Post:
    raise RowError("a 4CAT ZIP is read with zip_posts")


def safe_name(name: Any) -> str | None:
    """A ZIP member name 4CAT could have written (a plain file name), else None."""
    if not isinstance(name, str) or not name or name in (".", "..", METADATA):
        return None
    if "/" in name or "\\" in name or "\0" in name or ":" in name:
        return None
    return name


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def zip_posts(zf: zipfile.ZipFile, metadata: Any) -> Iterator[Post | tuple[str, str]]:
    """One Post per post id in ``metadata`` (``.metadata.json`` parsed): its image URLs in
    the metadata's order and the member holding each (``''`` when 4CAT failed to download
    it); ``(what, reason)`` for each entry that cannot be read."""
    if not isinstance(metadata, dict):
        yield METADATA, f"not a JSON object but {type(metadata).__name__}"
        return
    members = set(zf.namelist())
    posts: dict[str | None, tuple[list[str], list[str]]] = {}
    loose: list[tuple[list[str], list[str]]] = []  # entries with no post id
    for key, entry in metadata.items():
        what = str(key)[:200]
        if not isinstance(entry, dict):
            yield what, "metadata entry is not an object"
            continue
        # download_images.py keys by the original URL; Telegram's by file name
        url = key if _is_url(key) else (entry["url"] if _is_url(entry.get("url")) else "")
        files: list[str] = []
        # download_videos.py lists its files (yt-dlp may give several per URL)
        downloads = entry["files"] if isinstance(entry.get("files"), list) else [entry]
        for download in downloads:
            if not isinstance(download, dict) or download.get("success") is not True:
                continue
            name = safe_name(download.get("filename"))
            if name is None:
                yield what, f"unsafe or missing file name {str(download.get('filename'))[:100]!r}"
            elif name not in members:
                yield what, f"marked downloaded but {name!r} is not in the ZIP"
            else:
                files.append(name)
        if not url and not files:
            yield what, "no URL and no file"
            continue
        ids = entry.get("post_ids", [])
        if not isinstance(ids, list):
            yield what, "post_ids is not a list"
            continue
        post_ids = [id_of(i) for i in ids]
        if any(i is None for i in post_ids):
            yield what, "a post id that is not text or a number"
        post_ids = [i for i in post_ids if i is not None]
        pairs = [(url, f) for f in files] or [(url, "")]  # a failed download: its URL, no file
        if not post_ids:
            loose.append(([u for u, _ in pairs], [f for _, f in pairs]))
        for pid in post_ids:
            urls, names = posts.setdefault(pid, ([], []))
            for u, f in pairs:
                if not any(u == u2 and f == f2 for u2, f2 in zip(urls, names)):
                    urls.append(u)
                    names.append(f)
    for pid, (urls, names) in posts.items():
        yield Post(post_id=pid, urls=urls, files=names)
    for urls, names in loose:
        yield Post(post_id=None, urls=urls, files=names)


FORMATS: list[Format] = [
    Format(
        name="4cat-zip", title="4CAT image-download ZIP", kinds=("zip",),
        detect=_detect, post=_no_rows,
        fields=(
            ("post_id", ".metadata.json: each entry's post_ids[*]"),
            ("urls", ".metadata.json: the entry's key (the original URL; else its url)"),
            ("files", (".metadata.json: the entry's filename (videos: files[*].filename), when "
                       "success is true and the ZIP holds it")),
        ),
        source=("github.com/digitalmethodsinitiative/4cat processors/visualisation/download_images.py, "
                "processors/visualisation/download_telegram_videos.py, "
                "processors/visualisation/download_videos.py, backend/lib/processor.py"),
    ),
]
