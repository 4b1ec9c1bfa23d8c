"""Every ```python block of the README runs as written, against a small database of real
images made here, in a folder laid out as the examples assume: ``photos.db`` and
``photos/`` in the current folder, the stand-in model at ``../shared/models/``. Each block's
results (the value of every top-level expression, what it prints, what it leaves in the
database) are checked against what the README says they are; so are the ```sql blocks that
read what ``load`` makes."""
from __future__ import annotations

import ast
import contextlib
import io
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)
SQL = re.findall(r"^```sql\n(.*?)^```", README, flags=re.DOTALL | re.MULTILINE)
COPY = "zz-copy-of-the-first.png"  # an exact duplicate file, for the README's duplicates query
# The README's "`--json` prints the summary on stdout" list, written out.
LOAD_KEYS = {"scanned", "unchanged", "new", "duplicates", "reembedded", "errors", "gone", "pruned", "seconds",
             "pipeline_seconds", "images_per_second", "decode_seconds", "inference_seconds", "write_seconds",
             "stage_shares", "interrupted", "engine"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, stand_in_model, tux_dir) -> Path:
    from datasette_imageclust import pipeline

    root = tmp_path_factory.mktemp("readme")
    (root / "shared").symlink_to(Path(stand_in_model).resolve().parent.parent)  # ../shared as in the README
    work = root / "work"
    (work / "photos").mkdir(parents=True)
    images = sorted(p for p in tux_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for f in images[:50]:  # image ids 1..50: the examples' image 42 exists
        dest = work / "photos" / f.relative_to(tux_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    shutil.copy(images[0], work / "photos" / COPY)
    summary = pipeline.load(str(work / "photos.db"), [str(work / "photos")], stand_in_model)
    assert (summary.new, summary.duplicates, summary.errors) == (50, 1, 0)
    return work


def run_block(source: str, name: str) -> tuple[list, str, dict]:
    """Run ``source`` as written; returns (the value of each top-level expression, in order,
    as a REPL would show it), what it printed, its names."""
    tree = ast.parse(source)
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr):  # `expr` -> `_values.append(expr)`: the same call, kept
            call = ast.Call(ast.Attribute(ast.Name("_values", ast.Load()), "append", ast.Load()), [node.value], [])
            tree.body[i] = ast.copy_location(ast.Expr(call), node)
    ast.fix_missing_locations(tree)
    names: dict = {"__name__": "readme", "_values": []}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(tree, name, "exec"), names)
    return names["_values"], out.getvalue(), names


def q(path: Path, sql: str, params=()) -> list:
    with contextlib.closing(sqlite3.connect(path)) as c:
        return c.execute(sql, params).fetchall()


def check_load(values, printed, names, work):
    # print(summary.as_dict()): "the keys of `load --json`"; a second load of the same
    # folder finds every file unchanged.
    shown = ast.literal_eval(printed.strip().splitlines()[-1])
    assert set(shown) == LOAD_KEYS
    assert (shown["scanned"], shown["unchanged"], shown["new"], shown["errors"]) == (51, 51, 0, 0)
    assert values == [None]  # the print


def check_similar(values, printed, names, work):
    found, similar, knn, closed = values
    # find_similar: ten SimilarImage(image_id, similarity, path), most similar first, not 42
    assert len(found) == 10 and 42 not in [s.image_id for s in found]
    assert [s.similarity for s in found] == sorted((s.similarity for s in found), reverse=True)
    assert all(0 < s.similarity < 1 and Path(s.path).is_file() for s in found)
    # search.similar: ten (image_id, cosine distance), nearest first, without image 42, the same images
    assert len(similar) == 10 and 42 not in [i for i, _ in similar]
    assert [d for _, d in similar] == sorted(d for _, d in similar)
    assert [i for i, _ in similar] == [s.image_id for s in found]
    assert [round(1 - d, 5) for _, d in similar] == [round(s.similarity, 5) for s in found]
    # knn with image 42's own vector: image 42 first, at distance 0
    assert len(knn) == 10 and knn[0][0] == 42 and abs(knn[0][1]) < 1e-5
    assert [i for i, _ in knn[1:]] == [i for i, _ in similar[:9]]
    # the stamps' folders are their kinds: image 42's nearest neighbour is of its kind
    kind = lambda iid: Path(q(work / "photos.db", "SELECT relpath FROM files WHERE image_id = ?", [iid])[0][0]).parts[0]
    assert kind(similar[0][0]) == kind(42)
    assert closed is True


def check_pipeline(values, printed, names, work):
    db = work / "photos.db"
    lines = printed.splitlines()
    clusters, unclustered, default = lines[-1].split()[:3]
    assert default == "True" and int(clusters) > 0  # run.clusters, run.unclustered, run.default
    rows = q(db, "SELECT c.kind, c.size FROM clusters c JOIN cluster_runs r ON r.id = c.run_id WHERE r.is_default")
    sizes = [s for k, s in rows if k == "cluster"]
    assert len(sizes) == int(clusters) and sum(s for k, s in rows if k != "cluster") == int(unclustered)
    assert sum(s for _, s in rows) == 50 and all(3 <= s <= 10 for s in sizes)  # "default: clusters of 3-10"
    assert q(db, "SELECT COUNT(*) FROM cluster_labels WHERE source = 'terms'")[0][0] == int(clusters)
    assert q(db, "SELECT name, is_default FROM layouts WHERE name = 'k'") == [("k", 0)]
    assert q(db, "SELECT COUNT(*) FROM layout_points l JOIN layouts y ON y.id = l.layout_id "
                 "WHERE y.name = 'k'")[0][0] == 50
    assert q(db, "SELECT COUNT(*) FROM search_index")[0][0] == 1
    assert lines[0] == "scanning"  # load's on_status (nothing new to load)
    assert any(line.startswith(f"{clusters} clusters, {unclustered} images unclustered") for line in lines)
    assert lines[-1].split()[3] == "0"  # the default layout's overlaps: the map is packed
    assert values[-1] is True  # close(db): nothing else has it open, so it leaves WAL


CHECKS = [check_load, check_similar, check_pipeline]


def test_every_python_example_has_its_checks():
    assert len(BLOCKS) == len(CHECKS)
    assert "from datasette_imageclust import pipeline" in BLOCKS[0]
    assert "find_similar" in BLOCKS[1] and "cluster_images" in BLOCKS[2]


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_python_example_does_what_it_says(workdir, monkeypatch, number):
    monkeypatch.chdir(workdir)
    values, printed, names = run_block(BLOCKS[number], f"README.md, python example {number + 1}")
    CHECKS[number](values, printed, names, workdir)


def _sql(start: str) -> str:
    found = [s for s in SQL if s.lstrip().startswith(start)]
    assert len(found) == 1, start
    return found[0]


def _run_sql(work: Path, sql: str) -> list:
    from datasette_imageclust.store.connection import close, connect

    db = connect(str(work / "photos.db"), readonly=True)  # with sqlite-vec, as Datasette has it
    try:
        return [tuple(r) for r in db.execute(sql).fetchall()]
    finally:
        close(db)


def test_the_sql_examples_are_accounted_for():
    # posts (an export's) and descriptions (a vision LLM's) are not in this database:
    # their queries are not run here. Every other one is, below.
    assert len(SQL) == 5
    assert sum("from post_images" in s or "descriptions_fts" in s for s in SQL) == 2


def test_readme_sql_exact_duplicates(workdir):
    rows = _run_sql(workdir, _sql("select image_id, count(*) as copies"))
    assert len(rows) == 1
    image_id, copies, paths = rows[0]
    assert copies == 2 and {Path(p).name for p in paths.split("\n")} == {
        Path(q(workdir / "photos.db", "SELECT path FROM files WHERE image_id = ? AND path NOT LIKE ?",
               [image_id, f"%{COPY}"])[0][0]).name, COPY}


def test_readme_sql_similarity(workdir):
    exact = _run_sql(workdir, _sql("select image_id, 1 - distance"))
    assert len(exact) == 11 and exact[0][0] == 42 and abs(exact[0][1] - 1) < 1e-5  # "the first row is image 42"
    assert [s for _, s in exact] == sorted((s for _, s in exact), reverse=True) and exact[-1][1] < 1
    hamming = _run_sql(workdir, _sql("with q as"))
    assert len(hamming) == 10 and 42 not in [i for i, _ in hamming]
    assert [s for _, s in hamming] == sorted((s for _, s in hamming), reverse=True)
    # 200 Hamming candidates of 50 images: every image, so the exact ten
    assert [i for i, _ in hamming] == [i for i, _ in exact[1:]]
    assert [round(s, 5) for _, s in hamming] == [round(s, 5) for _, s in exact[1:]]
