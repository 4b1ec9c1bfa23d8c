"""Cluster labels, each stored with its source in ``cluster_labels``:

* ``terms``  - distinctive words of file paths, folder names and EXIF text, TF-IDF across
  the clusters of a run (as the AoIR paper labels clusters by their top TF-IDF terms);
* ``clip``   - zero-shot CLIP: the shipped vocabulary embedded with the model's text tower
  (cached in ``vocabulary_vectors``), scored against each cluster centroid;
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

from ..store.collection import ImageCollection
from ..store.schema import migrate
from .clusterstore import put_label, refresh_best_labels

SOURCES = ("clip", "terms", "ollama")
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
    """Words per image: folder names and file stems of every file, camera and EXIF text."""
    words: dict[int, set[str]] = {}
    for iid, relpath in db.execute("SELECT image_id, relpath FROM files"):
        stem = re.sub(r"\.[A-Za-z0-9]{2,5}$", "", relpath)
        words.setdefault(iid, set()).update(tokens(stem))
    for iid, camera, exif in db.execute("SELECT id, camera, exif FROM images"):
        extra = tokens(f"{camera or ''} {_exif_text(exif)}")
        if extra:
            words.setdefault(iid, set()).update(extra)
    return words


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


def terms_labels(db: sqlite_utils.Database, run_id: int) -> int:
    """Store ``terms`` labels for every real cluster of a run; returns how many."""
    words = image_words(db)
    groups: dict[int, list[set[str]]] = {}
    for cid, iid in db.execute(
            "SELECT m.cluster_id, m.image_id FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
            "WHERE m.run_id = ? AND c.kind = 'cluster'", [run_id]):
        groups.setdefault(cid, []).append(words.get(iid, set()))
    done = 0
    for cid, terms in tfidf_terms(groups).items():
        if terms:
            put_label(db, cid, "terms", ", ".join(w for w, _ in terms),
                      {"terms": [{"term": w, "score": s} for w, s in terms]})
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
        files = find_model(model["name"], text=True)
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
    cents = np.stack([np.frombuffer(c, np.float32) for _, c in rows])
    if cents.shape[1] != text.shape[1]:
        raise LabelSkipped("clip labels skipped: the clusters were made with another model")
    for (cid, _), best in zip(rows, zero_shot(cents, text)):
        put_label(db, cid, "clip", terms[best[0][0]],
                  {"terms": [{"term": terms[j], "similarity": round(s, 4)} for j, s in best]})
    return len(rows)


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
