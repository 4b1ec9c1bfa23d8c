"""A synthetic database with posts for the export tests (tests/synthdb.py: real SQLite,
thumbnails and vectors) plus, written here with plain SQL: five posts with hashtags and
authors (one named like a spreadsheet formula), a second clustering run with a name that is
not an attribute name, centroids, CLIP tags (one with a space) and a hostile cluster label.
The expected values of the tests are written out from these rows."""
from __future__ import annotations

import numpy as np

import synthdb
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store.schema import migrate, now

HYPER = '=HYPERLINK("x")'
EVIL_LABEL = "=cmd|' /C calc'!A0"

# post: (post_id, platform, permalink, author, created, hashtags JSON, [(position, image_id, url)])
POSTS = [
    ("C4xYz1111111AAA", "instagram", "https://www.instagram.com/p/C4xYz1111111AAA/", HYPER, "2024-03-02T10:11:12Z",
     '["cats", "polarbear"]', [(1, 1, "https://cdn.example/p1-a.jpg"), (2, 2, "https://cdn.example/p1-b.jpg")]),
    ("B2", "instagram", "https://www.instagram.com/p/B2/", "alice", "2024-03-01T08:00:00Z", '["cats"]',
     [(1, 1, "https://cdn.example/p2-a.jpg"), (2, 1, "https://cdn.example/p2-again.jpg")]),
    ("B3", "instagram", "https://www.instagram.com/p/B3/", "bob", "2024-03-05T00:00:00Z", '["cats", "cats", "dogs"]',
     [(1, 1, "https://cdn.example/p3-a.jpg"), (2, 3, "https://cdn.example/p3-b.jpg")]),
    ("B4", "instagram", "https://www.instagram.com/p/B4/", "+carol", "2024-03-06T00:00:00Z", None,
     [(1, 2, "https://cdn.example/p4-a.jpg")]),
    ("B5", "instagram", "https://www.instagram.com/p/B5/", "alice", "2024-03-10T00:00:00Z", "not json",
     [(1, 1, "https://cdn.example/p5-a.jpg")]),
]
N = 12


def make_posts_db(path: str) -> str:
    synthdb.make_db(path, N, clusters=3, dims=16, thumb_px=32, distinct_thumbs=6, seed=3)
    db = dbmod.connect(path)
    label = np.array([r[0] % 2 for r in db.execute("SELECT id FROM images ORDER BY id").fetchall()])
    rid = synthdb.add_run(db, label, name="k 2 größe")
    migrate(db, "text")
    migrate(db, "posts")
    stamp = now()
    with db.conn:
        db.execute("UPDATE cluster_runs SET is_default = 0 WHERE id = ?", [rid])
        # centroids for --network clusters: the mean of the members' vectors (written here)
        from datasette_imageclust.store.collection import ImageCollection

        ids, x = ImageCollection(db).vectors()
        row = {int(i): n for n, i in enumerate(ids)}
        for cid, in db.execute("SELECT id FROM clusters").fetchall():
            members = [row[m] for m, in db.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ?", [cid])]
            c = x[members].mean(axis=0)
            db.execute("UPDATE clusters SET centroid = ? WHERE id = ?",
                       [(c / np.linalg.norm(c)).astype(np.float32).tobytes(), cid])
        # a hostile label on image 1's cluster in the default run
        cid = db.execute("SELECT m.cluster_id FROM cluster_members m JOIN cluster_runs r ON r.id = m.run_id "
                         "WHERE r.is_default AND m.image_id = 1").fetchone()[0]
        db.execute("UPDATE clusters SET label = ? WHERE id = ?", [EVIL_LABEL, cid])
        db.execute("UPDATE cluster_labels SET label = ? WHERE cluster_id = ?", [EVIL_LABEL, cid])
        for iid, tag, score, rank in ((1, "polar bear", 0.9, 1), (1, "ice", 0.5, 2), (2, "polar bear", 0.7, 1)):
            db.execute("INSERT INTO image_tags (image_id, source, tag, score, rank, created) "
                       "VALUES (?, 'clip', ?, ?, ?, ?)", [iid, tag, score, rank, stamp])
        for row_n, (post_id, platform, link, author, created, tags, images) in enumerate(POSTS, 1):
            pid = db.execute("INSERT INTO posts (export, post_id, row, loaded, platform, permalink, author, created, "
                             "text, hashtags, image_count) VALUES ('ig.ndjson', ?, ?, ?, ?, ?, ?, ?, 'caption', ?, ?)",
                             [post_id, row_n, stamp, platform, link, author, created, tags, len(images)]).lastrowid
            for position, iid, url in images:
                db.execute("INSERT INTO post_images (post, position, url, sha256, image_id) VALUES (?, ?, ?, ?, ?)",
                           [pid, position, url, "0" * 64, iid])
    dbmod.finish(db)
    db.conn.close()
    return path
