"""File names in any encoding: real files whose names are Latin-1, CP437, contain a
newline, or sit in a folder whose name is not UTF-8, from `load` to the pages."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import paths
from datasette_imageclust.cli import cli
from datasette_imageclust.pipeline import load
from imagefactory import jpeg_bytes, photo

# name (bytes, relative to the folder) -> seed of its picture
NAMES = {
    b"caf\xe9.jpg": 1,                   # Latin-1 e-acute
    b"\x80ltere \x84hre.jpg": 2,         # CP437 (old DOS/ZIP archives): Cedilla-C, a-umlaut
    b"line\nbreak.jpg": 3,               # valid UTF-8 with a newline
    b"caf\\xe9.jpg": 4,                  # valid UTF-8, a backslash: the same text as the first one
    b"d\xf6ssier/inner.jpg": 5,          # a folder whose name is Latin-1
    b"plain.jpg": 6,
}
BAD = b"bro\xffken.jpg"                  # not an image, and a name that is not UTF-8


def fs(folder: Path, name: bytes) -> str:
    """The OS string for folder/name, as os.scandir would hand it back."""
    return os.fsdecode(os.fsencode(str(folder)) + b"/" + name)


def make_folder(folder: Path) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, seed in NAMES.items():
        p = fs(folder, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(jpeg_bytes(photo(seed=seed)))
        made[p] = seed
    with open(fs(folder, BAD), "wb") as f:
        f.write(b"not an image at all")
    return made


def dump(db_path: str) -> dict:
    d = dbmod.connect(db_path, readonly=True)
    try:
        return {t: d.execute(f"SELECT * FROM [{t}] ORDER BY 1, 2").fetchall()
                for t in ("files", "errors", "images", "thumbnails")}
    finally:
        d.conn.close()


def file_rows(db_path: str) -> list[tuple]:
    d = dbmod.connect(db_path, readonly=True)
    try:
        return d.execute("SELECT id, path, path_bytes, root, relpath FROM files ORDER BY id").fetchall()
    finally:
        d.conn.close()


def test_any_bytes_load_rerun_rename_and_prune(tmp_path, stand_in_model):
    made = make_folder(tmp_path / "p")
    db = str(tmp_path / "x.db")
    skipped = []
    s = load(db, [str(tmp_path / "p")], stand_in_model, on_skip=lambda p, r: skipped.append(p))
    assert (s.scanned, s.new, s.errors) == (len(NAMES) + 1, len(NAMES), 1)
    assert skipped == [fs(tmp_path / "p", BAD)]
    rows = file_rows(db)
    on_disk = {paths.os_path(path, raw): (path, raw, relpath) for _, path, raw, _, relpath in rows}
    assert set(on_disk) == set(made)  # every stored path maps back to the exact file
    for p, (text, raw, relpath) in on_disk.items():
        assert os.path.isfile(p)
        text.encode("utf-8")  # storable, readable text
        if raw is None:  # a UTF-8 name is plain text, as before
            assert text == p
        else:
            assert raw == os.fsencode(p) and "\\x" in text
    texts = {os.fsencode(p)[len(os.fsencode(str(tmp_path / "p"))) + 1:]: v[0] for p, v in on_disk.items()}
    assert texts[b"caf\xe9.jpg"].endswith("/caf\\xe9.jpg")
    assert texts[b"caf\\xe9.jpg"] == texts[b"caf\xe9.jpg"]  # same text, two files: the bytes tell them apart
    assert texts[b"d\xf6ssier/inner.jpg"].endswith("/d\\xf6ssier/inner.jpg")
    assert texts[b"line\nbreak.jpg"].endswith("/line\nbreak.jpg")
    relpaths = {v[2] for v in on_disk.values()}
    assert "d\\xf6ssier/inner.jpg" in relpaths and "\\x80ltere \\x84hre.jpg" in relpaths
    d = dbmod.connect(db, readonly=True)
    (epath, eraw, reason), = d.execute("SELECT path, path_bytes, reason FROM errors").fetchall()
    d.conn.close()
    assert eraw == os.fsencode(fs(tmp_path / "p", BAD)) and epath.endswith("/bro\\xffken.jpg")
    assert "not a recognised image" in reason

    # A second run reads nothing again and writes nothing new.
    before = dump(db)
    s = load(db, [str(tmp_path / "p")], stand_in_model)
    assert (s.new, s.unchanged, s.duplicates, s.errors, s.gone) == (0, len(NAMES), 0, 1, 0)
    assert dump(db) == before

    # A rename (to another non-UTF-8 name) is a move: found by hash, the old path gone.
    old = fs(tmp_path / "p", b"caf\xe9.jpg")
    new = fs(tmp_path / "p", b"caf\xe8.jpg")
    os.rename(old, new)
    s = load(db, [str(tmp_path / "p")], stand_in_model)
    assert (s.new, s.duplicates, s.gone, s.pruned) == (0, 1, 1, 0)
    s = load(db, [str(tmp_path / "p")], stand_in_model, prune=True)
    assert (s.gone, s.pruned) == (1, 1)
    stored = {paths.os_path(path, raw) for _, path, raw, _, _ in file_rows(db)}
    assert new in stored and old not in stored and len(stored) == len(NAMES)
    # The broken file removed: its error row goes too.
    os.remove(fs(tmp_path / "p", BAD))
    load(db, [str(tmp_path / "p")], stand_in_model)
    assert dump(db)["errors"] == []


def test_cli_output_is_readable_one_line_per_entry(tmp_path, stand_in_model):
    made = make_folder(tmp_path / "p")
    for p in (list(made)[0], list(made)[2]):  # exact copies under odd names, for `duplicates`
        shutil.copy(p, p[:-4] + os.fsdecode(b"-copie\xa0.jpg"))
    db = str(tmp_path / "x.db")
    r = CliRunner().invoke(cli, ["load", db, str(tmp_path / "p"), "--model", stand_in_model], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    skip_lines = [line for line in r.stderr.splitlines() if line.startswith("skipping")]
    assert skip_lines == [f"skipping {tmp_path}/p/bro\\xffken.jpg: not a recognised image (unknown or corrupt header)"]
    r = CliRunner().invoke(cli, ["cluster", db, "--labels", "terms", "--min-size", "1", "--no-layout",
                                 "--representatives", "20"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    r = CliRunner().invoke(cli, ["clusters", db, "--json"], catch_exceptions=False)
    members = [p for line in r.stdout.splitlines() for p in json.loads(line)["members"]]
    stored = sorted(path for _, path, _, _, _ in file_rows(db))
    assert sorted(members) == stored and len(stored) == len(NAMES) + 2
    assert any(p.endswith("/caf\\xe9.jpg") for p in members) and any("\n" in p for p in members)
    r = CliRunner().invoke(cli, ["clusters", db], catch_exceptions=False)
    header, *lines = r.stdout.splitlines()
    assert header.startswith("id ") and "line\\nbreak" in r.stdout  # a newline never splits a row
    assert lines and all(re.match(r"^\d+ +\d+  ", line) for line in lines)
    r = CliRunner().invoke(cli, ["duplicates", db, "--json"], catch_exceptions=False)
    groups = [json.loads(line) for line in r.stdout.splitlines()]
    exact = [g["paths"] for g in groups if g["kind"] == "exact"]
    assert len(exact) == 2 and all("\\xa0" in g[0] or "\\xa0" in g[1] for g in exact)
    r = CliRunner().invoke(cli, ["duplicates", db, "--stored"], catch_exceptions=False)
    assert len(r.stdout.splitlines()) == 2 and all(line.startswith("exact") for line in r.stdout.splitlines())
    assert "line\\nbreak" in r.stdout
    r = CliRunner().invoke(cli, ["similar", db, "--image", "1", "--json"], catch_exceptions=False)
    assert {h["path"] for h in json.loads(r.stdout)} <= set(stored)


@pytest.mark.asyncio
async def test_pages_show_text_and_serve_the_exact_file(tmp_path, stand_in_model):
    from test_plugin_pages import make_ds

    made = make_folder(tmp_path / "p")
    db = str(tmp_path / "photos.db")
    load(db, [str(tmp_path / "p")], stand_in_model)
    ds = make_ds([db], plugin={"originals_root": str(tmp_path / "p")})
    seen = set()
    for fid, path, raw, _, relpath in file_rows(db):
        d = (await ds.client.get(f"/photos/-/imageclust/image/{fid}.json")).json()
        (f,) = [f for f in d["files"] if f["id"] == fid]
        assert f["path"] == path and f["relpath"] == relpath and "path_bytes" not in f
        page = await ds.client.get(f"/photos/-/imageclust/image/{fid}")
        assert page.status_code == 200 and relpath.replace("\n", " ").split(" ")[0] in page.text
        r = await ds.client.get(f["original_url"])
        assert r.status_code == 200
        disk = paths.os_path(path, raw)
        with open(disk, "rb") as fh:
            assert r.content == fh.read()
        seen.add(disk)
    assert seen == set(made)
    csv = await ds.client.get("/photos/files.csv?_stream=on&_size=max")
    assert csv.status_code == 200 and "caf\\xe9.jpg" in csv.text


def test_core_v2_migrates_a_database_of_the_previous_schema(tmp_path):
    """A database as core v1 (clusters v3, map v2) left it: files and errors keep their
    rows and ids; uniqueness now on the exact bytes; foreign keys and the clusters/map
    triggers still work."""
    from datasette_imageclust.store.schema import MIGRATIONS, migrate, now, versions

    from datasette_imageclust.web import pagedata

    path = str(tmp_path / "old.db")
    d = dbmod.connect(path)
    old = {"core": 1, "clusters": 3, "map": 2}
    with d.conn:
        d.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL, "
                  "applied TEXT NOT NULL)")
        for component, n in old.items():
            for step in MIGRATIONS[component][:n]:
                step(d)
            d.execute("INSERT INTO schema_versions VALUES (?, ?, ?)", [component, n, now()])
        for i in (1, 2):
            d.execute("INSERT INTO images (id, sha256, bytes, created) VALUES (?, ?, 10, 'x')", [i, f"s{i}"])
        d.execute("INSERT INTO files (id, path, root, relpath, image_id, size, mtime, added) VALUES "
                  "(7, '/p/a.jpg', '/p', 'a.jpg', 1, 10, 1.5, 'x'), (9, '/p/b.jpg', '/p', 'b.jpg', 2, 10, 1.5, 'x')")
        d.execute("INSERT INTO errors (path, reason, size, mtime, time) VALUES ('/p/c.jpg', 'bad', 1, 2.0, 't')")
        d.execute("INSERT INTO cluster_runs (id, name, method, params, n_images, n_clusters, created) "
                  "VALUES (1, 'r', 'ward', '{}', 2, 1, 'x')")
        d.execute("INSERT INTO clusters (id, run_id, size) VALUES (1, 1, 2)")
        d.execute("INSERT INTO cluster_members VALUES (1, 1, 1, 0.1, 1), (1, 1, 2, 0.2, 2)")
        d.execute("INSERT INTO layouts (id, name, method, params, n_images, created) VALUES (1, 'l', 'tsne', '{}', 2, 'x')")
        d.execute("INSERT INTO layout_points VALUES (1, 1, 0, 0), (1, 2, 1, 1)")
    # The plugin never migrates: it serves originals from a database of the old schema too.
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.jpg").write_bytes(b"jpeg")
    with d.conn:
        d.execute("UPDATE files SET path = ? WHERE id = 7", [str(tmp_path / "p" / "a.jpg")])
    assert pagedata.original_file(d.conn, 7, str(tmp_path / "p"))["real"] == str(tmp_path / "p" / "a.jpg")
    with d.conn:
        d.execute("UPDATE files SET path = '/p/a.jpg' WHERE id = 7")
    migrate(d, "core")
    assert versions(d)["core"] == len(MIGRATIONS["core"]) >= 2
    assert d.execute("SELECT id, path, path_bytes, relpath FROM files ORDER BY id").fetchall() == [
        (7, "/p/a.jpg", None, "a.jpg"), (9, "/p/b.jpg", None, "b.jpg")]
    assert d.execute("SELECT path, path_bytes, reason, time FROM errors").fetchall() == [("/p/c.jpg", None, "bad", "t")]
    assert d.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert d.execute("PRAGMA foreign_key_check").fetchall() == []
    with d.conn:  # the same text with other bytes is another file; the same bytes are not
        d.execute("INSERT INTO files (path, path_bytes, root, relpath, image_id, size, mtime, added) "
                  "VALUES ('/p/a.jpg', X'2F702F61E92E6A7067', '/p', 'a.jpg', 1, 1, 1, 'x')")
    with pytest.raises(dbmod.sqlite3.IntegrityError):
        d.execute("INSERT INTO files (path, root, relpath, image_id, size, mtime, added) "
                  "VALUES ('/p/a.jpg', '/p', 'a.jpg', 1, 1, 1, 'x')")
    d.conn.rollback()
    with pytest.raises(dbmod.sqlite3.IntegrityError):  # files.image_id still a foreign key
        d.execute("INSERT INTO files (path, root, relpath, image_id, size, mtime, added) "
                  "VALUES ('/p/z.jpg', '/p', 'z.jpg', 99, 1, 1, 'x')")
    d.conn.rollback()
    with d.conn:  # the triggers of the clusters and map components still fire
        d.execute("DELETE FROM files WHERE image_id = 2")
        d.execute("DELETE FROM images WHERE id = 2")
    assert d.execute("SELECT size FROM clusters").fetchone()[0] == 1
    assert d.execute("SELECT count(*) FROM layout_points").fetchone()[0] == 1
    d.conn.close()


def test_a_database_whose_own_name_is_not_utf8(tmp_path, stand_in_model):
    """The database file may have an odd name too (and ?, #, % that mean something in
    SQLite URIs, which read-only opening uses)."""
    make_folder(tmp_path / "p")
    db = fs(tmp_path, b"ph\xe9tos ?#%.db")
    for args in (["load", db, str(tmp_path / "p"), "--model", stand_in_model], ["info", db, "--json"],
                 ["cluster", db, "--labels", "terms", "--min-size", "1", "--no-layout"],
                 ["similar", db, "--image", "1"], ["index", db], ["duplicates", db]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0 and r.exception is None, (args[0], r.stderr, r.exception)
    assert json.loads(CliRunner().invoke(cli, ["info", db, "--json"]).stdout)["path"] == paths.text(db)
    assert sorted(os.listdir(os.fsencode(str(tmp_path)))) == [b"p", b"ph\xe9tos ?#%.db"]
