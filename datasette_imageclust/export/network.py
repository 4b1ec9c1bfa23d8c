"""``gexf`` and ``graphml``: the selection as a network for Gephi, in a folder with
``network.<fmt>``, the recipe's ``nodes.csv`` / ``edges.csv`` and ``thumbnails/``.

* ``knn``: image -> each of its ``k`` nearest selected images by cosine (weight = similarity);
* ``tags``: image - tag, the default tag source's tags (weight = score), the Digital
  Methods recipe's bipartite shape;
* ``clusters``: cluster - cluster by centroid cosine similarity: each cluster's ``k``
  most similar, and only those at least ``threshold`` similar when given;
* ``hashtags``: image - hashtag of its posts, ``authors``: image - author of its posts
  (weight = how many of the image's posts: :mod:`.postlinks`), as 4CAT's image networks.

Every bipartite network's nodes have a ``type`` (image, tag, hashtag, author). Image nodes
are labelled with the image's name (:func:`..store.imagenames.image_names`: its first post,
else its path under the loaded folder) and carry the path, the first post's ``url``,
``post_url``, ``author``, ``created``, the image's ``posts`` and their ``hashtags`` (a
database with posts), the cluster id and label in every run (``cluster_<run>``,
``cluster_label_<run>``), a position from the default layout (Gephi's y points up, so the
map's y is flipped) and the colour the map gives their cluster in the selected run
(:mod:`..analysis.palette`); their ``image`` attribute names a file in ``thumbnails/``
(JPEG or PNG, which Gephi's image preview reads). Node ids are short and plain (``i12``
image 12, ``c3`` cluster 3, ``t0``/``h0``/``a0`` the first tag/hashtag/author A-Z): the
readable text is in the labels.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..analysis.cluster_core import knn as nearest
from ..analysis.palette import UNCLUSTERED, cluster_colours
from ..store.collection import ImageCollection, raw_connection
from ..store.connection import Connection
from ..store.imagenames import first_posts, image_names
from ..store.postcolumns import has_posts
from . import postlinks
from .graphfiles import NetworkWriter, attribute_name
from .records import CHUNK
from .selection import ExportError, Selection, best_label

NETWORKS = ("knn", "tags", "clusters", "hashtags", "authors")
BIPARTITE = {"tags": ("tag", "t"), "hashtags": ("hashtag", "h"), "authors": ("author", "a")}  # -> type, id prefix
SCALE = 20.0  # layout cells -> Gephi units, so nodes of size IMAGE_SIZE do not overlap
IMAGE_SIZE = 10.0


def write(db: Connection, selection: Selection, out: Path, *, format: str = "gexf", network: str = "knn",
          k: int = 10, threshold: float | None = None, bom: bool = False, **options) -> dict:
    """Write the network into the (temporary, empty) folder ``out``."""
    if network not in NETWORKS:
        raise ExportError(f"unknown --network {network!r} (choose from {', '.join(NETWORKS)})")
    if k < 1:
        raise ExportError("--k must be at least 1")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise ExportError("--threshold is a cosine similarity: between -1 and 1")
    if network == "tags" and ImageCollection(db).tag_source() is None:
        raise ExportError("--network tags needs tags: run `imageclust tag` (or `imageclust describe`) first")
    if network == "clusters" and not any(c["kind"] == "cluster" for c in selection.clusters):
        raise ExportError("--network clusters needs clusters: the selection has none (run `imageclust cluster`)")
    if network in ("hashtags", "authors"):
        postlinks.check(raw_connection(db), network)
    (out / "thumbnails").mkdir()
    graph = _Graph(db, selection, out)
    w = NetworkWriter(out, format, graph.attributes(network), directed=network == "knn", bom=bom,
                      descriptions=graph.descriptions())
    try:
        if network == "clusters":
            graph.cluster_nodes(w)
            graph.cluster_edges(w, k, threshold)
        elif network in BIPARTITE:
            others = graph.image_nodes(w, network)
            ids = graph.other_nodes(w, network, others)
            graph.other_edges(w, network, ids)
        else:
            graph.image_nodes(w, None)
            graph.knn_edges(w, k)
    except BaseException:
        w.close(complete=False)
        raise
    w.close()
    return {"network": network, "nodes": w.n_nodes, "edges": w.n_edges, "thumbnails": graph.thumbnails}


class _Graph:
    def __init__(self, db: Connection, selection: Selection, out: Path) -> None:
        self.col = ImageCollection(db)
        self.conn = raw_connection(db)
        self.sel, self.out = selection, out
        self.runs = self.col.runs()
        self.layout = self.col.layout()
        run_id = selection.run["id"] if selection.run else None
        self.colours = cluster_colours(self.conn.execute("SELECT id, kind FROM clusters WHERE run_id = ?", [run_id])) \
            if run_id is not None else {}
        ids = [r[0] for r in self.conn.execute("SELECT id FROM clusters")] if self.runs else []
        stored = dict(self.conn.execute("SELECT id, label FROM clusters")) if self.runs else {}
        labels = self.col.labels(ids)
        self.label_of = {cid: best_label(labels.get(cid), stored.get(cid)) for cid in ids}
        self.posts = has_posts(self.conn)
        self.hashtags = postlinks.has_hashtags_column(self.conn)
        self.run_names = self._run_names()
        self.tag_source: str | None = None
        self.written: set[int] = set()  # image nodes written (an image deleted meanwhile is not)
        self.thumbnails = 0

    def _run_names(self) -> dict[int, str]:
        """run id -> the attribute-name form of its name, so that every ``cluster_<name>`` and
        ``cluster_label_<name>`` is unique (runs "a b" and "a_b", or "x" and "label_x", differ)."""
        out: dict[int, str] = {}
        used: set[str] = set()
        for r in self.runs:
            name = base = attribute_name(str(r["name"]), f"run{r['id']}")
            n = 1
            while {f"cluster_{name}", f"cluster_label_{name}"} & used:
                name, n = f"{base}_{r['id']}" + (f"_{n}" if n > 1 else ""), n + 1
            used |= {f"cluster_{name}", f"cluster_label_{name}"}
            out[r["id"]] = name
        return out

    def descriptions(self) -> dict[str, str]:
        """The per-run attributes' readable meaning, with the run's own name."""
        out: dict[str, str] = {}
        for r in self.runs:
            out[f"cluster_{self.run_names[r['id']]}"] = f"cluster id in run {r['name']}"
            out[f"cluster_label_{self.run_names[r['id']]}"] = f"cluster label in run {r['name']}"
        return out

    def attributes(self, network: str) -> list[tuple[str, str]]:
        if network == "clusters":
            return [("type", "string"), ("run", "string"), ("cluster", "integer"), ("cluster_label", "string"),
                    ("images", "integer"), ("cohesion", "float")]
        per_run = [a for r in self.runs for a in ((f"cluster_{self.run_names[r['id']]}", "integer"),
                                                  (f"cluster_label_{self.run_names[r['id']]}", "string"))]
        posts = [("url", "string"), ("post_url", "string"), ("author", "string"), ("created", "string"),
                 ("posts", "integer")] + ([("hashtags", "string")] if self.hashtags else []) if self.posts else []
        # "images": how many images a node stands for (1; a tag's or cluster's count); the drawn size is viz:size.
        return [("type", "string"), ("path", "string"), ("sha256", "string"), ("images", "integer"), *posts,
                *per_run]

    def _thumbnail(self, image_id: int) -> str | None:
        """Write image ``image_id``'s thumbnail into thumbnails/ as JPEG or PNG; its file name."""
        row = self.conn.execute("SELECT format, data FROM thumbnails WHERE image_id = ?", [image_id]).fetchone()
        if row is None:
            return None
        fmt, data = row
        if str(fmt).lower() in ("jpeg", "jpg"):
            name, payload = f"{image_id}.jpg", bytes(data)
        else:  # WebP: Gephi's image preview (Java ImageIO) cannot read it
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                buf = io.BytesIO()
                im.save(buf, "PNG")
            name, payload = f"{image_id}.png", buf.getvalue()
        (self.out / "thumbnails" / name).write_bytes(payload)
        self.thumbnails += 1
        return name

    def _xy(self, x: float | None, y: float | None) -> tuple[float, float] | None:
        return None if x is None else (x * SCALE + 0.0, -y * SCALE + 0.0)  # + 0.0: no "-0" in the files

    def _links(self, network: str, ids: list[int]) -> dict[int, list[tuple[str, float]]]:
        """image id -> its (tag, hashtag or author; weight) pairs of a bipartite ``network``."""
        if network == "tags":
            return {iid: [(t, 1.0 if s is None else float(s)) for t, s in pairs]
                    for iid, pairs in self.col.tags(self.tag_source, ids).items()}
        return postlinks.links(self.conn, network, ids)

    def image_nodes(self, w: NetworkWriter, network: str | None) -> dict[str, list]:
        """Write every selected image as a node; for a bipartite ``network``, the other side's
        nodes to come: name -> [images, sum x, sum y, n xy]."""
        self.tag_source = self.col.tag_source() if network == "tags" else None
        others: dict[str, list] = {}
        for start in range(0, len(self.sel.image_ids), CHUNK):
            ids = self.sel.image_ids[start:start + CHUNK]
            arg = json.dumps(ids)
            sha = dict(self.conn.execute("SELECT id, sha256 FROM images WHERE id IN (SELECT value FROM json_each(?))",
                                         [arg]))
            path: dict[int, str] = {}
            for iid, p in self.conn.execute("SELECT image_id, path FROM files WHERE image_id IN "
                                            "(SELECT value FROM json_each(?)) ORDER BY path DESC", [arg]):
                path[iid] = p  # the first by path wins (rows come last-first)
            member: dict[int, dict[int, int]] = {}
            for rid, cid, iid in self.conn.execute("SELECT run_id, cluster_id, image_id FROM cluster_members "
                                                   "WHERE image_id IN (SELECT value FROM json_each(?))", [arg]):
                member.setdefault(iid, {})[rid] = cid
            points = {} if self.layout is None else {r[0]: r[1:] for r in self.conn.execute(
                "SELECT image_id, x, y FROM layout_points WHERE layout_id = ? "
                "AND image_id IN (SELECT value FROM json_each(?))", [self.layout["id"], arg])}
            names = image_names(self.conn, ids)
            firsts = first_posts(self.conn, ids) if self.posts else {}
            tags_text = postlinks.hashtag_text(self.conn, ids) if self.hashtags else {}
            links = self._links(network, ids) if network else {}
            for iid in ids:
                if iid not in sha:
                    continue
                attrs: dict = {"type": "image", "path": path.get(iid), "sha256": sha[iid], "images": 1}
                if self.posts:
                    first = firsts.get(iid) or {}
                    attrs.update(url=first.get("url"), post_url=first.get("permalink"), author=first.get("author"),
                                 created=first.get("created"), posts=first.get("posts", 0),
                                 hashtags=tags_text.get(iid))
                for r in self.runs:
                    cid = member.get(iid, {}).get(r["id"])
                    attrs[f"cluster_{self.run_names[r['id']]}"] = cid
                    attrs[f"cluster_label_{self.run_names[r['id']]}"] = None if cid is None else self.label_of.get(cid)
                xy = self._xy(*points.get(iid, (None, None)))
                self.written.add(iid)
                w.node(f"i{iid}", names.get(iid) or f"image {iid}", attrs,
                       image=self._thumbnail(iid), size=IMAGE_SIZE, xy=xy,
                       color=self.colours.get(self.sel.cluster_of.get(iid), UNCLUSTERED))
                for key, _ in links.get(iid, []):
                    t = others.setdefault(key, [0, 0.0, 0.0, 0])
                    t[0] += 1
                    if xy is not None:
                        t[1], t[2], t[3] = t[1] + xy[0], t[2] + xy[1], t[3] + 1
        return others

    def other_nodes(self, w: NetworkWriter, network: str, others: dict[str, list]) -> dict[str, str]:
        """Write the other side's nodes (A-Z, each at its images' mean position); name -> node id."""
        kind, prefix = BIPARTITE[network]
        ids: dict[str, str] = {}
        for n_node, (key, (n, sx, sy, nxy)) in enumerate(sorted(others.items())):
            ids[key] = f"{prefix}{n_node}"
            w.node(ids[key], key, {"type": kind, "images": n}, image=None, size=IMAGE_SIZE + 2 * float(np.sqrt(n)),
                   xy=(sx / nxy, sy / nxy) if nxy else None, color=UNCLUSTERED)
        return ids

    def other_edges(self, w: NetworkWriter, network: str, ids: dict[str, str]) -> None:
        for start in range(0, len(self.sel.image_ids), CHUNK):
            for iid, pairs in self._links(network, self.sel.image_ids[start:start + CHUNK]).items():
                for key, weight in pairs if iid in self.written else ():
                    w.edge(f"i{iid}", ids[key], weight)

    def knn_edges(self, w: NetworkWriter, k: int) -> None:
        ids, x = self.col.vectors()
        keep = np.isin(ids, np.fromiter(self.sel.image_ids, np.int64, len(self.sel.image_ids)))
        ids, x = ids[keep], x[keep]
        if len(ids) < 2:
            return
        idx, sim = nearest(x, k + 1)  # k + 1: each image finds itself too
        for i in range(len(ids)):
            n = 0
            for j, s in zip(idx[i], sim[i]):
                if j != i and n < k:
                    w.edge(f"i{ids[i]}", f"i{ids[j]}", float(s))
                    n += 1

    # --- clusters -----------------------------------------------------------------------

    def _clusters(self) -> list[dict]:
        return [c for c in self.sel.clusters if c["kind"] == "cluster"]

    def cluster_nodes(self, w: NetworkWriter) -> None:
        run = self.sel.run
        for c in self._clusters():
            xy = None
            if self.layout is not None:
                row = self.conn.execute(
                    "SELECT avg(p.x), avg(p.y) FROM cluster_members m JOIN layout_points p "
                    "ON p.image_id = m.image_id AND p.layout_id = ? WHERE m.cluster_id = ?",
                    [self.layout["id"], c["id"]]).fetchone()
                xy = self._xy(*row) if row and row[0] is not None else None
            rep = self.conn.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ? ORDER BY rank LIMIT 1",
                                    [c["id"]]).fetchone()
            w.node(f"c{c['id']}", c["label"] or f"cluster {c['id']}",
                   {"type": "cluster", "run": run["name"], "cluster": c["id"], "cluster_label": c["label"],
                    "images": c["size"], "cohesion": c["cohesion"]},
                   image=self._thumbnail(rep[0]) if rep else None, size=IMAGE_SIZE + 2 * float(np.sqrt(c["size"])),
                   xy=xy, color=self.colours.get(c["id"], UNCLUSTERED))

    def cluster_edges(self, w: NetworkWriter, k: int, threshold: float | None) -> None:
        clusters = self._clusters()
        cids, rows = [], []
        for c in clusters:
            blob = self.conn.execute("SELECT centroid FROM clusters WHERE id = ?", [c["id"]]).fetchone()[0]
            if blob:
                cids.append(c["id"])
                rows.append(np.frombuffer(blob, np.float32))
        if len(cids) < 2:
            return
        idx, sim = nearest(np.vstack(rows), k + 1)
        edges: dict[tuple[int, int], float] = {}
        for i in range(len(cids)):
            for j, s in zip(idx[i], sim[i]):
                if j != i and (threshold is None or s >= threshold):
                    edges[(min(i, j), max(i, j))] = float(s)
        for (i, j), s in sorted(edges.items()):
            w.edge(f"c{cids[i]}", f"c{cids[j]}", s)
