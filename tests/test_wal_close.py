"""The close path: a command leaves the database as one file (rollback journal, no
-wal/-shm) unless another process keeps it open, and then says so."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading

from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.cli import cli

READER = """
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
c.execute("SELECT count(*) FROM sqlite_master").fetchone()
print("open", flush=True)
sys.stdin.readline()
c.close()
print("closed", flush=True)
"""


class Reader:
    """Another process reading the database (as Datasette does), until told to stop."""

    def __init__(self, path: str) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", READER, path], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "open"

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.stdin.write("\n")
            self.p.stdin.flush()
            assert self.p.stdout.readline().strip() == "closed"
            self.p.wait(timeout=30)


def journal(path: str) -> str:
    with sqlite3.connect(path) as c:
        mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    c.close()
    return mode


def leftovers(path: str) -> list[str]:
    return [s for s in ("-wal", "-shm") if os.path.exists(path + s)]


def test_a_passing_reader_is_waited_for(tmp_path):
    """A reader open when the command finishes but gone a moment later: without the wait
    the database stayed in WAL and kept an empty -wal file after the reader closed."""
    path = str(tmp_path / "x.db")
    db = dbmod.connect(path)
    with db.conn:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    reader = Reader(path)
    threading.Timer(0.15, reader.close).start()
    assert dbmod.close(db) is True
    reader.p.wait(timeout=30)
    assert journal(path) == "delete" and leftovers(path) == []


def test_a_reader_that_stays_is_reported_and_the_next_command_converts(tmp_path, tux_db):
    path = str(tmp_path / "x.db")
    shutil.copy(tux_db, path)
    writer = dbmod.connect(path)  # in WAL, as while `datasette x.db` serves what `load` writes
    reader = Reader(path)
    writer.conn.close()
    try:
        r = CliRunner().invoke(cli, ["clusters", path, "--runs"], catch_exceptions=False)
        assert r.exit_code == 0 and "stays in WAL mode" in r.stderr
    finally:
        reader.close()
    r = CliRunner().invoke(cli, ["clusters", path, "--runs"], catch_exceptions=False)
    assert r.exit_code == 0 and "WAL" not in r.stderr
    assert journal(path) == "delete" and leftovers(path) == []


def test_an_open_transaction_does_not_keep_wal(tmp_path):
    """A write left uncommitted (a bug, or a command stopped mid-way) is rolled back, as
    closing would, and no longer keeps the database in WAL mode."""
    path = str(tmp_path / "x.db")
    db = dbmod.connect(path)
    with db.conn:
        db.execute("CREATE TABLE t (x)")
    db.conn.execute("INSERT INTO t VALUES (1)")  # no commit
    assert db.conn.in_transaction
    assert dbmod.close(db) is True
    assert journal(path) == "delete" and leftovers(path) == []
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    c.close()
