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
