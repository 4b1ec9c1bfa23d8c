"""Finding image files under folders."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from .imaging import EXTENSIONS


@dataclass(frozen=True)
class FoundFile:
    root: str  # absolute folder given by the user
    path: str  # absolute path
    relpath: str
    size: int
    mtime: float


def scan(
    roots: Iterable[str],
    *,
    recursive: bool = True,
    hidden: bool = False,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[FoundFile]:
    """Yield image files (by extension) under ``roots`` in a stable, sorted order.

    Symlinked files are followed; symlinked directories too, but each directory is
    entered once (by device and inode), so cycles cannot loop. Hidden names (leading
    dot) are skipped unless ``hidden``. Unreadable directories go to ``on_error``.
    """
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        if os.path.isfile(root):
            st = os.stat(root)
            parent = os.path.dirname(root)
            yield FoundFile(parent, root, os.path.basename(root), st.st_size, st.st_mtime)
            continue
        seen: set[tuple[int, int]] = set()
        yield from _walk(root, root, recursive, hidden, seen, on_error)


def _walk(root, folder, recursive, hidden, seen, on_error) -> Iterator[FoundFile]:
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        if on_error:
            on_error(folder, f"cannot read folder: {e.strerror or e}")
        return
    subdirs = []
    for e in entries:
        if not hidden and e.name.startswith("."):
            continue
        try:
            if e.is_dir():  # follows symlinks
                subdirs.append(e.path)
                continue
            if not e.is_file() or os.path.splitext(e.name)[1].lower() not in EXTENSIONS:
                continue
            st = e.stat()
        except OSError as err:  # dangling symlink, permission race
            if on_error:
                on_error(e.path, f"cannot stat: {err.strerror or err}")
            continue
        yield FoundFile(root, e.path, os.path.relpath(e.path, root), st.st_size, st.st_mtime)
    if recursive:
        for d in subdirs:
            yield from _walk(root, d, recursive, hidden, seen, on_error)
