"""Per-image tags from CLIP zero-shot (`imageclust tag`): each image's vector against the
text vectors of the shipped vocabulary (the one the cluster labels use, cached in
``vocabulary_vectors``), with the cluster labels' calibration (:func:`labels.calibrate`:
similarity minus half the term's mean similarity, here over all images). Stored in
``image_tags`` with source ``clip``, rank 1 = the best tag.

Incremental and resumable: only images without CLIP tags are tagged, a chunk of images per
transaction, so an interrupted run loses one chunk and the next run finishes the rest.
The tags are made by one model: ``imageclust_meta.clip_tags_model`` records its sha256,
and when the database's model changes (``load --reembed``) every image is tagged again.
A term's mean similarity over all images is the term's vector against the mean image
vector (a dot product is linear), so no images x terms matrix is ever held whole.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import sqlite_utils

from ..models import ModelError
from ..store.collection import ImageCollection
from ..store.schema import migrate, now
from .labels import calibrate, vocabulary, vocabulary_vectors

SOURCE = "clip"
META_KEY = "clip_tags_model"
CHUNK = 2048  # images per transaction: a CHUNK x terms score matrix (~25 MB at 3,100 terms)


@dataclass
class TagSummary:
    images: int  # images tagged by this run
    already: int  # images that had CLIP tags from this model and were left alone
    tags: int  # rows written
    top: int
    min_score: float | None
    retagged: str | None  # why every image was tagged again (--replace, another model), if so
    seconds: float
    interrupted: bool = False

    def as_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def tag_images(db: sqlite_utils.Database, *, top: int = 10, min_score: float | None = None, replace: bool = False,
               threads: int | None = None, on_status: Callable[[str], None] = lambda s: None,
               on_progress: Callable[[int, int], None] | None = None) -> TagSummary:
    """Tag the current model's images that have no CLIP tags yet (all with ``replace``):
    the ``top`` best vocabulary terms of each whose calibrated score is at least
    ``min_score`` (None: no minimum). Raises ``ModelError`` when the model has no text tower."""
    start = time.perf_counter()
    coll = ImageCollection(db)
    model = coll.model()
    ids, x = coll.vectors()
    if model is None or not len(ids):
        raise ModelError("the database has no image vectors: run `imageclust load` first")
    terms = vocabulary()
    try:
        text = vocabulary_vectors(db, model, terms, threads=threads, on_status=on_status)
    except ModelError as e:
        raise ModelError(f"CLIP tags need the model's text tower: {e}. Load the images with a CLIP model "
                         f"(the default, Xenova/clip-vit-base-patch32, or a directory with onnx/text_model.onnx)") \
            from e
    migrate(db, "text")
    retagged = _forget_stale(db, model["sha256"], replace)
    if retagged:
        on_status(f"tagging every image again: {retagged}")
    done = {r[0] for r in db.execute("SELECT DISTINCT image_id FROM image_tags WHERE source = ?", [SOURCE])}
    todo = np.array([i for i, iid in enumerate(ids) if int(iid) not in done], np.int64)
    summary = TagSummary(0, len(ids) - len(todo), 0, top, min_score, retagged, 0.0)
    term_means = text @ x.mean(0)  # each term's mean similarity over all images
    on_status(f"tagging {len(todo)} images with {len(terms)} vocabulary terms"
              + (f" ({summary.already} already tagged)" if summary.already else ""))
    try:
        for start_row in range(0, len(todo), CHUNK):
            rows = todo[start_row : start_row + CHUNK]
            summary.tags += _tag_chunk(db, ids[rows], x[rows], text, term_means, terms, top, min_score)
            summary.images += len(rows)
            if on_progress:
                on_progress(summary.images, len(todo))
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - start
    return summary


def _forget_stale(db: sqlite_utils.Database, sha256: str, replace: bool) -> str | None:
    """Delete the CLIP tags that must be made again (all with --replace, or when another
    model made them), in one transaction before any new tag, so an interrupted re-tagging
    is finished by a plain re-run; record the model that makes the tags from now on."""
    row = db.execute("SELECT value FROM imageclust_meta WHERE key = ?", [META_KEY]).fetchone()
    have = db.execute("SELECT 1 FROM image_tags WHERE source = ? LIMIT 1", [SOURCE]).fetchone()
    why = None
    if have and replace:
        why = "--replace"
    elif have and row and row[0] != sha256:
        why = "the database's model changed since the images were tagged"
    with db.conn:
        if why:
            db.execute("DELETE FROM image_tags WHERE source = ?", [SOURCE])
        db.execute("INSERT OR REPLACE INTO imageclust_meta (key, value) VALUES (?, ?)", [META_KEY, sha256])
    return why


def _tag_chunk(db: sqlite_utils.Database, ids: np.ndarray, x: np.ndarray, text: np.ndarray, term_means: np.ndarray,
               terms: list[str], top: int, min_score: float | None) -> int:
    score = calibrate(x @ text.T, term_means[None, :])
    k = min(top, score.shape[1])
    best = np.argpartition(-score, k - 1, axis=1)[:, :k]
    created = now()
    rows = []
    for r, iid in enumerate(ids):
        order = best[r][np.argsort(-score[r, best[r]], kind="stable")]
        for rank, j in enumerate(order, 1):
            s = float(score[r, j])
            if min_score is not None and s < min_score:
                break
            rows.append((int(iid), SOURCE, terms[j], round(s, 5), rank, created))
    with db.conn:
        db.conn.executemany("DELETE FROM image_tags WHERE image_id = ? AND source = ?",
                            [(int(i), SOURCE) for i in ids])
        db.conn.executemany("INSERT INTO image_tags (image_id, source, tag, score, rank, created) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)
    return len(rows)
