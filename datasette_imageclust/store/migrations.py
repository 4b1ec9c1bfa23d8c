"""The migrations of every component, in the order they apply.

Each is registered with ``schema.migration`` when this module is imported; the ``store``
package imports it, so the registry is full before anything under ``store/`` runs
(``schema`` itself does not import it: that would be an import circle). A migration only
ever adds, and one that has shipped is never edited: a change is a new migration at the
end of its component (and a new fixture: tests/make_schema_fixtures.py).
"""
from __future__ import annotations

import sqlite_utils

from .schema import migration, script

# --- core: what `imageclust load` writes --------------------------------------


@migration("core")
def _core_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        CREATE TABLE imageclust_meta (
            key TEXT PRIMARY KEY,
            value TEXT
        );
        -- Each embedding model ever used; images.model_id says which made a vector.
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,          -- Hub repo id, or absolute path of a local directory
            dimensions INTEGER NOT NULL, -- length of the image vector
            sha256 TEXT NOT NULL,        -- of vision_model.onnx
            preprocess TEXT,             -- preprocessor_config.json as used (JSON)
            created TEXT NOT NULL,
            UNIQUE (sha256)
        );
        -- One row per distinct content (sha256 of the bytes).
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            bytes INTEGER NOT NULL,
            format TEXT,                 -- JPEG, PNG, WEBP, GIF, TIFF, BMP, HEIF, AVIF
            mode TEXT,                   -- Pillow mode of the file (RGB, CMYK, I;16, P, ...)
            width INTEGER,               -- after EXIF orientation
            height INTEGER,
            frames INTEGER,              -- > 1 for animations (the first frame is used)
            phash TEXT,                  -- 64-bit perceptual hash (imagehash.phash), 16 hex digits
            dhash TEXT,                  -- 64-bit difference hash, 16 hex digits
            taken TEXT,                  -- EXIF DateTimeOriginal, ISO 8601
            camera TEXT,                 -- EXIF Make + Model
            latitude REAL,
            longitude REAL,
            exif TEXT,                   -- selected EXIF tags (JSON)
            model_id INTEGER REFERENCES models(id),  -- NULL until embedded
            created TEXT NOT NULL
        );
        -- One row per file on disk; several files may share one image (exact duplicates).
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,   -- absolute path
            root TEXT NOT NULL,          -- the folder given to `load`
            relpath TEXT NOT NULL,       -- path relative to root
            image_id INTEGER NOT NULL REFERENCES images(id),
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            added TEXT NOT NULL          -- when this path was first loaded
        );
        CREATE INDEX files_image_id ON files(image_id);
        CREATE INDEX images_phash ON images(phash);
        CREATE INDEX images_model_id ON images(model_id);
        CREATE TABLE thumbnails (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            format TEXT NOT NULL,        -- webp or jpeg
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            data BLOB NOT NULL
        );
        -- Files that could not be loaded; retried on the next run.
        CREATE TABLE errors (
            path TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            size INTEGER,
            mtime REAL,
            time TEXT NOT NULL
        );
        """
    )


@migration("core")
def _core_v2(db: sqlite_utils.Database) -> None:
    # File names that are not valid UTF-8 (see paths.py): `path` becomes readable text
    # and the exact bytes go in `path_bytes` (NULL for UTF-8 names), unique on both
    # together. SQLite cannot drop a UNIQUE constraint, hence the rebuilds; nothing
    # references files or errors, and no trigger names them.
    script(db, """
        CREATE TABLE files_v2 (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,          -- absolute path as text (bytes that are not UTF-8 as \\xNN)
            root TEXT NOT NULL,          -- the folder given to `load`
            relpath TEXT NOT NULL,       -- path relative to root
            image_id INTEGER NOT NULL REFERENCES images(id),
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            added TEXT NOT NULL,         -- when this path was first loaded
            path_bytes BLOB              -- the exact bytes of a path that is not valid UTF-8, else NULL
        );
        INSERT INTO files_v2 (id, path, root, relpath, image_id, size, mtime, added)
            SELECT id, path, root, relpath, image_id, size, mtime, added FROM files;
        DROP TABLE files;
        ALTER TABLE files_v2 RENAME TO files;
        CREATE UNIQUE INDEX files_path ON files(coalesce(path_bytes, path));
        CREATE INDEX files_image_id ON files(image_id);
        -- Files (and folders) that could not be loaded; retried on the next run.
        CREATE TABLE errors_v2 (
            path TEXT NOT NULL,
            reason TEXT NOT NULL,
            size INTEGER,
            mtime REAL,
            time TEXT NOT NULL,          -- when this error was first seen (kept while it stays the same)
            path_bytes BLOB
        );
        INSERT INTO errors_v2 (path, reason, size, mtime, time)
            SELECT path, reason, size, mtime, time FROM errors;
        DROP TABLE errors;
        ALTER TABLE errors_v2 RENAME TO errors;
        CREATE UNIQUE INDEX errors_path ON errors(coalesce(path_bytes, path));
        """)


# --- clusters: what `imageclust cluster` and `imageclust duplicates` write -------


@migration("clusters")
def _clusters_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        -- A named clustering run; several live side by side, one is the default.
        CREATE TABLE cluster_runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            method TEXT NOT NULL,            -- ward, kmeans, hdbscan
            params TEXT NOT NULL,            -- JSON of every parameter used
            model_id INTEGER REFERENCES models(id),
            is_default INTEGER NOT NULL DEFAULT 0,
            representatives INTEGER NOT NULL DEFAULT 3,  -- members with rank <= this
            n_images INTEGER NOT NULL,
            n_clusters INTEGER NOT NULL,     -- real clusters (not the unclustered group)
            created TEXT NOT NULL,
            seconds REAL
        );
        -- ids are kept across re-runs of a name where clusters match, so labels survive.
        CREATE TABLE clusters (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES cluster_runs(id),
            kind TEXT NOT NULL DEFAULT 'cluster',  -- 'cluster', or 'unclustered' (noise/leftovers)
            label TEXT,                      -- the best label (user > ollama > clip > terms)
            size INTEGER NOT NULL,
            cohesion REAL,                   -- mean cosine similarity of members to the centroid
            centroid BLOB                    -- float32, L2-normalised
        );
        CREATE INDEX clusters_run_id ON clusters(run_id);
        CREATE TABLE cluster_members (
            run_id INTEGER NOT NULL REFERENCES cluster_runs(id),
            cluster_id INTEGER NOT NULL REFERENCES clusters(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            distance REAL NOT NULL,          -- cosine distance to the cluster centroid
            rank INTEGER NOT NULL,           -- 1 = nearest the centroid
            PRIMARY KEY (run_id, image_id)
        );
        CREATE INDEX cluster_members_cluster ON cluster_members(cluster_id, rank);
        CREATE INDEX cluster_members_image ON cluster_members(image_id);
        -- Every label of a cluster, by source: user, ollama, clip, terms.
        CREATE TABLE cluster_labels (
            cluster_id INTEGER NOT NULL REFERENCES clusters(id),
            source TEXT NOT NULL,
            label TEXT NOT NULL,
            detail TEXT,                     -- JSON: scores, terms, the LLM's phrase
            created TEXT NOT NULL,
            PRIMARY KEY (cluster_id, source)
        );
        -- Near-duplicate groups (exact duplicates are files sharing an image_id).
        CREATE TABLE duplicate_groups (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT 'near',
            size INTEGER NOT NULL
        );
        CREATE TABLE duplicate_members (
            group_id INTEGER NOT NULL REFERENCES duplicate_groups(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            PRIMARY KEY (group_id, image_id)
        );
        CREATE INDEX duplicate_members_image ON duplicate_members(image_id);
        """
    )


@migration("clusters")
def _clusters_v2(db: sqlite_utils.Database) -> None:
    script(db, """
        -- Text vectors of the zero-shot vocabulary, per model (by vision_model.onnx sha256).
        CREATE TABLE vocabulary_vectors (
            model_sha256 TEXT NOT NULL,
            term TEXT NOT NULL,
            prompt TEXT NOT NULL,            -- the text actually embedded
            vector BLOB NOT NULL,            -- float32, L2-normalised
            PRIMARY KEY (model_sha256, term)
        );
        -- The evidence behind near-duplicate groups: every accepted pair.
        CREATE TABLE duplicate_pairs (
            group_id INTEGER NOT NULL REFERENCES duplicate_groups(id),
            image_a INTEGER NOT NULL REFERENCES images(id),
            image_b INTEGER NOT NULL REFERENCES images(id),
            phash_distance INTEGER,          -- Hamming distance of the 64-bit pHashes
            dhash_distance INTEGER,
            similarity REAL,                 -- cosine similarity of the image vectors
            rank INTEGER,                    -- b's rank among a's vector neighbours (1 = nearest)
            PRIMARY KEY (image_a, image_b)
        );
        CREATE INDEX duplicate_pairs_group ON duplicate_pairs(group_id);
        """
    )


@migration("clusters")
def _clusters_v3(db: sqlite_utils.Database) -> None:
    # An image removed by `load --prune` (or a changed file) leaves its clusters and
    # duplicate groups first, whoever deletes it; otherwise the foreign keys refuse.
    script(db, """
        CREATE TRIGGER clusters_forget_image BEFORE DELETE ON images
        BEGIN
            UPDATE clusters SET size = size - 1
             WHERE id IN (SELECT cluster_id FROM cluster_members WHERE image_id = old.id);
            DELETE FROM cluster_members WHERE image_id = old.id;
            DELETE FROM duplicate_pairs WHERE image_a = old.id OR image_b = old.id;
            UPDATE duplicate_groups SET size = size - 1
             WHERE id IN (SELECT group_id FROM duplicate_members WHERE image_id = old.id);
            DELETE FROM duplicate_members WHERE image_id = old.id;
        END;
        """
    )


# --- map: what `imageclust layout` writes ---------------------------------------


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


# --- search: what `imageclust index` writes (analysis/search.py) ---------------------


@migration("search")
def _search_v1(db: sqlite_utils.Database) -> None:
    # The binary vec0 table (image_bits) is created by search.build_index: its width
    # depends on the model's dimensions.
    script(db, """
        -- The one similarity index of this database (id is always 1).
        CREATE TABLE search_index (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            model_id INTEGER,                -- models.id whose vectors were indexed
            dimensions INTEGER NOT NULL,
            n_vectors INTEGER NOT NULL,      -- rows of image_vectors when built (staleness check)
            mean BLOB NOT NULL,              -- float32 mean vector subtracted before sign-quantising
            built TEXT NOT NULL,
            seconds REAL
        );
        -- float32 copies of the vectors in a plain table: exact rescoring of the bit
        -- prefilter's candidates needs fast lookups by id, which vec0 point reads are not.
        CREATE TABLE search_vectors (
            image_id INTEGER PRIMARY KEY,
            embedding BLOB NOT NULL
        );
        """
    )


@migration("search")
def _search_v2(db: sqlite_utils.Database) -> None:
    # The bits again, in a few large BLOBs: a server process reads them all in one go
    # (a million rows of image_bits take seconds to read through vec0).
    script(db, """
        CREATE TABLE search_bits (
            chunk INTEGER PRIMARY KEY,
            ids BLOB NOT NULL,               -- int64 little-endian image ids
            bits BLOB NOT NULL               -- the rows of image_bits, packed, in the same order
        );
        """
    )
