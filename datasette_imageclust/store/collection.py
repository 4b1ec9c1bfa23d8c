"""One imageclust database, open: the single home of the rules every layer asks about.

:class:`ImageCollection` answers, for a sqlite-utils Database or a DB-API connection:

* which model made the current vectors (:meth:`~ImageCollection.model`) and those vectors
  (:meth:`~ImageCollection.vectors`), or the vectors of the images' descriptions;
* which description of an image counts (:meth:`~ImageCollection.descriptions`: the newest,
  or the newest by a chosen vision model and prompt), and which tags
  (:meth:`~ImageCollection.tag_source`, :meth:`~ImageCollection.tags`);
* which clustering run is meant (:meth:`~ImageCollection.run`: by id or name, else the
  configured one, else the default, else the newest);
* the labels of clusters, best first (:data:`LABEL_PRECEDENCE`, :meth:`~ImageCollection.labels`);
* which layout the map shows (:meth:`~ImageCollection.layout`);
* which description an image shows (:meth:`~ImageCollection.descriptions`);
* whether the database changed (:func:`change_token`), which every cache keys on.

It only reads; the modules that write (loader, cluster store, layout) ask it the same
questions, so a rule is decided in one place.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np

from . import vectors
from .connection import Connection

#: Label sources, best first: a person's own label, a vision LLM's, zero-shot CLIP, the
#: members' most distinctive tags, TF-IDF terms (of descriptions, else of file names).
LABEL_PRECEDENCE = ("user", "ollama", "clip", "tags", "terms")


class NotFound(LookupError):
    """A run, layout or cluster that the database does not have; the message says which."""


def label_rank_sql(column: str = "source") -> str:
    """SQL ranking ``column`` by :data:`LABEL_PRECEDENCE` (0 = best; unknown sources last)."""
    whens = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(LABEL_PRECEDENCE))
    return f"CASE {column} {whens} ELSE {len(LABEL_PRECEDENCE)} END"


def raw_connection(db: Connection) -> Any:
    """The DB-API connection of a sqlite-utils Database, or ``db`` itself."""
    return getattr(db, "conn", db)


def database_file(db: Connection) -> str | None:
    """The OS path of the main database file (None for an in-memory database).

    Read as bytes: a database whose own name is not UTF-8 has a path Python can still open."""
    conn = raw_connection(db)
    row = conn.execute("SELECT CAST(file AS BLOB) FROM pragma_database_list WHERE name = 'main'").fetchone()
    if not row or not row[0]:
        return None
    return os.fsdecode(bytes(row[0]))


def _file_state(path: str, header: slice) -> tuple | None:
    """(inode, size, mtime_ns, header bytes) of ``path``; None if it does not exist."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            f.seek(header.start)
            head = f.read(header.stop - header.start)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, head


def change_token(db: Connection) -> tuple | None:
    """A value that changes whenever anyone commits to the database (None: cannot tell,
    e.g. in memory, so do not cache).

    Timestamps and sizes alone miss two quick commits, so it also reads what SQLite
    itself changes on every commit: the file change counter in the database header
    (rollback-journal mode) and the WAL header's checkpoint sequence and salts (a WAL
    that restarts from the top keeps its size). Cheap: two small reads, no query."""
    if getattr(raw_connection(db), "in_transaction", False):
        return None  # its own uncommitted writes are not in the files yet
    path = database_file(db)
    if path is None:
        return None
    return file_token(path)


def file_token(path: str) -> tuple | None:
    """:func:`change_token` of the database file at ``path`` (no connection needed)."""
    if not path or not os.path.exists(path):
        return None
    return (path, _file_state(path, slice(24, 28)), _file_state(path + "-wal", slice(12, 24)))


class ImageCollection:
    """Read-only questions about one imageclust database (see the module docstring)."""

    def __init__(self, db: Connection) -> None:
        self.db = db
        self.conn = raw_connection(db)

    def _rows(self, sql: str, params: Iterable | dict = ()) -> list[dict]:
        cur = self.conn.execute(sql, params if isinstance(params, dict) else list(params))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}

    def has(self, *tables: str) -> bool:
        return set(tables) <= self.tables()

    # --- the model and its vectors -----------------------------------------------------

    def model(self) -> dict | None:
        """The ``models`` row whose vectors the database holds (``imageclust_meta.model_id``);
        None for a database without a model yet, or not an imageclust one."""
        if not self.has("imageclust_meta", "models"):
            return None
        rows = self._rows("SELECT m.* FROM imageclust_meta k JOIN models m ON m.id = CAST(k.value AS INTEGER) "
                          "WHERE k.key = 'model_id'")
        return rows[0] if rows else None

    def model_id(self) -> int | None:
        m = self.model()
        return m["id"] if m else None

    def vectors(self, source: str = "images", *, text_model_id: int | None = None, describer: str | None = None,
                prompt_id: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, L2-normalised float32 vectors), ordered by image id. ``source``
        "images": the images embedded by the current model (what clustering, near-duplicates
        and the layout work on); "descriptions": the vectors text model ``text_model_id``
        made of the descriptions :meth:`descriptions` picks (images without one, or whose
        description is not embedded yet, are not there)."""
        if source == "descriptions":
            if text_model_id is None:
                raise ValueError("description vectors need a text_model_id")
            return self._description_vectors(text_model_id, describer, prompt_id)
        if source != "images":
            raise ValueError(f"no stored vectors for source {source!r}")
        ids, x = vectors.read_all(self.db)
        model = self.model()
        if model is None or not len(ids):
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        current = {r[0] for r in self.conn.execute("SELECT id FROM images WHERE model_id = ?", [model["id"]])}
        keep = np.fromiter((int(i) in current for i in ids), bool, len(ids))
        return ids[keep], _unit(x[keep])

    def _description_vectors(self, text_model_id: int, describer: str | None,
                             prompt_id: int | None) -> tuple[np.ndarray, np.ndarray]:
        picked = self.descriptions(describer, prompt_id)
        ids, x = vectors.read_all(self.conn, vectors.descriptions(text_model_id))
        row_of = {int(d): i for i, d in enumerate(ids)}
        pairs = [(r["image_id"], row_of[r["description_id"]]) for r in picked if r["description_id"] in row_of]
        if not pairs:
            return np.zeros(0, np.int64), np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32)
        return np.array([p[0] for p in pairs], np.int64), _unit(x[[p[1] for p in pairs]])

    # --- descriptions and tags ------------------------------------------------------------

    def descriptions(self, describer: str | None = None, prompt_id: int | None = None,
                     image_ids: Iterable[int] | None = None) -> list[dict]:
        """One description per image ({image_id, description_id, model, prompt_id, text,
        created}, by image id): the newest (by ``created``, then id) of those by vision model
        ``describer`` with prompt ``prompt_id``, each when given. The rule the pages and
        ``cluster --on descriptions`` share."""
        if not self.has("descriptions"):
            return []
        where, params = ["1"], []
        if describer is not None:
            where.append("model = ?")
            params.append(describer)
        if prompt_id is not None:
            where.append("prompt_id = ?")
            params.append(int(prompt_id))
        if image_ids is not None:
            where.append("image_id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([int(i) for i in image_ids]))
        return self._rows(f"""
            SELECT image_id, id AS description_id, model, prompt_id, text, created FROM (
                SELECT *, row_number() OVER (PARTITION BY image_id ORDER BY created DESC, id DESC) AS newest
                FROM descriptions WHERE {" AND ".join(where)})
            WHERE newest = 1 ORDER BY image_id""", params)

    def describers(self) -> list[dict]:
        """Every (vision model, prompt) that described images: {model, prompt_id, images,
        newest}, the most recent first."""
        if not self.has("descriptions"):
            return []
        return self._rows("SELECT model, prompt_id, count(*) AS images, max(created) AS newest FROM descriptions "
                          "GROUP BY model, prompt_id ORDER BY newest DESC, model, prompt_id")

    def tag_sources(self) -> dict[str, int]:
        """Tag source ('clip', 'vlm:<model>') -> how many images it tagged, most first."""
        if not self.has("image_tags"):
            return {}
        return dict(self.conn.execute("SELECT source, count(DISTINCT image_id) FROM image_tags GROUP BY source "
                                      "ORDER BY 2 DESC, source").fetchall())

    def tag_source(self, requested: str | None = None) -> str | None:
        """The tag source meant: ``requested`` (:class:`NotFound` if it tagged nothing),
        else 'clip' when there are CLIP tags, else the source that tagged the most images;
        None when there are no tags."""
        sources = self.tag_sources()
        if requested not in (None, ""):
            if requested not in sources:
                have = ", ".join(sources) or "none; run `imageclust tag` first"
                raise NotFound(f"no tags from source {requested!r} (sources: {have})")
            return requested
        if not sources:
            return None
        return "clip" if "clip" in sources else next(iter(sources))

    def tags(self, source: str, image_ids: Iterable[int] | None = None) -> dict[int, list[tuple[str, float | None]]]:
        """image id -> its (tag, score) pairs from ``source``, best first."""
        if not self.has("image_tags"):
            return {}
        sql, params = "SELECT image_id, tag, score FROM image_tags WHERE source = ?", [source]
        if image_ids is not None:
            sql += " AND image_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps([int(i) for i in image_ids]))
        out: dict[int, list[tuple[str, float | None]]] = {}
        for iid, tag, score in self.conn.execute(sql + " ORDER BY image_id, rank", params):
            out.setdefault(iid, []).append((tag, score))
        return out

    # --- clustering runs -----------------------------------------------------------------

    def runs(self) -> list[dict]:
        """Every clustering run, the default first, then the newest."""
        if "cluster_runs" not in self.tables():
            return []
        runs = self._rows("SELECT * FROM cluster_runs ORDER BY is_default DESC, created DESC, id DESC")
        for r in runs:
            r.setdefault("source", "images")  # what it clustered; a column since clusters v4
        return runs

    def run(self, ref: str | int | None = None, *, configured: str | None = None) -> dict | None:
        """The clustering run meant: ``ref`` (a name, else an id; :class:`NotFound` if
        none), else the ``configured`` one (the plugin's ``default_run``) if it exists,
        else the default run, else the newest; None when there is no run."""
        runs = self.runs()

        def find(key: str) -> dict | None:
            return next((r for r in runs if r["name"] == key), None) or \
                next((r for r in runs if str(r["id"]) == key), None)

        if ref not in (None, ""):
            hit = find(str(ref))
            if hit is None:
                names = ", ".join(r["name"] for r in runs) or "none; run `imageclust cluster` first"
                raise NotFound(f"no clustering run named {str(ref)!r} (runs: {names})")
            return hit
        if configured:
            hit = find(str(configured))
            if hit is not None:
                return hit
        return runs[0] if runs else None

    # --- clusters and their labels ----------------------------------------------------

    def labels(self, cluster_ids: Iterable[int]) -> dict[int, list[dict]]:
        """Every label of these clusters ({source, label, detail}), best first."""
        ids = [int(i) for i in cluster_ids]
        if not ids or "cluster_labels" not in self.tables():
            return {}
        out: dict[int, list[dict]] = {}
        for r in self._rows(f"""SELECT cluster_id, source, label, detail FROM cluster_labels
                                WHERE cluster_id IN (SELECT value FROM json_each(?))
                                ORDER BY cluster_id, {label_rank_sql()}""", [json.dumps(ids)]):
            try:
                r["detail"] = json.loads(r["detail"]) if r["detail"] else None
            except ValueError:
                pass  # shown as stored
            out.setdefault(r.pop("cluster_id"), []).append(r)
        return out

    def shown_descriptions(self, image_ids: Iterable[int], *, model: str | None = None) -> dict[int, dict]:
        """The description each image shows on the pages: its newest by ``model`` (a vision
        LLM's name, the plugin's ``description_model``) when it has one, else its newest.
        (:meth:`descriptions` is the strict choice that clustering uses.)"""
        ids = [int(i) for i in image_ids]
        if not ids or "descriptions" not in self.tables():
            return {}
        rows = self._rows("""
            SELECT image_id, id, model, api, prompt_id, text, created FROM (
              SELECT d.*, row_number() OVER (PARTITION BY image_id
                                             ORDER BY (model = :model) DESC, created DESC, id DESC) AS n
              FROM descriptions d WHERE image_id IN (SELECT value FROM json_each(:ids)))
            WHERE n = 1""", {"ids": json.dumps(ids), "model": model})
        return {r.pop("image_id"): r for r in rows}

    # --- layouts ---------------------------------------------------------------------------

    def layouts(self) -> list[dict]:
        """Every map layout, the default first, then by name."""
        if not self.has("layouts", "layout_points"):
            return []
        rows = self._rows("SELECT id, name, method, params, run_id, is_default, n_images, created FROM layouts "
                          "ORDER BY is_default DESC, name")
        for r in rows:
            try:
                r["params"] = json.loads(r["params"] or "{}")
            except ValueError:
                r["params"] = {}
        return rows

    def layout(self, ref: int | None = None) -> dict | None:
        """Layout ``ref`` (an id; :class:`NotFound` if none), else the default layout,
        else the newest; None when there is no layout."""
        layouts = self.layouts()
        if ref is not None:
            hit = next((lay for lay in layouts if lay["id"] == ref), None)
            if hit is None:
                raise NotFound(f"layout {ref} not found")
            return hit
        if not layouts:
            return None
        return max(layouts, key=lambda lay: (lay["is_default"], lay["id"]))

    def change_token(self) -> tuple | None:
        return change_token(self.conn)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
