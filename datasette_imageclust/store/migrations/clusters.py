"""Component ``clusters``: what `imageclust cluster` and `imageclust duplicates` write."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("clusters")
def _clusters_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        -- A named clustering run; several live side by side, one is the default.
        CREATE TABLE cluster_runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            method TEXT NOT NULL,            -- ward, kmeans, hdbscan
            params TEXT NOT NULL,            -- JSON of every parameter used
            model_id INTEGER REFERENCES models(id),
            is_default INTEGER NOT NULL DEFAULT 0,
            representatives INTEGER NOT NULL DEFAULT 3,  -- members with rank <= this
            n_images INTEGER NOT NULL,
            n_clusters INTEGER NOT NULL,     -- real clusters (not the unclustered group)
            created TEXT NOT NULL,
            seconds REAL
        );
        -- ids are kept across re-runs of a name where clusters match, so labels survive.
        CREATE TABLE clusters (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES cluster_runs(id),
            kind TEXT NOT NULL DEFAULT 'cluster',  -- 'cluster', or 'unclustered' (noise/leftovers)
            label TEXT,                      -- the best label (user > ollama > clip > terms)
            size INTEGER NOT NULL,
            cohesion REAL,                   -- mean cosine similarity of members to the centroid
            centroid BLOB                    -- float32, L2-normalised
        );
        CREATE INDEX clusters_run_id ON clusters(run_id);
        CREATE TABLE cluster_members (
            run_id INTEGER NOT NULL REFERENCES cluster_runs(id),
            cluster_id INTEGER NOT NULL REFERENCES clusters(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            distance REAL NOT NULL,          -- cosine distance to the cluster centroid
            rank INTEGER NOT NULL,           -- 1 = nearest the centroid
            PRIMARY KEY (run_id, image_id)
        );
        CREATE INDEX cluster_members_cluster ON cluster_members(cluster_id, rank);
        CREATE INDEX cluster_members_image ON cluster_members(image_id);
        -- Every label of a cluster, by source: user, ollama, clip, terms.
        CREATE TABLE cluster_labels (
            cluster_id INTEGER NOT NULL REFERENCES clusters(id),
            source TEXT NOT NULL,
            label TEXT NOT NULL,
            detail TEXT,                     -- JSON: scores, terms, the LLM's phrase
            created TEXT NOT NULL,
            PRIMARY KEY (cluster_id, source)
        );
        -- Near-duplicate groups (exact duplicates are files sharing an image_id).
        CREATE TABLE duplicate_groups (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT 'near',
            size INTEGER NOT NULL
        );
        CREATE TABLE duplicate_members (
            group_id INTEGER NOT NULL REFERENCES duplicate_groups(id),
            image_id INTEGER NOT NULL REFERENCES images(id),
            PRIMARY KEY (group_id, image_id)
        );
        CREATE INDEX duplicate_members_image ON duplicate_members(image_id);
        """
    )


@migration("clusters")
def _clusters_v2(db: sqlite_utils.Database) -> None:
    script(db, """
        -- Text vectors of the zero-shot vocabulary, per model (by vision_model.onnx sha256).
        CREATE TABLE vocabulary_vectors (
            model_sha256 TEXT NOT NULL,
            term TEXT NOT NULL,
            prompt TEXT NOT NULL,            -- the text actually embedded
            vector BLOB NOT NULL,            -- float32, L2-normalised
            PRIMARY KEY (model_sha256, term)
        );
        -- The evidence behind near-duplicate groups: every accepted pair.
        CREATE TABLE duplicate_pairs (
            group_id INTEGER NOT NULL REFERENCES duplicate_groups(id),
            image_a INTEGER NOT NULL REFERENCES images(id),
            image_b INTEGER NOT NULL REFERENCES images(id),
            phash_distance INTEGER,          -- Hamming distance of the 64-bit pHashes
            dhash_distance INTEGER,
            similarity REAL,                 -- cosine similarity of the image vectors
            rank INTEGER,                    -- b's rank among a's vector neighbours (1 = nearest)
            PRIMARY KEY (image_a, image_b)
        );
        CREATE INDEX duplicate_pairs_group ON duplicate_pairs(group_id);
        """
    )


@migration("clusters")
def _clusters_v3(db: sqlite_utils.Database) -> None:
    # An image removed by `load --prune` (or a changed file) leaves its clusters and
    # duplicate groups first, whoever deletes it; otherwise the foreign keys refuse.
    script(db, """
        CREATE TRIGGER clusters_forget_image BEFORE DELETE ON images
        BEGIN
            UPDATE clusters SET size = size - 1
             WHERE id IN (SELECT cluster_id FROM cluster_members WHERE image_id = old.id);
            DELETE FROM cluster_members WHERE image_id = old.id;
            DELETE FROM duplicate_pairs WHERE image_a = old.id OR image_b = old.id;
            UPDATE duplicate_groups SET size = size - 1
             WHERE id IN (SELECT group_id FROM duplicate_members WHERE image_id = old.id);
            DELETE FROM duplicate_members WHERE image_id = old.id;
        END;
        """
    )


@migration("clusters")
def _clusters_v4(db: sqlite_utils.Database) -> None:
    # What a run clustered: the images' vectors, their descriptions' vectors or their tags
    # (the exact model, prompt or tag source is in params).
    script(db, """
        ALTER TABLE cluster_runs ADD COLUMN source TEXT NOT NULL DEFAULT 'images';
        """
    )
