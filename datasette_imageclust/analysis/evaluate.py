"""Interpretability evaluation (the AoIR 2025 paper's protocol): tasks, their image sets and
pairs, and coders' answers. The report is in :mod:`.evaluate_report`, files for coding
outside the browser in :mod:`.evaluate_files`; the CLI and the pages call these functions.

A *sets* task draws, from every cluster of a run (not the unclustered group), up to
``sets_per_cluster`` disjoint random sets of ``set_size`` images; a coder sees one set at
a time with the run's labels and picks the one that fits, or "none fits". A cluster with
fewer than ``set_size`` images gives one set of all its images; one with fewer than
``sets_per_cluster * set_size`` gives as many full sets as it holds. A *pairs* task draws
``pairs`` image pairs within clusters and ``pairs`` across clusters of each run compared;
every run's relation of every pair is frozen, so all runs are judged on the same pairs.
"""
from __future__ import annotations

import json
import random
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import sqlite_utils

from ..store.collection import ImageCollection, raw_connection
from ..store.connection import Connection
from ..store.schema import migrate, now

MAX_NAME = 100     # characters of a task or coder name
MAX_SET_SIZE = 50
MAX_SETS_PER_CLUSTER = 1000
MAX_PAIRS = 100_000
RATINGS = (1, 2, 3)


class EvaluationError(ValueError):
    """A user's mistake about a task (unknown task, bad answer, bad option); one line."""


@dataclass
class TaskSummary:
    """What :func:`create_task` made."""

    name: str
    run: str
    kind: str
    sets: int = 0
    images: int = 0
    candidates: int = 0
    pairs: int = 0
    runs: list[str] = field(default_factory=list)
    short_clusters: list[int] = field(default_factory=list)  # fewer than sets_per_cluster full sets

    def as_dict(self) -> dict:
        return asdict(self)


def check_name(text: Any, what: str = "task name") -> str:
    """A task or coder name: stripped, 1-100 characters, no control characters."""
    if not isinstance(text, str):
        raise EvaluationError(f"the {what} must be text")
    text = text.strip()
    if not text:
        raise EvaluationError(f"the {what} is empty")
    if len(text) > MAX_NAME:
        raise EvaluationError(f"the {what} is longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text):
        raise EvaluationError(f"the {what} contains control characters")
    return text


def _rows(db: Connection, sql: str, params: Sequence | dict = ()) -> list[dict]:
    cur = raw_connection(db).execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def _check_range(value: int, name: str, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise EvaluationError(f"{name} must be a whole number from {low} to {high}, not {value!r}")


# --- creating a task -----------------------------------------------------------------


def _clusters(db: Connection, run_id: int) -> dict[int, dict]:
    """The run's real clusters (id -> {label, members sorted}) with at least one image."""
    out: dict[int, dict] = {}
    for r in _rows(db, "SELECT id, label FROM clusters WHERE run_id = ? AND kind = 'cluster' ORDER BY id", [run_id]):
        out[r["id"]] = {"label": r["label"], "members": []}
    for cid, iid in raw_connection(db).execute(
            "SELECT cluster_id, image_id FROM cluster_members WHERE run_id = ? ORDER BY cluster_id, image_id",
            [run_id]):
        if cid in out:
            out[cid]["members"].append(iid)
    return {c: v for c, v in out.items() if v["members"]}


def _candidate_labels(clusters: dict[int, dict]) -> dict[int, str]:
    """Each cluster's best label at creation (``cluster N`` if it has none); labels that
    two clusters share get the cluster id appended, so a coder can tell them apart."""
    text = {c: (v["label"] or "").strip() or f"cluster {c}" for c, v in clusters.items()}
    seen: dict[str, int] = {}
    for t in text.values():
        seen[t] = seen.get(t, 0) + 1
    return {c: (f"{t} [{c}]" if seen[t] > 1 else t) for c, t in text.items()}


def _draw_sets(clusters: dict[int, dict], per_cluster: int, size: int,
               rng: random.Random) -> tuple[list[tuple[int, list[int]]], list[int]]:
    sets, short = [], []
    for cid, v in clusters.items():
        members = list(v["members"])
        rng.shuffle(members)
        n = min(per_cluster, len(members) // size) if len(members) >= size else 1
        if n < per_cluster:
            short.append(cid)
        sets += [(cid, members[i * size:(i + 1) * size]) for i in range(n)]
    rng.shuffle(sets)  # coders must not see a cluster's sets one after another
    return sets, short


def _membership(db: Connection, run_id: int) -> dict[int, int | None]:
    """image id -> its cluster in the run (None: in the unclustered group)."""
    return {iid: (cid if kind == "cluster" else None) for iid, cid, kind in raw_connection(db).execute(
        "SELECT m.image_id, m.cluster_id, c.kind FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
        "WHERE m.run_id = ?", [run_id])}


def _draw_pairs(clusters: dict[int, dict], n: int, rng: random.Random, taken: set) -> list[tuple[int, int, str]]:
    """``n`` pairs within clusters (a random cluster of 2+ images, two of its images) and
    ``n`` across (two random clusters, one image of each), none drawn before."""
    out: list[tuple[int, int, str]] = []
    ids = list(clusters)
    pairable = [c for c in ids if len(clusters[c]["members"]) >= 2]
    for kind in ("within", "between"):
        got, tries = 0, 0
        while got < n and tries < 50 * n + 100:
            tries += 1
            if kind == "within":
                if not pairable:
                    break
                a, b = rng.sample(clusters[rng.choice(pairable)]["members"], 2)
            else:
                if len(ids) < 2:
                    break
                ca, cb = rng.sample(ids, 2)
                a, b = rng.choice(clusters[ca]["members"]), rng.choice(clusters[cb]["members"])
            key = (min(a, b), max(a, b))
            if key in taken:
                continue
            taken.add(key)
            out.append((a, b, kind))
            got += 1
    return out


def create_task(db: sqlite_utils.Database, name: str, *, run: str | int | None = None, sets_per_cluster: int = 3,
                set_size: int = 4, seed: int = 0, pairs: int = 0, compare_runs: Iterable[str] = ()) -> TaskSummary:
    """Make task ``name`` over clustering run ``run`` (default: the default run): image sets
    to label, or with ``pairs`` > 0 a pairs task over ``run`` and ``compare_runs``. The same
    seed and run give the same task. One transaction."""
    name = check_name(name)
    _check_range(sets_per_cluster, "--sets-per-cluster", 1, MAX_SETS_PER_CLUSTER)
    _check_range(set_size, "--set-size", 1, MAX_SET_SIZE)
    _check_range(pairs, "--pairs", 0, MAX_PAIRS)
    _check_range(seed, "--seed", 0, 2**63 - 1)
    coll = ImageCollection(db)
    main = coll.run(run)
    if main is None:
        raise EvaluationError("the database has no clustering run: run `imageclust cluster` first")
    runs = [main] + [coll.run(r) for r in compare_runs]
    if len({r["id"] for r in runs}) < len(runs):
        raise EvaluationError("a run is named twice (--run and --compare-run name different runs)")
    if len(runs) > 1 and not pairs:
        raise EvaluationError("--compare-run compares runs on image pairs: give --pairs N too")
    migrate(db, "evaluation")
    if raw_connection(db).execute("SELECT 1 FROM eval_tasks WHERE name = ?", [name]).fetchone():
        raise EvaluationError(f"there is a task named {name!r} already (imageclust evaluate list shows them)")
    rng = random.Random(seed)
    clusters = _clusters(db, main["id"])
    if len(clusters) < 2:
        raise EvaluationError(f"run {main['name']!r} has {len(clusters)} cluster(s) with images: a coder needs "
                              f"at least two labels to choose from")
    kind = "pairs" if pairs else "sets"
    params = {"sets_per_cluster": sets_per_cluster, "set_size": set_size, "pairs": pairs,
              "runs": [r["name"] for r in runs]}
    summary = TaskSummary(name, main["name"], kind, runs=params["runs"])
    with db.conn:
        if not db.conn.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        task_id = db.execute(
            "INSERT INTO eval_tasks (name, run_id, run_name, kind, params, seed, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [name, main["id"], main["name"], kind, json.dumps(params), seed, now()]).lastrowid
        labels = _candidate_labels(clusters)
        db.conn.executemany("INSERT INTO eval_candidates (task_id, cluster_id, label) VALUES (?, ?, ?)",
                            [(task_id, c, t) for c, t in labels.items()])
        summary.candidates = len(labels)
        if kind == "sets":
            drawn, summary.short_clusters = _draw_sets(clusters, sets_per_cluster, set_size, rng)
            for no, (cid, images) in enumerate(drawn, 1):
                sid = db.execute("INSERT INTO eval_sets (task_id, set_no, cluster_id) VALUES (?, ?, ?)",
                                 [task_id, no, cid]).lastrowid
                db.conn.executemany("INSERT INTO eval_set_images (set_id, position, image_id) VALUES (?, ?, ?)",
                                    [(sid, p, i) for p, i in enumerate(images, 1)])
                summary.images += len(images)
            summary.sets = len(drawn)
        else:
            _store_pairs(db, task_id, runs, clusters, pairs, rng, summary)
    return summary


def _store_pairs(db: sqlite_utils.Database, task_id: int, runs: list[dict], main_clusters: dict[int, dict],
                 n: int, rng: random.Random, summary: TaskSummary) -> None:
    taken: set = set()
    drawn: list[tuple[int, int, str, int]] = []
    for r in runs:
        clusters = main_clusters if r is runs[0] else _clusters(db, r["id"])
        drawn += [(a, b, k, r["id"]) for a, b, k in _draw_pairs(clusters, n, rng, taken)]
    rng.shuffle(drawn)  # within and between pairs interleaved, runs mixed
    members = {r["id"]: _membership(db, r["id"]) for r in runs}
    for no, (a, b, kind, run_id) in enumerate(drawn, 1):
        pid = db.execute("INSERT INTO eval_pairs (task_id, pair_no, image_a, image_b, drawn_run_id, drawn_as) "
                         "VALUES (?, ?, ?, ?, ?, ?)", [task_id, no, a, b, run_id, kind]).lastrowid
        for r in runs:
            ca, cb = members[r["id"]].get(a), members[r["id"]].get(b)
            relation = "unclustered" if ca is None or cb is None else "within" if ca == cb else "between"
            db.execute("INSERT INTO eval_pair_relations (pair_id, run_id, run_name, relation) VALUES (?, ?, ?, ?)",
                       [pid, r["id"], r["name"], relation])
    summary.pairs = len(drawn)


# --- reading a task --------------------------------------------------------------------


def has_tasks(db: Connection) -> bool:
    return bool(raw_connection(db).execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'eval_tasks'").fetchone())


def tasks(db: Connection) -> list[dict]:
    """Every task, oldest first, with its counts of sets, pairs, coders and answers."""
    if not has_tasks(db):
        return []
    out = _rows(db, """
        SELECT t.id, t.name, t.run_name AS run, t.kind, t.params, t.seed, t.created,
               (SELECT count(*) FROM eval_sets s WHERE s.task_id = t.id) AS sets,
               (SELECT count(*) FROM eval_pairs p WHERE p.task_id = t.id) AS pairs,
               (SELECT count(DISTINCT coder) FROM (SELECT coder FROM eval_answers a WHERE a.task_id = t.id
                UNION ALL SELECT coder FROM eval_ratings g WHERE g.task_id = t.id)) AS coders,
               (SELECT count(*) FROM eval_answers a WHERE a.task_id = t.id)
                 + (SELECT count(*) FROM eval_ratings g WHERE g.task_id = t.id) AS answers
        FROM eval_tasks t ORDER BY t.id""")
    for t in out:
        t["params"] = json.loads(t["params"])
    return out


def task(db: Connection, name: str) -> dict:
    """Task ``name`` (EvaluationError naming the tasks there are if there is none)."""
    found = [t for t in tasks(db) if t["name"] == name]
    if not found:
        names = ", ".join(repr(t["name"]) for t in tasks(db)) or "none; make one with `imageclust evaluate create`"
        raise EvaluationError(f"no evaluation task named {name!r} (tasks: {names})")
    return found[0]


def candidates(db: Connection, task_id: int) -> list[dict]:
    """The labels to choose from ({cluster_id, label}), by cluster id."""
    return _rows(db, "SELECT cluster_id, label FROM eval_candidates WHERE task_id = ? ORDER BY cluster_id", [task_id])


def shuffled_candidates(db: Connection, task: dict, coder: str) -> list[dict]:
    """The candidates in this coder's own order: shuffled, seeded by the task's seed and
    the coder, so each coder sees a fixed order and coders see different ones."""
    out = candidates(db, task["id"])
    random.Random(f"{task['seed']}:{coder}").shuffle(out)
    return out


def sets(db: Connection, task_id: int, *, truth: bool = True) -> list[dict]:
    """The task's sets ({set_no, image_ids[, cluster_id]}) by number."""
    out: dict[int, dict] = {}
    for no, cid, iid in raw_connection(db).execute(
            "SELECT s.set_no, s.cluster_id, i.image_id FROM eval_sets s JOIN eval_set_images i ON i.set_id = s.id "
            "WHERE s.task_id = ? ORDER BY s.set_no, i.position", [task_id]):
        row = out.setdefault(no, {"set_no": no, "image_ids": [], **({"cluster_id": cid} if truth else {})})
        row["image_ids"].append(iid)
    return list(out.values())


def pairs(db: Connection, task_id: int) -> list[dict]:
    """The task's pairs ({pair_no, image_a, image_b}) by number."""
    return _rows(db, "SELECT pair_no, image_a, image_b FROM eval_pairs WHERE task_id = ? ORDER BY pair_no", [task_id])


def answers_of(db: Connection, task_id: int, coder: str) -> dict[int, int | None]:
    """set number -> the cluster this coder chose (None: none fits)."""
    return dict(raw_connection(db).execute(
        "SELECT s.set_no, a.cluster_id FROM eval_answers a JOIN eval_sets s ON s.id = a.set_id "
        "WHERE a.task_id = ? AND a.coder = ?", [task_id, coder]).fetchall())


# --- recording answers -------------------------------------------------------------------


def check_answer(db: Connection, task: dict, set_no: Any, cluster_id: Any) -> tuple[int, int | None]:
    """(set id, cluster id or None) of an answer, or EvaluationError saying what is wrong."""
    if task["kind"] != "sets":
        raise EvaluationError(f"task {task['name']!r} rates pairs; it has no sets to answer")
    row = raw_connection(db).execute("SELECT id FROM eval_sets WHERE task_id = ? AND set_no = ?",
                                     [task["id"], set_no]).fetchone()
    if row is None:
        raise EvaluationError(f"set {set_no} is not a set of task {task['name']!r} (sets 1-{task['sets']})")
    if cluster_id is not None and not raw_connection(db).execute(
            "SELECT 1 FROM eval_candidates WHERE task_id = ? AND cluster_id = ?", [task["id"], cluster_id]).fetchone():
        raise EvaluationError(f"cluster {cluster_id} is not one of the task's labels "
                              f"(labels.csv of `imageclust evaluate export` lists them)")
    return row[0], cluster_id


def record_answers(db: sqlite_utils.Database, task: dict, answers: Iterable[tuple[str, int, int | None]]) -> int:
    """Store (coder, set number, cluster id or None) answers in one transaction: all are
    checked first, so one bad answer writes none. A coder's new answer to a set replaces
    the old one. Returns how many were stored."""
    rows = [(check_name(coder, "coder name"), *check_answer(db, task, s, c)) for coder, s, c in answers]
    return _replace_all(db, task, rows,
                        "INSERT INTO eval_answers (task_id, coder, set_id, cluster_id, time) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (task_id, coder, set_id) DO UPDATE SET cluster_id = excluded.cluster_id, "
                        "time = excluded.time")


def _replace_all(db: sqlite_utils.Database, task: dict, rows: list[tuple], sql: str) -> int:
    """Store checked (coder, key, value) rows of ``task`` with ``sql`` (an upsert) in one
    transaction, all stamped with the same time."""
    stamp = now()
    with db.conn:
        if not db.conn.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        db.conn.executemany(sql, [(task["id"], coder, key, value, stamp) for coder, key, value in rows])
    return len(rows)


def check_rating(db: Connection, task: dict, pair_no: Any, rating: Any) -> tuple[int, int]:
    """(pair id, rating) of a rating, or EvaluationError."""
    if task["kind"] != "pairs":
        raise EvaluationError(f"task {task['name']!r} has sets, not pairs to rate")
    row = raw_connection(db).execute("SELECT id FROM eval_pairs WHERE task_id = ? AND pair_no = ?",
                                     [task["id"], pair_no]).fetchone()
    if row is None:
        raise EvaluationError(f"pair {pair_no} is not a pair of task {task['name']!r} (pairs 1-{task['pairs']})")
    if rating not in RATINGS:
        raise EvaluationError(f"a rating is 1, 2 or 3, not {rating!r}")
    return row[0], rating


def record_ratings(db: sqlite_utils.Database, task: dict, ratings: Iterable[tuple[str, int, int]]) -> int:
    """Store (coder, pair number, rating 1-3) ratings, as :func:`record_answers` does answers."""
    rows = [(check_name(coder, "coder name"), *check_rating(db, task, p, r)) for coder, p, r in ratings]
    return _replace_all(db, task, rows,
                        "INSERT INTO eval_ratings (task_id, coder, pair_id, rating, time) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (task_id, coder, pair_id) DO UPDATE SET rating = excluded.rating, "
                        "time = excluded.time")
