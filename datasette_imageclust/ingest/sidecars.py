"""The JSON sidecars that gallery-dl (``--write-metadata``: ``NAME.EXT.json``) and
Instaloader (``POST.json.xz``, or ``POST.json``, beside ``POST.jpg`` or ``POST_1.jpg``,
``POST_2.jpg``... for a post of several images) write next to each downloaded image.

A sidecar is data like an export row: read with a size cap, never trusted; one that
cannot be read is reported with its reason and skipped.
"""
from __future__ import annotations

import json
import lzma
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import sqlite_utils

from ..store.paths import text
from ..store.schema import migrate
from . import formats
from .exports import column_value, typed
from .formats.base import Post, RowError, Sample
from .posts import record_bad, replace_links, upsert_post

MAX_BYTES = 20 * 1024 * 1024  # a post's metadata is kilobytes; this is a bound, not a guess
_NUMBERED = re.compile(r"^(.*)_\d+$")  # Instaloader: POST_1.jpg, POST_2.jpg share POST.json.xz


def sidecar_for(path: str) -> str | None:
    """The sidecar of the image at ``path``, if there is one."""
    stem = os.path.splitext(path)[0]
    candidates = [path + ".json", stem + ".json", stem + ".json.xz"]
    numbered = _NUMBERED.match(stem)
    if numbered:
        candidates += [numbered.group(1) + ".json", numbered.group(1) + ".json.xz"]
    return next((c for c in candidates if os.path.isfile(c)), None)


def read_sidecar(path: str) -> dict[str, Any] | str:
    """The sidecar's JSON object, or why it cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if path.endswith(".xz"):
            unpack = lzma.LZMADecompressor()
            data = unpack.decompress(data, max_length=MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            return f"larger than {MAX_BYTES} bytes"
        value = json.loads(data.decode("utf-8", errors="replace"))
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    except lzma.LZMAError as e:
        return f"not xz: {e}"
    except ValueError as e:
        return f"not JSON: {e}"
    return value if isinstance(value, dict) else f"not a JSON object but {type(value).__name__}"


@dataclass
class SidecarSummary:
    posts: int = 0  # posts made of sidecars (the sidecars of one post's files are one post)
    links: int = 0  # images linked to them
    unreadable: int = 0  # sidecars recorded in export_errors and skipped

    def as_dict(self) -> dict:
        return asdict(self)


def _as_post(data: dict) -> tuple[str, Post | None]:
    """The export name and post of a sidecar: ``gallery-dl:<platform>`` or ``instaloader:<platform>``
    with the post's id when a format knows it (so one post's files group), else ``sidecars``."""
    found = formats.recognise(Sample("sidecar", [], [data]))
    if found is None:
        return "sidecars", None
    fmt = found[0]
    post = fmt.post(data)
    return (f"{fmt.name}:{post.platform or found[1] or 'unknown'}" if post.post_id else "sidecars"), post


def record_sidecars(db: sqlite_utils.Database, files: Iterable[tuple[str, str, int]], *,
                    columns: Sequence[str] | None, all_columns: bool,
                    on_skip: Callable[[str, str], None]) -> SidecarSummary:
    """One post per post among the sidecars of ``files`` (OS path, sha256, image id of each
    loaded file): gallery-dl writes a sidecar per file, so the files of a tweet of four
    photos are grouped by the post id its format reads; a sidecar no format knows is a
    post of its own. Its columns as an export's (``columns``, or all; the first sidecar's)."""
    migrate(db, "posts")
    known = {c.lower(): c for c in db["posts"].columns_dict}
    groups: dict[str, list[tuple[str, str, int]]] = {}
    for path, sha, image_id in files:
        sidecar = sidecar_for(path)
        if sidecar:
            groups.setdefault(sidecar, []).append((path, sha, image_id))
    posts: dict[tuple[str, str], dict[str, Any]] = {}
    summary = SidecarSummary()
    with db.conn:
        for sidecar, images in sorted(groups.items()):
            name = text(sidecar)
            data = read_sidecar(sidecar)
            post: Post | None = None
            export = "sidecars"
            if not isinstance(data, str):
                try:
                    export, post = _as_post(data)
                except RowError as e:
                    data = str(e)
                except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError) as e:
                    data = f"cannot be read as a post ({type(e).__name__}: {e})"[:300]
            if isinstance(data, str):
                record_bad(db, name, 0, data)
                summary.unreadable += 1
                on_skip(sidecar, data)
                continue
            db.execute("DELETE FROM export_errors WHERE export = ?", [name])
            key = (export, post.post_id if post and post.post_id and export != "sidecars" else name)
            entry = posts.setdefault(key, {"post": post, "data": data, "images": [], "row": len(posts) + 1})
            entry["images"].extend(images)
        for (export, post_id), entry in posts.items():
            data = entry["data"]
            keep = list(data) if all_columns else list(columns or ())
            links = sorted(dict.fromkeys((path, sha, image_id) for path, sha, image_id in entry["images"]))
            pid = upsert_post(db, export, post_id, entry["row"], {k: typed(column_value(data, k)) for k in keep},
                              known, entry["post"], len(links))
            replace_links(db, pid, [(None, sha, image_id) for _, sha, image_id in links])
            summary.posts += 1
            summary.links += len(links)
    return summary
