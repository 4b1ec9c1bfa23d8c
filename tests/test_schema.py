"""Schema versions and migrations."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.cli import cli
from datasette_imageclust.store.schema import MIGRATIONS, SchemaError, migrate, versions
from imagefactory import photo_folder


def test_migrate_is_idempotent_and_versioned(tmp_path):
    d = dbmod.connect(tmp_path / "x.db")
    assert versions(d) == {}
    n = migrate(d, "core")
    assert n == len(MIGRATIONS["core"]) and versions(d) == {"core": n}
    tables = set(d.table_names())
    assert {"images", "files", "thumbnails", "errors", "models", "imageclust_meta"} <= tables
    assert migrate(d, "core") == n and set(d.table_names()) == tables
    # indexes for the lookups the plugin makes
    assert {"files_image_id", "images_phash"} <= {i.name for t in ("files", "images") for i in d[t].indexes}


def test_newer_database_is_a_clear_error(tmp_path, stand_in_model):
    d = dbmod.connect(tmp_path / "x.db")
    migrate(d, "core")
    d.execute("update schema_versions set version = 999 where component = 'core'")
    d.conn.commit()
    d.conn.close()
    with pytest.raises(SchemaError, match="newer"):
        migrate(dbmod.connect(tmp_path / "x.db"), "core")
    photo_folder(tmp_path / "p", 1)
    r = CliRunner().invoke(cli, ["load", str(tmp_path / "x.db"), str(tmp_path / "p"), "--model", stand_in_model])
    assert r.exit_code == 1 and "upgrade the package" in r.stderr


def test_errors_of_deleted_files_are_dropped(tmp_path, stand_in_model):
    from datasette_imageclust.pipeline import load

    photo_folder(tmp_path / "p", 1)
    bad = tmp_path / "p" / "bad.jpg"
    bad.write_bytes(b"junk")
    db = str(tmp_path / "x.db")
    assert load(db, [str(tmp_path / "p")], stand_in_model).errors == 1
    bad.unlink()
    assert load(db, [str(tmp_path / "p")], stand_in_model).errors == 0
    d = dbmod.connect(db, readonly=True)
    assert d.execute("select count(*) from errors").fetchone()[0] == 0


def test_importing_schema_alone_registers_every_migration(tmp_path):
    """The migrations live in store/migrations.py, registered when the store package is
    imported: a fresh process that imports only store.schema (as a script or a benchmark
    does) must still migrate every component."""
    import subprocess
    import sys

    code = ("import sqlite3, sys; from datasette_imageclust.store.schema import MIGRATIONS, migrate; "
            "import sqlite_utils; d = sqlite_utils.Database(sqlite3.connect(sys.argv[1])); "
            "print({c: migrate(d, c) for c in ('core', 'clusters', 'map', 'search')}); "
            "print(sorted(d.table_names()))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.db")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    counts, tables = r.stdout.splitlines()
    assert counts == str({c: len(MIGRATIONS[c]) for c in ("core", "clusters", "map", "search")})
    assert all(len(MIGRATIONS[c]) >= 2 for c in ("core", "clusters", "map", "search"))
    for t in ("images", "cluster_runs", "layouts", "atlas_sheets", "search_index", "search_bits"):
        assert f"'{t}'" in tables
