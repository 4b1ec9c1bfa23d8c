"""The map layout: 2-D embedding, cluster-preserving packing without overlaps, storage, CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.analysis import embed2d as E
from datasette_imageclust.analysis import layout as L
from datasette_imageclust.analysis import packing as P
from datasette_imageclust.store.collection import ImageCollection
from datasette_imageclust.cli import cli
from neighbours import chance, knn_agreement
from synthdb import add_run, make_db


def _blobs(n: int, k: int, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, k, n)
    x = rng.normal(size=(k, d))[label] + 0.3 * rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), label


def test_count_overlaps_is_exact():
    assert P.count_overlaps(np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)) == 0
    assert P.count_overlaps(np.array([[0, 0], [0.5, 0.5]], float)) == 1
    assert P.count_overlaps(np.array([[0, 0], [0.99, 0], [5, 5]], float)) == 1


def test_pack_has_no_overlaps_and_keeps_clusters_together():
    x, label = _blobs(1500, 15)
    xy, method = E.embed_2d(x, "tsne", landmarks=400)
    assert method == "tsne-landmarks" and xy.shape == (1500, 2)
    group = P.group_points(xy, label)
    p = P.pack(xy, group)
    assert p.overlaps == 0 == P.count_overlaps(p.xy)
    assert np.allclose(p.xy, np.round(p.xy))  # every thumbnail on the cell lattice
    # Each cluster is one compact disk: no member far beyond the disk its size needs.
    for g in range(group.max() + 1):
        pts = p.xy[group == g]
        r = np.hypot(*(pts - pts.mean(0)).T).max()
        assert r <= np.sqrt(len(pts) / np.pi) + 2.5
    # Adjacent cells (touching squares) nearly always belong to the same cluster: there
    # is a gap between clusters.
    from scipy.spatial import cKDTree

    pairs = cKDTree(p.xy).query_pairs(1.01, output_type="ndarray")
    same = (group[pairs[:, 0]] == group[pairs[:, 1]]).mean()
    assert same > 0.97
    # And the map is not mostly empty.
    extent = np.prod(p.xy.max(0) - p.xy.min(0) + 1)
    assert len(xy) / extent > 0.15


def test_pack_without_clusters_groups_points_and_preserves_neighbourhoods():
    x, label = _blobs(800, 8, seed=1)
    xy, _ = E.embed_2d(x, "tsne", landmarks=300)
    group = P.group_points(xy, np.full(len(xy), -1))
    assert group.max() + 1 == 50  # ~16 per loose group
    p = P.pack(xy, group, loose=np.ones(group.max() + 1, bool))
    assert p.overlaps == 0
    # Points that were neighbours in the vector space are still neighbours on the map.
    assert knn_agreement(p.xy, label) > 0.9


def test_embed_2d_edge_cases_and_errors():
    assert E.embed_2d(np.zeros((0, 8), np.float32))[0].shape == (0, 2)
    xy, m = E.embed_2d(np.eye(3, 8, dtype=np.float32))
    assert xy.shape == (3, 2) and m == "pca"
    with pytest.raises(E.LayoutError, match="unknown layout method"):
        E.embed_2d(np.eye(8, dtype=np.float32), "mds")


def test_without_the_umap_extra(monkeypatch):
    """Where umap-learn cannot be imported, --method umap says which extra to install and
    auto falls back to t-SNE (the import is blocked here, whether or not it is installed)."""
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # `import umap` now raises ImportError
    assert not E.umap_available()
    x, _ = _blobs(60, 3)
    with pytest.raises(E.LayoutError, match=r"\[umap\]"):
        E.embed_2d(x, "umap")
    assert E.embed_2d(x, "auto")[1] == "tsne"


def _need_umap() -> None:
    if not E.umap_available():
        pytest.skip("umap-learn is not installed (the test extra includes it: pip install -e '.[test]')")


def test_spatial_order_makes_compact_sheets():
    rng = np.random.default_rng(0)
    xy = np.round(rng.uniform(0, 100, (5000, 2)))
    order = P.spatial_order(xy)
    assert sorted(order.tolist()) == list(range(5000))
    chunk = xy[order[:256]]
    # 256 consecutive points cover a small region, not the whole map.
    assert np.prod(chunk.max(0) - chunk.min(0)) < 0.1 * 100 * 100


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_layout_on_real_images_keeps_categories_together(tux_db, tmp_path, method):
    """On the 353 labelled tuxpaint stamps (real stand-in embeddings), map neighbours
    share a category about as often as vector-space neighbours do, with either method."""
    import csv
    import os

    if method == "umap":
        _need_umap()
    path = str(tmp_path / "tux.db")
    shutil.copy(tux_db, path)
    db = dbmod.connect(path)
    s = L.compute_layout(db, method=method)
    assert s.n_images == 353 and s.overlaps == 0 and s.method == method
    stored = db.execute("SELECT method FROM layouts WHERE id = ?", [s.layout_id]).fetchone()[0]
    assert stored == method
    rows = db.execute("SELECT f.relpath, p.x, p.y, p.image_id FROM layout_points p "
                      "JOIN files f ON f.image_id = p.image_id GROUP BY p.image_id").fetchall()
    from conftest import TUX

    with open(TUX / "labels.csv") as f:
        cat = {r["path"]: r["category"] for r in csv.DictReader(f)}
    label_of = {}
    for rel, x, y, iid in rows:
        label_of[iid] = cat.get(rel) or cat.get(os.path.basename(rel))
    assert all(label_of.values())
    ids, vecs = ImageCollection(db).vectors()
    labels = np.array([label_of[int(i)] for i in ids])
    pos = {r[3]: (r[1], r[2]) for r in rows}
    xy = np.array([pos[int(i)] for i in ids])
    on_map = knn_agreement(xy, labels)
    in_vectors = knn_agreement(vecs, labels)
    rand = chance(labels)
    print(f"{method}: 5-NN same category: map {on_map:.2f}, vectors {in_vectors:.2f}, chance {rand:.2f}")
    assert on_map > 0.75 * in_vectors and on_map > 3 * rand
    db.conn.close()


def test_compute_layout_stores_and_replaces(tmp_path):
    path = make_db(str(tmp_path / "s.db"), 300, clusters=6, with_run=False)
    db = dbmod.connect(path)
    first = L.compute_layout(db, method="tsne", landmarks=100)
    assert first.run is None and first.overlaps == 0 and first.method == "tsne-landmarks"
    assert db.execute("SELECT count(*) FROM layout_points WHERE layout_id = ?", [first.layout_id]).fetchone()[0] == 300
    row = db.execute("SELECT name, is_default, n_images, params FROM layouts").fetchone()
    assert row[:3] == ("default", 1, 300) and json.loads(row[3])["group_source"] == "kmeans-2d"
    # A clustering run appears: re-running the same name keeps the id, uses the run.
    add_run(db, np.arange(300) % 6)
    again = L.compute_layout(db, method="tsne", landmarks=100)
    assert again.layout_id == first.layout_id and again.run == "default"
    assert db.execute("SELECT count(*) FROM layout_points").fetchone()[0] == 300
    # Each cluster of the run forms one disk.
    members = db.execute("SELECT m.cluster_id, p.x, p.y FROM layout_points p JOIN cluster_members m "
                         "ON m.image_id = p.image_id").fetchall()
    by = {}
    for c, x, y in members:
        by.setdefault(c, []).append((x, y))
    for pts in by.values():
        pts = np.array(pts)
        assert np.hypot(*(pts - pts.mean(0)).T).max() <= np.sqrt(len(pts) / np.pi) + 2.5
    # A second name is not the default unless asked.
    other = L.compute_layout(db, name="other", landmarks=100, seed=1)
    assert other.layout_id != first.layout_id
    assert db.execute("SELECT name FROM layouts WHERE is_default = 1").fetchall() == [("default",)]
    L.compute_layout(db, name="other", landmarks=100, make_default=True)
    assert db.execute("SELECT name FROM layouts WHERE is_default = 1").fetchall() == [("other",)]
    with pytest.raises(L.LayoutError, match="no clustering run named"):
        L.compute_layout(db, run="nope")
    db.conn.close()


def test_compute_layout_without_vectors(tmp_path):
    path = make_db(str(tmp_path / "s.db"), 0, with_run=False)
    db = dbmod.connect(path)
    with pytest.raises(L.LayoutError, match="no image vectors"):
        L.compute_layout(db)
    db.conn.close()


def test_cli_layout(tmp_path):
    path = make_db(str(tmp_path / "s.db"), 200, clusters=5, thumb_px=32, distinct_thumbs=20)
    r = CliRunner().invoke(cli, ["layout", path, "--json", "--landmarks", "80", "--levels", "8,32"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["layout"]["n_images"] == 200 and out["layout"]["overlaps"] == 0 and out["layout"]["run"] == "default"
    assert out["atlas"]["levels"] == [8, 32] and out["atlas"]["images"] == 200
    assert "layout 'default'" in r.stderr
    r = CliRunner().invoke(cli, ["layout", path, "--no-atlas", "--name", "second"])
    assert r.exit_code == 0 and r.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--levels", "3"], "out of range"),
    (["--levels", "16,x"], "comma-separated"),
    (["--levels", "16,16"], "must differ"),
    (["--gap", "-1"], "--gap must be between"),
    (["--landmarks", "10"], "--landmarks must be at least"),
    (["--run", "nope"], "no clustering run named"),
    (["--name", ""], "layout name"),
])
def test_cli_layout_bad_options(tmp_path, args, message):
    path = make_db(str(tmp_path / "s.db"), 30, clusters=3, thumb_px=16, distinct_thumbs=3)
    r = CliRunner().invoke(cli, ["layout", path, *args])
    assert r.exit_code == 1 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_cli_layout_missing_database(tmp_path):
    r = CliRunner().invoke(cli, ["layout", str(tmp_path / "absent.db")])
    assert r.exit_code == 1 and "does not exist" in r.output and not (tmp_path / "absent.db").exists()
