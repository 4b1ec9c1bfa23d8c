"""Every subcommand against every kind of unusable database file: one line naming the
file and what to do, exit status 1, and the file exactly as it was (no -wal/-shm)."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.cli import cli
from imagefactory import photo_folder

# open read-only: a read-only file is fine for them
READERS = {"info", "similar", "ops", "evaluate list", "evaluate report", "evaluate export", "export",
           "publish-copy"}


def commands(db: str, folder: str, model: str) -> dict[str, list[str]]:
    return {
        "load": ["load", db, folder, "--model", model],
        "info": ["info", db],
        "cluster": ["cluster", db, "--labels", "terms", "--no-layout"],
        "clusters": ["clusters", db],
        "label": ["label", db, "1", "birds"],
        "duplicates": ["duplicates", db],
        "layout": ["layout", db],
        "index": ["index", db],
        "similar": ["similar", db, "--image", "1"],
        # (the database is refused before the server is contacted: none listens on port 9)
        "describe": ["describe", db, "--model", "llava", "--url", "http://127.0.0.1:9"],
        "tag": ["tag", db],
        "move": ["move", db, "--to", "unclustered", "1"],
        "merge": ["merge", db, "1", "2"],
        "split": ["split", db, "1", "2"],
        "note": ["note", db, "1", "a note"],
        "review": ["review", db, "1"],
        "undo": ["undo", db],
        "ops": ["ops", db],
        # (the `made` database has task "t"; its answers file and export go beside the photos)
        "evaluate create": ["evaluate", "create", db, "--name", "t2", "--set-size", "1"],
        "evaluate list": ["evaluate", "list", db],
        "evaluate report": ["evaluate", "report", db, "t"],
        "evaluate export": ["evaluate", "export", db, "t", "-o", str(Path(folder).parent / "out" / "sets.csv")],
        "evaluate import": ["evaluate", "import", db, "t", str(Path(folder).parent / "answers.csv")],
        # (written to a fresh folder of its own: a reader, its output is not beside the database)
        "export": ["export", db, "--format", "csv", "-o", os.path.join(tempfile.mkdtemp(prefix="ic-export-"), "o.csv")],
        # (the source is only read; the copy goes beside the photos)
        "publish-copy": ["publish-copy", db, str(Path(folder).parent / "out" / "public.db"), "--force"],
    }


def test_every_subcommand_is_covered():
    """Every command that opens a database (`formats` opens none)."""
    leaves = {f"{name} {sub}" if isinstance(c, click.Group) else name: (c.commands[sub] if sub else c)
              for name, c in cli.commands.items() for sub in (getattr(c, "commands", None) or [None])}
    names = {n for n, c in leaves.items() if any(p.name in ("database", "source") for p in c.params)}
    assert set(leaves) - names == {"formats"}
    assert names == set(commands("d", "f", "m"))


@pytest.fixture(scope="module")
def made(tmp_path_factory, stand_in_model):
    """A small real database (loaded and clustered) and its folder."""
    d = tmp_path_factory.mktemp("dberr")
    photo_folder(d / "p", 6)
    db = str(d / "good.db")
    (d / "out").mkdir()
    (d / "answers.csv").write_text("coder,set,cluster\nann,1,\n")
    for args in (["load", db, str(d / "p"), "--model", stand_in_model],
                 ["cluster", db, "--labels", "terms", "--min-size", "1", "--no-layout"],
                 ["cluster", db, "--name", "two", "--method", "kmeans", "--clusters", "2", "--min-size", "1",
                  "--labels", "terms", "--no-layout", "--no-default"],
                 ["evaluate", "create", db, "--run", "two", "--name", "t", "--set-size", "1"]):
        r = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    return db, str(d / "p")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def assert_refused(name: str, exit_code: int, stderr: str, shown: str, *words: str) -> None:
    assert exit_code == 1, (name, stderr)
    assert "Traceback" not in stderr, (name, stderr)
    (line,) = stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: ") and shown in line, (name, line)
    for w in words:
        assert w in line, (name, w, line)


def run_all(db: str, folder: str, model: str, nothing_changes: Path, *words: str, shown: str | None = None) -> None:
    before = snapshot(nothing_changes)
    for name, args in commands(db, folder, model).items():
        r = CliRunner().invoke(cli, args)
        assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (name, r.exception)
        assert_refused(name, r.exit_code, r.stderr, shown or db, *words)
        assert snapshot(nothing_changes) == before, name  # no byte written, no -wal/-shm/-journal left


def test_database_in_a_missing_folder(tmp_path, made, stand_in_model):
    db = str(tmp_path / "nowhere" / "x.db")
    run_all(db, made[1], stand_in_model, tmp_path)
    assert not (tmp_path / "nowhere").exists()
    r = CliRunner().invoke(cli, ["load", db, made[1], "--model", stand_in_model])
    assert "folder" in r.stderr and "does not exist" in r.stderr


def test_a_file_that_is_not_sqlite(tmp_path, made, stand_in_model):
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 50)
    run_all(str(db), made[1], stand_in_model, tmp_path, "not a SQLite database")


def test_a_database_of_a_newer_schema(tmp_path, made, stand_in_model):
    db = tmp_path / "new.db"
    shutil.copy(made[0], db)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE schema_versions SET version = 999 WHERE component = 'core'")
    c.close()
    run_all(str(db), made[1], stand_in_model, tmp_path, "newer", "upgrade")


HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
for line in sys.stdin:
    c.execute(line)
    print("ok", flush=True)
"""


class Holder:
    """Another process with the database open, running the SQL it is sent (a lock taken
    in this process would not be a lock: POSIX locks are per process)."""

    def __init__(self, path: Path) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

    def run(self, sql: str) -> None:
        self.p.stdin.write(sql + "\n")
        self.p.stdin.flush()
        assert self.p.stdout.readline().strip() == "ok"

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait(timeout=30)


def test_a_locked_database(tmp_path, made, stand_in_model, monkeypatch):
    db = tmp_path / "locked.db"
    shutil.copy(made[0], db)
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT", 0.2)
    holder = Holder(db)
    holder.run("BEGIN EXCLUSIVE")  # another process in the middle of writing
    try:
        run_all(str(db), made[1], stand_in_model, tmp_path, "locked", "run this again")
    finally:
        holder.close()
    r = CliRunner().invoke(cli, ["clusters", str(db)])  # free again: works
    assert r.exit_code == 0, r.stderr


def test_a_lock_met_while_working_is_translated_too(tmp_path, made, monkeypatch):
    """The lock taken after the database was opened (here: once `label` has found its run,
    just before it writes)."""
    from datasette_imageclust.analysis import curation

    db = tmp_path / "later.db"
    shutil.copy(made[0], db)
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT", 0.2)
    holder = Holder(db)
    real = curation.find_run
    locked = []

    def lock_then_write(*args, **kwargs):
        if not locked:
            holder.run("BEGIN IMMEDIATE")
            locked.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(curation, "find_run", lock_then_write)
    try:
        r = CliRunner().invoke(cli, ["label", str(db), "1", "birds"])
    finally:
        holder.close()
    assert_refused("label", r.exit_code, r.stderr, str(db), "locked")


# --- read-only files and folders: a real permission check needs a process without ----
# root's override (CAP_DAC_OVERRIDE), so these run in a child process.

DRIVER = """
import json, sys
from click.testing import CliRunner
from datasette_imageclust.cli import cli
import os
probe = sys.argv[2]
try:  # can this process write the read-only file, or create a file in the read-only folder?
    if sys.argv[3] == "file":
        open(probe, "r+b").close()
    else:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.remove(probe)
    print(json.dumps({"can_write": True}))
    sys.exit(0)
except OSError:
    pass
out = {}
for name, args in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(cli, args)
    crashed = r.exception is not None and not isinstance(r.exception, SystemExit)
    out[name] = [r.exit_code, r.stderr, repr(r.exception) if crashed else None]
print(json.dumps({"can_write": False, "results": out}))
"""


def _drop_root_override() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_unprivileged(cmds: dict, probe: str, what: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HUB_OFFLINE"] = "1"
    try:
        r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cmds), probe, what], capture_output=True,
                           text=True, env=env, timeout=600,
                           preexec_fn=_drop_root_override if os.geteuid() == 0 else None)
    except subprocess.SubprocessError as e:
        pytest.skip(f"cannot drop root's permission override in this container ({e})")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    if out["can_write"]:
        pytest.skip("this process can write read-only files (no way to drop the override here)")
    return out["results"]


@pytest.mark.parametrize("what", ["file", "folder"])
def test_read_only(tmp_path, made, stand_in_model, what):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "photos.db"
    shutil.copy(made[0], db)
    before = snapshot(folder)
    if what == "file":
        os.chmod(db, 0o444)
    else:
        os.chmod(folder, 0o555)
    try:
        probe = str(db) if what == "file" else str(folder / "probe")
        results = run_unprivileged(commands(str(db), made[1], stand_in_model), probe, what)
    finally:
        os.chmod(folder, 0o755)
        os.chmod(db, 0o644)
    assert snapshot(folder) == before
    for name, (code, stderr, crash) in results.items():
        assert crash is None, (name, crash)
        if name in READERS:
            assert code == 0, (name, stderr)
        elif what == "file":
            assert_refused(name, code, stderr, str(db), "is read-only", "chmod")
        else:
            assert_refused(name, code, stderr, str(db), f"cannot write in the folder {folder}")
