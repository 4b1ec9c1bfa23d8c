"""The whole pipeline on real images: load, cluster, layout, then files change and load again."""
from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.cli import cli


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return r


def test_prune_after_cluster_and_layout(tmp_path, tux_dir, stand_in_model):
    photos = tmp_path / "photos"
    for cat in ("birds", "fruit", "vehicles"):
        shutil.copytree(tux_dir / cat, photos / cat)
    db = tmp_path / "x.db"
    run("load", db, photos, "--model", stand_in_model)
    r = run("cluster", db)  # lays out the map too
    assert "laying out the map" in r.stderr
    d = dbmod.connect(db, readonly=True)
    n = d.execute("select count(*) from images").fetchone()[0]
    assert d.execute("select count(*) from layout_points").fetchone()[0] == n
    d.conn.close()
    gone = sorted((photos / "birds").iterdir())[:3]
    for f in gone:
        f.unlink()
    summary = json.loads(run("load", db, photos, "--model", stand_in_model, "--prune", "--json").stdout)
    assert summary["pruned"] == 3
    d = dbmod.connect(db, readonly=True)
    assert d.execute("pragma foreign_key_check").fetchall() == []
    assert d.execute("select count(*) from images").fetchone()[0] == n - 3
    for table in ("cluster_members", "layout_points", "atlas_cells", "image_vectors"):
        left = d.execute(f"select count(*) from {table} where image_id not in (select id from images)").fetchone()[0]
        assert left == 0, table
    (size_sum, members), = d.execute(
        "select (select sum(size) from clusters c join cluster_runs r on r.id = c.run_id where r.is_default), "
        "(select count(*) from cluster_members m join cluster_runs r on r.id = m.run_id where r.is_default)")
    assert size_sum == members == n - 3
    (layout_n,), = d.execute("select n_images from layouts where is_default")
    assert layout_n == n - 3
    d.conn.close()
