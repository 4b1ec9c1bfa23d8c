"""The `imageclust load` and `imageclust info` command lines."""
from __future__ import annotations

import json

from click.testing import CliRunner

from datasette_imageclust.cli import cli
from imagefactory import photo_folder


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_load_json_progress_and_info(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 5)
    (tmp_path / "p" / "broken.jpg").write_bytes(b"nope")
    db = tmp_path / "x.db"
    r = run("load", db, tmp_path / "p", "--model", stand_in_model, "--json")
    assert r.exit_code == 0, r.stderr
    summary = json.loads(r.stdout)  # stdout holds only the JSON
    assert summary["scanned"] == 6 and summary["new"] == 5 and summary["errors"] == 1
    assert f"skipping {tmp_path / 'p' / 'broken.jpg'}: not a recognised image" in r.stderr
    assert "5 new images" in r.stderr
    r = run("info", db, "--json")
    info = json.loads(r.stdout)
    assert info["counts"]["images"] == 5 and info["counts"]["vectors"] == 5 and info["counts"]["errors"] == 1
    assert info["model"]["dimensions"] == 1280 and info["schema"]["core"] >= 1
    r = run("info", db)
    assert "images:" in r.stdout and "efficientnet-lite0" in r.stdout


def test_strict_exits_non_zero(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 1)
    (tmp_path / "p" / "broken.png").write_bytes(b"")
    r = run("load", tmp_path / "x.db", tmp_path / "p", "--model", stand_in_model, "--strict")
    assert r.exit_code == 1 and "1 files could not be loaded" in r.stderr
    r = run("load", tmp_path / "y.db", tmp_path / "p", "--model", stand_in_model)
    assert r.exit_code == 0


def test_bad_flags_are_clear_errors(tmp_path, stand_in_model, tiny_clip):
    photo_folder(tmp_path / "p", 1)
    db = tmp_path / "x.db"
    r = run("load", db, tmp_path / "p", "--model", stand_in_model, "--thumbnail-size", "5")
    assert r.exit_code == 1 and "thumbnail size must be between" in r.stderr
    r = run("load", db, tmp_path / "p", "--model", stand_in_model, "--workers", "0")
    assert r.exit_code == 1 and "--workers" in r.stderr
    r = run("load", db, tmp_path / "nowhere", "--model", stand_in_model)
    assert r.exit_code == 1 and "no such file or folder" in r.stderr
    r = run("load", db, tmp_path / "p", "--model", tmp_path / "no-model-here")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    assert run("load", db, tmp_path / "p", "--model", stand_in_model).exit_code == 0
    r = run("load", db, tmp_path / "p", "--model", tiny_clip)
    assert r.exit_code == 1 and "--reembed" in r.stderr
