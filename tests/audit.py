"""Which files this process opens or creates, from Python's audit events (PEP 578):
proof that code did not read or write a file, without replacing anything it calls.

An audit hook cannot be removed, so one is installed per process and switched on only
inside ``with watching() as w:``. It sees every thread (the loader's decode pool too).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CREATE_EVENTS = ("os.mkdir", "tempfile.mkstemp", "tempfile.mkdtemp", "os.rename", "shutil.copyfile")


class Watch:
    def __init__(self) -> None:
        self.active = False
        self.opened: list[tuple[str, object, object]] = []  # (path, mode, flags)
        self.created: list[tuple] = []
        self.lock = threading.Lock()

    def hook(self, event: str, args: tuple) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None))[:3]
            if path is not None and not isinstance(path, int):
                with self.lock:
                    self.opened.append((os.fsdecode(path), mode, flags))
        elif event in CREATE_EVENTS:
            with self.lock:
                self.created.append((event, *args))

    def writes(self) -> list[tuple]:
        """Files opened for writing, and files or folders created."""
        w = [(p, m) for p, m, f in self.opened
             if (isinstance(m, str) and any(c in m for c in "wax+")) or (isinstance(f, int) and f & WRITE_FLAGS)]
        return w + self.created

    def paths(self) -> set[str]:
        return {os.path.realpath(p) for p, _, _ in self.opened}


_WATCH: Watch | None = None


@contextlib.contextmanager
def watching() -> Iterator[Watch]:
    global _WATCH
    if _WATCH is None:
        _WATCH = Watch()
        sys.addaudithook(_WATCH.hook)
    w = _WATCH
    with w.lock:
        w.opened, w.created = [], []
    w.active = True
    try:
        yield w
    finally:
        w.active = False
