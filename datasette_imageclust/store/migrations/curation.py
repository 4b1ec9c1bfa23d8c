"""Component ``curation``: the edits people make to a clustering run (`imageclust move`,
`merge`, `split`, `label`, `note`, `review`, `undo`, and the same from the browser).

Every edit is a row of ``cluster_ops``, applied to the run's tables when it is made and
re-applied, in order, when `imageclust cluster` re-runs the run (analysis/curation.py).
"""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("curation")
def _curation_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        -- One edit of a run, in the order made (id); re-applied in that order after a re-run.
        CREATE TABLE cluster_ops (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES cluster_runs(id),
            actor TEXT NOT NULL,             -- the Datasette actor id, or cli:<OS user>
            created TEXT NOT NULL,
            op TEXT NOT NULL,                -- label, note, review, move, merge, split
            args TEXT NOT NULL,              -- JSON: what was asked, with the members of each
                                             -- cluster named (how a re-run finds it again)
            undo TEXT,                       -- JSON: the state before the op's last application
            undone TEXT,                     -- when it was undone (NULL: in force)
            undone_by TEXT,
            status TEXT NOT NULL,            -- applied, partial (some images gone) or stale
            message TEXT,                    -- why partial or stale (no longer applies)
            applied TEXT NOT NULL            -- when last applied (made, or re-applied)
        );
        CREATE INDEX cluster_ops_run ON cluster_ops(run_id, id);
        -- A cluster's note and reviewed state (written by note / review operations).
        CREATE TABLE cluster_notes (
            cluster_id INTEGER PRIMARY KEY REFERENCES clusters(id),
            note TEXT,
            note_by TEXT,
            note_at TEXT,
            reviewed INTEGER NOT NULL DEFAULT 0,
            reviewed_by TEXT,
            reviewed_at TEXT
        );
        -- A cluster that goes (a re-run, a merge, a deleted run) takes its note with it;
        -- a deleted run takes its operations.
        CREATE TRIGGER curation_forget_cluster BEFORE DELETE ON clusters
        BEGIN
            DELETE FROM cluster_notes WHERE cluster_id = old.id;
        END;
        CREATE TRIGGER curation_forget_run BEFORE DELETE ON cluster_runs
        BEGIN
            DELETE FROM cluster_ops WHERE run_id = old.id;
        END;
        """
    )
