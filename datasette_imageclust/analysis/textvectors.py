"""Description vectors: the descriptions embedded with a text model (a CLIP text tower or
a sentence-embedding encoder), kept so that clustering again costs no embedding.

A text model is registered in ``text_models`` by the sha256 of its ONNX file; its vectors
live in the vec0 table ``description_vectors_<id>`` (:func:`store.vectors.descriptions`),
keyed by description id. Only descriptions without a vector are embedded, a chunk per
transaction, so an interrupted run keeps what it finished and the next one goes on.
Vectors whose description is gone (its image pruned) are dropped on the way.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import sqlite_utils

from ..models import TextModelFiles, TextTower, file_sha256, text_model
from ..store import vectors
from ..store.schema import migrate, now

CHUNK = 256  # descriptions per transaction


@dataclass
class TextVectorSummary:
    text_model_id: int
    text_model: str  # its name (directory or Hub id)
    kind: str  # clip or sentence
    embedded: int  # descriptions embedded by this run
    already: int  # that had a vector from this model
    truncated: int  # of those embedded, longer than the model's limit (it saw only their beginning)
    max_tokens: int
    seconds: float

    def as_dict(self) -> dict:
        out = asdict(self)
        out["seconds"] = round(self.seconds, 3)
        return out


def register(db: sqlite_utils.Database, model: TextTower) -> int:
    """The ``text_models`` id of ``model`` (by the sha256 of its ONNX file), added if new."""
    migrate(db, "text")
    found = registered(db, model.sha256)
    if found is not None:
        return found
    with db.conn:
        return int(db.execute(
            "INSERT INTO text_models (name, kind, dimensions, sha256, max_tokens, created) VALUES (?, ?, ?, ?, ?, ?)",
            [model.name, model.kind, model.dimensions, model.sha256, model.max_tokens, now()]).lastrowid)


def registered(db: sqlite_utils.Database, sha256: str) -> int | None:
    """The ``text_models`` id of the model whose ONNX file has this sha256, if registered."""
    if not db["text_models"].exists():
        return None
    row = db.execute("SELECT id FROM text_models WHERE sha256 = ?", [sha256]).fetchone()
    return int(row[0]) if row else None


def embed_descriptions(db: sqlite_utils.Database, files: TextModelFiles, descriptions: Sequence[dict], *,
                       threads: int | None = None, on_status: Callable[[str], None] = lambda s: None,
                       on_progress: Callable[[int, int], None] | None = None) -> TextVectorSummary:
    """Embed those of ``descriptions`` ({description_id, text}, e.g. from
    ``ImageCollection.descriptions``) that have no vector from the text model ``files``
    yet. The model is only loaded when there is something to embed (or it is new)."""
    start = time.perf_counter()
    model_id = registered(db, file_sha256(files.model))
    model = None if model_id is not None else text_model(files, threads)
    if model is not None:
        model_id = register(db, model)
    table = vectors.descriptions(model_id)
    have = vectors.keys(db, table)
    gone = have - {r[0] for r in db.execute("SELECT id FROM descriptions")}
    if gone:  # their images were pruned
        with db.conn:
            vectors.delete(db, gone, table)
    todo = [d for d in descriptions if d["description_id"] not in have]
    summary = TextVectorSummary(model_id, files.name, files.kind, 0, len(descriptions) - len(todo), 0,
                                files.max_tokens, 0.0)
    if todo:
        on_status(f"embedding {len(todo)} descriptions with {files.kind} text model {files.name}"
                  + (f" ({summary.already} already embedded)" if summary.already else ""))
        model = model or text_model(files, threads)
        with db.conn:
            vectors.ensure_table(db, model.dimensions, table)
    for i in range(0, len(todo), CHUNK):
        chunk = todo[i : i + CHUNK]
        vecs, truncated = model.embed_counting([d["text"] for d in chunk])  # type: ignore[union-attr]
        with db.conn:
            vectors.put(db, [d["description_id"] for d in chunk], vecs, table)
        summary.embedded += len(chunk)
        summary.truncated += truncated
        if on_progress:
            on_progress(summary.embedded, len(todo))
    if summary.truncated:
        on_status(f"{summary.truncated} of {summary.embedded} descriptions were longer than {files.max_tokens} "
                  f"tokens and were truncated: the vectors see only their beginning"
                  + (" (a CLIP text tower's limit; a sentence-embedding model reads more: --text-model)"
                     if files.kind == "clip" else ""))
    summary.seconds = time.perf_counter() - start
    return summary
