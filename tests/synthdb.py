"""Synthetic imageclust databases of any size, written through the library's schema.

Real SQLite files with real WebP thumbnails and real vectors in the vec0 table, but no
model inference: a 10,000- or 100,000-image map database in seconds. Images come in
``clusters`` groups (vectors around a centre, thumbnails in the group's colour), and
optionally with a default clustering run matching those groups.
"""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
from PIL import Image, ImageDraw

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import vectors
from datasette_imageclust.store.schema import migrate, now


def _thumb(rng: np.random.Generator, colour: tuple[int, int, int], px: int) -> bytes:
    im = Image.new("RGB", (px, px), colour)
    d = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = rng.integers(0, px, 2)
        r = int(rng.integers(px // 8, px // 3))
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=c)
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=70)
    return buf.getvalue()


def make_db(path: str, n: int, *, clusters: int = 20, dims: int = 32, thumb_px: int = 64,
            distinct_thumbs: int = 400, with_run: bool = True, seed: int = 0,
            label_prefix: str = "group") -> str:
    """Write a database of ``n`` images to ``path``; returns the path."""
    rng = np.random.default_rng(seed)
    db = dbmod.connect(path)
    migrate(db, "core")
    stamp = now()
    with db.conn:
        mid = db.execute(
            "INSERT INTO models (name, dimensions, sha256, preprocess, created) VALUES (?, ?, ?, ?, ?)",
            ["synthetic", dims, hashlib.sha256(b"synthetic%d" % dims).hexdigest(), "{}", stamp],
        ).lastrowid
        db.execute("INSERT OR REPLACE INTO imageclust_meta (key, value) VALUES ('model_id', ?)", [str(mid)])
        label = rng.integers(0, clusters, n)
        centres = rng.normal(size=(clusters, dims))
        vecs = (centres[label] + 0.35 * rng.normal(size=(n, dims))).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        colours = [tuple(int(v) for v in rng.integers(30, 230, 3)) for _ in range(clusters)]
        per = max(1, distinct_thumbs // clusters)
        pool = [[_thumb(rng, colours[c], thumb_px) for _ in range(per)] for c in range(clusters)]
        images, files, thumbs = [], [], []
        for i in range(n):
            iid = i + 1
            c = int(label[i])
            data = pool[c][i % per]
            images.append((iid, hashlib.sha256(b"img%d" % iid).hexdigest(), len(data), "WEBP", "RGB",
                           thumb_px, thumb_px, 1, mid, stamp))
            rel = f"g{c:03d}/img{iid:06d}.webp"
            files.append((iid, f"/synthetic/{rel}", "/synthetic", rel, iid, len(data), 0.0, stamp))
            thumbs.append((iid, "webp", thumb_px, thumb_px, data))
        db.conn.executemany(
            "INSERT INTO images (id, sha256, bytes, format, mode, width, height, frames, model_id, created) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", images)
        db.conn.executemany(
            "INSERT INTO files (id, path, root, relpath, image_id, size, mtime, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            files)
        db.conn.executemany(
            "INSERT INTO thumbnails (image_id, format, width, height, data) VALUES (?, ?, ?, ?, ?)", thumbs)
        vectors.ensure_table(db, dims)
        vectors.put(db, list(range(1, n + 1)), vecs)
    if with_run:
        add_run(db, label, label_prefix=label_prefix)
    dbmod.finish(db)
    db.conn.close()
    return path


def add_run(db, label: np.ndarray, *, name: str = "default", label_prefix: str = "group") -> int:
    """A default clustering run with one cluster per distinct label (label -1: unclustered)."""
    migrate(db, "clusters")
    stamp = now()
    with db.conn:
        rid = db.execute(
            "INSERT INTO cluster_runs (name, method, params, is_default, n_images, n_clusters, created) "
            "VALUES (?, 'synthetic', '{}', 1, ?, ?, ?)", [name, len(label), len(set(label.tolist()) - {-1}), stamp],
        ).lastrowid
        members = []
        for c in sorted(set(label.tolist())):
            idx = np.flatnonzero(label == c)
            kind = "unclustered" if c < 0 else "cluster"
            text = "unclustered" if c < 0 else f"{label_prefix} {c}"
            cid = db.execute("INSERT INTO clusters (run_id, kind, label, size, cohesion) VALUES (?, ?, ?, ?, 0.5)",
                             [rid, kind, text, len(idx)]).lastrowid
            db.execute("INSERT INTO cluster_labels (cluster_id, source, label, detail, created) VALUES (?, 'terms', ?, ?, ?)",
                       [cid, text, json.dumps({}), stamp])
            members += [(rid, cid, int(i) + 1, 0.1, r + 1) for r, i in enumerate(idx)]
        db.conn.executemany(
            "INSERT INTO cluster_members (run_id, cluster_id, image_id, distance, rank) VALUES (?, ?, ?, ?, ?)",
            members)
    return rid


def make_map_db(path: str, n: int, landmarks: int = 600, **kw) -> str:
    """``make_db`` plus ``imageclust layout`` (layout and atlas) through the library."""
    from datasette_imageclust.pipeline import build_map

    make_db(path, n, **kw)
    db = dbmod.connect(path)
    build_map(db, landmarks=min(landmarks, max(50, n)))
    dbmod.close(db)
    return path
