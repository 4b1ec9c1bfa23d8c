"""`imageclust evaluate` and analysis/evaluate*: tasks drawn from a real database, answers
imported from CSV, and the report checked against hand computations (Krippendorff's alpha
also against his own published example)."""
from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from datasette_imageclust.analysis import evaluate as ev
from datasette_imageclust.analysis.evaluate_report import krippendorff_alpha_nominal, report
from datasette_imageclust.cli import cli
from datasette_imageclust.store import connection as dbmod
from synthdb import add_run, make_db
from dbrows import rows


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def db4(tmp_path) -> str:
    """60 synthetic images in 4 clusters (15 each) with a default run."""
    return make_db(str(tmp_path / "e.db"), 60, clusters=4, thumb_px=32, distinct_thumbs=16)


# --- Krippendorff's alpha ----------------------------------------------------------------


def test_alpha_matches_krippendorffs_published_example():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four
    observers, twelve units, missing values; nominal alpha = 0.743."""
    n = None
    a = [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n]
    b = [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3]
    c = [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n]
    d = [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]
    units = [[v for v in u if v is not None] for u in zip(a, b, c, d)]
    alpha = krippendorff_alpha_nominal(units)
    assert round(float(alpha), 3) == 0.743
    # His worked computation: unit 12 (one value) aside, the
    # coincidence matrix has n_c = 9, 13, 10, 5, 3 (n = 40) and 8 disagreeing pairs off its
    # diagonal, so alpha = 1 - (40 - 1) * 8 / (40^2 - (81 + 169 + 100 + 25 + 9)) = 1 - 312/1216.
    assert alpha == 1 - Fraction(312, 1216)


def test_alpha_small_cases_by_hand():
    # Two coders, two units: (a, a) and (a, b). o_aa = 2, o_ab = o_ba = 1; n_a = 3, n_b = 1, n = 4.
    # alpha = 1 - (4 - 1) * 2 / (2 * 3 * 1) = 0.
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "b"]]) == 0
    # Perfect agreement with variation: 1. No variation at all, or no pairable unit: undefined.
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == 1
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None
    # "none fits" (None) is a value like any other: (None, None), (None, x), (x, x):
    # o_NN = 2, o_Nx = o_xN = 1, o_xx = 2; n_N = n_x = 3, n = 6: alpha = 1 - 5 * 2 / 18 = 4/9.
    assert krippendorff_alpha_nominal([[None, None], [None, 1], [1, 1]]) == Fraction(4, 9)


# --- creating tasks -----------------------------------------------------------------------


def test_create_draws_disjoint_sets_from_each_cluster_reproducibly(db4):
    r = run("evaluate", "create", db4, "--name", "t", "--seed", "7", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["kind"], s["sets"], s["images"], s["candidates"]) == ("sets", 12, 48, 4)
    members = dict(rows(db4, "SELECT image_id, cluster_id FROM cluster_members"))
    got = rows(db4, "SELECT s.set_no, s.cluster_id, i.image_id FROM eval_sets s JOIN eval_set_images i "
                    "ON i.set_id = s.id ORDER BY s.set_no, i.position")
    assert all(members[img] == cid for _, cid, img in got)  # every image is of its set's cluster
    assert len({img for _, _, img in got}) == 48  # disjoint
    per_cluster = {}
    for no, cid, _ in got:
        per_cluster.setdefault(cid, set()).add(no)
    assert sorted(len(v) for v in per_cluster.values()) == [3, 3, 3, 3]
    assert rows(db4, "SELECT cluster_id, label FROM eval_candidates ORDER BY 1") == \
        [(c, f"group {i}") for i, c in enumerate(sorted(per_cluster))]
    # the same seed draws the same sets; another seed others
    run("evaluate", "create", db4, "--name", "again", "--seed", "7")
    run("evaluate", "create", db4, "--name", "other", "--seed", "8")
    db = dbmod.connect(db4, readonly=True)
    draw = {t["name"]: [(s["cluster_id"], s["image_ids"]) for s in ev.sets(db, t["id"])] for t in ev.tasks(db)}
    assert draw["t"] == draw["again"] != draw["other"]


def test_small_clusters_give_fewer_or_smaller_sets(tmp_path):
    path = make_db(str(tmp_path / "s.db"), 20, clusters=2, with_run=False)
    db = dbmod.connect(path)
    # cluster sizes 2, 9, 9 (the rest unclustered): set size 4, 3 per cluster
    label = np.array([0] * 2 + [1] * 9 + [2] * 7 + [-1] * 2)
    add_run(db, label)
    s = ev.create_task(db, "t", sets_per_cluster=3, set_size=4, seed=1)
    sizes = {}
    for row in ev.sets(db, 1):
        sizes.setdefault(row["cluster_id"], []).append(len(row["image_ids"]))
    # 2 images: one set of both; 9: two sets of 4 (not three); 7: one set of 4; unclustered: none
    assert sorted(sorted(v) for v in sizes.values()) == [[2], [4], [4, 4]]
    assert s.candidates == 3 and len(s.short_clusters) == 3


def test_create_refuses_bad_options_in_one_line(db4):
    run("evaluate", "create", db4, "--name", "t")
    for args, words in [
        (["--name", "t"], "already"),
        (["--name", "x", "--set-size", "0"], "--set-size"),
        (["--name", "x", "--sets-per-cluster", "-1"], "--sets-per-cluster"),
        (["--name", "x", "--run", "nope"], "no clustering run named 'nope'"),
        (["--name", " "], "task name is empty"),
        (["--name", "x", "--compare-run", "default", "--pairs", "2"], "named twice"),
    ]:
        r = run("evaluate", "create", db4, *args)
        assert r.exit_code == 1 and words in r.stderr and "Traceback" not in r.output, (args, r.output)
    assert rows(db4, "SELECT name FROM eval_tasks") == [("t",)]


# --- answers and the report, by hand ------------------------------------------------------


def two_coders_answers(db_path: str, task: str) -> list[list]:
    """A and B answer by a fixed scheme relative to the truth (see the test)."""
    db = dbmod.connect(db_path, readonly=True)
    t = ev.task(db, task)
    by_cluster: dict[int, list[int]] = {}
    for s in ev.sets(db, t["id"]):
        by_cluster.setdefault(s["cluster_id"], []).append(s["set_no"])
    c1, c2, c3, c4 = sorted(by_cluster)
    sa = {c: by_cluster[c] for c in (c1, c2, c3, c4)}
    none = ""
    plan_a = {c1: [c1, c1, c1], c2: [c2, c2, c1], c3: [c4, c4, c4], c4: [none, none, c4]}
    plan_b = {c1: [c1, c1, c2], c2: [c2, c2, c2], c3: [c3, none, c4], c4: [c4, c4, None]}  # None: B skips it
    out = [["coder", "set", "cluster"]]
    for coder, plan in (("A", plan_a), ("B", plan_b)):
        for c, picks in plan.items():
            for set_no, pick in zip(sa[c], picks):
                if pick is not None:
                    out.append([coder, set_no, pick])
    return out, (c1, c2, c3, c4)


def write_csv(path: Path, table: list[list]) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(table)
    return str(path)


def test_two_coders_via_import_match_a_hand_computation(db4, tmp_path):
    run("evaluate", "create", db4, "--name", "t", "--seed", "3")
    table, (c1, c2, c3, c4) = two_coders_answers(db4, "t")
    r = run("evaluate", "import", db4, "t", write_csv(tmp_path / "answers.csv", table))
    assert r.exit_code == 0, r.output
    r = run("evaluate", "report", db4, "t", "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    # 23 answers (A 12, B 11). Correct: A 3+2+0+1 = 6, B 2+3+1+2 = 8.
    assert got["answers"] == 23 and got["correct"] == 14 and got["accuracy"] == 14 / 23
    assert got["chance"] == 1 / 4 and got["coders"] == 2 and got["none_fits"] == 3
    per = {c["cluster_id"]: c for c in got["clusters"]}
    # precision = correct / chosen: c1 chosen 4 (A) + 2 (B) = 6, 5 right; c2 2 + 4 = 6, 5 right;
    # c3 chosen once (B), right; c4 chosen 4 (A) + 3 (B) = 7, 3 right.
    assert [per[c]["precision"] for c in (c1, c2, c3, c4)] == [5 / 6, 5 / 6, 1.0, 3 / 7]
    # recall = correct / answers on the cluster's sets: 5/6, 5/6, 1/6, 3/5 (B skipped one c4 set).
    assert [per[c]["recall"] for c in (c1, c2, c3, c4)] == [5 / 6, 5 / 6, 1 / 6, 3 / 5]
    # alpha over the 11 sets both answered: o_11 = 4, o_12 = o_21 = 2, o_22 = 4, o_34 = o_43 = 1,
    # o_44 = 2, o_4N = o_N4 = 3; n_1 = 6, n_2 = 6, n_3 = 1, n_4 = 6, n_N = 3, n = 22; disagreements 12;
    # sum_{c != k} n_c n_k = 22^2 - (36 + 36 + 1 + 36 + 9) = 366; alpha = 1 - 21 * 12 / 366 = 19/61.
    assert got["alpha"] == float(Fraction(19, 61))
    # the text report says the same
    text = run("evaluate", "report", db4, "t").stdout
    assert "accuracy 60.9%" in text and "chance 25.0%" in text and "alpha 0.311" in text


def test_a_reanswer_replaces_and_one_coder_has_no_alpha(db4, tmp_path):
    run("evaluate", "create", db4, "--name", "t")
    db = dbmod.connect(db4)
    t = ev.task(db, "t")
    truth = {s["set_no"]: s["cluster_id"] for s in ev.sets(db, t["id"])}
    ev.record_answers(db, t, [("ann", 1, None)])
    ev.record_answers(db, t, [("ann", 1, truth[1])])
    r = report(db, "t")
    assert (r["answers"], r["correct"], r["coders"], r["alpha"]) == (1, 1, 1, None)


BAD = [
    ("coder,set\nA,1\n", "line 1: the header must be coder,set,cluster"),
    ("coder,set,cluster\nA,1,\nA,99,\n", "line 3: set 99 is not a set of task 't'"),
    ("coder,set,cluster\nA,1,\nA,2,12345\n", "line 3: cluster 12345 is not one of the task's labels"),
    ("coder,set,cluster\nA,1,\nA,1,\n", "line 3: coder 'A' answered set 1 already (line 2)"),
    ("coder,set,cluster\nA,one,\n", "line 2: set must be a whole number, not 'one'"),
    ("coder,set,cluster\nA,1,-2\n", "line 2: cluster must be a whole number"),
    ("coder,set,cluster\nA,1\n", "line 2: 2 fields, expected 3"),
    ("coder,set,cluster\n,1,\n", "line 2: the coder name is empty"),
    ("coder,set,cluster\n", "no answers after the header"),
    ("coder,set,cluster\nA,\"1,\n", "not valid CSV"),
]


@pytest.mark.parametrize("body,message", BAD)
def test_bad_answer_files_write_nothing(db4, tmp_path, body, message):
    run("evaluate", "create", db4, "--name", "t")
    good = write_csv(tmp_path / "good.csv", [["coder", "set", "cluster"], ["Z", 2, ""]])
    assert run("evaluate", "import", db4, "t", good).exit_code == 0
    before = rows(db4, "SELECT * FROM eval_answers")
    bad = tmp_path / "bad.csv"
    bad.write_text(body, encoding="utf-8")
    r = run("evaluate", "import", db4, "t", bad)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"Error: {bad}") and message in line, line
    assert rows(db4, "SELECT * FROM eval_answers") == before


def test_an_answers_file_that_is_not_utf8_or_missing(db4, tmp_path):
    run("evaluate", "create", db4, "--name", "t")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("coder,set,cluster\nA,1,\nJos\xe9,2,\n".encode("latin-1"))
    r = run("evaluate", "import", db4, "t", bad)
    assert r.exit_code == 1 and "line 3: not UTF-8" in r.stderr
    r = run("evaluate", "import", db4, "t", tmp_path / "missing.csv")
    assert r.exit_code == 1 and "cannot read" in r.stderr and "Traceback" not in r.output
    r = run("evaluate", "import", db4, "nope", bad)
    assert r.exit_code == 1 and "no evaluation task named 'nope'" in r.stderr
    assert rows(db4, "SELECT count(*) FROM eval_answers") == [(0,)]


# --- export ------------------------------------------------------------------------------------


def test_export_reveals_no_cluster_and_round_trips(db4, tmp_path):
    run("evaluate", "create", db4, "--name", "t", "--set-size", "3", "--sets-per-cluster", "2")
    out = tmp_path / "x" / "sets.csv"
    out.parent.mkdir()
    r = run("evaluate", "export", db4, "t", "-o", out)
    assert r.exit_code == 0, r.output
    with open(out, newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == ["set", "image_id", "path"] and len(table) == 1 + 8 * 3
    paths = dict(rows(db4, "SELECT image_id, path FROM files"))
    assert all(paths[int(i)] == p for _, i, p in table[1:])
    with open(out.parent / "labels.csv", newline="") as f:
        labels = list(csv.reader(f))
    assert labels == [["cluster", "label"]] + [[str(c), t] for c, t in rows(
        db4, "SELECT cluster_id, label FROM eval_candidates ORDER BY cluster_id")]
    sheet = (out.parent / "sets.html").read_text()
    assert sheet.count("data:image/webp;base64,") == 24 and "Set 8" in sheet
    # coders' answers on the exported numbering import back (all say the first label)
    first = labels[1][0]
    answers = [["coder", "set", "cluster"]] + [["paper", n, first] for n in sorted({int(r[0]) for r in table[1:]})]
    r = run("evaluate", "import", db4, "t", write_csv(tmp_path / "a.csv", answers))
    assert r.exit_code == 0, r.output
    got = json.loads(run("evaluate", "report", db4, "t", "--json").stdout)
    assert got["answers"] == 8 and got["accuracy"] == 2 / 8


# --- pairs -------------------------------------------------------------------------------------


def test_pairs_compare_two_runs_on_the_same_pairs(db4, tmp_path):
    db = dbmod.connect(db4)
    # a second run that puts everything in two halves by image id
    add_run(db, np.array([0] * 30 + [1] * 30), name="halves")
    db.execute("UPDATE cluster_runs SET is_default = (name = 'default')")
    db.conn.commit()
    r = run("evaluate", "create", db4, "--name", "p", "--pairs", "4", "--compare-run", "halves", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["pairs"] == 16  # 4 within + 4 across, for each of the two runs
    pairs = rows(db4, "SELECT p.pair_no, p.image_a, p.image_b, r.run_name, r.relation FROM eval_pairs p "
                      "JOIN eval_pair_relations r ON r.pair_id = p.id ORDER BY p.pair_no, r.run_name")
    assert len(pairs) == 32  # every pair has a relation in both runs
    member = {run_name: dict(rows(db4, "SELECT m.image_id, m.cluster_id FROM cluster_members m JOIN "
                                       "cluster_runs r ON r.id = m.run_id WHERE r.name = ?", [run_name]))
              for run_name in ("default", "halves")}
    for _, a, b, run_name, rel in pairs:
        assert rel == ("within" if member[run_name][a] == member[run_name][b] else "between")
    # ratings: 3 for pairs within the default run's clusters, 1 otherwise; coder B rates all 2
    table = [["coder", "pair", "rating"]]
    for no, _, _, run_name, rel in pairs:
        if run_name == "default":
            table += [["A", no, 3 if rel == "within" else 1], ["B", no, 2]]
    assert run("evaluate", "import", db4, "p", write_csv(tmp_path / "r.csv", table)).exit_code == 0
    rep = json.loads(run("evaluate", "report", db4, "p", "--json").stdout)
    runs = {x["run"]: x for x in rep["runs"]}
    # default: within pairs rated 3 and 2 (mean 2.5), between 1 and 2 (1.5): difference 1
    assert runs["default"]["within"]["mean"] == 2.5 and runs["default"]["between"]["mean"] == 1.5
    assert runs["default"]["difference"] == 1.0
    # halves: by hand from the relations
    rated = {no: (3 if rel == "within" else 1) for no, _, _, rn, rel in pairs if rn == "default"}
    for rel in ("within", "between"):
        nos = [no for no, _, _, rn, r_ in pairs if rn == "halves" and r_ == rel]
        want = sum(rated[n] + 2 for n in nos) / (2 * len(nos)) if nos else None
        assert runs["halves"][rel]["mean"] == want
    bad = write_csv(tmp_path / "bad.csv", [["coder", "pair", "rating"], ["A", 1, 2], ["A", 2, 4]])
    r = run("evaluate", "import", db4, "p", bad)
    assert r.exit_code == 1 and "line 3: a rating is 1, 2 or 3, not 4" in r.stderr
