"""What the pages show of images as text: vision-LLM descriptions and tags, and the
full-text search over descriptions. Read-only SQL, run on Datasette's connections; a
database that has none of these tables (nothing described or tagged yet) gives empty
answers."""
from __future__ import annotations

import json
import re
from typing import Iterable

from ..store.collection import ImageCollection
from ..store.connection import Connection

SNIPPET_WORDS = 24
_WORD = re.compile(r"\w+")  # what FTS5's unicode61 tokenizer would index as a word


def _has(conn: Connection, *tables: str) -> bool:
    return ImageCollection(conn).has(*tables)


def image_descriptions(conn: Connection, image_id: int) -> list[dict]:
    """Every description of an image, newest first, with the prompt it answered."""
    if not _has(conn, "descriptions", "prompts"):
        return []
    cur = conn.execute("""SELECT d.id, d.model, d.api, d.text, d.input, d.created, d.prompt_id, p.text AS prompt
                          FROM descriptions d JOIN prompts p ON p.id = d.prompt_id
                          WHERE d.image_id = ? ORDER BY d.created DESC, d.id DESC""", [image_id])
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def image_tags(conn: Connection, image_ids: Iterable[int], per_source: int = 12) -> dict[int, list[dict]]:
    """Each image's tags by source (``clip``, ``vlm:<model>``): [{source, tags: [{tag, score}]}],
    the best ``per_source`` of each."""
    ids = [int(i) for i in image_ids]
    if not ids or not _has(conn, "image_tags"):
        return {}
    out: dict[int, dict[str, list[dict]]] = {}
    for iid, source, tag, score in conn.execute(
            """SELECT image_id, source, tag, score FROM image_tags
               WHERE image_id IN (SELECT value FROM json_each(?)) AND rank <= ?
               ORDER BY image_id, source, rank""", [json.dumps(ids), per_source]):
        out.setdefault(iid, {}).setdefault(source, []).append(
            {"tag": tag, "score": None if score is None else round(score, 4)})
    return {iid: [{"source": s, "tags": t} for s, t in by.items()] for iid, by in out.items()}


def cluster_tags(conn: Connection, cluster_id: int, top: int = 12, per_image: int = 5) -> list[dict]:
    """The tags most members of a cluster carry (each image's best ``per_image`` per
    source): [{tag, images, share}], most shared first."""
    if not _has(conn, "image_tags", "cluster_members"):
        return []
    size = conn.execute("SELECT count(*) FROM cluster_members WHERE cluster_id = ?", [cluster_id]).fetchone()[0]
    if not size:
        return []
    rows = conn.execute("""SELECT t.tag, count(DISTINCT t.image_id) AS n FROM cluster_members m
                           JOIN image_tags t ON t.image_id = m.image_id AND t.rank <= ?
                           WHERE m.cluster_id = ? GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT ?""",
                        [per_image, cluster_id, top]).fetchall()
    return [{"tag": tag, "images": n, "share": round(n / size, 3)} for tag, n in rows]


def search_descriptions(conn: Connection, q: str, limit: int) -> list[dict]:
    """Images whose description has every word of ``q`` (full-text; the words only, each
    a literal FTS5 term, so no query syntax can fail), best match first: [{image_id,
    description_id, model, snippet}], one per image."""
    words = _WORD.findall(q)
    if not words or not _has(conn, "descriptions", "descriptions_fts"):
        return []
    cur = conn.execute(f"""
        SELECT d.image_id, d.id, d.model,
               snippet(descriptions_fts, 0, '[', ']', '…', {SNIPPET_WORDS}) AS snippet
        FROM descriptions_fts JOIN descriptions d ON d.id = descriptions_fts.rowid
        WHERE descriptions_fts MATCH ? ORDER BY rank LIMIT ?""", [" ".join(f'"{w}"' for w in words), limit * 4])
    seen: set[int] = set()
    out = []
    for iid, did, model, snippet in cur.fetchall():
        if iid not in seen:
            seen.add(iid)
            out.append({"image_id": iid, "description_id": did, "model": model, "snippet": snippet})
    return out[:limit]
