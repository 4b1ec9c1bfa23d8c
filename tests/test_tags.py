"""`imageclust tag`: CLIP zero-shot tags per image, calibrated as the cluster labels are,
incremental, resumable, and one clear message for a model without a text tower."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from datasette_imageclust import pipeline
from datasette_imageclust.analysis import labels, tags
from datasette_imageclust.cli import cli
from datasette_imageclust.store.collection import ImageCollection
from datasette_imageclust.store.connection import connect
from tinyclip import make_tiny_clip


@pytest.fixture
def db_path(tiny_clip_db, tmp_path):
    p = tmp_path / "t.db"
    shutil.copy(tiny_clip_db, p)
    return str(p)


def _tags(db):
    out = {}
    for iid, tag, score, rank in db.execute("SELECT image_id, tag, score, rank FROM image_tags WHERE source = 'clip' "
                                            "ORDER BY image_id, rank"):
        out.setdefault(iid, []).append((tag, score, rank))
    return out


def test_every_image_gets_its_best_calibrated_terms(db_path):
    db = connect(db_path)
    s = pipeline.tag(db, top=5)
    assert (s.images, s.already, s.tags, s.interrupted) == (18, 0, 90, False)
    got = _tags(db)
    ids, x = ImageCollection(db).vectors()
    assert sorted(got) == sorted(ids.tolist())
    # The same ranking computed here from the stored vectors: similarity minus half the
    # term's mean similarity over all images.
    vocab = labels.vocabulary()
    text = labels.vocabulary_vectors(db, ImageCollection(db).model(), vocab)
    sims = x @ text.T
    score = sims - 0.5 * sims.mean(0)
    for row, iid in enumerate(ids.tolist()):
        want = [vocab[j] for j in np.argsort(-score[row])[:5]]
        assert [t for t, _, _ in got[iid]] == want
        assert [r for _, _, r in got[iid]] == [1, 2, 3, 4, 5]
        assert np.allclose([sc for _, sc, _ in got[iid]], np.sort(score[row])[::-1][:5], atol=1e-4)


def test_incremental_min_score_and_replace(db_path, tmp_path, tux_dir):
    db = connect(db_path)
    pipeline.tag(db, top=3)
    first = _tags(db)
    s = pipeline.tag(db, top=3)
    assert (s.images, s.already, s.tags) == (0, 18, 0)  # nothing to do
    # New images: only they are tagged.
    new = tmp_path / "more" / "flowers"
    new.mkdir(parents=True)
    for f in sorted((tux_dir / "flowers").iterdir())[:4]:
        shutil.copy(f, new / f.name)
    db.close()
    pipeline.load(db_path, [str(new)], ImageCollection(connect(db_path)).model()["name"])
    db = connect(db_path)
    s = pipeline.tag(db, top=3)
    assert (s.images, s.already) == (4, 18)
    assert {k: v for k, v in _tags(db).items() if k in first} == first  # the others untouched
    # --replace with a minimum score: every image again, only tags scoring at least S.
    all_scores = [sc for v in _tags(db).values() for _, sc, _ in v]
    cut = float(np.median(all_scores))
    s = pipeline.tag(db, top=3, min_score=cut, replace=True)
    assert s.images == 22 and s.retagged == "--replace"
    kept = [sc for v in _tags(db).values() for _, sc, _ in v]
    assert kept and min(kept) >= cut and len(kept) < 66


def test_interrupted_run_resumes_without_duplicates(db_path, monkeypatch):
    db = connect(db_path)
    monkeypatch.setattr(tags, "CHUNK", 5)

    def stop_after_two_chunks(done, total):
        if done >= 10:
            raise KeyboardInterrupt

    s = pipeline.tag(db, top=2, on_progress=stop_after_two_chunks)
    assert s.interrupted and s.images == 10
    assert len(_tags(db)) == 10
    s = pipeline.tag(db, top=2)
    assert (s.images, s.already, s.interrupted) == (8, 10, False)
    n, distinct = db.execute("SELECT count(*), count(DISTINCT image_id || '/' || tag) FROM image_tags").fetchone()
    assert n == distinct == 36


def test_another_model_retags_everything(db_path, tmp_path):
    db = connect(db_path)
    pipeline.tag(db, top=2)
    before = _tags(db)
    other = make_tiny_clip(tmp_path / "other", seed=7)
    folder = db.execute("SELECT root FROM files LIMIT 1").fetchone()[0]
    db.close()
    pipeline.load(db_path, [folder], str(other), reembed=True)
    db = connect(db_path)
    s = pipeline.tag(db, top=2)
    assert s.images == 18 and "model changed" in s.retagged
    assert _tags(db) != before


def test_cli_tag_json_and_a_model_without_a_text_tower(db_path, tux_db, tmp_path):
    r = CliRunner().invoke(cli, ["tag", db_path, "--top", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tags"] == 72
    assert "18 images tagged" in r.stderr
    r = CliRunner().invoke(cli, ["tag", db_path, "--top", "0"])
    assert r.exit_code == 1 and r.stderr.strip() == "Error: --top must be at least 1"
    stand_in = tmp_path / "s.db"
    shutil.copy(tux_db, stand_in)
    r = CliRunner().invoke(cli, ["tag", str(stand_in)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    (line,) = r.stderr.strip().splitlines()
    assert "CLIP tags need the model's text tower" in line and "no text tower" in line
    assert "image_tags" not in connect(str(stand_in)).table_names()  # nothing written
