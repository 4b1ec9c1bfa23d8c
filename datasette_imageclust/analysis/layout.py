"""2-D map coordinates for every image, packed so thumbnails never overlap, stored as a
named layout (``layouts``, ``layout_points``).

The algorithm is in two modules: ``embed2d`` (the vectors to 2-D: UMAP, or t-SNE on
landmarks) and ``packing`` (each cluster a disk of lattice cells, disks pushed apart).
Here: which images and clusters, and the database.

Coordinates are in *cell units*: one thumbnail is a 1 x 1 square centred on its point.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sqlite_utils

from ..store.collection import ImageCollection, NotFound
from ..store.schema import migrate, now
from .embed2d import LayoutError, embed_2d
from .packing import group_points, pack

Status = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


# --- the database ------------------------------------------------------------------


@dataclass
class LayoutSummary:
    layout_id: int
    name: str
    method: str
    n_images: int
    run: str | None
    groups: int
    overlaps: int
    seconds: dict

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def compute_layout(db: sqlite_utils.Database, *, name: str = "default", method: str = "auto",
                   run: str | None = None, seed: int = 0, landmarks: int = 1000, gap: float = 1.0,
                   make_default: bool | None = None, on_status: Status = _quiet) -> LayoutSummary:
    """Compute and store layout ``name`` (replacing one of that name) for every image
    with a vector from the current model."""
    if not name or len(name) > 100:
        raise LayoutError("a layout name must have 1 to 100 characters")
    if landmarks < 50:
        raise LayoutError("--landmarks must be at least 50")
    if not 0.25 <= gap <= 20:
        raise LayoutError("--gap must be between 0.25 and 20 cells")
    migrate(db, "clusters")  # layouts.run_id references cluster_runs: it must exist
    migrate(db, "map")
    t0 = time.perf_counter()
    coll = ImageCollection(db)
    try:
        r = coll.run(run)  # before the slow part: a bad --run fails at once
    except NotFound as e:
        raise LayoutError(str(e)) from e
    ids, vecs = coll.vectors()
    if not len(ids):
        raise LayoutError("no image vectors in this database: run `imageclust load` first")
    t_read = time.perf_counter()
    from threadpoolctl import threadpool_limits

    # One thread for OpenMP/BLAS: scikit-learn's t-SNE and k-means spin-wait their
    # threads, and on a busy 2-core machine that made them 10-40x slower (measured:
    # t-SNE of 300 points 0.5 s with one thread, 21 s with two under load).
    with threadpool_limits(1):
        xy, used = embed_2d(vecs, method, seed=seed, landmarks=landmarks, on_status=on_status)
    t_embed = time.perf_counter()
    cluster = np.full(len(ids), -1, np.int64)
    if r:
        pos = {int(i): k for k, i in enumerate(ids)}
        for image_id, cluster_id in db.execute(
            "SELECT m.image_id, m.cluster_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
            "WHERE m.run_id = ? AND c.kind = 'cluster'", [r["id"]]
        ):
            k = pos.get(image_id)
            if k is not None:
                cluster[k] = cluster_id
    on_status("packing thumbnails" + (f" (keeping clusters of run {r['name']!r} together)" if r else ""))
    with threadpool_limits(1):
        group = group_points(xy, cluster, seed=seed)
        loose = np.zeros(int(group.max()) + 1, bool)
        loose[group[cluster < 0]] = True
        packed = pack(xy, group, gap=gap, loose=loose, seed=seed)
    t_pack = time.perf_counter()
    params = {"seed": seed, "landmarks": landmarks, "gap": gap, "cell": 1.0, "pca_dims": 50,
              "groups": packed.stats.get("groups"), "relax_iterations": packed.iterations,
              "group_source": f"run:{r['name']}" if r else "kmeans-2d"}
    with db.conn:
        old = db.execute("SELECT id, is_default FROM layouts WHERE name = ?", [name]).fetchone()
        has_default = db.execute("SELECT 1 FROM layouts WHERE is_default = 1").fetchone()
        default = make_default if make_default is not None else (not has_default or bool(old and old[1]))
        if default:
            db.execute("UPDATE layouts SET is_default = 0")
        row = [name, used, json.dumps(params), r["id"] if r else None, int(default), len(ids), now()]
        if old:
            lid = old[0]
            db.execute("DELETE FROM layout_points WHERE layout_id = ?", [lid])
            db.execute("UPDATE layouts SET name=?, method=?, params=?, run_id=?, is_default=?, n_images=?, "
                       "created=? WHERE id=?", row + [lid])
        else:
            lid = db.execute("INSERT INTO layouts (name, method, params, run_id, is_default, n_images, created) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", row).lastrowid
        db.conn.executemany(
            "INSERT INTO layout_points (layout_id, image_id, x, y) VALUES (?, ?, ?, ?)",
            ((lid, int(i), float(x), float(y)) for i, (x, y) in zip(ids, packed.xy)),
        )
    t_store = time.perf_counter()
    return LayoutSummary(
        lid, name, used, len(ids), r["name"] if r else None, int(packed.stats.get("groups", 0)),
        packed.overlaps,
        {"read": round(t_read - t0, 3), "embed": round(t_embed - t_read, 3),
         "pack": round(t_pack - t_embed, 3), "store": round(t_store - t_pack, 3)},
    )
