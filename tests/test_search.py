"""The similarity index: build, recall against exact search, staleness, CLI, text queries."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.analysis import search, embed_query
from datasette_imageclust.store import vectors
from datasette_imageclust.cli import cli
from datasette_imageclust.store.schema import migrate
import benchscripts


@pytest.fixture
def tux_copy(tux_db, tmp_path) -> str:
    path = str(tmp_path / "tux.db")
    shutil.copy(tux_db, path)
    search.clear_cache()
    return path


def exact_top(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int, skip: int | None = None) -> set[int]:
    s = x @ q
    if skip is not None:
        s[ids == skip] = -np.inf
    return set(ids[np.argsort(-s)[:k]].tolist())


def synthetic_db(path: str, n: int = 3000, dims: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, dims)).astype(np.float32)
    x = centres[rng.integers(0, 30, n)] + 0.5 * rng.standard_normal((n, dims)).astype(np.float32)
    x += 3.0  # all-positive, like CNN features: plain sign bits would all be 1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    db = dbmod.connect(path)
    migrate(db, "core")
    vectors.ensure_table(db, dims)
    ids = np.arange(1, n + 1) * 3  # ids need not be dense
    with db.conn:
        vectors.put(db, ids.tolist(), x)
    search.build_index(db)
    db.conn.close()
    return ids, x


def test_index_on_real_vectors_is_mean_centred_and_fresh(tux_copy):
    db = dbmod.connect(tux_copy)
    ids, x = vectors.read_all(db)
    assert (x >= 0).all(), "the stand-in's vectors are non-negative: the case mean-centring is for"
    summary = search.build_index(db)
    assert summary.vectors == 353 and summary.dimensions == x.shape[1]
    st = search.status(db)
    assert st.present and st.fresh and st.indexed == 353
    bits = np.unpackbits(np.frombuffer(
        b"".join(r[0] for r in db.execute("SELECT bits FROM image_bits").fetchall()), np.uint8),
        bitorder="little").reshape(353, -1)[:, :x.shape[1]]
    # Plain sign bits of these vectors would all be 1; centred ones carry information.
    assert 0.1 < bits.mean() < 0.9
    varying = (bits.min(axis=0) != bits.max(axis=0)).mean()
    assert varying > 0.9, f"only {varying:.2f} of bit positions vary across images"
    # The bit table answers sqlite-vec Hamming queries in plain SQL too.
    row = db.execute(
        "SELECT image_id, distance FROM image_bits WHERE bits MATCH "
        "vec_quantize_binary(vec_sub((SELECT embedding FROM image_vectors WHERE image_id = ?), "
        "(SELECT mean FROM search_index))) AND k = 1", [int(ids[0])]).fetchone()
    assert row == (int(ids[0]), 0.0)  # the same bits as search.quantise


def test_prefilter_recall_on_real_vectors(tux_copy):
    db = dbmod.connect(tux_copy)
    search.build_index(db)
    ids, x = vectors.read_all(db)
    k = 10
    few = []
    row = {int(i): j for j, i in enumerate(ids)}
    for i, v in zip(ids, x):
        truth = exact_top(x, ids, v, k, skip=int(i))
        # Rescoring only 60 of 353 shows what the bit stages are worth (with the default
        # candidates every image of so small a set is rescored: exact by construction).
        got = search.similar(db, int(i), k, candidates=60)
        few.append(len(truth & {j for j, _ in got}) / k)
        # Whatever the bits chose, the distances returned are the exact cosine distances.
        assert np.allclose([d for _, d in got], [1 - float(x[row[j]] @ v) for j, _ in got], atol=1e-5)
    assert np.mean(few) >= 0.9, f"bit prefilter recall with 60 candidates: {np.mean(few):.3f}"
    assert np.mean(few) < 1.0  # the bit stages did choose (an exact scan would be perfect)


def test_recall_and_exclusion_on_clustered_vectors(tmp_path):
    path = str(tmp_path / "syn.db")
    ids, x = synthetic_db(path)
    db = dbmod.connect(path, readonly=True)
    rng = np.random.default_rng(1)
    rec = []
    for j in rng.choice(len(ids), 60, replace=False):
        q = x[j]
        got = search.knn(db, q, 10, exclude=[int(ids[j])], candidates=200)
        assert int(ids[j]) not in {i for i, _ in got}
        assert [d for _, d in got] == sorted(d for _, d in got)
        rec.append(len(exact_top(x, ids, q, 10, skip=int(ids[j])) & {i for i, _ in got}) / 10)
    assert np.mean(rec) >= 0.95
    # Distances are exact cosine distances, whichever path answered.
    got = search.knn(db, x[0], 5)
    exact = search.knn(db, x[0], 5, exact=True)
    assert [i for i, _ in got] == [i for i, _ in exact]
    assert np.allclose([d for _, d in got], [d for _, d in exact], atol=1e-5)


def test_stale_or_absent_index_falls_back_to_exact(tmp_path):
    path = str(tmp_path / "syn.db")
    ids, x = synthetic_db(path, n=500, dims=32)
    db = dbmod.connect(path)
    assert search.status(db).fresh
    new = np.ones((1, 32), np.float32) / np.sqrt(32)
    with db.conn:
        vectors.put(db, [99999], new)
    st = search.status(db)
    assert st.present and not st.fresh and "imageclust index" in st.reason
    # The new vector is only found because the stale index is bypassed.
    assert search.knn(db, new[0], 1)[0][0] == 99999
    db.execute("DROP TABLE image_bits")
    assert not search.status(db).present
    assert search.knn(db, new[0], 1)[0][0] == 99999
    with pytest.raises(search.SearchError):
        search.knn(db, np.ones(7), 3)
    with pytest.raises(search.SearchError):
        search.knn(db, np.zeros(32), 3)


def test_empty_database(tmp_path):
    db = dbmod.connect(str(tmp_path / "empty.db"))
    migrate(db, "core")
    assert search.build_index(db).vectors == 0
    assert search.knn(db, np.ones(8), 5) == []
    assert search.similar(db, 1, 5) == []


def test_cli_index_and_similar(tux_copy):
    r = CliRunner().invoke(cli, ["index", tux_copy, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[0])["vectors"] == 353
    r = CliRunner().invoke(cli, ["similar", tux_copy, "--image", "1", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert len(hits) == 3 and all(h["image_id"] != 1 and Path(h["path"]).exists() for h in hits)
    sample = sorted((Path(hits[0]["path"]).parent).iterdir())[0]
    r = CliRunner().invoke(cli, ["similar", tux_copy, "--file", str(sample), "-k", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["path"] == str(sample)  # the file is in the database: itself first
    bad = Path(tux_copy).parent / "bad.jpg"
    bad.write_bytes(b"not an image")
    for args, msg in [(["--image", "999999"], "not in the database"), ([], "exactly one"),
                      (["--image", "1", "--file", str(sample)], "exactly one"),
                      (["--file", str(bad)], "not a recognised image"),
                      (["--image", "1", "-k", "0"], "-k must be"),
                      (["--text", "a red moth"], "no text tower")]:
        r = CliRunner().invoke(cli, ["similar", tux_copy, *args])
        assert r.exit_code == 1 and msg in r.output, (args, r.output)


def test_text_query_with_a_clip_shaped_model(tiny_clip, tux_dir, tmp_path):
    from datasette_imageclust.pipeline import load

    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((tux_dir / "insects").iterdir())[:4] + sorted((tux_dir / "fruit").iterdir())[:4]:
        shutil.copy(p, folder / p.name)
    path = str(tmp_path / "clip.db")
    assert load(path, [str(folder)], tiny_clip).new == 8
    db = dbmod.connect(path)
    search.build_index(db)
    embed_query.clear_cache()
    v = embed_query.embed_text(db, "a red moth on a leaf")
    assert v.shape == (vectors.dimensions(db),) and abs(np.linalg.norm(v) - 1) < 1e-4
    hits = search.knn(db, v, 3)
    ids, x = vectors.read_all(db)
    assert [i for i, _ in hits] == [int(i) for i in ids[np.argsort(-(x @ v))[:3]]]
    r = CliRunner().invoke(cli, ["similar", path, "--text", "a red moth", "-k", "2", "--json"])
    assert r.exit_code == 0, r.output
    assert [h["image_id"] for h in json.loads(r.stdout)] == [i for i, _ in hits[:2]]


def test_packed_bits_match_the_vec0_table_and_warm(tmp_path):
    path = str(tmp_path / "syn.db")
    ids, x = synthetic_db(path, n=1500, dims=96)
    search.clear_cache()
    assert search.warm(path) is True
    assert len(search._CACHE) == 1
    cached = next(iter(search._CACHE.values()))
    db = dbmod.connect(path)
    got = [search.knn(db, x[j], 8, candidates=40) for j in range(0, 1500, 97)]
    # An index from before search_bits existed: the bits come from image_bits instead.
    db.execute("DELETE FROM search_bits")
    db.conn.commit()
    search.clear_cache()
    assert [search.knn(db, x[j], 8, candidates=40) for j in range(0, 1500, 97)] == got
    again = next(iter(search._CACHE.values()))
    assert (again.ids == cached.ids).all() and (again.words == cached.words).all()
    (tmp_path / "nothing.db").touch()  # an empty SQLite database: nothing to warm
    assert search.warm(str(tmp_path / "nothing.db")) is False


def test_status_sees_another_connections_commit(tmp_path):
    path = str(tmp_path / "syn.db")
    synthetic_db(path, n=300, dims=16)
    reader = dbmod.connect(path, readonly=True)
    writer = dbmod.connect(path)
    assert search.status(reader).fresh
    for i in range(3):  # several quick commits: timestamps alone could miss them
        with writer.conn:
            vectors.put(writer, [10_000 + i], np.ones((1, 16), np.float32) / 4)
        st = search.status(reader)
        assert not st.fresh and st.n_vectors == 301 + i


def _vectors_db(path: str, x: np.ndarray) -> np.ndarray:
    db = dbmod.connect(path)
    migrate(db, "core")
    vectors.ensure_table(db, x.shape[1])
    ids = np.arange(1, len(x) + 1)
    with db.conn:
        vectors.put(db, ids.tolist(), x)
    search.build_index(db)
    db.conn.close()
    return ids


@pytest.fixture
def memory_limit():
    """Restores the process-wide search memory limit a test changes."""
    from datasette_imageclust.analysis import searchcodes

    before = searchcodes.memory_limit()
    yield searchcodes
    searchcodes.set_memory_limit(before // 2**20)
    search.clear_cache()


def _force(path_taken: str, monkeypatch, limits) -> None:
    """Send a small collection down ``path_taken``: the codes as above the scan's size
    limit, the bits alone as when neither the floats nor the codes fit the memory limit."""
    from datasette_imageclust.analysis import searchscan

    if path_taken == "codes":
        monkeypatch.setattr(searchscan, "SCAN_FLOATS", 0)
    elif path_taken == "bits":
        limits.set_memory_limit(0)
    search.clear_cache()


@pytest.mark.parametrize("path_taken", ["scan", "codes", "bits"])
def test_recall_on_cliplike_vectors(tmp_path, monkeypatch, memory_limit, path_taken):
    _force(path_taken, monkeypatch, memory_limit)
    bench = benchscripts.load("search")  # its CLIP-like generator: the one home of those vectors
    x = bench.cliplike(20000, 512, seed=3)
    mean_cos, nn_cos = bench.vector_stats(x, sample=300)
    assert 0.35 < mean_cos < 0.45 and 0.6 < nn_cos < 0.75, (mean_cos, nn_cos)  # as hard as the issue's
    path = str(tmp_path / "clip.db")
    ids = _vectors_db(path, x)
    search.clear_cache()
    db = dbmod.connect(path, readonly=True)
    rec = []
    for j in np.random.default_rng(4).choice(len(x), 100, replace=False):
        got = search.knn(db, x[j], 10, exclude=[int(ids[j])])
        assert int(ids[j]) not in {i for i, _ in got}
        # The final ranking is by true cosine, whichever path chose the candidates.
        assert np.allclose([d for _, d in got], [1 - float(x[i - 1] @ x[j]) for i, _ in got], atol=1e-6)
        assert [d for _, d in got] == sorted(d for _, d in got)
        rec.append(len(exact_top(x, ids, x[j], 10, skip=int(ids[j])) & {i for i, _ in got}) / 10)
    assert np.mean(rec) >= 0.99, f"recall@10 on CLIP-like vectors ({path_taken}): {np.mean(rec):.3f}"
    (entry,) = search._CACHE.values()
    assert (entry.scan is not None, entry.codes is not None) == (path_taken == "scan", path_taken == "codes")
    if path_taken == "codes":  # the codes scored only part of the collection: a real prefilter
        assert memory_limit.depth(len(x), 10) < len(x)


def test_codes_path_scores_are_exact_and_stale_or_old_indexes_still_answer(tmp_path, monkeypatch, memory_limit):
    _force("codes", monkeypatch, memory_limit)
    path = str(tmp_path / "syn.db")
    ids, x = synthetic_db(path, n=8000, dims=48)
    db = dbmod.connect(path)
    (entry,) = [search._load_bits(db, search.status(db).built, len(ids))]
    assert entry.codes is not None and memory_limit.depth(len(ids), 5) < len(ids)
    queries = [x[j] for j in range(0, 8000, 401)]
    got = [search.knn(db, q, 5) for q in queries]
    for q, hits in zip(queries, got):
        # Exact cosine distances, not the codes' estimates (which differ by ~1e-3 here).
        assert np.allclose([d for _, d in hits], [1 - float(x[i // 3 - 1] @ q) for i, _ in hits], atol=1e-6)
        assert [i for i, _ in hits] == [i for i, _ in search.knn(db, q, 5, exact=True)]
    row = list(ids).index(got[0][1][0])
    est = entry.codes.estimate(np.array([row]), queries[0])[0] + float(entry.mean @ queries[0])
    assert abs(est - (1 - got[0][1][1])) > 1e-5, "the test needs codes that are not exact"
    # An index built before search_codes existed (or one whose codes are missing): the
    # bits alone answer, still with exact distances.
    db.execute("UPDATE search_index SET code_scale = NULL")
    db.conn.commit()
    search.clear_cache()
    assert [search.knn(db, q, 5, candidates=400) for q in queries[:5]] == [search.knn(db, q, 5) for q in queries[:5]]
    (entry,) = search._CACHE.values()
    assert entry.codes is None and entry.scan is None
    search.build_index(db)
    db.execute("DELETE FROM search_codes WHERE chunk = 0")  # codes that do not cover the index
    db.conn.commit()
    search.clear_cache()
    assert {i for i, _ in search.knn(db, queries[1], 5)} == {i for i, _ in got[1]}
    (entry,) = search._CACHE.values()
    assert entry.codes is None
    # A stale index (a vector added since) is bypassed for sqlite-vec's exact scan.
    search.build_index(db)
    search.clear_cache()
    new = np.ones((1, 48), np.float32) / np.sqrt(48)
    with db.conn:
        vectors.put(db, [99999], new)
    assert not search.status(db).fresh
    assert search.knn(db, new[0], 1)[0][0] == 99999
    assert search.knn(db, x[0], 5) == search.knn(db, x[0], 5, exact=True)


def test_memory_limit_rules(memory_limit):
    from datasette_imageclust.analysis import searchscan

    memory_limit.set_memory_limit(100)  # MB
    assert memory_limit.use_codes(100 * 2**20 // 512, 512) and not memory_limit.use_codes(100 * 2**20 // 512 + 1, 512)
    assert searchscan.use_scan(25 * 2**20 // 512, 512) and not searchscan.use_scan(25 * 2**20 // 512 + 1, 512)
    memory_limit.set_memory_limit(0)
    assert not memory_limit.use_codes(1, 8) and not searchscan.use_scan(1, 8)
    with pytest.raises(ValueError):
        memory_limit.set_memory_limit(-1)
    # The Hamming distance within which at least m rows lie (all rows at the last distance).
    cum = np.cumsum(np.bincount(np.array([5, 1, 3, 1, 2, 9], np.uint16)))
    assert [memory_limit.within(cum, m) for m in (1, 2, 3, 4, 5, 6, 7)] == [1, 1, 2, 3, 5, 9, 9]


def test_the_scan_rule_at_its_boundary(tmp_path, monkeypatch):
    from datasette_imageclust.analysis import searchscan

    limit = searchscan.SCAN_FLOATS
    assert searchscan.use_scan(limit // 512, 512) and not searchscan.use_scan(limit // 512 + 1, 512)
    path = str(tmp_path / "syn.db")
    ids, x = synthetic_db(path, n=1000, dims=64)
    db = dbmod.connect(path, readonly=True)
    answers = {}
    for floats, scanned in ((1000 * 64, True), (1000 * 64 - 1, False)):
        monkeypatch.setattr(searchscan, "SCAN_FLOATS", floats)
        search.clear_cache()
        answers[scanned] = search.knn(db, x[7], 5, exclude=[int(ids[7])])
        (entry,) = search._CACHE.values()
        assert (entry.scan is not None) is scanned
    # Both paths give the exact answer here (the bit path rescores every one of 1,000).
    truth = exact_top(x, ids, x[7], 5, skip=int(ids[7]))
    assert {i for i, _ in answers[True]} == truth == {i for i, _ in answers[False]}
    assert np.allclose([d for _, d in answers[True]], [d for _, d in answers[False]], atol=1e-5)
