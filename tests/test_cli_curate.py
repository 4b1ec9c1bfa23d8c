"""`imageclust move / merge / split / note / review / undo / ops / label` on a real
clustered database (the tuxpaint stamps, stand-in embedder), and a re-run of `cluster`
that re-applies the edits."""
from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.store import connection

FAST = ("--labels", "terms", "--no-duplicates", "--no-layout")


@pytest.fixture(scope="module")
def clustered(tux_db, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("cli_curate") / "c.db"
    shutil.copy(tux_db, path)
    for args in (("cluster", path, *FAST), ("cluster", path, "--name", "k8", "--method", "kmeans",
                                            "--clusters", "8", "--no-default", *FAST)):
        r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    return str(path)


@pytest.fixture
def db(clustered, tmp_path) -> str:
    p = tmp_path / "c.db"
    shutil.copy(clustered, p)
    return str(p)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ok(*args) -> dict | None:
    r = run(*args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout) if "--json" in args else None


def listing(db, *args) -> dict[int, dict]:
    return {c["id"]: c for c in map(json.loads, run("clusters", db, "--json", *args).stdout.splitlines())}


def image_ids(db, cluster_id) -> list[int]:
    d = connection.connect(db, readonly=True)
    try:
        return [r[0] for r in d.execute("SELECT image_id FROM cluster_members WHERE cluster_id = ? ORDER BY rank",
                                        [cluster_id])]
    finally:
        connection.close(d)


def content(db) -> dict:
    """Every row of every table (the file's header changes whenever it is opened for writing)."""
    d = connection.connect(db, readonly=True)
    try:
        names = [r[0] for r in d.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                         "sql NOT LIKE 'CREATE VIRTUAL%'")]
        return {n: d.execute(f"SELECT * FROM [{n}]").fetchall() for n in names}
    finally:
        connection.close(d)


def real(db, *args) -> list[int]:
    return [c["id"] for c in listing(db, *args).values() if c["kind"] == "cluster"]


def test_every_command_with_json_and_ops(db):
    a, b, c, d = real(db)[:4]
    assert ok("label", db, a, "renamed", "--json") == {"op_id": 1, "op": "label", "run": "default",
                                                       "clusters": [a], "images": 0, "undid": None}
    moved = image_ids(db, b)[:2]
    r = ok("move", db, "--to", c, *moved, "--json")
    assert (r["op"], r["images"], r["clusters"]) == ("move", 2, [c, b])
    r = ok("move", db, "--to", "unclustered", image_ids(db, b)[0], "--json")
    assert listing(db)[r["clusters"][0]]["kind"] == "unclustered"
    r = ok("merge", db, a, d, "--json")
    assert r["clusters"] == [a, d] and d not in listing(db)
    r = ok("split", db, *image_ids(db, c)[:3], "--label", "three", "--json")
    assert listing(db)[r["clusters"][0]]["label"] == "three" and r["images"] == 3
    ok("note", db, c, "look again")
    ok("review", db, c)
    ok("review", db, c, "--not-reviewed")
    ops = [json.loads(l) for l in run("ops", db, "--json").stdout.splitlines()]
    assert [o["op"] for o in ops] == ["label", "move", "move", "merge", "split", "note", "review", "review"]
    assert {o["actor"] for o in ops} == {"cli:" + getpass.getuser()}
    assert ops[1]["args"] == {"images": moved, "to": c}
    assert ops[2]["args"]["to"] == "unclustered" and ops[6]["args"] == {"target": c, "reviewed": True}
    text = run("ops", db).stdout.splitlines()
    assert len(text) == 8 and "[applied]" in text[0] and "label" in text[0]
    r = ok("undo", db, "--json")
    assert (r["op"], r["op_id"], r["undid"]) == ("undo", 8, "review")
    assert "[undone " in run("ops", db).stdout.splitlines()[-1]


def test_run_option(db):
    k = real(db, "--name", "k8")[0]
    r = run("label", db, k, "kmeans one")
    assert r.exit_code == 1 and f"cluster {k} belongs to run 'k8', not 'default'" in r.stderr
    ok("label", db, k, "kmeans one", "--run", "k8")
    assert listing(db, "--name", "k8")[k]["label"] == "kmeans one"
    assert run("ops", db).stdout == "" and "kmeans one" in run("ops", db, "--run", "k8").stdout
    r = run("undo", db)
    assert r.exit_code == 1 and "nothing to undo in run 'default'" in r.stderr
    ok("undo", db, "--run", "k8")


def test_mistakes_are_one_line_exit_1_and_write_nothing(db):
    a, b = real(db)[:2]
    ok("note", db, a, "first")  # the component exists: now nothing may change
    before = content(db)
    for args, message in [
        (("move", db, "--to", "999999", image_ids(db, a)[0]), "no cluster with id 999999 in run 'default'"),
        (("move", db, "--to", b, 99999999), "image 99999999 is not in run 'default'"),
        (("move", db, "--to", a, *image_ids(db, a)[:2]), "already in cluster"),
        (("merge", db, a), "two or more different clusters"),
        (("split", db, 99999998, 99999999), "2 images are not in run 'default'"),
        (("note", db, a, "x", "--run", "nope"), "no clustering run named 'nope'"),
        (("review", db, 999999), "no cluster with id 999999"),
        (("label", db, 999999, "x"), "no cluster with id 999999"),
    ]:
        r = run(*args)
        assert r.exit_code == 1 and r.stdout == "", (args, r.output)
        assert r.stderr.strip().splitlines() == [f"Error: {r.stderr.strip()[7:]}"] and message in r.stderr, args
    r = run("move", db, "--to", "elsewhere", "1")
    assert r.exit_code == 2 and "neither a cluster id nor 'unclustered'" in r.stderr
    assert content(db) == before


def test_edits_survive_cluster_re_runs(db):
    a, b, c, d = real(db)[:4]
    first = listing(db)
    moved = image_ids(db, b)[:2]
    ok("label", db, a, "renamed")
    ok("move", db, "--to", c, *moved)
    ok("merge", db, c, d)
    r = run("cluster", db, *FAST, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[-1])["edits"] == {"applied": 3, "partial": [], "stale": []}
    assert "3 edits re-applied" in r.stderr
    after = listing(db)
    named = [x for x in after.values() if x["label"] == "renamed"]
    assert len(named) == 1 and set(named[0]["members"]) == set(first[a]["members"])
    (merged,) = [x for x in after.values() if set(first[d]["members"]) <= set(x["members"])]
    assert set(first[c]["members"]) <= set(merged["members"])  # merged, with the moved images
    with_moved = [x for x in after.values() if any(p in x["members"] for p in first[b]["members"][:2])]
    assert [x["id"] for x in with_moved] == [merged["id"]] and len(moved) == 2


def test_concurrent_processes(db):
    """Six `imageclust move` processes at once, each moving one image: all recorded, all moved."""
    a, b = real(db)[:2]
    images = image_ids(db, a)[:6]
    procs = [subprocess.Popen([sys.executable, "-m", "datasette_imageclust", "move", db, "--to", str(b), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in images]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), results
    assert set(images) <= set(image_ids(db, b))
    ops = [json.loads(l) for l in run("ops", db, "--json").stdout.splitlines()]
    assert sorted(o["args"]["images"][0] for o in ops) == sorted(images)
    sizes = {c["id"]: c["size"] for c in listing(db).values()}
    assert sizes[b] == len(image_ids(db, b)) and sizes[a] == len(image_ids(db, a))
