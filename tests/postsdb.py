"""A database of images downloaded from posts, written directly (no loader): synthetic
images (``synthdb.make_db``, clustered in two groups) whose files are named as a
download cache names them (``02/027737ab….jpg`` under ``/data/posts-cache``), the posts
tables (schema v2, normalised columns) and one post or more per image."""
from __future__ import annotations

import json

from synthdb import make_db

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.schema import migrate

CACHE = "/data/posts-cache"
LONG_ID = "C4xYzAbCdEfGh1"  # 14 characters: shown as its first 12 and an ellipsis
AUTHORS = ("alice_wonder", "Bob_Builder")  # one per cluster (Bob's name in mixed case)


def clusters(path: str) -> dict[int, list[int]]:
    """cluster id -> its image ids (the default run's clusters)."""
    conn = dbmod.connect(path, readonly=True, create=False)
    try:
        out: dict[int, list[int]] = {}
        for cid, iid in conn.execute("SELECT m.cluster_id, m.image_id FROM cluster_members m JOIN clusters c "
                                     "ON c.id = m.cluster_id WHERE c.kind = 'cluster' ORDER BY 1, m.rank"):
            out.setdefault(cid, []).append(iid)
        return out
    finally:
        dbmod.close(conn)


def make_posts_db(path: str, n: int = 12, *, dates=None, texts=None, extra_columns: dict | None = None) -> str:
    """``n`` images in 2 clusters, each image in one post of its cluster's author (image 1
    also in an earlier post by carol_singer, whose id is :data:`LONG_ID`). ``dates``: the
    ``created`` of each image's post, by image id (default: 2024-03-05 + id days);
    ``texts``: cluster index (0, 1) -> (text, hashtags). ``extra_columns``: kept export
    columns added to ``posts`` -> value per cluster index."""
    make_db(path, n, clusters=2, seed=3)
    db = dbmod.connect(path)
    with db.conn:
        db.execute(f"UPDATE files SET root = '{CACHE}', relpath = substr((SELECT sha256 FROM images i "
                   "WHERE i.id = files.image_id), 1, 2) || '/' || (SELECT sha256 FROM images i "
                   "WHERE i.id = files.image_id) || '.jpg'")
        db.execute(f"UPDATE files SET path = '{CACHE}/' || relpath")
    migrate(db, "posts")
    groups = list(clusters(path).values())
    assert len(groups) == 2 and all(groups), groups
    texts = texts or {0: ("Marching downtown with banners @Bob_Builder", ["protestsign", "cats"]),
                      1: ("Golden sunset over the harbour, thanks alice_wonder", ["sunsetbeach"])}
    extra_columns = extra_columns or {}
    with db.conn:
        for name in extra_columns:
            db.execute(f'ALTER TABLE posts ADD COLUMN "{name}"')
        cols = "".join(f', "{c}"' for c in extra_columns)
        marks = ", ?" * len(extra_columns)
        for k, ids in enumerate(groups):
            text, tags = texts[k]
            for iid in ids:
                created = (dates or {}).get(iid) or f"2024-03-{5 + iid:02d}T10:00:00Z"
                pid = db.execute(
                    "INSERT INTO posts (export, post_id, row, loaded, platform, permalink, author, created, text, "
                    f"hashtags, image_count{cols}) VALUES ('export.ndjson', ?, ?, 'now', 'instagram', ?, ?, ?, ?, ?, 1"
                    f"{marks})",
                    [f"P{iid}", iid, f"https://twitter.com/{AUTHORS[k]}/status/{iid}" if k == 0
                     else f"https://www.instagram.com/p/P{iid}/", AUTHORS[k], created, text, json.dumps(tags),
                     *(v[k] for v in extra_columns.values())]).lastrowid
                db.execute("INSERT INTO post_images (post, position, url, sha256, image_id) VALUES (?, 1, ?, "
                           "(SELECT sha256 FROM images WHERE id = ?), ?)",
                           [pid, f"https://cdn.example/{iid}.jpg", iid, iid])
        pid = db.execute(
            "INSERT INTO posts (export, post_id, row, loaded, platform, permalink, author, created, text, hashtags, "
            "image_count) VALUES ('export.ndjson', ?, 99, 'now', 'instagram', ?, 'carol_singer', "
            "'2024-03-01T08:00:00Z', 'first!', '[]', 1)", [LONG_ID, f"https://www.instagram.com/p/{LONG_ID}/"]).lastrowid
        db.execute("INSERT INTO post_images (post, position, url, sha256, image_id) VALUES (?, 1, "
                   "'https://cdn.example/1.jpg', (SELECT sha256 FROM images WHERE id = 1), 1)", [pid])
    dbmod.close(db)
    return path
