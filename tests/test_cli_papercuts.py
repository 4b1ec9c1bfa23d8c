"""Small things a new user trips over: licence, help, labels, output shapes, the demo."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.ingest.loader import LoadSummary
from imagefactory import photo_folder

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def tux_copy(tux_db, tmp_path):
    p = tmp_path / "t.db"
    shutil.copy(tux_db, p)
    return str(p)


def test_license_file_in_the_repo_and_the_wheel(tmp_path):
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    src = tmp_path / "src"  # build from a copy: a build writes build/ and egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "datasette_imageclust", src / "datasette_imageclust",
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(tmp_path / "w")],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here (pip needs setuptools>=77 from an index): {r.stderr[-300:]}")
    (wheel,) = (tmp_path / "w").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        licences = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert licences and z.read(licences[0]).decode() == text
        assert "License-Expression: Apache-2.0" in z.read(next(n for n in names if n.endswith("METADATA"))).decode()


def test_info_lines_up(tux_db):
    out = run("info", tux_db).stdout.splitlines()
    starts = {len(m.group(1)) for m in (re.match(r"^(\w+:\s+)\S", line) for line in out)}
    assert len(out) == 9 and len(starts) == 1  # every value starts in the same column
    assert any(line.startswith("duplicate_files: ") for line in out)


def test_similar_labels_what_it_prints(tux_copy):
    r = run("similar", tux_copy, "--image", "1", "-k", "3", "--json")
    hits = json.loads(r.stdout)
    assert [set(h) for h in hits] == [{"image_id", "similarity", "path"}] * 3
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)
    header, *rows = run("similar", tux_copy, "--image", "1", "-k", "3").stdout.splitlines()
    assert header.split("\t") == ["image_id", "similarity", "path"]
    assert [float(row.split("\t")[1]) for row in rows] == pytest.approx(sims, abs=1e-4)
    assert "similarity" in run("similar", "--help").stdout


def test_default_flags_are_spelled_alike(tmp_path, stand_in_model):
    for cmd in ("cluster", "layout"):
        h = run(cmd, "--help").stdout
        assert "--default / --no-default" in h and "--not-default" not in h, cmd
    photo_folder(tmp_path / "p", 12, size=(64, 48))
    db = tmp_path / "x.db"
    assert run("load", db, tmp_path / "p", "--model", stand_in_model).exit_code == 0
    layout = ("layout", db, "--no-atlas", "--method", "tsne", "--name")
    from datasette_imageclust.store import connection as dbmod

    def default():
        d = dbmod.connect(db, readonly=True)
        try:
            return d.execute("SELECT name FROM layouts WHERE is_default = 1").fetchall()
        finally:
            d.conn.close()

    assert run(*layout, "a").exit_code == 0 and default() == [("a",)]
    assert run(*layout, "a").exit_code == 0 and default() == [("a",)]  # re-run of the default: stays
    for flag in ("--no-default", "--not-default"):  # the old spelling still works
        r = run(*layout, "a", flag)
        assert r.exit_code == 0 and default() == [], (flag, r.stderr)
        assert run(*layout, "a", "--default").exit_code == 0 and default() == [("a",)]


def test_every_option_has_help():
    for name, command in cli.commands.items():
        for p in command.params:
            if getattr(p, "param_type_name", "") == "option" and not p.hidden:
                assert p.help, f"{name} {p.opts[0]} has no help text"


def test_load_usage_names_files_and_folders(tmp_path, stand_in_model):
    h = run("load", "--help").stdout
    assert "DATABASE PATH..." in h and "FOLDERS" not in h and "image file" in h
    (f,) = photo_folder(tmp_path / "p", 1)
    r = run("load", tmp_path / "x.db", f, "--model", stand_in_model, "--json")
    assert json.loads(r.stdout)["new"] == 1


def test_readme_documents_every_load_json_key():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Loading images"):readme.index("## Database schema")]
    for key in LoadSummary().as_dict():
        assert f'"{key}"' in section, key


def test_clusters_output_starts_with_its_header(tux_copy):
    assert run("cluster", tux_copy, "--labels", "terms", "--no-layout", "--no-duplicates").exit_code == 0
    out = run("clusters", tux_copy).stdout
    first = out.splitlines()[0]
    assert out.startswith("id") and first.split() == ["id", "size", "label", "representatives"]


def test_demo_script_lays_out_once_and_names_its_output(tmp_path, stand_in_model):
    """demo.sh on three tiny image sets, with `imageclust` logged: no command repeated
    what `load` and `cluster` already do, and the database is where the header says."""
    script = (ROOT / "demo" / "demo.sh").read_text()
    default = re.search(r'DB="\$\{DB:-\$here/(.+?)\}"', script).group(1)
    assert f"build demo/{default} " in script  # the header names the real default path
    shared = tmp_path / "shared"
    for i, (name, n) in enumerate((("tuxpaint-stamps", 20), ("tuxpaint-stamps-dupes", 4), ("sklearn-digits", 6))):
        photo_folder(shared / "imagesets" / name, n, start=100 * i, size=(64, 48))  # kmeans24 needs 24
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "imageclust"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nexec {sys.executable} -m datasette_imageclust "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ, SHARED=str(shared), MODEL=stand_in_model, DB=str(tmp_path / "demo.db"),
               IMAGECLUST=str(wrapper), NO_SERVE="1")
    r = subprocess.run(["bash", str(ROOT / "demo" / "demo.sh")], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().split()
    assert calls == ["load", "cluster", "cluster", "info"]
    assert r.stderr.count("laying out the map") == 1  # by the default run's cluster


def test_similar_file_that_is_a_fifo_is_refused_not_waited_on(tux_copy, tmp_path):
    import threading

    os.mkfifo(tmp_path / "q.jpg")
    box = []
    t = threading.Thread(target=lambda: box.append(CliRunner().invoke(
        cli, ["similar", tux_copy, "--file", str(tmp_path / "q.jpg")])), daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():
        os.close(os.open(tmp_path / "q.jpg", os.O_WRONLY | os.O_NONBLOCK))  # let the reader go
        pytest.fail("similar --file blocked on a FIFO")
    (r,) = box
    assert r.exit_code == 1 and "FIFO" in r.stderr and "Traceback" not in r.output
