"""The server never downloads a model. A real `datasette` process with the network open
(no HF_HUB_OFFLINE, unlike the rest of the suite) and the Hub pointed at a faithful local
stand-in that WOULD serve the model: the stand-in must see no request at all, whether the
model is in the server's cache (queries work) or not (the pages say why)."""
from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from browser import datasette_server
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.models import DEFAULT_MODEL
from fakehub import COMMIT, FakeHub

FILES = ("onnx/vision_model.onnx", "onnx/text_model.onnx", "tokenizer.json", "preprocessor_config.json")


@pytest.fixture(scope="module")
def hub_db(tmp_path_factory, tiny_clip, tux_dir) -> str:
    """Images loaded with the tiny CLIP, recorded as the default Hub model (as a user's
    database made with the default model is)."""
    from datasette_imageclust.pipeline import load

    d = tmp_path_factory.mktemp("offline")
    src = d / "imgs"
    src.mkdir()
    for p in sorted((tux_dir / "birds").iterdir())[:4] + sorted((tux_dir / "fruit").iterdir())[:4]:
        shutil.copy(p, src / p.name)
    path = str(d / "hub.db")
    assert load(path, [str(src)], tiny_clip).new == 8
    db = dbmod.connect(path)
    with db.conn:
        db.execute("UPDATE models SET name = ?", [DEFAULT_MODEL])
    dbmod.finish(db)
    db.conn.close()
    return path


def _prefill(cache: Path, model_dir: Path) -> None:
    """The Hugging Face cache layout, as a past download leaves it."""
    root = cache / ("models--" + DEFAULT_MODEL.replace("/", "--"))
    snap = root / "snapshots" / COMMIT
    for rel in FILES:
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model_dir / rel, snap / rel)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)


def _env(home: Path, endpoint: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, HF_HUB_DISABLE_TELEMETRY="1")
    return env


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _upload(url: str, data: bytes) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def _queries(base: str, sample: bytes) -> dict:
    out = {}
    out["text"] = _get(f"{base}/hub/-/imageclust/search.json?q=" + urllib.parse.quote("a red bird") + "&k=3")
    out["upload"] = _upload(f"{base}/hub/-/imageclust/search.json?k=3", sample)
    out["like"] = _get(f"{base}/hub/-/imageclust/search.json?like=1&k=3")
    out["image"] = _get(f"{base}/hub/-/imageclust/image/1.json")
    out["index"] = _get(f"{base}/hub/-/imageclust.json")
    return out


@pytest.mark.parametrize("cached", [False, True])
def test_the_server_never_downloads_a_model(hub_db, tiny_clip, tux_dir, tmp_path, cached):
    sample = sorted((tux_dir / "birds").iterdir())[0].read_bytes()
    home = tmp_path / "hf"
    if cached:
        _prefill(home / "hub", Path(tiny_clip))
    with FakeHub(DEFAULT_MODEL, Path(tiny_clip)) as hub:
        with datasette_server(hub_db, env=_env(home, hub.url)) as base:
            got = _queries(base, sample)
        assert hub.requests == []  # not one request: no download, not even a HEAD
    for name in ("like", "image", "index"):
        assert got[name][0] == 200, (name, got[name])
    text, upload = got["text"], got["upload"]
    if cached:  # the model from the cache answers both kinds of query
        assert text[0] == 200 and text[1]["text_search"]["available"] and len(text[1]["results"]) == 3
        assert upload[0] == 200 and len(upload[1]["results"]) == 3
    else:  # not on this server: said so, and nothing fetched to fix it
        assert text[0] == 200 and not text[1]["text_search"]["available"] and text[1]["results"] == []
        assert "cache" in text[1]["text_search"]["note"]
        assert upload[0] == 400 and "cache" in upload[1]["error"]
    assert not (home / "hub").exists() or cached  # nothing was written to the cache either
