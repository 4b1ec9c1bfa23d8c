"""The README's publishing recipe, rehearsed offline: a wheel built from the checkout,
`datasette package` with the plugin's settings and a copy of the model. There is no
Docker engine here, so a stand-in `docker` on PATH keeps the build context it is
handed; the image's own steps then run from that context (`datasette inspect`, then
its CMD: `datasette serve -i ...`), the context standing in for the image's /app."""
from __future__ import annotations

import json
import shlex
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import datasette
import pytest
from click.testing import CliRunner

from browser import datasette_server
from datasette_imageclust.cli import cli

REPO = Path(__file__).resolve().parent.parent
DS1 = not datasette.__version__.startswith("0.")
FAKE_DOCKER = """#!{python}
# Stands in for `docker build`: keeps the build context (the test reads it).
import os, shutil, sys
assert sys.argv[1] == "build", sys.argv
shutil.copytree(".", os.environ["KEEP_CONTEXT"])
"""


def _wheel(dest: Path) -> Path:
    """`pip wheel` of a copy of the checkout (the build leaves nothing in the repository)."""
    src = dest / "src"
    shutil.copytree(REPO / "datasette_imageclust", src / "datasette_imageclust",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(dest / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (dest / "dist").glob("datasette_imageclust-*.whl")
    return wheel


def _get(base: str, path: str, data: bytes | None = None, headers: dict | None = None) -> dict:
    req = urllib.request.Request(base + path, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_datasette_package_recipe(tux_db, stand_in_model, tux_dir, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    # The README's first step: a redacted copy (no local paths, GPS or private EXIF; the
    # model recorded by its name, so the shipped copy must be configured).
    r = CliRunner().invoke(cli, ["publish-copy", tux_db, str(work / "photos.db")])
    assert r.exit_code == 0, r.stderr
    conn = sqlite3.connect(work / "photos.db")
    assert conn.execute("SELECT name FROM models").fetchone()[0] == Path(stand_in_model).name
    conn.close()
    wheel = _wheel(work)
    names = zipfile.ZipFile(wheel).namelist()
    for part in ("web/templates/imageclust_index.html", "web/templates/imageclust_map.html", "web/static/map.js",
                 "web/static/imageclust.css", "web/__init__.py", "data/vocabulary.txt", "store/schema.py"):
        assert f"datasette_imageclust/{part}" in names, part
    shutil.copytree(stand_in_model, work / "model")
    settings = {"plugins": {"datasette-imageclust": {"model": "/app/model", "page_size": 7}}}
    # The README's commands: metadata.json on Datasette 0.65, datasette.json (-c) on 1.0.
    args = ["package", "photos.db", "--static", "dist:dist", "--install", f"/app/dist/{wheel.name}",
            "--static", "model:model", "-t", "photos"]
    if DS1:
        (work / "config").mkdir()
        (work / "config" / "datasette.json").write_text(json.dumps(settings))
        args += ["--static", "config:config", "--extra-options", "-c config/datasette.json"]
    else:
        (work / "metadata.json").write_text(json.dumps(settings))
        args += ["--metadata", "metadata.json"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(python=sys.executable))
    (bin_dir / "docker").chmod(0o755)
    context = tmp_path / "context"
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setenv("KEEP_CONTEXT", str(context))
    subprocess.run([sys.executable, "-m", "datasette", *args], cwd=work, check=True, capture_output=True)

    dockerfile = (context / "Dockerfile").read_text()
    assert f"RUN pip install -U datasette /app/dist/{wheel.name}" in dockerfile
    assert (context / "dist" / wheel.name).exists() and (context / "model").is_dir()
    cmd = shlex.split(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["datasette", "serve"] and cmd[cmd.index("-i") + 1] == "photos.db"
    if DS1:
        assert cmd[cmd.index("-c") + 1] == "config/datasette.json"
        passed = json.loads((context / "config" / "datasette.json").read_text())
    else:
        assert cmd[cmd.index("--metadata") + 1] == "metadata.json"
        passed = json.loads((context / "metadata.json").read_text())
    assert passed["plugins"] == settings["plugins"]

    # The image: its RUN step, then its CMD (with the context as /app).
    for name in ("metadata.json", "config/datasette.json"):
        if (context / name).exists():
            (context / name).write_text((context / name).read_text().replace("/app/", f"{context}/"))
    monkeypatch.chdir(context)
    subprocess.run([sys.executable, "-m", "datasette", "inspect", "photos.db", "--inspect-file",
                    "inspect-data.json"], check=True, capture_output=True)
    serve = [a for a in cmd[2:cmd.index("--port")] if a not in ("--host", "0.0.0.0")]
    with datasette_server(*serve) as base:
        index = _get(base, "/photos/-/imageclust.json")
        assert len(index["images"]) == 7  # page_size reached the plugin
        assert _get(base, "/photos/-/imageclust/image/1.json")["redacted"].startswith("redacted: paths relative")
        form = _get(base, "/photos/-/imageclust/search.json")
        assert form["upload_search"]["available"], form["upload_search"]  # the shipped model copy
        sample = sorted((tux_dir / "fish").iterdir())[0]
        boundary = "b0undary"
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="f.jpg"\r\n\r\n'.encode()
                + sample.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
        found = _get(base, "/photos/-/imageclust/search.json?k=3", body,
                     {"content-type": f"multipart/form-data; boundary={boundary}"})
        assert found["mode"] == "upload" and found["results"][0]["distance"] < 1e-3
        assert _get(base, "/photos/-/imageclust/search.json?like=5&k=4")["results"]
        with urllib.request.urlopen(base + "/photos/-/imageclust/thumb/1", timeout=60) as r:
            assert r.status == 200
    with pytest.raises(Exception):
        _get(base, "/-/versions.json")  # (the server is gone: nothing above ran against another)
