"""Cluster labels, each stored with its source in ``cluster_labels``:

* ``terms``  - distinctive words, TF-IDF across the clusters of a run (as the AoIR paper
  labels clusters by their top TF-IDF terms): of an image of posts (linked from
  ``post_images``: downloaded, or a sidecar's), its posts' text and hashtags and its
  description, never its file name (a downloaded image's is a hash in a download cache); of any other image, its description when it has one
  (:mod:`.textterms`: stop-words of its language removed), else its file paths, folder
  names and EXIF text. Hex-like runs (hashes) are never words (``textterms.drop_hex``);
* ``tags``   - the members' most distinctive tags (``image_tags``), TF-IDF across the clusters;
* ``clip``   - zero-shot CLIP: the shipped vocabulary embedded with the model's text tower
  (cached in ``vocabulary_vectors``), scored against each cluster's centroid in image space;
* ``ollama`` - see :mod:`datasette_imageclust.ollama`;
* ``user``   - a person's own label (:func:`clusterstore.set_user_label`), always wins.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from importlib import resources
from typing import Callable

import numpy as np
import sqlite_utils

from ..store.collection import ImageCollection, NotFound
from ..store.postcolumns import has_posts, hashtags_cte, post_columns, quote
from ..store.schema import migrate
from .clusterstore import put_label, refresh_best_labels
from .textterms import description_words, drop_hex, post_words
from .textterms import words as text_words

SOURCES = ("clip", "tags", "terms", "ollama")
_ALL_HEX = re.compile(r"(?=[a-f]*[0-9])[0-9a-f]+", re.IGNORECASE)
PROMPT = "a photo of {}."

# File-name noise: extensions, camera prefixes, copy markers, tiny words.
STOPWORDS = set("""
jpg jpeg png gif webp tif tiff bmp heic heif avif raw dng img image images pic pics picture
pictures photo photos dsc dscn dscf pxl mvimg screenshot scan copy final edit edited new old
the and for with from into of to in on at by an a is it this that untitled export exported
small large thumb thumbnail original version resized crop cropped www http https com
""".split())


class LabelSkipped(Exception):
    """A label source cannot run here (e.g. no text tower); other sources still run."""


def tokens(text: str) -> set[str]:
    text = drop_hex(text)
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # camelCase -> camel Case
    out = set()
    for t in re.split(r"[^A-Za-z\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF]+", text):
        t = t.lower()
        if len(t) >= 3 and t not in STOPWORDS:
            out.add(t)
    return out


def _exif_text(exif: str | None) -> str:
    if not exif:
        return ""
    try:
        tags = json.loads(exif)
    except ValueError:
        return ""
    return " ".join(v for k, v in tags.items()
                    if isinstance(v, str) and k not in ("DateTime", "DateTimeOriginal", "DateTimeDigitized")
                    and len(v) <= 80)


def image_words(db: sqlite_utils.Database) -> dict[int, set[str]]:
    """Words per image: folder names and file stems of every file, camera and EXIF text;
    no file names of an image downloaded from posts (see :func:`downloaded`)."""
    words: dict[int, set[str]] = {}
    skip = downloaded(db)
    for iid, relpath in db.execute("SELECT image_id, relpath FROM files"):
        if iid in skip:
            continue
        stem = re.sub(r"\.[A-Za-z0-9]{2,5}$", "", relpath)
        # A folder or file name that is all hex digits (with a digit: ``3fa9c``) is an id.
        stem = "/".join(p for p in re.split(r"[/\\]", stem) if not _ALL_HEX.fullmatch(p))
        words.setdefault(iid, set()).update(tokens(stem))
    for iid, camera, exif in db.execute("SELECT id, camera, exif FROM images"):
        extra = tokens(f"{camera or ''} {_exif_text(exif)}")
        if extra:
            words.setdefault(iid, set()).update(extra)
    return words


def downloaded(db: sqlite_utils.Database) -> set[int]:
    """The images of posts downloaded from a URL (their files are in a download cache,
    named by hash)."""
    if not has_posts(db.conn):
        return set()
    return {i for (i,) in db.execute("SELECT DISTINCT image_id FROM post_images "
                                     "WHERE url IS NOT NULL AND image_id IS NOT NULL")}


def posts_words(db: sqlite_utils.Database) -> dict[int, set[str]]:
    """Words per image of posts: the text and hashtags of every post linking it, without
    the words of any poster's name."""
    if not has_posts(db.conn):
        return {}
    have = {r[1] for r in db.execute("PRAGMA table_info(posts)")}
    tags = post_columns(db.conn).hashtags  # (the rule of store/postcolumns.py)
    if "text" not in have and not tags:
        return {}
    text = "p.text" if "text" in have else "NULL"
    tags_of = {post: json.loads(t) for post, t in db.execute(
        f"WITH {hashtags_cte(tags)} SELECT post, json_group_array(tag) FROM post_tags GROUP BY post")} if tags else {}
    cols = post_columns(db.conn)
    # The words of the posters' names are no words of a post (a label names no one).
    people = {w for (a,) in db.execute(f"SELECT DISTINCT {quote(cols.author)} FROM posts") if isinstance(a, str)
              for w in text_words(a)} if cols.author else set()
    out: dict[int, set[str]] = {}
    for iid, post, body in db.execute(f"SELECT pi.image_id, p.id, {text} FROM post_images pi "
                                      "JOIN posts p ON p.id = pi.post WHERE pi.image_id IS NOT NULL"):
        out.setdefault(iid, set()).update(post_words(body, tags_of.get(post, [])) - people)
    return out


def tfidf_terms(groups: dict[int, list[set[str]]], top: int = 3, min_share: float = 0.25) -> dict[int, list[tuple[str, float]]]:
    """Per group: the top words by TF-IDF, TF = share of members having the word, IDF over
    groups. A word must be in >= ``min_share`` of members and in >= 2 members."""
    n = len(groups)
    df: Counter = Counter()
    tf: dict[int, Counter] = {}
    for g, members in groups.items():
        c: Counter = Counter()
        for ws in members:
            c.update(ws)
        tf[g] = c
        df.update(c.keys())
    out = {}
    for g, c in tf.items():
        size = max(len(groups[g]), 1)
        scored = []
        for w, k in c.items():
            share = k / size
            if k < 2 or share < min_share:
                continue
            idf = math.log((1 + n) / (1 + df[w])) + 1
            scored.append((round(share * idf, 4), w))
        scored.sort(key=lambda t: (-t[0], t[1]))
        out[g] = [(w, s) for s, w in scored[:top]]
    return out


def _run_params(db: sqlite_utils.Database, run_id: int) -> dict:
    row = db.execute("SELECT params FROM cluster_runs WHERE id = ?", [run_id]).fetchone()
    try:
        return json.loads(row[0]) if row and row[0] else {}
    except ValueError:
        return {}


def _members(db: sqlite_utils.Database, run_id: int) -> dict[int, list[int]]:
    """cluster id -> its members' image ids (real clusters only)."""
    out: dict[int, list[int]] = {}
    for cid, iid in db.execute(
            "SELECT m.cluster_id, m.image_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
            "WHERE m.run_id = ? AND c.kind = 'cluster' ORDER BY m.cluster_id, m.rank", [run_id]):
        out.setdefault(cid, []).append(iid)
    return out


def terms_labels(db: sqlite_utils.Database, run_id: int) -> int:
    """Store ``terms`` labels for every real cluster of a run; returns how many. A member's
    words: see the module's docstring (the description is the run's vision model and
    prompt's, else the newest)."""
    members = _members(db, run_id)
    params = _run_params(db, run_id)
    described = {d["image_id"]: description_words(d["text"])
                 for d in ImageCollection(db).descriptions(params.get("describer"), params.get("prompt_id"))}
    posted = posts_words(db)
    from_posts = downloaded(db) | set(posted)
    paths = (image_words(db) if any(i not in described and i not in from_posts for m in members.values() for i in m)
             else {})

    def words(i: int) -> set[str]:
        if i in from_posts:
            return posted.get(i, set()) | described.get(i, set())
        return described[i] if i in described else paths.get(i, set())

    done = 0
    for cid, terms in tfidf_terms({c: [words(i) for i in m] for c, m in members.items()}).items():
        if terms:
            put_label(db, cid, "terms", ", ".join(w for w, _ in terms),
                      {"terms": [{"term": w, "score": s} for w, s in terms],
                       "from": _origin(members[cid], described, from_posts)})
            done += 1
    return done


def _origin(ids: list[int], described: dict, from_posts: set[int]) -> str:
    """What a ``terms`` label was read from (its ``detail.from``)."""
    n, p = sum(i in described and i not in from_posts for i in ids), sum(i in from_posts for i in ids)
    if p:
        return "posts" if p == len(ids) else f"posts ({p} of {len(ids)} images), else descriptions or file names"
    return ("descriptions" if n == len(ids) else "file names" if n == 0
            else f"descriptions ({n} of {len(ids)} images), else file names")


def tags_labels(db: sqlite_utils.Database, run_id: int) -> int:
    """Store ``tags`` labels: the members' most distinctive tags (TF-IDF across the run's
    clusters) from the run's tag source, else the default one."""
    coll = ImageCollection(db)
    try:
        source = coll.tag_source(_run_params(db, run_id).get("tag_source"))
    except NotFound as e:
        raise LabelSkipped(f"tags labels skipped: {e}") from e
    if source is None:
        raise LabelSkipped("tags labels skipped: no image has tags (run `imageclust tag` first)")
    members = _members(db, run_id)
    tags = coll.tags(source, [i for m in members.values() for i in m])
    done = 0
    for cid, best in tfidf_terms({c: [{t for t, _ in tags.get(i, [])} for i in m]
                                  for c, m in members.items()}).items():
        if best:
            put_label(db, cid, "tags", ", ".join(t for t, _ in best),
                      {"tags": [{"tag": t, "score": s} for t, s in best], "source": source})
            done += 1
    return done


# --- clip zero-shot ---------------------------------------------------------------------


def vocabulary() -> list[str]:
    """The shipped vocabulary: one concept per line, '#' comments."""
    text = resources.files("datasette_imageclust").joinpath("data/vocabulary.txt").read_text("utf-8")
    seen, out = set(), []
    for line in text.splitlines():
        t = line.split("#", 1)[0].strip()
        if t and t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    return out


def vocabulary_vectors(db: sqlite_utils.Database, model: dict, terms: list[str], *, threads: int | None = None,
                       on_status: Callable[[str], None] = lambda s: None) -> np.ndarray:
    """Text vectors of ``terms`` for the DB's model, embedding only those not cached yet.
    Raises ``ModelError`` when the model has no usable text tower."""
    from ..models import ModelError, TextEmbedder, find_model

    migrate(db, "clusters")
    sha = model["sha256"]
    cached = {t: v for t, v in db.execute(
        "SELECT term, vector FROM vocabulary_vectors WHERE model_sha256 = ?", [sha])}
    missing = [t for t in terms if t not in cached]
    if missing:
        files = find_model(model["name"], text=True, precision=model.get("precision"))
        if files.text is None or files.tokenizer is None:
            raise ModelError(f"model {model['name']} has no text tower (text_model.onnx + tokenizer.json)")
        on_status(f"embedding {len(missing)} vocabulary terms with the text tower (cached for next time)")
        emb = TextEmbedder(files, threads=threads).embed([PROMPT.format(t) for t in missing])
        if emb.shape[1] != model["dimensions"]:
            raise ModelError(f"the text tower of {model['name']} gives {emb.shape[1]}-dimensional vectors, "
                             f"the image vectors have {model['dimensions']}")
        with db.conn:
            db.conn.executemany(
                "INSERT OR REPLACE INTO vocabulary_vectors (model_sha256, term, prompt, vector) VALUES (?, ?, ?, ?)",
                [(sha, t, PROMPT.format(t), v.astype(np.float32).tobytes()) for t, v in zip(missing, emb)])
        for t, v in zip(missing, emb):
            cached[t] = v.astype(np.float32).tobytes()
    return np.stack([np.frombuffer(cached[t], np.float32) for t in terms])


def calibrate(sims: np.ndarray, term_means: np.ndarray) -> np.ndarray:
    """Zero-shot scores: similarity minus half the term's mean similarity (over all
    clusters, or all images), so words that fit everything ("a photo") do not win everywhere."""
    return sims - 0.5 * term_means


def zero_shot(centroids: np.ndarray, text: np.ndarray, top: int = 5) -> list[list[tuple[int, float]]]:
    """Top terms per centroid, by :func:`calibrate`d similarity (the mean over all centroids)."""
    sims = centroids @ text.T
    score = calibrate(sims, sims.mean(0, keepdims=True)) if len(centroids) >= 3 else sims
    out = []
    for r in range(len(centroids)):
        best = np.argsort(-score[r])[:top]
        out.append([(int(j), float(sims[r, j])) for j in best])
    return out


def clip_labels(db: sqlite_utils.Database, run_id: int, *, threads: int | None = None,
                on_status: Callable[[str], None] = lambda s: None) -> int:
    model = ImageCollection(db).model()
    if model is None:
        raise LabelSkipped("clip labels skipped: the database has no model")
    from ..models import ModelError

    terms = vocabulary()
    try:
        text = vocabulary_vectors(db, model, terms, threads=threads, on_status=on_status)
    except ModelError as e:
        raise LabelSkipped(f"clip labels skipped: {e}") from e
    rows = db.execute("SELECT id, centroid FROM clusters WHERE run_id = ? AND kind = 'cluster'",
                      [run_id]).fetchall()
    if not rows:
        return 0
    if db.execute("SELECT source FROM cluster_runs WHERE id = ?", [run_id]).fetchone()[0] == "images":
        cents = np.stack([np.frombuffer(c, np.float32) for _, c in rows])
    else:  # clustered on descriptions or tags: the centroid of the members' image vectors
        cents = _image_centroids(db, [cid for cid, _ in rows], _members(db, run_id))
    if cents.shape[1] != text.shape[1]:
        raise LabelSkipped("clip labels skipped: the clusters were made with another model")
    for (cid, _), best in zip(rows, zero_shot(cents, text)):
        put_label(db, cid, "clip", terms[best[0][0]],
                  {"terms": [{"term": terms[j], "similarity": round(s, 4)} for j, s in best]})
    return len(rows)


def _image_centroids(db: sqlite_utils.Database, cluster_ids: list[int], members: dict[int, list[int]]) -> np.ndarray:
    ids, x = ImageCollection(db).vectors()
    row = {int(i): k for k, i in enumerate(ids)}
    out = np.zeros((len(cluster_ids), x.shape[1]), np.float32)
    for k, cid in enumerate(cluster_ids):
        rows = [row[i] for i in members.get(cid, []) if i in row]
        if rows:
            mean = x[rows].mean(0)
            out[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def label_run(db: sqlite_utils.Database, run_id: int, sources: list[str], *, ollama: dict | None = None,
              threads: int | None = None, on_status: Callable[[str], None] = lambda s: None) -> dict[str, str]:
    """Compute the chosen label sources for a run; returns a note per source. A source that
    cannot run is skipped with a note; the others are still stored."""
    notes: dict[str, str] = {}
    for source in sources:
        try:
            if source == "terms":
                with db.conn:
                    notes[source] = f"{terms_labels(db, run_id)} clusters labelled"
            elif source == "tags":
                with db.conn:
                    notes[source] = f"{tags_labels(db, run_id)} clusters labelled"
            elif source == "clip":
                n = clip_labels(db, run_id, threads=threads, on_status=on_status)
                notes[source] = f"{n} clusters labelled"
            elif source == "ollama":
                from .ollama import OllamaError, ollama_labels

                try:
                    n, failed = ollama_labels(db, run_id, on_status=on_status, **(ollama or {}))
                except OllamaError as e:
                    raise LabelSkipped(f"ollama labels skipped: {e}") from e
                notes[source] = f"{n} clusters labelled" + (f", {failed} failed" if failed else "")
            else:
                raise LabelSkipped(f"unknown label source {source!r}")
        except LabelSkipped as e:
            notes[source] = str(e)
            on_status(str(e))
        with db.conn:
            refresh_best_labels(db, run_id)
    return notes
