"""Component ``evaluation``: interpretability tasks (`imageclust evaluate`), the AoIR 2025
paper's protocol: coders see random image sets of a run's clusters and pick the label that
fits (or none); image pairs rated 1-3 for similarity.

A task is a frozen snapshot: it copies what it needs at creation (the run's name, each
set's true cluster, the candidate labels, each pair's relation in every run compared), so
re-running `cluster`, deleting the run or pruning images never changes a task's answers or
report. Hence no foreign keys to runs, clusters or images (they would also stop those
deletions)."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("evaluation")
def _evaluation_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        -- One coding task over one clustering run.
        CREATE TABLE eval_tasks (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            run_id INTEGER NOT NULL,         -- cluster_runs.id at creation (no foreign key: see above)
            run_name TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('sets', 'pairs')),
            params TEXT NOT NULL,            -- JSON: sets_per_cluster, set_size, pairs, runs compared
            seed INTEGER NOT NULL,
            created TEXT NOT NULL
        );
        -- The labels a coder chooses from: the run's clusters and their best label at creation.
        CREATE TABLE eval_candidates (
            task_id INTEGER NOT NULL REFERENCES eval_tasks(id),
            cluster_id INTEGER NOT NULL,     -- clusters.id in the task's run
            label TEXT NOT NULL,
            PRIMARY KEY (task_id, cluster_id)
        );
        -- An image set drawn from one cluster (its true cluster).
        CREATE TABLE eval_sets (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES eval_tasks(id),
            set_no INTEGER NOT NULL,         -- 1, 2, ... within the task, in a seeded random order
            cluster_id INTEGER NOT NULL,     -- the true cluster
            UNIQUE (task_id, set_no)
        );
        CREATE TABLE eval_set_images (
            set_id INTEGER NOT NULL REFERENCES eval_sets(id),
            position INTEGER NOT NULL,       -- 1, 2, ... as shown
            image_id INTEGER NOT NULL,
            PRIMARY KEY (set_id, position)
        );
        -- An image pair to rate (pairs tasks).
        CREATE TABLE eval_pairs (
            id INTEGER PRIMARY KEY,
            task_id INTEGER NOT NULL REFERENCES eval_tasks(id),
            pair_no INTEGER NOT NULL,
            image_a INTEGER NOT NULL,
            image_b INTEGER NOT NULL,
            drawn_run_id INTEGER NOT NULL,   -- the run whose clusters it was drawn from
            drawn_as TEXT NOT NULL CHECK (drawn_as IN ('within', 'between')),
            UNIQUE (task_id, pair_no)
        );
        -- Every pair's relation in every run the task compares (all runs rate the same pairs).
        CREATE TABLE eval_pair_relations (
            pair_id INTEGER NOT NULL REFERENCES eval_pairs(id),
            run_id INTEGER NOT NULL,
            run_name TEXT NOT NULL,
            relation TEXT NOT NULL CHECK (relation IN ('within', 'between', 'unclustered')),
            PRIMARY KEY (pair_id, run_id)
        );
        -- A coder's answer to a set: the chosen cluster, NULL for "none fits". Answering
        -- again replaces it.
        CREATE TABLE eval_answers (
            task_id INTEGER NOT NULL REFERENCES eval_tasks(id),
            coder TEXT NOT NULL,             -- the Datasette actor id, a typed name, or the import's
            set_id INTEGER NOT NULL REFERENCES eval_sets(id),
            cluster_id INTEGER,
            time TEXT NOT NULL,
            PRIMARY KEY (task_id, coder, set_id)
        );
        -- A coder's similarity rating of a pair: 1 (not similar) to 3 (very similar).
        CREATE TABLE eval_ratings (
            task_id INTEGER NOT NULL REFERENCES eval_tasks(id),
            coder TEXT NOT NULL,
            pair_id INTEGER NOT NULL REFERENCES eval_pairs(id),
            rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 3),
            time TEXT NOT NULL,
            PRIMARY KEY (task_id, coder, pair_id)
        );
        """
    )
