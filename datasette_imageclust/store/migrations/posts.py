"""Component ``posts``: what `imageclust load --from EXPORT` writes (posts of a platform
export, their image URLs, and every download attempt)."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("posts")
def _posts_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        -- One row per post (row) of an export. The columns kept with --columns or
        -- --all-columns are added to this table as they are met (no declared type, so a
        -- number stays a number: dates as ISO 8601 text, numbers, JSON lists as JSON text).
        CREATE TABLE posts (
            id INTEGER PRIMARY KEY,
            export TEXT NOT NULL,            -- the export's file name, or 'sidecars'
            post_id TEXT NOT NULL,           -- the --id-column value, else the row number; a sidecar's path
            row INTEGER NOT NULL,            -- 1 = the first post of the export
            loaded TEXT NOT NULL,
            UNIQUE (export, post_id)
        );
        -- Every image link of every post, in the order of the row; many posts may link the
        -- same image (and the same URL).
        CREATE TABLE post_images (
            post INTEGER NOT NULL REFERENCES posts(id),
            position INTEGER NOT NULL,       -- 1 = the first URL of the post
            url TEXT,                        -- NULL for an image of a folder load (--sidecars)
            sha256 TEXT,                     -- of the downloaded file (NULL: not downloaded)
            image_id INTEGER,                -- images.id once loaded (no foreign key: --prune)
            PRIMARY KEY (post, position)
        );
        CREATE INDEX post_images_url ON post_images(url);
        CREATE INDEX post_images_image ON post_images(image_id);
        -- One row per URL ever tried: a URL with a row is never fetched again (failures
        -- only with --retry-failed).
        CREATE TABLE downloads (
            url TEXT PRIMARY KEY,
            status TEXT NOT NULL,            -- ok or failed
            http_status INTEGER,             -- of the last response, if any
            sha256 TEXT,                     -- the cached file is <cache>/<sha256[:2]>/<sha256>.<ext>
            bytes INTEGER,
            content_type TEXT,               -- as the server said (the content decides)
            fetched TEXT NOT NULL,
            error TEXT                       -- why it failed
        );
        CREATE INDEX downloads_sha256 ON downloads(sha256);
        -- Rows of an export (or sidecars) that could not be read (skipped, loading nothing).
        CREATE TABLE export_errors (
            export TEXT NOT NULL,            -- the export's file name, or a sidecar's path
            row INTEGER NOT NULL,            -- line (NDJSON) or record (CSV) number; 0 for a sidecar
            reason TEXT NOT NULL,
            time TEXT NOT NULL,
            PRIMARY KEY (export, row)
        );
        """
    )
