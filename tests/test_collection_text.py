"""The collection's rules for descriptions and tags (store/collection.py): which description
of an image counts, which tag source, the description vectors, what a run was made from."""
from __future__ import annotations

import numpy as np
import pytest

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import vectors
from datasette_imageclust.store.collection import ImageCollection, NotFound
from datasette_imageclust.store.schema import migrate, now


def _db(path):
    db = dbmod.connect(str(path))
    for c in ("core", "clusters", "text"):
        migrate(db, c)
    with db.conn:
        for iid in (1, 2, 3):
            db.execute("INSERT INTO images (id, sha256, bytes, created) VALUES (?, ?, 1, ?)", [iid, f"s{iid}", now()])
        for pid in (1, 2):
            db.execute("INSERT INTO prompts (id, sha256, text, created) VALUES (?, ?, ?, ?)",
                       [pid, f"p{pid}", f"prompt {pid}", now()])
        rows = [  # (id, image, model, prompt, created)
            (10, 1, "llava", 1, "2025-01-01T00:00:00+00:00"),
            (11, 1, "gpt", 1, "2025-02-01T00:00:00+00:00"),     # image 1's newest
            (12, 1, "llava", 2, "2025-01-15T00:00:00+00:00"),
            (13, 2, "llava", 1, "2025-01-01T00:00:00+00:00"),
            (14, 2, "llava", 2, "2025-01-01T00:00:00+00:00"),   # same time: the higher id is newer
        ]
        for did, iid, model, pid, created in rows:
            db.execute("INSERT INTO descriptions (id, image_id, model, api, prompt_id, text, input, created) "
                       "VALUES (?, ?, ?, 'ollama', ?, ?, 'thumbnail', ?)", [did, iid, model, pid, f"text {did}", created])
    return db


def test_which_description_counts(tmp_path):
    coll = ImageCollection(_db(tmp_path / "d.db"))
    pick = lambda **kw: {r["image_id"]: r["description_id"] for r in coll.descriptions(**kw)}  # noqa: E731
    assert pick() == {1: 11, 2: 14}                                   # the newest of each image; 3 has none
    assert pick(describer="llava") == {1: 12, 2: 14}
    assert pick(describer="llava", prompt_id=1) == {1: 10, 2: 13}
    assert pick(prompt_id=2) == {1: 12, 2: 14}
    assert pick(describer="nobody") == {}
    assert pick(image_ids=[2, 3]) == {2: 14}
    assert coll.descriptions()[0]["text"] == "text 11"
    assert [(d["model"], d["prompt_id"], d["images"]) for d in coll.describers()] == \
        [("gpt", 1, 1), ("llava", 2, 2), ("llava", 1, 2)]


def test_description_vectors_follow_the_same_rule(tmp_path):
    db = _db(tmp_path / "v.db")
    table = vectors.descriptions(7)
    with db.conn:
        vectors.ensure_table(db, 3, table)
        vectors.put(db, [10, 11, 13], np.array([[2, 0, 0], [0, 3, 0], [0, 0, 4]], np.float32), table)
    coll = ImageCollection(db)
    ids, x = coll.vectors("descriptions", text_model_id=7)
    assert ids.tolist() == [1] and np.allclose(x, [[0, 1, 0]])      # 14 (image 2's newest) is not embedded yet
    ids, x = coll.vectors("descriptions", text_model_id=7, prompt_id=1, describer="llava")
    assert ids.tolist() == [1, 2] and np.allclose(x, [[1, 0, 0], [0, 0, 1]])
    assert coll.vectors("descriptions", text_model_id=8)[0].tolist() == []  # another model: no table


def test_tag_sources(tmp_path):
    db = _db(tmp_path / "t.db")
    coll = ImageCollection(db)
    assert coll.tag_source() is None
    with db.conn:
        for iid, source, tag, rank in ((1, "vlm:llava", "cat", 1), (2, "vlm:llava", "dog", 1),
                                       (1, "clip", "tabby", 2), (1, "clip", "cat", 1)):
            db.execute("INSERT INTO image_tags (image_id, source, tag, score, rank, created) VALUES (?, ?, ?, ?, ?, ?)",
                       [iid, source, tag, 0.5 / rank, rank, now()])
    assert coll.tag_sources() == {"vlm:llava": 2, "clip": 1}
    assert coll.tag_source() == "clip" and coll.tag_source("vlm:llava") == "vlm:llava"
    with pytest.raises(NotFound, match="no tags from source 'vlm:x' \\(sources: vlm:llava, clip\\)"):
        coll.tag_source("vlm:x")
    assert coll.tags("clip") == {1: [("cat", 0.5), ("tabby", 0.25)]}
    assert coll.tags("vlm:llava", image_ids=[2]) == {2: [("dog", 0.5)]}


def test_runs_say_what_they_were_made_from(tmp_path):
    db = _db(tmp_path / "r.db")
    with db.conn:
        for name, source in (("a", "images"), ("b", "descriptions")):
            db.execute("INSERT INTO cluster_runs (name, method, params, n_images, n_clusters, created, source) "
                       "VALUES (?, 'ward', '{}', 0, 0, ?, ?)", [name, now(), source])
    assert {r["name"]: r["source"] for r in ImageCollection(db).runs()} == {"a": "images", "b": "descriptions"}
