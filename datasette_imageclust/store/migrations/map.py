"""Component ``map``: what `imageclust layout` writes."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("map")
def _map_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        CREATE TABLE layouts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            method TEXT NOT NULL,            -- umap, or the scikit-learn fallback used
            params TEXT NOT NULL,            -- JSON
            run_id INTEGER REFERENCES cluster_runs(id),  -- clustering used to keep groups together
            is_default INTEGER NOT NULL DEFAULT 0,
            n_images INTEGER NOT NULL,
            created TEXT NOT NULL
        );
        CREATE TABLE layout_points (
            layout_id INTEGER NOT NULL REFERENCES layouts(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            x REAL NOT NULL,
            y REAL NOT NULL,
            PRIMARY KEY (layout_id, image_id)
        );
        -- Sprite sheets of small thumbnails for the map, one set per level of detail.
        CREATE TABLE atlas_sheets (
            id INTEGER PRIMARY KEY,
            level INTEGER NOT NULL,          -- cell size in px (e.g. 32, 128)
            sheet INTEGER NOT NULL,          -- number within the level
            format TEXT NOT NULL,            -- webp or jpeg
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (level, sheet)
        );
        CREATE TABLE atlas_cells (
            image_id INTEGER NOT NULL REFERENCES images(id),
            level INTEGER NOT NULL,
            sheet INTEGER NOT NULL,
            cell INTEGER NOT NULL,           -- index within the sheet, row-major
            PRIMARY KEY (image_id, level)
        );
        """
    )


@migration("map")
def _map_v2(db: sqlite_utils.Database) -> None:
    # As clusters v3: an image removed by `load --prune` (or a changed file) leaves the
    # maps first, otherwise the foreign keys of layout_points and atlas_cells refuse.
    script(db, """
        CREATE TRIGGER map_forget_image BEFORE DELETE ON images
        BEGIN
            UPDATE layouts SET n_images = n_images - 1
             WHERE id IN (SELECT layout_id FROM layout_points WHERE image_id = old.id);
            DELETE FROM layout_points WHERE image_id = old.id;
            DELETE FROM atlas_cells WHERE image_id = old.id;
        END;
        """
    )


@migration("map")
def _map_v3(db: sqlite_utils.Database) -> None:
    # Atlas rows carry their build id, so a rebuild is written beside the current atlas
    # and switched to in one transaction, and the previous build stays readable for map
    # pages opened before the switch (analysis/atlas.py). SQLite cannot change
    # a UNIQUE / PRIMARY KEY: the tables are rebuilt (the trigger naming one goes and comes
    # back). Statement by statement in one explicit transaction (executescript would commit).
    if not db.conn.in_transaction:
        db.execute("BEGIN")
    build = db.execute("SELECT value FROM imageclust_meta WHERE key = 'atlas_build'").fetchone()
    build = build[0] if build and build[0] else ""
    trigger = db.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'map_forget_image'"
                         ).fetchone()
    for sql in [
        "DROP TRIGGER IF EXISTS map_forget_image",
        """CREATE TABLE atlas_sheets_v3 (
            id INTEGER PRIMARY KEY,
            build TEXT NOT NULL,             -- imageclust_meta.atlas_build of its atlas
            level INTEGER NOT NULL,          -- cell size in px (e.g. 32, 128)
            sheet INTEGER NOT NULL,          -- number within the level
            format TEXT NOT NULL,            -- webp or jpeg
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            data BLOB NOT NULL,
            UNIQUE (build, level, sheet)
        )""",
        """CREATE TABLE atlas_cells_v3 (
            image_id INTEGER NOT NULL REFERENCES images(id),
            build TEXT NOT NULL,
            level INTEGER NOT NULL,
            sheet INTEGER NOT NULL,
            cell INTEGER NOT NULL,           -- index within the sheet, row-major
            PRIMARY KEY (build, level, image_id)
        )""",
        "INSERT INTO atlas_sheets_v3 (id, build, level, sheet, format, width, height, data) "
        "SELECT id, :build, level, sheet, format, width, height, data FROM atlas_sheets",
        "INSERT INTO atlas_cells_v3 (image_id, build, level, sheet, cell) "
        "SELECT image_id, :build, level, sheet, cell FROM atlas_cells",
        "DROP TABLE atlas_sheets",
        "DROP TABLE atlas_cells",
        "ALTER TABLE atlas_sheets_v3 RENAME TO atlas_sheets",
        "ALTER TABLE atlas_cells_v3 RENAME TO atlas_cells",
        "CREATE INDEX atlas_cells_image ON atlas_cells(image_id)",
    ]:
        db.execute(sql, {"build": build} if ":build" in sql else [])
    if trigger:
        db.execute(trigger[0])
