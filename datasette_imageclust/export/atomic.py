"""Writing an export so that no half-written file ever has the final name.

The export is written under a temporary name beside the output (same folder, so the
rename is atomic) and renamed onto it only when complete; on any error (a full disk, a
file size limit, Ctrl-C) the temporary file or folder is removed. An existing output is
refused unless ``force``; with it the old output is replaced only once the new one is
complete.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from ..store.paths import display
from .selection import ExportError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_output(out: Path, *, force: bool = False) -> None:
    """:class:`ExportError` unless ``out`` can be written (its folder exists; it does not,
    or ``force``)."""
    name = display(os.fspath(out))
    if (out.exists() or out.is_symlink()) and not force:
        raise ExportError(f"{name} already exists: choose another name or add --force to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ExportError(f"cannot write {name}: the folder {display(os.fspath(parent))} does not exist")


@contextlib.contextmanager
def writing(out: Path, *, force: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` (a new empty folder if ``directory``); rename
    it onto ``out`` when the block succeeds; remove it on error. An OSError while writing
    (e.g. no space left) becomes one :class:`ExportError` line."""
    out = Path(out)
    check_output(out, force=force)
    # The suffix stays last: a writer that picks its kind by the extension (figure) sees it.
    tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}.part{out.suffix}")
    try:
        if directory:
            tmp.mkdir()
        yield tmp
        if out.exists() or out.is_symlink():
            # Replace only now, when the new output is complete; a folder cannot be
            # renamed over, so the old one steps aside first.
            if out.is_dir() and not out.is_symlink():
                old = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.old")
                out.rename(old)
                tmp.rename(out)
                _remove(old)
                return
            if directory:
                out.unlink()
        os.replace(tmp, out)
    except OSError as e:
        _remove(tmp)
        raise ExportError(f"cannot write {display(os.fspath(out))}: {e.strerror or e}; nothing was written") from e
    except BaseException:
        _remove(tmp)
        raise
