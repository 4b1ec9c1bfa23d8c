"""Exports of a database with posts: the first post in the tables, the hashtags and authors
networks, files that validate against the official GraphML 1.0 and GEXF 1.2draft schemas
(tests/schemas/), CSVs whose cells never run as spreadsheet formulas, --bom.

The database is synthetic (tests/synthdb.py: real SQLite, thumbnails and vectors) with posts,
tags, a second run and hostile names written here with plain SQL; every expected value is
written out below, from the rows inserted."""
from __future__ import annotations

import ast
import csv
import datetime as dt
import json
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import csvsafe

import synthdb
from exportpostsdb import EVIL_LABEL, HYPER, N, make_posts_db

lxml = pytest.importorskip("lxml", reason="lxml validates the networks against the XSDs (in the [test] extra)")
pa = pytest.importorskip("pyarrow", reason="the [parquet] extra (pyarrow) is needed to read parquet back")

from xsd import errors  # noqa: E402  (needs lxml)

GEXF = "{http://www.gexf.net/1.2draft}"
GML = "{http://graphml.graphdrawing.org/xmlns}"


@pytest.fixture(scope="module")
def posts_db(tmp_path_factory) -> str:
    return make_posts_db(str(tmp_path_factory.mktemp("posts") / "posts.db"))


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["export", *args])
    assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.stderr


def relpaths(path: str) -> dict[int, str]:
    c = sqlite3.connect(path)
    out = dict(c.execute("SELECT image_id, relpath FROM files"))
    c.close()
    return out


# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("value,cell", [
    ("=1+1", "'=1+1"), ("+33 6 12 34 56", "'+33 6 12 34 56"), ("-x", "'-x"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), (HYPER, "'" + HYPER), ("-1.5", "-1.5"), ("+3", "+3"), ("-2e-05", "-2e-05"),
    ("-1.5.2", "'-1.5.2"), ("a=b", "a=b"), (" =1", " =1"), ("polar bear", "polar bear"),
    (-1.5, -1.5), (-3, -3), (True, 1), (None, ""),
])
def test_csv_cell_rule(value, cell):
    assert csvsafe.cell(value) == cell


def test_every_csv_writer_is_the_safe_one():
    """One home for the rule: no module but store/csvsafe.py makes a csv.writer or DictWriter."""
    root = Path(csvsafe.__file__).parents[1]
    found = []
    for p in root.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("writer", "DictWriter") and \
                    isinstance(node.value, ast.Name) and node.value.id == "csv":
                found.append(str(p.relative_to(root)))
            if isinstance(node, ast.ImportFrom) and node.module == "csv" and \
                    {a.name for a in node.names} & {"writer", "DictWriter"}:
                found.append(str(p.relative_to(root)) + " (from csv import)")
    assert found == ["store/csvsafe.py"]


# --- tables --------------------------------------------------------------------------------


def test_tables_carry_the_first_post(posts_db, tmp_path):
    for fmt in ("csv", "json", "parquet"):
        code, err = run(posts_db, "--format", fmt, "-o", str(tmp_path / f"t.{fmt}"))
        assert code == 0, err
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as f:
        csv_rows = {int(r["image_id"]): r for r in csv.DictReader(f)}
    json_rows = {r["image_id"]: r for r in json.loads((tmp_path / "t.json").read_text())}
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "t.parquet")
    created_type = table.schema.field("created").type
    assert pa.types.is_timestamp(created_type) and created_type.tz == "UTC"
    pq_rows = {r["image_id"]: r for r in table.to_pylist()}
    # image 1: posts B2 (the earliest), C4x.., B3, B5; image 2: C4x.., B4; image 3: B3
    want = {1: ("https://cdn.example/p2-a.jpg", "https://www.instagram.com/p/B2/", "alice", "2024-03-01T08:00:00Z", 4),
            2: ("https://cdn.example/p1-b.jpg", "https://www.instagram.com/p/C4xYz1111111AAA/", HYPER,
                "2024-03-02T10:11:12Z", 2),
            3: ("https://cdn.example/p3-b.jpg", "https://www.instagram.com/p/B3/", "bob", "2024-03-05T00:00:00Z", 1)}
    for iid, (url, post_url, author, created, posts) in want.items():
        j = json_rows[iid]
        assert (j["url"], j["post_url"], j["author"], j["created"], j["posts"]) == (url, post_url, author, created,
                                                                                    posts)
        c = csv_rows[iid]
        assert (c["url"], c["post_url"], c["created"], c["posts"]) == (url, post_url, created, str(posts))
        assert c["author"] == ("'" + HYPER if author == HYPER else author)
        p = pq_rows[iid]
        assert (p["url"], p["post_url"], p["author"], p["posts"]) == (url, post_url, author, posts)
        assert p["created"] == dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert json_rows[1]["post_ids"] == ["C4xYz1111111AAA", "B2", "B3", "B5"]
    for iid in range(4, N + 1):  # no posts
        assert (json_rows[iid]["url"], json_rows[iid]["author"], json_rows[iid]["posts"]) == (None, None, 0)
        assert csv_rows[iid]["url"] == csv_rows[iid]["created"] == "" and pq_rows[iid]["created"] is None
    # the hostile cluster label: text in JSON, neutralised in CSV
    assert json_rows[1]["cluster_label"] == EVIL_LABEL and csv_rows[1]["cluster_label"] == "'" + EVIL_LABEL
    assert csv_rows[1]["distance"] == "0.1"  # a number stays a number


def test_tables_of_a_database_without_posts(tmp_path):
    path = synthdb.make_db(str(tmp_path / "plain.db"), 5, clusters=2, dims=8, thumb_px=16, distinct_thumbs=2)
    code, err = run(path, "--format", "json", "-o", str(tmp_path / "p.json"))
    assert code == 0, err
    for r in json.loads((tmp_path / "p.json").read_text()):
        assert {k: r[k] for k in ("url", "post_url", "author", "created", "posts")} == dict.fromkeys(
            ("url", "post_url", "author", "created", "posts"))
    code, err = run(path, "--format", "gexf", "-o", str(tmp_path / "net"), "--network", "hashtags")
    assert code == 1 and "--network hashtags needs posts" in err


def test_bom(posts_db, tmp_path):
    code, err = run(posts_db, "--format", "csv", "-o", str(tmp_path / "b.csv"), "--bom")
    assert code == 0, err
    raw = (tmp_path / "b.csv").read_bytes()
    assert raw[:3] == b"\xef\xbb\xbf" and raw[3:12] == b"image_id,"
    code, err = run(posts_db, "--format", "csv", "-o", str(tmp_path / "n.csv"))
    assert code == 0, err
    assert (tmp_path / "n.csv").read_bytes()[:9] == b"image_id,"
    code, err = run(posts_db, "--format", "zip", "-o", str(tmp_path / "b.zip"), "--bom")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "b.zip") as z:
        assert z.read("manifest.csv")[:3] == b"\xef\xbb\xbf"
    code, err = run(posts_db, "--format", "graphml", "-o", str(tmp_path / "net"), "--bom")
    assert code == 0, err
    for name in ("nodes.csv", "edges.csv"):
        assert (tmp_path / "net" / name).read_bytes()[:3] == b"\xef\xbb\xbf"
    code, err = run(posts_db, "--format", "json", "-o", str(tmp_path / "b.json"), "--bom")
    assert code == 1 and "--bom is for the formats that write CSV" in err
    assert not (tmp_path / "b.json").exists()


def test_manifest_neutralises_formulas(posts_db, tmp_path):
    code, err = run(posts_db, "--format", "zip", "-o", str(tmp_path / "a.zip"))
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        rows = {int(r["image_id"]): r for r in csv.DictReader(z.read("manifest.csv").decode("utf-8").splitlines())}
    assert rows[1]["cluster_label"] == "'" + EVIL_LABEL


# --- networks ------------------------------------------------------------------------------


def gexf_graph(path: Path) -> tuple[dict, list, dict]:
    """nodes {id: (label, {attr: value})}, edges [(source, target, weight)], attribute id -> title."""
    root = lxml.etree.parse(str(path)).getroot()
    titles = {a.get("id"): a.get("title") for a in root.iter(GEXF + "attribute")}
    nodes = {n.get("id"): (n.get("label"), {v.get("for"): v.get("value") for v in n.iter(GEXF + "attvalue")})
             for n in root.iter(GEXF + "node")}
    edges = [(e.get("source"), e.get("target"), float(e.get("weight"))) for e in root.iter(GEXF + "edge")]
    return nodes, edges, titles


def graphml_graph(path: Path) -> tuple[dict, list, dict]:
    root = lxml.etree.parse(str(path)).getroot()
    names = {k.get("id"): k.get("attr.name") for k in root.iter(GML + "key")}
    nodes = {}
    for n in root.iter(GML + "node"):
        data = {names[d.get("key")]: d.text for d in n.iter(GML + "data")}
        nodes[n.get("id")] = (data.pop("label"), data)
    edges = [(e.get("source"), e.get("target"), float(next(e.iter(GML + "data")).text)) for e in root.iter(GML + "edge")]
    return nodes, edges, names


def read_graph(folder: Path, fmt: str):
    return (gexf_graph if fmt == "gexf" else graphml_graph)(folder / f"network.{fmt}")


@pytest.mark.parametrize("fmt", ["gexf", "graphml"])
@pytest.mark.parametrize("network", ["knn", "tags", "clusters", "hashtags", "authors"])
def test_networks_validate_against_the_official_schemas(posts_db, tmp_path, fmt, network):
    out = tmp_path / "net"
    code, err = run(posts_db, "--format", fmt, "-o", str(out), "--network", network, "--k", "3")
    assert code == 0, err
    assert errors(out / f"network.{fmt}", fmt) == []
    nodes, edges, _ = read_graph(out, fmt)
    assert nodes and edges
    assert all(s in nodes and t in nodes for s, t, _ in edges)


def test_the_schemas_do_reject(tmp_path):
    """The validation can fail: ids and attr.names that are not NMTOKENs, a GEXF without version."""
    bad = tmp_path / "bad.graphml"
    bad.write_text('<graphml xmlns="http://graphml.graphdrawing.org/xmlns"><key id="a" for="node" '
                   'attr.name="cluster default" attr.type="string"/><graph edgedefault="directed">'
                   '<node id="t:polar bear"/></graph></graphml>')
    assert any("attr.name" in e for e in errors(bad, "graphml"))
    assert any("NMTOKEN" in e for e in errors(bad, "graphml"))
    head = '<gexf xmlns="http://www.gexf.net/1.2draft" xmlns:viz="http://www.gexf.net/1.2draft/viz" version="1.2">'
    node = '<node id="i1" label="x"><attvalues/>{}</node>'
    cases = {
        "good": (head + '<graph><nodes>' + node.format('<viz:size value="3"/><viz:color r="1" g="2" b="3"/>')
                 + '</nodes><edges/></graph></gexf>'),
        "no version": '<gexf xmlns="http://www.gexf.net/1.2draft"><graph><nodes/><edges/></graph></gexf>',
        "colour out of range": (head + '<graph><nodes>' + node.format('<viz:color r="300" g="2" b="3"/>')
                                + '</nodes><edges/></graph></gexf>'),
        "viz outside its namespace": (head + '<graph><nodes>' + node.format('<color r="1" g="2" b="3"/>')
                                      + '</nodes><edges/></graph></gexf>'),
        "edge without source": head + '<graph><nodes/><edges><edge id="0" target="i1"/></edges></graph></gexf>',
    }
    for name, text in cases.items():
        (tmp_path / "t.gexf").write_text(text)
        assert bool(errors(tmp_path / "t.gexf", "gexf")) == (name != "good"), name


@pytest.mark.parametrize("fmt", ["gexf", "graphml"])
def test_hashtags_network(posts_db, tmp_path, fmt):
    out = tmp_path / "net"
    code, err = run(posts_db, "--format", fmt, "-o", str(out), "--network", "hashtags")
    assert code == 0, err
    nodes, edges, _ = read_graph(out, fmt)
    label = {i: lab for i, (lab, _) in nodes.items()}
    kinds = {i: a["type"] for i, (_, a) in nodes.items()}
    assert sorted(lab for i, lab in label.items() if kinds[i] == "hashtag") == ["cats", "dogs", "polarbear"]
    assert sum(k == "image" for k in kinds.values()) == N
    got = {(label[s], label[t]): w for s, t, w in edges}
    name1, name2, name3 = ("@alice · 2024-03-01 · instagram B2",
                           f"@{HYPER} · 2024-03-02 · instagram C4xYz1111111…",
                           "@bob · 2024-03-05 · instagram B3")
    assert got == {(name1, "cats"): 3, (name1, "polarbear"): 1, (name1, "dogs"): 1,
                   (name2, "cats"): 1, (name2, "polarbear"): 1,
                   (name3, "cats"): 1, (name3, "dogs"): 1}
    assert all(kinds[s] == "image" and kinds[t] == "hashtag" for s, t, _ in edges)
    images = {lab: a for i, (lab, a) in nodes.items() if kinds[i] == "image"}
    a1 = images[name1]
    assert (a1["url"], a1["post_url"], a1["author"], a1["created"], a1["posts"], a1["hashtags"]) == (
        "https://cdn.example/p2-a.jpg", "https://www.instagram.com/p/B2/", "alice", "2024-03-01T08:00:00Z", "4",
        "cats, dogs, polarbear")
    assert a1["cluster_default"] is not None and a1["cluster_label_default"] == EVIL_LABEL
    assert "cluster_k_2_groe" in a1 and "cluster_label_k_2_groe" in a1  # the second run, its name made a NMTOKEN
    rel = relpaths(posts_db)
    assert {rel[i] for i in range(4, N + 1)} <= set(images)  # no posts: named by the path under the folder
    assert images[rel[4]]["posts"] == "0"


@pytest.mark.parametrize("fmt", ["gexf", "graphml"])
def test_authors_network_and_hostile_names(posts_db, tmp_path, fmt):
    out = tmp_path / "net"
    code, err = run(posts_db, "--format", fmt, "-o", str(out), "--network", "authors")
    assert code == 0, err
    nodes, edges, _ = read_graph(out, fmt)
    label = {i: lab for i, (lab, _) in nodes.items()}
    kinds = {i: a["type"] for i, (_, a) in nodes.items()}
    assert sorted(lab for i, lab in label.items() if kinds[i] == "author") == sorted([HYPER, "alice", "bob", "+carol"])
    got = {(label[s], label[t]): w for s, t, w in edges}
    name1, name2, name3 = ("@alice · 2024-03-01 · instagram B2",
                           f"@{HYPER} · 2024-03-02 · instagram C4xYz1111111…",
                           "@bob · 2024-03-05 · instagram B3")
    assert got == {(name1, "alice"): 2, (name1, HYPER): 1, (name1, "bob"): 1,
                   (name2, HYPER): 1, (name2, "+carol"): 1, (name3, "bob"): 1}
    # every id is plain; the text is in the labels, and neutralised in the CSVs
    assert all(i[0] in "ia" and i[1:].isdigit() for i in nodes)
    with open(out / "nodes.csv", newline="", encoding="utf-8") as f:
        rows = {r["Id"]: r for r in csv.DictReader(f)}
    hyper = next(i for i, lab in label.items() if lab == HYPER)
    assert rows[hyper]["Label"] == "'" + HYPER and rows[hyper]["type"] == "author"
    carol = next(i for i, lab in label.items() if lab == "+carol")
    assert rows[carol]["Label"] == "'+carol"
    image2 = next(i for i, lab in label.items() if lab == name2)
    assert rows[image2]["Label"] == "'" + name2  # "@...": a spreadsheet would read it as a formula
    assert rows[image2]["author"] == "'" + HYPER
    with open(out / "edges.csv", newline="", encoding="utf-8") as f:
        e = list(csv.DictReader(f))
    assert {(r["Source"], r["Target"], r["Weight"]) for r in e} == {(s, t, f"{w:g}") for s, t, w in edges}


@pytest.mark.parametrize("fmt", ["gexf", "graphml"])
def test_tag_with_a_space(posts_db, tmp_path, fmt):
    out = tmp_path / "net"
    code, err = run(posts_db, "--format", fmt, "-o", str(out), "--network", "tags")
    assert code == 0, err
    nodes, edges, _ = read_graph(out, fmt)
    tags = {lab: i for i, (lab, a) in nodes.items() if a["type"] == "tag"}
    assert set(tags) == {"ice", "polar bear"} and tags["ice"] == "t0" and tags["polar bear"] == "t1"
    assert sorted((s, t, w) for s, t, w in edges) == [("i1", "t0", 0.5), ("i1", "t1", 0.9), ("i2", "t1", 0.7)]
    with open(out / "nodes.csv", newline="", encoding="utf-8") as f:
        rows = {r["Id"]: r for r in csv.DictReader(f)}
    assert rows["t1"]["Label"] == "polar bear" and rows["t1"]["type"] == "tag"


def test_gexf_attribute_ids_are_their_names(posts_db, tmp_path):
    """Gephi Lite (graphology-gexf) shows a non-numeric attribute id as the column's name."""
    out = tmp_path / "net"
    code, err = run(posts_db, "--format", "gexf", "-o", str(out), "--network", "knn", "--k", "2")
    assert code == 0, err
    _, _, titles = gexf_graph(out / "network.gexf")
    assert all(i == t for i, t in titles.items())
    assert {"type", "path", "url", "post_url", "author", "created", "posts", "hashtags", "cluster_default",
            "cluster_label_default", "cluster_k_2_groe", "image"} <= set(titles)


def test_run_names_that_would_clash(posts_db, tmp_path):
    """A run named "label_default" beside "default": cluster_label_default is the default run's."""
    import shutil

    path = tmp_path / "clash.db"
    shutil.copy(posts_db, path)
    db = dbmod.connect(str(path))
    rid = synthdb.add_run(db, np.zeros(N, dtype=int), name="label_default")
    with db.conn:
        db.execute("UPDATE cluster_runs SET is_default = (name = 'default')")
    dbmod.finish(db)
    db.conn.close()
    out = tmp_path / "net"
    code, err = run(str(path), "--format", "gexf", "-o", str(out), "--network", "knn", "--k", "2")
    assert code == 0, err
    assert errors(out / "network.gexf", "gexf") == []
    ids = [a.get("id") for a in lxml.etree.parse(str(out / "network.gexf")).getroot().iter(GEXF + "attribute")]
    assert len(ids) == len(set(ids))
    assert {"cluster_default", "cluster_label_default", f"cluster_label_default_{rid}",
            f"cluster_label_label_default_{rid}"} <= set(ids)
    nodes, _, _ = gexf_graph(out / "network.gexf")
    c = sqlite3.connect(path)
    default_cluster = c.execute("SELECT m.cluster_id FROM cluster_members m JOIN cluster_runs r ON r.id = m.run_id "
                                "WHERE r.name = 'default' AND m.image_id = 1").fetchone()[0]
    c.close()
    image1 = next(a for _, a in nodes.values() if a.get("url") == "https://cdn.example/p2-a.jpg")
    assert image1["cluster_default"] == str(default_cluster) and image1["cluster_label_default"] == EVIL_LABEL


def test_graphml_keys_keep_the_run_names(posts_db, tmp_path):
    out = tmp_path / "net"
    code, err = run(posts_db, "--format", "graphml", "-o", str(out), "--network", "knn", "--k", "2")
    assert code == 0, err
    root = lxml.etree.parse(str(out / "network.graphml")).getroot()
    desc = {k.get("attr.name"): k.findtext(GML + "desc") for k in root.iter(GML + "key")}
    assert desc["cluster_k_2_groe"] == "cluster id in run k 2 größe"
    assert desc["cluster_label_k_2_groe"] == "cluster label in run k 2 größe"
    assert desc["path"] is None
