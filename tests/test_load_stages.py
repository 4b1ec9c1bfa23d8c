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
