"""Component ``search``: what `imageclust index` writes (analysis/search.py)."""
from __future__ import annotations

import sqlite_utils

from ..schema import migration, script


@migration("search")
def _search_v1(db: sqlite_utils.Database) -> None:
    # The binary vec0 table (image_bits) is created by search.build_index: its width
    # depends on the model's dimensions.
    script(db, """
        -- The one similarity index of this database (id is always 1).
        CREATE TABLE search_index (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            model_id INTEGER,                -- models.id whose vectors were indexed
            dimensions INTEGER NOT NULL,
            n_vectors INTEGER NOT NULL,      -- rows of image_vectors when built (staleness check)
            mean BLOB NOT NULL,              -- float32 mean vector subtracted before sign-quantising
            built TEXT NOT NULL,
            seconds REAL
        );
        -- float32 copies of the vectors in a plain table: exact rescoring of the bit
        -- prefilter's candidates needs fast lookups by id, which vec0 point reads are not.
        CREATE TABLE search_vectors (
            image_id INTEGER PRIMARY KEY,
            embedding BLOB NOT NULL
        );
        """
    )


@migration("search")
def _search_v2(db: sqlite_utils.Database) -> None:
    # The bits again, in a few large BLOBs: a server process reads them all in one go
    # (a million rows of image_bits take seconds to read through vec0).
    script(db, """
        CREATE TABLE search_bits (
            chunk INTEGER PRIMARY KEY,
            ids BLOB NOT NULL,               -- int64 little-endian image ids
            bits BLOB NOT NULL               -- the rows of image_bits, packed, in the same order
        );
        """
    )


@migration("search")
def _search_v3(db: sqlite_utils.Database) -> None:
    # Int8 codes of the vectors (analysis/searchcodes.py), for a server process to rescore
    # a deep candidate list in memory. An index built before them still works (bits only).
    script(db, """
        ALTER TABLE search_index ADD COLUMN code_scale BLOB;  -- float32 per-dimension scale of the codes
        CREATE TABLE search_codes (
            chunk INTEGER PRIMARY KEY,       -- the search_bits chunk of these vectors
            codes BLOB NOT NULL              -- int8 codes of its vectors, D bytes each, in the same order
        );
        """
    )
