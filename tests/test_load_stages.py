"""The load summary says where the time went: decode, inference and write seconds."""
from __future__ import annotations

import json

from click.testing import CliRunner

from datasette_imageclust.cli import cli
from imagefactory import photo_folder


def test_summary_reports_each_stage_time(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 12)
    (tmp_path / "p" / "broken.jpg").write_bytes(b"nope")
    workers = 2
    r = CliRunner().invoke(cli, ["load", str(tmp_path / "x.db"), str(tmp_path / "p"), "--model", stand_in_model,
                                 "--json", "--workers", str(workers), "--batch-size", "4"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    stage = [s["decode_seconds"], s["inference_seconds"], s["write_seconds"]]
    assert all(t > 0 for t in stage), s  # each stage ran and was timed
    # busy time per stage thread: decode's `workers` threads, one inference thread, one writer
    assert sum(stage) <= s["pipeline_seconds"] * (workers + 2) + 0.01, s
    assert set(s["stage_shares"]) == {"decode", "inference", "write"}
    assert abs(sum(s["stage_shares"].values()) - 1) < 0.01
    assert "stages: decode " in r.stderr and "inference " in r.stderr and "write " in r.stderr


def test_nothing_to_do_reports_no_stages(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 2)
    args = ["load", str(tmp_path / "x.db"), str(tmp_path / "p"), "--model", stand_in_model, "--json"]
    CliRunner().invoke(cli, args, catch_exceptions=False)
    r = CliRunner().invoke(cli, args, catch_exceptions=False)
    s = json.loads(r.stdout)
    assert s["unchanged"] == 2 and s["decode_seconds"] == 0 and s["stage_shares"] == {}
    assert "stages:" not in r.stderr


def _contents(db_path):
    from datasette_imageclust.store import connection, vectors

    db = connection.connect(str(db_path))
    files = sorted(db.execute("SELECT f.path, i.sha256, i.phash, i.width FROM files f JOIN images i ON i.id = f.image_id"
                              ).fetchall())
    sha = dict(db.execute("SELECT id, sha256 FROM images").fetchall())
    ids, vecs_ = vectors.read_all(db)
    vecs = {sha[int(i)]: v for i, v in zip(ids, vecs_)}
    errors = sorted(r[0] for r in db.execute("SELECT path FROM errors"))
    db.close()
    return files, vecs, errors


def test_decode_worker_processes_give_the_same_database(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 10)
    (tmp_path / "p" / "copy.jpg").write_bytes(next((tmp_path / "p").glob("*.jpg")).read_bytes())
    (tmp_path / "p" / "broken.jpg").write_bytes(b"nope")
    base = ["--model", stand_in_model, "--json", "--batch-size", "4"]
    a = CliRunner().invoke(cli, ["load", str(tmp_path / "a.db"), str(tmp_path / "p"), *base], catch_exceptions=False)
    b = CliRunner().invoke(cli, ["load", str(tmp_path / "b.db"), str(tmp_path / "p"), *base, "--decode-workers", "2"],
                           catch_exceptions=False)
    assert a.exit_code == 0 and b.exit_code == 0, b.stderr
    sa, sb = json.loads(a.stdout), json.loads(b.stdout)
    assert (sb["new"], sb["duplicates"], sb["errors"]) == (sa["new"], sa["duplicates"], sa["errors"]) == (10, 1, 1)
    assert sb["decode_seconds"] > 0
    fa, va, ea = _contents(tmp_path / "a.db")
    fb, vb, eb = _contents(tmp_path / "b.db")
    assert fa == fb and ea == eb and set(va) == set(vb) and len(va) == 10
    for sha in va:
        assert float(va[sha] @ vb[sha]) > 0.9999


def test_decode_workers_must_not_be_negative(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 1)
    r = CliRunner().invoke(cli, ["load", str(tmp_path / "x.db"), str(tmp_path / "p"), "--model", stand_in_model,
                                 "--decode-workers", "-1"], catch_exceptions=False)
    assert r.exit_code == 1 and "--decode-workers" in r.stderr and not (tmp_path / "x.db").exists()


def test_the_pipeline_shape_follows_where_the_model_runs():
    """On the CPU: decode threads (inference leaves idle time to fill) and batches of 16;
    on an accelerator: a decode process per core and batches of 64; as asked, always."""
    from datasette_imageclust.ingest.stages import shape

    assert shape("CPUExecutionProvider", 2) == (0, 16)
    assert shape("CUDAExecutionProvider", 16) == (16, 64)
    assert shape("CoreMLExecutionProvider", 8, decode_workers=0, batch_size=32) == (0, 32)
    assert shape("CPUExecutionProvider", 2, decode_workers=2, batch_size=4) == (2, 4)
