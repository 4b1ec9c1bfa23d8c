"""Component ``text``: what `imageclust describe` and `imageclust tag` write, and the
vectors of descriptions (descriptions and tags: the meaning of images, as text)."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("text")
def _text_v1(db: sqlite_utils.Database) -> None:
    script(db, """
        -- The prompts sent to vision LLMs, by content: a description names the one it answers.
        CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,     -- of the text (UTF-8)
            text TEXT NOT NULL,
            created TEXT NOT NULL
        );
        -- One vision LLM's description of one image, for one prompt.
        CREATE TABLE descriptions (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            model TEXT NOT NULL,             -- the model as its server names it (llava:13b, gpt-4o-mini)
            api TEXT NOT NULL,               -- ollama or openai (the OpenAI-compatible chat API)
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            text TEXT NOT NULL,
            input TEXT NOT NULL,             -- what was sent: 'thumbnail' (stored) or 'original <N>px'
            created TEXT NOT NULL,
            seconds REAL,                    -- how long the server took to answer
            UNIQUE (image_id, model, prompt_id)
        );
        CREATE INDEX descriptions_image ON descriptions(image_id);
        -- Full-text search over the descriptions (as `sqlite-utils enable-fts` makes it, so
        -- Datasette's search box and `match` queries work).
        CREATE VIRTUAL TABLE descriptions_fts USING FTS5 (
            text, content=[descriptions], tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER descriptions_ai AFTER INSERT ON descriptions BEGIN
            INSERT INTO descriptions_fts (rowid, text) VALUES (new.rowid, new.text);
        END;
        CREATE TRIGGER descriptions_ad AFTER DELETE ON descriptions BEGIN
            INSERT INTO descriptions_fts (descriptions_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
        END;
        CREATE TRIGGER descriptions_au AFTER UPDATE ON descriptions BEGIN
            INSERT INTO descriptions_fts (descriptions_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
            INSERT INTO descriptions_fts (rowid, text) VALUES (new.rowid, new.text);
        END;
        -- Images a server refused (after its retries); retried on the next run.
        CREATE TABLE description_errors (
            image_id INTEGER NOT NULL REFERENCES images(id),
            model TEXT NOT NULL,
            prompt_id INTEGER NOT NULL REFERENCES prompts(id),
            reason TEXT NOT NULL,
            time TEXT NOT NULL,
            PRIMARY KEY (image_id, model, prompt_id)
        );
        -- Tags per image: CLIP zero-shot over the shipped vocabulary (source 'clip'), or the
        -- tags a vision LLM gave in a JSON answer (source 'vlm:<model>').
        CREATE TABLE image_tags (
            image_id INTEGER NOT NULL REFERENCES images(id),
            source TEXT NOT NULL,
            tag TEXT NOT NULL,
            score REAL,                      -- clip: calibrated similarity; vlm: the model's own, if any
            rank INTEGER NOT NULL,           -- 1 = this source's best tag for the image
            created TEXT NOT NULL,
            PRIMARY KEY (image_id, source, tag)
        );
        CREATE INDEX image_tags_tag ON image_tags(tag, source);
        -- Text models that embedded descriptions. Their vectors live in one vec0 table per
        -- model, description_vectors_<id> (description_id, embedding float[dimensions]),
        -- made on first use: a vec0 table's width is fixed.
        CREATE TABLE text_models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,              -- directory or Hub id
            kind TEXT NOT NULL,              -- clip (a CLIP text tower) or sentence (a mean-pooled encoder)
            dimensions INTEGER NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,     -- of the ONNX file
            max_tokens INTEGER,              -- longer texts are truncated (CLIP: 77)
            created TEXT NOT NULL
        );
        -- An image removed by `load --prune` (or a changed file) takes its descriptions and
        -- tags with it (their vectors are then unreachable and dropped when next embedded).
        CREATE TRIGGER text_forget_image BEFORE DELETE ON images
        BEGIN
            DELETE FROM descriptions WHERE image_id = old.id;
            DELETE FROM description_errors WHERE image_id = old.id;
            DELETE FROM image_tags WHERE image_id = old.id;
        END;
        """
    )
