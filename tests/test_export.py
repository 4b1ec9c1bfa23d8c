"""imageclust export: every format written from real databases (the tuxpaint stamps with
the real stand-in embedder; the tiny CLIP set for tags) and read back with its own reader."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from datasette_imageclust import pipeline
from datasette_imageclust.analysis.palette import cluster_colours
from datasette_imageclust.cli import cli
from datasette_imageclust.export.selection import ExportError, select
from datasette_imageclust.store.connection import connect

pyarrow = pytest.importorskip("pyarrow", reason="the [parquet] extra (pyarrow) is needed to read parquet back")
nx = pytest.importorskip("networkx", reason="networkx reads the GEXF/GraphML back (in the [test] extra)")
pytest.importorskip("lxml", reason="lxml validates the networks against the official schemas (in the [test] extra)")
import xsd  # noqa: E402  (tests/xsd.py: needs lxml)


@pytest.fixture(scope="module")
def tux(tmp_path_factory, tux_db) -> str:
    """The 353 stamps, clustered (terms labels) and laid out (t-SNE, no atlas)."""
    path = str(tmp_path_factory.mktemp("export") / "tux.db")
    shutil.copy(tux_db, path)
    db = connect(path)
    pipeline.cluster_images(db, labels=["terms"], duplicates=False, layout=False)
    pipeline.build_map(db, method="tsne", atlas=False)
    db.conn.close()
    return path


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["export", *args])
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stdout, r.stderr


def one_line_error(code: int, stderr: str, *words: str) -> str:
    assert code == 1 and "Traceback" not in stderr, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("Error: "), stderr
    for w in words:
        assert w in line, (w, line)
    return line


def truth(path: str) -> dict:
    """What the database says, read with plain sqlite3 (not through the export code)."""
    c = sqlite3.connect(path)
    run_id = c.execute("SELECT id FROM cluster_runs WHERE is_default").fetchone()[0]
    members = {i: (cid, d, r) for cid, i, d, r in c.execute(
        "SELECT cluster_id, image_id, distance, rank FROM cluster_members WHERE run_id = ?", [run_id])}
    sha = dict(c.execute("SELECT id, sha256 FROM images"))
    xy = dict((i, (x, y)) for i, x, y in c.execute(
        "SELECT image_id, x, y FROM layout_points WHERE layout_id = (SELECT id FROM layouts WHERE is_default)"))
    kinds = dict(c.execute("SELECT id, kind FROM clusters WHERE run_id = ?", [run_id]))
    c.close()
    return {"members": members, "sha": sha, "xy": xy, "kinds": kinds}


# --- tables -------------------------------------------------------------------------------


def test_csv_json_parquet_round_trip(tux, tmp_path):
    t = truth(tux)
    rows = {}
    for fmt in ("csv", "json", "parquet"):
        code, out, err = run(tux, "--format", fmt, "-o", str(tmp_path / f"t.{fmt}"), "--json")
        assert code == 0, err
        assert json.loads(out)["images"] == 353
        if fmt == "csv":
            with open(tmp_path / "t.csv", newline="", encoding="utf-8") as f:
                rows[fmt] = list(csv.DictReader(f))
        elif fmt == "json":
            rows[fmt] = json.loads((tmp_path / "t.json").read_text())
        else:
            import pyarrow.parquet as pq

            rows[fmt] = pq.read_table(tmp_path / "t.parquet").to_pylist()
    for fmt, got in rows.items():
        assert len(got) == 353 and len({int(r["image_id"]) for r in got}) == 353, fmt
        for r in got:
            iid = int(r["image_id"])
            cid, distance, rank = t["members"][iid]
            assert r["sha256"] == t["sha"][iid]
            assert int(r["cluster_id"]) == cid and int(r["rank"]) == rank
            assert float(r["distance"]) == pytest.approx(distance)
            assert (float(r["x"]), float(r["y"])) == t["xy"][iid]
            assert Path(r["path"]).exists()
            assert str(r["representative"]) in (("1", "True") if rank <= 3 and t["kinds"][cid] == "cluster"
                                                 else ("0", "False"))
    # export order: cluster by cluster, by rank within one
    order = [(int(r["cluster_id"]), int(r["rank"])) for r in rows["csv"]]
    firsts = {}
    for i, (cid, rank) in enumerate(order):
        firsts.setdefault(cid, i)
    assert all(order[i][1] < order[i + 1][1] for i in range(len(order) - 1) if order[i][0] == order[i + 1][0])
    assert len(firsts) == len(set(firsts)) and sorted(firsts.values()) == list(firsts.values())


def test_cluster_and_sql_select(tux, tmp_path):
    t = truth(tux)
    cid = next(c for c, k in t["kinds"].items() if k == "cluster")
    want = sorted(i for i, m in t["members"].items() if m[0] == cid)
    code, _, err = run(tux, "--cluster", str(cid), "--format", "json", "-o", str(tmp_path / "c.json"))
    assert code == 0, err
    assert sorted(r["image_id"] for r in json.loads((tmp_path / "c.json").read_text())) == want
    code, _, err = run(tux, "--sql", "SELECT image_id FROM files WHERE path LIKE '%/birds/%'",
                       "--format", "csv", "-o", str(tmp_path / "s.csv"))
    assert code == 0, err
    with open(tmp_path / "s.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert got and all("/birds/" in r["path"] for r in got)


@pytest.mark.parametrize("sql,words", [
    ("DELETE FROM images", ["read-only SELECT"]),
    ("SELECT 1; DELETE FROM images", ["read-only SELECT", "one statement"]),
    ("UPDATE images SET sha256 = 'x' RETURNING id AS image_id", ["read-only SELECT"]),
    ("PRAGMA query_only = 0", ["read-only SELECT"]),
    ("ATTACH 'other.db' AS other", ["read-only SELECT"]),
    ("SELECT id FROM images", ["image_id", "returns id"]),
    ("SELECT image_id FROM nowhere", ["no such table"]),
    ("", ["empty"]),
])
def test_sql_that_is_not_a_read_only_select(tux, tmp_path, sql, words):
    before = hashlib.sha256(Path(tux).read_bytes()).hexdigest()
    code, _, err = run(tux, "--sql", sql, "--format", "csv", "-o", str(tmp_path / "x.csv"))
    one_line_error(code, err, "--sql", *words)
    assert hashlib.sha256(Path(tux).read_bytes()).hexdigest() == before
    assert list(tmp_path.iterdir()) == []


def test_even_a_writable_connection_cannot_write_through_sql(tux, tmp_path):
    path = tmp_path / "w.db"
    shutil.copy(tux, path)
    db = connect(path)  # read-write, as a library user might pass it
    n = db.execute("SELECT count(*) FROM images").fetchone()[0]
    for sql in ("DELETE FROM images", "WITH x AS (SELECT 1) DELETE FROM images", "DROP TABLE images"):
        with pytest.raises(ExportError, match="read-only SELECT"):
            select(db, sql=sql)
    assert db.execute("SELECT count(*) FROM images").fetchone()[0] == n
    assert db.execute("PRAGMA query_only").fetchone()[0] == 0  # left as it was
    db.conn.close()


def test_unknown_run_and_cluster(tux, tmp_path):
    one_line_error(*run(tux, "--run", "nope", "--format", "csv", "-o", str(tmp_path / "a.csv"))[::2],
                   "no clustering run named 'nope'")
    one_line_error(*run(tux, "--cluster", "999999", "--format", "csv", "-o", str(tmp_path / "a.csv"))[::2],
                   "no cluster 999999")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_refused_unless_force(tux, tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("mine")
    one_line_error(*run(tux, "--format", "csv", "-o", str(out))[::2], "already exists", "--force")
    assert out.read_text() == "mine"
    code, _, err = run(tux, "--format", "csv", "-o", str(out), "--force")
    assert code == 0, err
    assert out.read_text().startswith("image_id,")
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "old").write_text("x")
    one_line_error(*run(tux, "--format", "folder", "-o", str(folder))[::2], "already exists")
    code, _, err = run(tux, "--format", "folder", "-o", str(folder), "--force", "--cluster", "1")
    assert code == 0, err
    assert not (folder / "old").exists() and (folder / "manifest.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "t.csv"]  # no temporary names left


DISK_FULL = """
import resource, signal, sys
from click.testing import CliRunner
from datasette_imageclust.cli import cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))  # per file: the CSV, ZIP and GEXF are larger
r = CliRunner().invoke(cli, sys.argv[1:])
sys.stderr.write(r.stderr)
sys.exit(r.exit_code)
"""


@pytest.mark.parametrize("fmt,name", [("zip", "a.zip"), ("csv", "a.csv"), ("gexf", "net")])
def test_disk_full_leaves_nothing_under_any_name(tux, tmp_path, fmt, name):
    """A file size limit (RLIMIT_FSIZE) stands in for a full disk: the write fails midway."""
    out = tmp_path / "out"
    out.mkdir()
    old = out / name
    if fmt != "gexf":
        old.write_text("previous")  # --force: the old output survives a failed replacement
    r = subprocess.run([sys.executable, "-c", DISK_FULL, "export", tux, "--format", fmt, "-o", str(old), "--force"],
                       capture_output=True, text=True, timeout=600)
    one_line_error(r.returncode, r.stderr, "cannot write", "File too large", "nothing was written")
    assert sorted(p.name for p in out.iterdir()) == ([] if fmt == "gexf" else [name])
    if fmt != "gexf":
        assert old.read_text() == "previous"


# --- folders and ZIPs ---------------------------------------------------------------------


def read_manifest(text: str) -> list[dict]:
    return list(csv.DictReader(text.splitlines()))


def test_zip_and_folder_hold_the_originals_by_cluster(tux, tmp_path):
    t = truth(tux)
    code, out, err = run(tux, "--format", "zip", "-o", str(tmp_path / "a.zip"), "--json")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        assert z.testzip() is None
        names = z.namelist()
        manifest = read_manifest(z.read("manifest.csv").decode("utf-8"))
        assert len(manifest) == 353 and {m["source"] for m in manifest} == {"original"}
        for m in manifest:
            data = z.read(m["file"])
            assert hashlib.sha256(data).hexdigest() == m["sha256"] == t["sha"][int(m["image_id"])]
            folder = m["file"].split("/")[0]
            cid = int(m["cluster_id"])
            assert folder, (folder, m)
            if t["kinds"][cid] != "cluster":
                assert folder == "unclustered"
            else:
                assert folder == str(cid) or folder.startswith(f"{cid}-"), (folder, m)
            info = z.getinfo(m["file"])
            if m["file"].lower().endswith((".jpg", ".png", ".webp")):
                assert info.compress_type == zipfile.ZIP_STORED
    assert len(names) == len(set(names)) == 354
    code, _, err = run(tux, "--format", "folder", "-o", str(tmp_path / "f"), "--symlink")
    assert code == 0, err
    links = [p for p in (tmp_path / "f").rglob("*") if p.is_symlink()]
    assert len(links) == 353 and all(p.resolve().exists() for p in links)
    one_line_error(*run(tux, "--format", "zip", "-o", str(tmp_path / "b.zip"), "--symlink")[::2], "--symlink")


@pytest.fixture(scope="module")
def odd(tmp_path_factory, stand_in_model, tux_dir) -> tuple[str, Path]:
    """Six stamps, two with the same base name in one cluster, one named in Latin-1 bytes."""
    d = tmp_path_factory.mktemp("odd")
    src = sorted((tux_dir / "birds").iterdir())[:6]
    (d / "a").mkdir()
    (d / "b").mkdir()
    shutil.copy(src[0], d / "a" / "same.jpg")
    shutil.copy(src[1], d / "b" / "same.jpg")
    shutil.copy(src[2], os.fsdecode(bytes(d / "a") + b"/caf\xe9.jpg"))
    for f in src[3:]:
        shutil.copy(f, d / "a" / f.name)
    db = str(d / "odd.db")
    assert pipeline.load(db, [str(d / "a"), str(d / "b")], stand_in_model).new == 6
    c = connect(db)
    pipeline.cluster_images(c, n_clusters=1, method="kmeans", labels=["terms"], duplicates=False, layout=False)
    c.conn.close()
    return db, d


def test_odd_names_gone_and_changed_originals(odd, tmp_path):
    db, d = odd
    # the database keeps the paths: move and edit the originals themselves, then restore them
    latin = os.fsdecode(bytes(d / "a") + b"/caf\xe9.jpg")
    moved = tmp_path / "latin.jpg"
    shutil.move(latin, moved)                          # gone: the thumbnail stands in
    changed = d / "b" / "same.jpg"
    keep = changed.read_bytes()
    changed.write_bytes(keep + b"x")                   # changed: its sha256 no longer matches
    try:
        code, _, err = run(db, "--format", "zip", "-o", str(tmp_path / "o.zip"))
        assert code == 0, err
        with zipfile.ZipFile(tmp_path / "o.zip") as z:
            manifest = {m["original"]: m for m in read_manifest(z.read("manifest.csv").decode("utf-8"))}
            assert manifest[str(d / "a" / "same.jpg")]["source"] == "original"
            assert manifest[str(changed)]["source"] == "thumbnail"
            latin_row = manifest[f"{d}/a/caf\\xe9.jpg"]
            assert latin_row["source"] == "thumbnail" and "not UTF-8" in latin_row["note"]
            assert latin_row["file"].endswith("caf\\xe9.thumbnail.webp")
            z.read(latin_row["file"])
    finally:
        shutil.move(moved, latin)
        changed.write_bytes(keep)
    # all back: originals everywhere; two 'same.jpg' in one folder made unique; the Latin-1
    # name kept as its bytes in a folder, its readable form in a ZIP
    code, _, err = run(db, "--format", "folder", "-o", str(tmp_path / "f"))
    assert code == 0, err
    (sub,) = [p for p in (tmp_path / "f").iterdir() if p.is_dir()]
    names = {os.fsencode(p.name) for p in sub.iterdir()}
    assert {b"same.jpg", b"same-2.jpg", b"caf\xe9.jpg"} <= names
    code, _, err = run(db, "--format", "zip", "-o", str(tmp_path / "o2.zip"))
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "o2.zip") as z:
        assert any(n.endswith("/caf\\xe9.jpg") for n in z.namelist())
        assert {m["source"] for m in read_manifest(z.read("manifest.csv").decode("utf-8"))} == {"original"}


# --- networks -----------------------------------------------------------------------------


def test_gexf_of_the_tuxpaint_set(tux, tmp_path):
    t = truth(tux)
    code, out, err = run(tux, "--format", "gexf", "-o", str(tmp_path / "net"), "--k", "5", "--json")
    assert code == 0, err
    assert xsd.errors(tmp_path / "net" / "network.gexf", "gexf") == []
    g = nx.read_gexf(tmp_path / "net" / "network.gexf")
    assert g.number_of_nodes() == 353 and g.is_directed()
    assert g.number_of_edges() == 353 * 5
    c = sqlite3.connect(tux)
    colours = cluster_colours(c.execute("SELECT id, kind FROM clusters WHERE run_id = "
                                        "(SELECT id FROM cluster_runs WHERE is_default)"))
    labels = dict(c.execute("SELECT id, label FROM clusters"))
    c.close()
    for node, a in g.nodes(data=True):
        iid = int(node[1:])
        cid = t["members"][iid][0]
        assert a["cluster_default"] == cid and a.get("cluster_label_default") == labels[cid]
        x, y = t["xy"][iid]
        assert (a["viz"]["position"]["x"], a["viz"]["position"]["y"]) == pytest.approx((x * 20, -y * 20))
        assert (a["viz"]["color"]["r"], a["viz"]["color"]["g"], a["viz"]["color"]["b"]) == colours[cid]
        assert (tmp_path / "net" / "thumbnails" / a["image"]).is_file()
    # each image's edges go to its 5 nearest by cosine, weighted by the similarity
    from datasette_imageclust.store.collection import ImageCollection

    db = connect(tux, readonly=True)
    ids, x = ImageCollection(db).vectors()
    db.conn.close()
    row = {int(i): n for i, n in enumerate(ids)}
    row = {v: k for k, v in row.items()}
    for node in list(g.nodes)[:40]:
        i = row[int(node[1:])]
        sims = x @ x[i]
        sims[i] = -2
        best = sorted(sims, reverse=True)[:5]
        got = sorted((w for _, _, w in g.out_edges(node, data="weight")), reverse=True)
        assert got == pytest.approx(best, abs=1e-5)
    with open(tmp_path / "net" / "nodes.csv", newline="") as f:
        nodes = list(csv.DictReader(f))
    with open(tmp_path / "net" / "edges.csv", newline="") as f:
        edges = list(csv.DictReader(f))
    assert [n["Id"] for n in nodes] == list(g.nodes) and {"Label", "image"} <= set(nodes[0])
    assert len(edges) == g.number_of_edges() and set(edges[0]) == {"Source", "Target", "Weight", "Type"}


def test_graphml_clusters_network(tux, tmp_path):
    t = truth(tux)
    code, _, err = run(tux, "--format", "graphml", "-o", str(tmp_path / "net"), "--network", "clusters",
                       "--k", "3", "--threshold", "0.5")
    assert code == 0, err
    assert xsd.errors(tmp_path / "net" / "network.graphml", "graphml") == []
    g = nx.read_graphml(tmp_path / "net" / "network.graphml")
    assert g.number_of_nodes() == sum(k == "cluster" for k in t["kinds"].values())
    assert g.number_of_edges() > 0 and not g.is_directed()
    assert all(w >= 0.5 for _, _, w in g.edges(data="weight"))
    for _, a in g.nodes(data=True):
        assert a["type"] == "cluster" and {"x", "y", "r", "g", "b", "image", "label"} <= set(a)


def test_tags_network(tiny_clip_db, tmp_path):
    db_path = tmp_path / "tiny.db"
    shutil.copy(tiny_clip_db, db_path)
    db = connect(db_path)
    pipeline.tag(db, top=3)
    pairs = db.execute("SELECT count(*) FROM image_tags").fetchone()[0]
    tags = {r[0] for r in db.execute("SELECT DISTINCT tag FROM image_tags")}
    db.conn.close()
    code, _, err = run(str(db_path), "--format", "gexf", "-o", str(tmp_path / "net"), "--network", "tags")
    assert code == 0, err
    g = nx.read_gexf(tmp_path / "net" / "network.gexf")
    kinds = [a["type"] for _, a in g.nodes(data=True)]
    assert kinds.count("image") == 18 and kinds.count("tag") == len(tags)
    assert g.number_of_edges() == pairs
    assert all(g.nodes[u]["type"] == "image" and g.nodes[v]["type"] == "tag" for u, v in g.edges)
