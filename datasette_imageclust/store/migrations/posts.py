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


@migration("posts")
def _posts_v2(db: sqlite_utils.Database) -> None:
    # The normalised columns every recognised export fills (ingest/formats/base.py
    # POST_FIELDS). A kept column of an older load that has one of these names is
    # renamed with a "_" after it (as kept columns named like posts' own always were);
    # the new columns are then filled from what the older rule guessed
    # (store/postcolumns.py), so an old database keeps its timelines and facets.
    from ..postcolumns import NORMALISED, hashtags_cte, legacy_columns, quote

    guessed = legacy_columns(db.conn)
    cols = [r[1] for r in db.execute("PRAGMA table_info(posts)").fetchall()]
    taken = {c.lower() for c in cols}
    renamed: dict[str, str] = {}
    for c in cols:
        if c.lower() in NORMALISED:
            new = c + "_"
            while new.lower() in taken:
                new += "_"
            db.execute(f"ALTER TABLE posts RENAME COLUMN {quote(c)} TO {quote(new)}")
            taken.add(new.lower())
            renamed[c] = new
    script(db, """
        ALTER TABLE posts ADD COLUMN platform TEXT;     -- instagram, tiktok, x, ... (NULL: unknown)
        ALTER TABLE posts ADD COLUMN permalink TEXT;    -- the post's own page
        ALTER TABLE posts ADD COLUMN author TEXT;       -- user name, without '@'
        ALTER TABLE posts ADD COLUMN created TEXT;      -- ISO 8601 UTC: 2024-03-02T10:11:12Z
        ALTER TABLE posts ADD COLUMN text TEXT;         -- caption, tweet, description
        ALTER TABLE posts ADD COLUMN hashtags TEXT;     -- JSON list, without '#', lower case
        ALTER TABLE posts ADD COLUMN image_count INTEGER;  -- the post's image links
        CREATE INDEX posts_created ON posts(created);
        CREATE INDEX posts_author ON posts(author);
        """)
    db.execute("UPDATE posts SET image_count = (SELECT count(*) FROM post_images WHERE post = posts.id)")
    date, author, tags = (renamed.get(c, c) if c else None for c in (guessed.date, guessed.author, guessed.hashtags))
    if date:
        v = quote(date)
        db.execute(f"UPDATE posts SET created = strftime('%Y-%m-%dT%H:%M:%SZ', {v}) "
                   f"WHERE typeof({v}) = 'text' AND {v} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'")
    if author:
        v = quote(author)
        db.execute(f"UPDATE posts SET author = ltrim(CAST({v} AS TEXT), '@') WHERE {v} IS NOT NULL AND {v} != ''")
    if tags:
        db.execute(f"WITH {hashtags_cte(tags)} UPDATE posts SET hashtags = "
                   "(SELECT json_group_array(tag) FROM (SELECT DISTINCT tag FROM post_tags WHERE post = posts.id ORDER BY tag)) "
                   f"WHERE {quote(tags)} IS NOT NULL AND {quote(tags)} != ''")
