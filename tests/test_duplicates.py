"""Near-duplicates on the real tuxpaint stamps + their modified copies."""
from __future__ import annotations

import csv
import json
import os

import pytest
from click.testing import CliRunner

from conftest import TUX_DUPES, need
from datasette_imageclust.cli import cli
from datasette_imageclust.store.connection import connect


@pytest.fixture(scope="module")
def dupes_db(tmp_path_factory, stand_in_model, tux_dir):
    from datasette_imageclust.pipeline import load

    need(TUX_DUPES)
    p = str(tmp_path_factory.mktemp("dupes") / "d.db")
    load(p, [str(tux_dir), str(TUX_DUPES)], stand_in_model)
    return p


def test_near_duplicates_precision_recall(dupes_db, tux_dir):
    r = CliRunner().invoke(cli, ["duplicates", dupes_db, "--json"], catch_exceptions=False)
    assert r.exit_code == 0
    groups = [json.loads(l) for l in r.stdout.splitlines()]
    assert groups and all(g["kind"] == "near" for g in groups)  # no exact copies in these sets
    sets = tux_dir.parent
    origin = {}
    for row in csv.DictReader(open(TUX_DUPES / "pairs.csv")):
        origin[str(sets / row["copy"])] = str(sets / row["original"])
    group_of = {p: i for i, g in enumerate(groups) for p in g["paths"]}
    hits = sum(group_of.get(c, -1) == group_of.get(o, -2) for c, o in origin.items())
    assert hits / len(origin) >= 0.95
    db = connect(dupes_db, readonly=True)
    paths = dict(db.execute("SELECT image_id, path FROM files").fetchall())
    pairs = db.execute("SELECT image_a, image_b FROM duplicate_pairs").fetchall()
    good = sum(origin.get(paths[a], paths[a]) == origin.get(paths[b], paths[b]) for a, b in pairs)
    assert good / len(pairs) >= 0.98


def test_exact_duplicates_and_stored(tmp_path, tux_dir, stand_in_model):
    import shutil

    from datasette_imageclust.pipeline import load

    src = sorted((tux_dir / "birds").iterdir())[:3]
    for i, f in enumerate(src):
        shutil.copy(f, tmp_path / f"a{i}.jpg")
    shutil.copy(src[0], tmp_path / "copy.jpg")
    p = str(tmp_path / "x.db")
    load(p, [str(tmp_path)], stand_in_model)
    r = CliRunner().invoke(cli, ["duplicates", p, "--json"], catch_exceptions=False)
    groups = [json.loads(l) for l in r.stdout.splitlines()]
    exact = [g for g in groups if g["kind"] == "exact"]
    assert len(exact) == 1 and sorted(os.path.basename(x) for x in exact[0]["paths"]) == ["a0.jpg", "copy.jpg"]
    r2 = CliRunner().invoke(cli, ["duplicates", p, "--stored"], catch_exceptions=False)
    assert "exact 2:" in r2.stdout


def test_phash_pairs_is_exact():
    import numpy as np

    from datasette_imageclust.analysis.neardup import hamming, phash_pairs

    rng = np.random.default_rng(0)
    ph = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    ph[100:110] = ph[5]  # a bucket of identical hashes
    for i, bits in ((200, 0b1), (201, 0b1011), (202, 0b11011), (203, 0b111011)):
        ph[i] = ph[7] ^ np.uint64(bits)  # 1, 3, 4 and 5 bits away
    d = hamming(ph[:, None], ph[None, :])
    brute = {(int(i), int(j)) for i, j in zip(*np.nonzero(d <= 4)) if i < j}
    got = phash_pairs(ph, 4)
    assert set(got) == brute and len(got) == len(brute)
    assert (7, 202) in brute and (7, 203) not in brute
