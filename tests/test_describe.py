"""`imageclust describe` against a faithful local server speaking Ollama's and the
OpenAI-compatible APIs (tests/vlmserver.py), on real databases of real images."""
from __future__ import annotations

import email.utils
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest
from click.testing import CliRunner
from PIL import Image

from datasette_imageclust import pipeline
from datasette_imageclust.analysis import describe as describing
from datasette_imageclust.analysis import vlm
from datasette_imageclust.cli import cli
from datasette_imageclust.store.connection import close, connect
from imagefactory import photo_folder
from vlmserver import VLMServer

KEY = "sk-test-5f1c2a9e-never-to-be-seen"
FAST = {"backoff": 0.01, "timeout": 10.0}


@pytest.fixture(scope="module")
def small_db(tmp_path_factory, stand_in_model, tux_dir) -> str:
    """8 stamps of each of 3 categories, loaded with the real stand-in embedder (copy before writing)."""
    src = tmp_path_factory.mktemp("src")
    for cat in ("birds", "coins", "space"):
        (src / cat).mkdir()
        for f in sorted((tux_dir / cat).iterdir())[:8]:
            shutil.copy(f, src / cat / f.name)
    path = str(tmp_path_factory.mktemp("small") / "small.db")
    assert pipeline.load(path, [str(src)], stand_in_model).new == 24
    return path


def copy(path: str, tmp_path) -> str:
    dest = str(tmp_path / "work.db")
    shutil.copy(path, dest)
    return dest


def catalog(path: str) -> dict[int, tuple[str, bytes]]:
    """What the server can recognise: each image's category (its folder) and thumbnail."""
    db = connect(path, readonly=True)
    try:
        return {iid: (rel.split("/")[0], data) for iid, rel, data in db.execute(
            "SELECT f.image_id, f.relpath, t.data FROM files f JOIN thumbnails t ON t.image_id = f.image_id")}
    finally:
        close(db)


def rows(path: str, sql: str, params=()) -> list[tuple]:
    db = connect(path, readonly=True)
    try:
        return db.execute(sql, list(params)).fetchall()
    finally:
        close(db)


def run(path: str, **kw) -> describing.DescribeSummary:
    db = connect(path)
    try:
        return pipeline.describe(db, **{"model": "llava", **FAST, **kw})
    finally:
        close(db)


def invoke(*args, env=None):
    return CliRunner().invoke(cli, ["describe", *map(str, args)], env=env or {})


def test_describes_a_labelled_set_once(tux_db, tmp_path):
    """Every image gets one description, of that image; FTS finds them; a second run sends nothing."""
    path = copy(tux_db, tmp_path)
    cat = catalog(path)
    with VLMServer(catalog=cat) as srv:
        s = run(path, url=srv.base, concurrency=4)
        assert (s.described, s.failed, s.pending, s.interrupted) == (353, 0, 353, False)
        assert len(srv.chats) == 353
        got = rows(path, "SELECT image_id, text, model, api, input FROM descriptions")
        assert len(got) == 353 and len({r[0] for r in got}) == 353
        for iid, text, model, api, input_ in got:  # the description of this very image
            assert f"{cat[iid][0]} on a plain background (catalog image {iid})" in text
            assert (model, api, input_) == ("llava", "ollama", "thumbnail")
        coins = {i for i, (c, _) in cat.items() if c == "coins"}
        found = rows(path, "SELECT d.image_id FROM descriptions_fts f JOIN descriptions d ON d.id = f.rowid "
                           "WHERE descriptions_fts MATCH 'coins'")
        assert {r[0] for r in found} == coins
        # Ollama's shape: one user message with the base64 image; the thumbnail, as JPEG.
        body = next(r["body"] for r in srv.requests if r["path"] == "/api/chat")
        assert set(body) == {"model", "messages", "stream"} and body["stream"] is False
        assert body["messages"][0]["content"] == describing.DEFAULT_PROMPT
        assert max(max(c["size"]) for c in srv.chats) <= 256
        assert Image.open(io.BytesIO(__import__("base64").b64decode(body["messages"][0]["images"][0]))).format == "JPEG"

        again = run(path, url=srv.base)
        assert (again.pending, again.described, again.described_before) == (0, 0, 353)
        assert len(srv.chats) == 353  # nothing sent
        assert [r["path"] for r in srv.requests].count("/api/tags") == 1  # not even the preflight


def test_openai_api_with_the_key_from_the_environment(small_db, tmp_path):
    path = copy(small_db, tmp_path)
    with VLMServer(catalog=catalog(path), models=["gpt-4o-mini", "other"], key=KEY) as srv:
        r = invoke(path, "--api", "openai", "--url", srv.openai_url, "--model", "gpt-4o-mini", "--json",
                   env={"IMAGECLUST_API_KEY": KEY, "OPENAI_API_KEY": "sk-the-wrong-one"})
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert (out["described"], out["api"], out["model"]) == (24, "openai", "gpt-4o-mini")
        assert all(c["auth"] == f"Bearer {KEY}" for c in srv.chats) and len(srv.chats) == 24
        part = srv.requests[-1]["body"]["messages"][0]["content"]
        assert part[0] == {"type": "text", "text": describing.DEFAULT_PROMPT}
        assert part[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
        assert KEY not in r.output
        # A refused key: one line naming where it came from, before any image is sent.
        r = invoke(path, "--api", "openai", "--url", srv.openai_url, "--model", "gpt-4o-mini", "--prompt", "x",
                   env={"IMAGECLUST_API_KEY": "sk-wrong-key-echoed-by-the-server"})
        assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1, r.output
        assert "refused the API key from IMAGECLUST_API_KEY" in r.output and "HTTP 401" in r.output
        assert "sk-wrong-key-echoed" not in r.output and len(srv.chats) == 24
        r = invoke(path, "--api", "openai", "--url", srv.openai_url, "--model", "gpt-4o-mini", "--prompt", "x")
        assert r.exit_code == 1 and "set IMAGECLUST_API_KEY or OPENAI_API_KEY" in r.output
        # OPENAI_API_KEY when IMAGECLUST_API_KEY is not set.
        r = invoke(path, "--api", "openai", "--url", srv.openai_url, "--model", "gpt-4o-mini", "--prompt", "y",
                   "--max-images", "2", env={"OPENAI_API_KEY": KEY})
        assert r.exit_code == 0, r.output
        assert len(srv.chats) == 26 and srv.chats[-1]["auth"] == f"Bearer {KEY}"
        # There is no option to type a key, and an Ollama server never gets OPENAI_API_KEY.
        r = invoke(path, "--model", "llava", "--api-key", KEY)
        assert r.exit_code == 2 and "No such option" in r.output
    with VLMServer(catalog=catalog(path)) as srv:
        r = invoke(path, "--url", srv.base, "--model", "llava", "--max-images", "1", env={"OPENAI_API_KEY": KEY})
        assert r.exit_code == 0 and srv.chats[0]["auth"] is None
    close(connect(path))  # back to one file
    raw = open(path, "rb").read()
    assert KEY.encode() not in raw and b"sk-wrong-key" not in raw


def test_transient_failures_are_retried(small_db, tmp_path):
    """429 (waiting what Retry-After says), 503, 500, an answer slower than the timeout and
    a body that is not JSON: each retried, and every image is described in the end."""
    path = copy(small_db, tmp_path)
    with VLMServer(catalog=catalog(path)) as srv:
        srv.script = ["429", "503", "slow", "badbody", "500"]
        srv.retry_after, srv.slow_seconds = "1", 3.0
        s = run(path, url=srv.base, concurrency=1, timeout=1.0, retries=5)  # one image meets all five
        assert (s.described, s.failed) == (24, 0)
        assert len(srv.chats) == 24 + 5
        assert srv.chats[1]["t"] - srv.chats[0]["t"] >= 1.0  # the 429's Retry-After was honoured
        assert srv.chats[0]["image_id"] == srv.chats[1]["image_id"]
    assert rows(path, "SELECT count(*) FROM description_errors") == [(0,)]


def test_retry_waits_full_jitter_or_retry_after(small_db, monkeypatch):
    """Waits are drawn from [0, backoff * 2**(attempt-1)], or Retry-After when that is longer."""
    caps, waits = [], []

    def uniform(a, b):
        caps.append((a, b))
        return b / 2

    monkeypatch.setattr(vlm, "random", types.SimpleNamespace(uniform=uniform))
    monkeypatch.setattr(vlm, "time", types.SimpleNamespace(sleep=waits.append, time=time.time))
    thumb = rows(small_db, "SELECT data FROM thumbnails LIMIT 1")[0][0]
    with VLMServer() as srv:
        srv.script, srv.retry_after = ["503", "429", "503"], "7"
        client = vlm.make_client("ollama", srv.base, "llava", retries=3, backoff=0.4)
        answer = client.ask("hello", [vlm.Image(thumb)])
        assert "drawing" in answer.value and answer.seconds > 0
    assert caps == [(0, 0.4), (0, 0.8), (0, 1.6)]
    assert waits == [0.2, 7.0, 0.8]
    assert 25 <= vlm.parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True)) <= 31
    assert vlm.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0 and vlm.parse_retry_after("soon") is None


def test_a_refused_image_is_recorded_and_retried_next_run(small_db, tmp_path):
    path = copy(small_db, tmp_path)
    with VLMServer(catalog=catalog(path)) as srv:
        bad = sorted(catalog(path))[5]
        srv.refuse = {bad}
        lines = []
        s = run(path, url=srv.base, on_status=lines.append)
        assert (s.described, s.failed) == (23, 1)
        assert sum(c["image_id"] == bad for c in srv.chats) == 1  # a 400 is not retried
        (iid, reason), = rows(path, "SELECT image_id, reason FROM description_errors")
        assert iid == bad and "HTTP 400" in reason and "cannot be processed" in reason
        (path_of_bad,), = rows(path, "SELECT path FROM files WHERE image_id = ?", [bad])
        assert f"image {bad} ({path_of_bad}): HTTP 400: this image cannot be processed" in lines
        n = len(srv.chats)
        s = run(path, url=srv.base)  # retried: only that image is sent
        assert (s.pending, s.failed) == (1, 1) and len(srv.chats) == n + 1
        srv.refuse = set()
        s = run(path, url=srv.base)
        assert (s.pending, s.described) == (1, 1)
    assert rows(path, "SELECT count(*) FROM description_errors") == [(0,)]
    assert rows(path, "SELECT count(*), count(DISTINCT image_id) FROM descriptions") == [(24, 24)]


def test_json_answers_give_tags_and_malformed_json_is_retried(small_db, tmp_path):
    path = copy(small_db, tmp_path)
    cat = catalog(path)
    with VLMServer(catalog=cat) as srv:
        srv.script = ["badjson", "badjson", "badjson"]  # the first image: all its attempts
        s = run(path, url=srv.base, tags=True, retries=2, concurrency=1)
        assert (s.described, s.failed) == (23, 1)
        assert all(c["json"] for c in srv.chats)
        (reason,), = rows(path, "SELECT reason FROM description_errors")
        assert "gave up after 3 attempts" in reason and "malformed JSON" in reason
        srv.script = ["badjson"]  # once: the retry succeeds
        s = run(path, url=srv.base, tags=True, retries=2)
        assert (s.described, s.failed) == (1, 0)
    tags = rows(path, "SELECT image_id, tag, rank, score FROM image_tags WHERE source = 'vlm:llava' "
                      "ORDER BY image_id, rank")
    assert len(tags) == 24 * 3
    for iid, tag, rank, score in tags:  # as given, lower-cased, each once
        assert tag == [cat[iid][0], "drawing", "plain background"][rank - 1] and score is None
    texts = rows(path, "SELECT text FROM descriptions")
    assert all(t[0].startswith("A drawing of") for t in texts)  # the description, not the JSON
    assert rows(path, "SELECT count(*) FROM description_errors") == [(0,)]


def test_unknown_model_or_unreachable_server_stop_before_any_work(small_db, tmp_path):
    path = copy(small_db, tmp_path)
    with VLMServer(models=["llava:7b", "moondream:latest"]) as srv:
        r = invoke(path, "--url", srv.base, "--model", "llava")
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert r.output.strip() == (f"Error: Ollama at {srv.base} has no model 'llava' (it has: llava:7b, "
                                    f"moondream:latest): run `ollama pull llava`")
        r = invoke(path, "--api", "openai", "--url", srv.openai_url, "--model", "gpt-4o")
        assert r.exit_code == 1 and f"{srv.openai_url} has no model 'gpt-4o' (it lists: llava:7b" in r.output
        assert srv.chats == []
        # Nothing was written: not even the tables for descriptions.
        assert rows(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('prompts', 'descriptions')") == [(0,)]
        srv.models_endpoint = False  # a server without GET /models: the first request tells
        r = invoke(path, "--api", "openai", "--url", srv.openai_url, "--model", "gpt-4o")
        last = r.output.strip().splitlines()[-1]
        assert r.exit_code == 1 and r.output.count("Error") == 1 and "stopped" not in r.output
        assert last.startswith(f"Error: {srv.openai_url}/chat/completions: HTTP 404: The model `gpt-4o` does not "
                               f"exist") and last.endswith("(an unknown model 'gpt-4o', or a URL without its /v1?)")
        assert len(srv.chats) <= 2  # the requests in flight when it answered
    port = srv.server_address[1]  # closed now: nothing listens there
    r = invoke(path, "--url", f"http://127.0.0.1:{port}", "--model", "llava")
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert f"cannot reach Ollama at http://127.0.0.1:{port}" in r.output and "--url to change" in r.output
    assert rows(path, "SELECT count(*) FROM descriptions") == [(0,)]


def test_a_key_revoked_mid_run_stops_it_keeping_every_answer(small_db, tmp_path, monkeypatch):
    """A server that can no longer be used ends the run with its one message, after the
    requests in flight: their answers are stored (here, one that comes after the 401)."""
    path = copy(small_db, tmp_path)
    monkeypatch.setenv("IMAGECLUST_API_KEY", KEY)
    lines = []
    with VLMServer(catalog=catalog(path), models=["gpt-4o-mini"], key=KEY) as srv:
        srv.script, srv.slow_seconds = ["ok"] * 4 + ["slow", "revoke"], 1.0
        with pytest.raises(vlm.ServerError, match="refused the API key from IMAGECLUST_API_KEY"):
            run(path, api="openai", url=srv.openai_url, model="gpt-4o-mini", concurrency=2, on_status=lines.append)
        assert srv.answered == 5 and len(srv.chats) == 6  # nothing sent after the 401
        assert rows(path, "SELECT count(*) FROM descriptions") == [(5,)]
        assert "stopped: the 5 answers so far are kept (the same command resumes)" in lines
        srv.key = KEY
        s = run(path, api="openai", url=srv.openai_url, model="gpt-4o-mini")
        assert (s.described_before, s.described) == (5, 19)
    assert rows(path, "SELECT count(*), count(DISTINCT image_id) FROM descriptions") == [(24, 24)]


def test_an_interrupted_run_resumes_without_duplicates(small_db, tmp_path):
    path = copy(small_db, tmp_path)

    def stop_after_5(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with VLMServer(catalog=catalog(path)) as srv:
        s = run(path, url=srv.base, on_progress=stop_after_5)
        done = s.described  # the 5, and any answer that had arrived meanwhile
        assert s.interrupted and 5 <= done <= 7
        assert rows(path, "SELECT count(*) FROM descriptions") == [(done,)]
        s = run(path, url=srv.base)
        assert (s.interrupted, s.described_before, s.described) == (False, done, 24 - done)
        # Sent again: only the requests in flight at the interrupt (at most --concurrency 2),
        # whose answers were not written.
        assert 24 <= len(srv.chats) <= 24 + 2
    assert rows(path, "SELECT count(*), count(DISTINCT image_id) FROM descriptions") == [(24, 24)]


def test_ctrl_c_does_not_wait_for_requests_in_flight(small_db, tmp_path):
    """The real command, interrupted with SIGINT while two requests hang: it stops at once
    with what was answered committed, and the same command finishes the job."""
    path = copy(small_db, tmp_path)
    with VLMServer(catalog=catalog(path)) as srv:
        srv.script = ["ok"] * 3 + ["hold"] * 30
        p = subprocess.Popen([sys.executable, "-m", "datasette_imageclust", "describe", path, "--url", srv.base,
                              "--model", "llava", "--concurrency", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "IMAGECLUST_API_KEY": KEY})
        srv.wait_for_chats(5)  # three answered, two held
        deadline = time.monotonic() + 30
        while rows(path, "SELECT count(*) FROM descriptions") != [(3,)] and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)  # held requests would hang it for 60 s
        assert p.returncode == 130, err
        assert "interrupted: run the same command again to resume" in err and "Traceback" not in err
        assert KEY not in out + err
        srv.release.set()
        assert rows(path, "SELECT count(*) FROM descriptions") == [(3,)]
        srv.script = []
        s = run(path, url=srv.base)
        assert (s.described_before, s.described) == (3, 21)
    assert rows(path, "SELECT count(*), count(DISTINCT image_id) FROM descriptions") == [(24, 24)]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_requests_overlap_up_to_the_concurrency(small_db, tmp_path, concurrency):
    """With N, the first requests are answered only once N are in flight (with fewer they
    would wait 20 s): N really overlap, and never more."""
    path = copy(small_db, tmp_path)
    with VLMServer(catalog=catalog(path)) as srv:
        srv.together = concurrency
        srv.script = ["together"] * concurrency
        srv.latency = 0.02
        start = time.monotonic()
        s = run(path, url=srv.base, concurrency=concurrency)
        assert s.described == 24 and srv.max_active == concurrency
        assert time.monotonic() - start < 15  # not the 20 s a missing overlap would cost


def test_original_files_or_their_thumbnails(tmp_path, stand_in_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    files = photo_folder(folder, 4, size=(800, 600))
    path = str(tmp_path / "p.db")
    pipeline.load(path, [str(folder)], stand_in_model)
    with VLMServer() as srv:
        s = run(path, url=srv.base, input="original", max_side=512)
        assert (s.described, s.fallbacks, s.input) == (4, 0, "original 512px")
        assert sorted(c["size"] for c in srv.chats) == [(512, 384)] * 4
        assert rows(path, "SELECT DISTINCT input FROM descriptions") == [("original 512px",)]
        files[0].unlink()  # gone
        Image.new("RGB", (800, 600), "red").save(files[1], "JPEG")  # another image now
        s = run(path, url=srv.base, input="original", max_side=512, prompt="Describe it.")
        assert (s.described, s.fallbacks) == (4, 2)
        assert sorted(c["size"] for c in srv.chats[4:]) == [(256, 192)] * 2 + [(512, 384)] * 2
        got = rows(path, "SELECT input, count(*) FROM descriptions d JOIN prompts p ON p.id = d.prompt_id "
                         "WHERE p.text = 'Describe it.' GROUP BY input")
        assert sorted(got) == [("original 512px", 2), ("thumbnail", 2)]


def test_prompts_are_stored_by_hash_and_coexist(small_db, tmp_path):
    path = copy(small_db, tmp_path)
    prompt = "Décris cette image en une phrase.\n"
    pf = tmp_path / "prompt.txt"
    pf.write_text(prompt, encoding="utf-8")
    with VLMServer(catalog=catalog(path)) as srv:
        r = invoke(path, "--url", srv.base, "--model", "llava", "--prompt-file", pf, "--max-images", "3")
        assert r.exit_code == 0, r.output
        assert "3 images described, 0 failed, 0 already described" in r.output
        assert {c["prompt"] for c in srv.chats} == {prompt.strip()}
        s = run(path, url=srv.base, max_images=3)  # the default prompt: other descriptions of the same images
        assert s.described == 3
    got = rows(path, "SELECT sha256, text FROM prompts ORDER BY id")
    assert got == [(hashlib.sha256(prompt.strip().encode()).hexdigest(), prompt.strip()),
                   (hashlib.sha256(describing.DEFAULT_PROMPT.encode()).hexdigest(), describing.DEFAULT_PROMPT)]
    assert rows(path, "SELECT count(*), count(DISTINCT image_id) FROM descriptions") == [(6, 3)]


def test_the_readme_quotes_the_default_prompt_and_every_json_key():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    section = readme[readme.index("## Describing images"):readme.index("## Exploring in Datasette")]
    quoted = " ".join(line[2:] for line in section.splitlines() if line.startswith("> "))
    assert describing.DEFAULT_PROMPT in quoted
    assert " ".join(describing.TAGS_INSTRUCTION.split()) in " ".join(section.split())
    for key in describing.DescribeSummary("m", "ollama", "u", "s", "thumbnail", 0, 0, 0).as_dict():
        assert f'"{key}"' in section, key


@pytest.mark.parametrize("args, message", [
    (["--concurrency", "0"], "--concurrency must be between 1 and 64"),
    (["--max-images", "0"], "--max-images must be at least 1"),
    (["--api", "openai"], "--api openai needs --url"),
    (["--url", "http://me:sk-secret@127.0.0.1:9/v1"], "--url must not hold credentials"),
    (["--url", "ftp://127.0.0.1"], "--url must be an http:// or https:// URL"),
    (["--prompt", "a", "--prompt-file", "p.txt"], "give --prompt or --prompt-file, not both"),
    (["--prompt", "  "], "the prompt is empty"),
    (["--prompt-file", "missing.txt"], "cannot read --prompt-file missing.txt"),
    (["--prompt-file", "latin1.txt"], "--prompt-file latin1.txt is not UTF-8 text"),
    (["--max-side", "10"], "--max-side must be between 64 and 4096"),
])
def test_bad_options_are_one_line(small_db, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    path = copy(small_db, tmp_path)
    r = invoke(path, "--model", "llava", *args)
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith(f"Error: {message}"), r.output
    assert "sk-secret" not in r.output
