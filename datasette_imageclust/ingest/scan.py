"""Finding image files under folders."""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from .decode import EXTENSIONS


@dataclass(frozen=True)
class FoundFile:
    root: str  # absolute folder given by the user
    path: str  # absolute path (an OS string: see paths.py before storing or printing it)
    relpath: str
    size: int
    mtime: float


OnSkip = Callable[[str, str], None]


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is (these are never opened for reading:
    a FIFO would block the scan, a device could be endless)."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


class NotRegularFile(OSError):
    """The path is not a regular file: ``kind`` says what it is (see :func:`file_kind`)."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


def read_regular(path: str) -> bytes:
    """The bytes of the regular file ``path``. It is opened without blocking and checked
    before reading, so a FIFO or device (met, or swapped in since a scan) never hangs the
    reader: raises :class:`NotRegularFile` for those, OSError if it cannot be read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        kind = file_kind(os.fstat(fh.fileno()).st_mode)
        if kind:
            raise NotRegularFile(kind)
        return fh.read()


def _unreachable(path: str, err: OSError) -> str:
    """Why stat() through ``path`` failed, for an entry that exists in its folder."""
    if os.path.islink(path):
        if err.errno == errno.ENOENT:
            return "dangling symlink: its target does not exist"
        if err.errno == errno.ELOOP:
            return "symlink loop"
        return f"cannot follow symlink: {err.strerror or err}"
    return f"cannot stat: {err.strerror or err}"


def scan(
    roots: Iterable[str],
    *,
    recursive: bool = True,
    hidden: bool = False,
    on_skip: OnSkip | None = None,
) -> Iterator[FoundFile]:
    """Yield image files (by extension) under ``roots`` in a stable, sorted order.

    Symlinked files are followed; symlinked directories too, but each directory is
    entered once (by device and inode), so cycles cannot loop. Hidden names (leading
    dot) and names without an image extension are passed over in silence; every other
    entry that cannot be used (an unreadable folder, a dangling symlink, a FIFO or
    device with an image name) goes to ``on_skip`` with the reason.
    """
    report = on_skip or (lambda p, r: None)
    for root in roots:
        root = os.path.abspath(os.path.expanduser(root))
        try:
            st = os.stat(root)
        except OSError as e:
            report(root, _unreachable(root, e))
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(root, root, recursive, hidden, set(), report)
        elif stat.S_ISREG(st.st_mode):  # a file named on the command line, whatever its name
            yield FoundFile(os.path.dirname(root), root, os.path.basename(root), st.st_size, st.st_mtime)
        else:
            report(root, f"not a regular file: {file_kind(st.st_mode)}")


def _walk(root: str, folder: str, recursive: bool, hidden: bool, seen: set[tuple[int, int]],
          report: OnSkip) -> Iterator[FoundFile]:
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            return
        seen.add(key)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        report(folder, f"cannot read folder: {e.strerror or e}")
        return
    subdirs = []
    for e in entries:
        if not hidden and e.name.startswith("."):
            continue
        try:
            if e.is_dir():  # follows symlinks; False for a dangling one
                subdirs.append(e.path)
                continue
        except OSError as err:
            report(e.path, _unreachable(e.path, err))
            continue
        if os.path.splitext(e.name)[1].lower() not in EXTENSIONS:
            continue
        try:
            st = e.stat()  # follows symlinks; never opens the file
        except OSError as err:
            report(e.path, _unreachable(e.path, err))
            continue
        kind = file_kind(st.st_mode)
        if kind:
            report(e.path, f"not a regular file: {kind}")
            continue
        yield FoundFile(root, e.path, os.path.relpath(e.path, root), st.st_size, st.st_mtime)
    if recursive:
        for d in subdirs:
            yield from _walk(root, d, recursive, hidden, seen, report)
