"""Component ``core``: what `imageclust load` writes."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


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


@migration("core")
def _core_v3(db: sqlite_utils.Database) -> None:
    # Which variant of the model's ONNX files made the vectors (load --precision); rows
    # from before it are fp32, the only variant there was.
    script(db, """
        ALTER TABLE models ADD COLUMN precision TEXT NOT NULL DEFAULT 'fp32'; -- fp32, fp16 or int8
        """)
