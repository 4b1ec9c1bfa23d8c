"""What a database file looks like on disk, to prove nothing wrote to it: its bytes'
sha256, its mtime and size, and which SQLite companion files (-wal, -shm, -journal) exist."""
from __future__ import annotations

import hashlib
import os


def file_state(path: str | os.PathLike) -> dict:
    path = os.fspath(path)
    st = os.stat(path)
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return {"sha256": sha, "mtime_ns": st.st_mtime_ns, "size": st.st_size,
            "companions": sorted(s for s in ("-wal", "-shm", "-journal") if os.path.exists(path + s))}
