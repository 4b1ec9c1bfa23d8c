"""Labels: terms (TF-IDF), clip zero-shot (tiny random CLIP text tower), ollama (a local
HTTP server with Ollama's /api/generate shape, including its failure modes)."""
from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from datasette_imageclust.analysis import clustering, clusterstore, labels, ollama, vlm
from datasette_imageclust.store.collection import ImageCollection
from datasette_imageclust.store.connection import connect


def test_tokens_and_tfidf():
    assert labels.tokens("Holidays/2019 beachParty/IMG_0001.jpg") == {"holidays", "beach", "party"}
    groups = {1: [{"beach", "sea"}, {"beach"}, {"beach", "party"}],
              2: [{"snow", "sea"}, {"snow"}, {"ski", "snow"}]}
    t = labels.tfidf_terms(groups)
    assert t[1][0][0] == "beach" and t[2][0][0] == "snow"
    assert "party" not in [w for w, _ in t[1]]  # in only one member


def test_vocabulary_is_shipped():
    v = labels.vocabulary()
    assert len(v) >= 3000 and len(v) == len({t.lower() for t in v})
    assert "traffic light" in v and "watercolor painting" in v


def _clustered_copy(tux_db, tmp_path, **kw):
    p = tmp_path / "t.db"
    shutil.copy(tux_db, p)
    db = connect(p)
    coll = ImageCollection(db)
    ids, x, model = *coll.vectors(), coll.model()
    res = clustering.ward(x, n_clusters=kw.get("k", 16), max_size=None)
    rid = clusterstore.store_run(db, "r", "ward", {}, ids, x, res.labels, model_id=model["id"], seconds=0)
    return db, rid


def test_terms_labels_name_the_folders(tux_db, tmp_path):
    db, rid = _clustered_copy(tux_db, tmp_path)
    notes = labels.label_run(db, rid, ["terms", "clip"])
    assert "no text tower" in notes["clip"]  # stand-in: a note, not a crash
    rows = db.execute("SELECT label FROM clusters WHERE run_id = ?", [rid]).fetchall()
    cats = {"birds", "mammals", "flowers", "fruit", "vegetables", "coins", "roadsigns", "clothes", "space"}
    named = sum(any(c in (r[0] or "") for c in cats) for r in rows)
    assert named >= len(rows) // 2


@pytest.fixture
def tiny_db(tmp_path, tiny_clip, tux_dir):
    from datasette_imageclust.pipeline import load

    src = tmp_path / "imgs"
    for cat in ("birds", "coins", "space"):
        (src / cat).mkdir(parents=True)
        for f in sorted((tux_dir / cat).iterdir())[:6]:
            shutil.copy(f, src / cat / f.name)
    p = str(tmp_path / "tiny.db")
    load(p, [str(src)], tiny_clip)
    return p


def test_clip_labels_with_a_text_tower(tiny_db):
    db = connect(tiny_db)
    coll = ImageCollection(db)
    ids, x, model = *coll.vectors(), coll.model()
    res = clustering.ward(x, n_clusters=3, max_size=None)
    rid = clusterstore.store_run(db, "r", "ward", {}, ids, x, res.labels, model_id=model["id"], seconds=0)
    notes = labels.label_run(db, rid, ["clip"])
    assert notes["clip"] == "3 clusters labelled"
    vocab = labels.vocabulary()
    got = db.execute("SELECT label, detail FROM cluster_labels WHERE source = 'clip'").fetchall()
    assert len(got) == 3 and all(l in vocab for l, _ in got)
    assert len(json.loads(got[0][1])["terms"]) == 5
    n = db.execute("SELECT COUNT(*) FROM vocabulary_vectors WHERE model_sha256 = ?", [model["sha256"]]).fetchone()[0]
    assert n == len(vocab)
    # the cached vectors are what the text tower gives, and are reused without the model
    from datasette_imageclust.models import TextEmbedder, find_model
    te = TextEmbedder(find_model(model["name"], text=True))
    v = np.frombuffer(db.execute("SELECT vector FROM vocabulary_vectors WHERE term = 'dog'").fetchone()[0], np.float32)
    assert np.allclose(v, te.embed([labels.PROMPT.format("dog")])[0], atol=1e-5)
    db.execute("UPDATE models SET name = '/nonexistent'")
    assert labels.label_run(db, rid, ["clip"])["clip"] == "3 clusters labelled"
    best = db.execute("SELECT label FROM clusters WHERE run_id = ?", [rid]).fetchall()
    assert all(b[0] in vocab for b in best)


def test_zero_shot_prefers_specific_terms():
    text = clustering.normalise(np.eye(4, dtype=np.float32) + 0.5)  # term 3 is "generic"
    text[3] = clustering.normalise(np.ones((1, 4), np.float32))[0]
    cents = clustering.normalise(np.eye(4, dtype=np.float32)[:3] + 0.4)
    best = labels.zero_shot(cents, text, top=1)
    assert [b[0][0] for b in best] == [0, 1, 2]


# --- ollama against a local server -------------------------------------------------------


class FakeOllama(ThreadingHTTPServer):
    """Answers /api/generate like Ollama (non-streaming); ``script`` says what to do per call."""

    daemon_threads = True

    def __init__(self, script, together: int = 2):
        self.script = list(script)
        self.requests = []
        self.active = 0
        self.max_active = 0
        self.together = together  # the "together" action waits for this many in flight
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append(body)
            srv.active += 1
            srv.max_active = max(srv.max_active, srv.active)
            srv.changed.notify_all()
            action = srv.script.pop(0) if srv.script else "ok"
            if action == "together":  # answer only once `together` requests are in flight
                srv.changed.wait_for(lambda: srv.active >= srv.together, timeout=10)
        try:
            if self.path != "/api/generate":
                return self._send(404, {"error": "not found"})
            if action == "500":
                return self._send(500, {"error": "model runner has unexpectedly stopped"})
            if action == "404":
                return self._send(404, {"error": f"model '{body['model']}' not found, try pulling it first"})
            if action == "slow":
                time.sleep(1.5)
            text = "this is not json" if action == "badjson" else json.dumps(
                {"title": f"Group of {len(body['images'])}", "phrase": "things that look alike"})
            time.sleep(0.05)
            self._send(200, {"model": body["model"], "created_at": "2024-01-01T00:00:00Z", "response": text,
                             "done": True, "done_reason": "stop", "total_duration": 1, "eval_count": 5})
        finally:
            with srv.lock:
                srv.active -= 1
                srv.changed.notify_all()

    def _send(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake():
    servers = []

    def start(script=(), together=2):
        s = FakeOllama(script, together)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_ollama_labels_retry_and_concurrency(tux_db, tmp_path, fake):
    db, rid = _clustered_copy(tux_db, tmp_path, k=6)
    srv = fake(["500", "badjson", "slow"])
    n, failed = ollama.ollama_labels(db, rid, host=srv.url, model="llava", timeout=1.0, retries=3,
                                     concurrency=2, backoff=0.01)
    assert (n, failed) == (6, 0)
    assert srv.max_active <= 2
    assert len(srv.requests) == 6 + 3  # three failures, each retried
    thumbs = {r[0] for r in db.execute("SELECT data FROM thumbnails")}
    for req in srv.requests:  # every request, retries included, has Ollama's shape
        assert set(req) == {"model", "prompt", "format", "stream", "images"}
        assert req["format"] == "json" and req["stream"] is False and req["model"] == "llava"
        assert "3 images" in req["prompt"] and len(req["images"]) == 3
        assert all(base64.b64decode(i) in thumbs for i in req["images"])  # the stored thumbnails
    rows = db.execute("SELECT label, detail FROM cluster_labels WHERE source = 'ollama'").fetchall()
    assert len(rows) == 6 and rows[0][0] == "Group of 3"
    assert json.loads(rows[0][1])["phrase"] == "things that look alike"
    clusterstore.refresh_best_labels(db, rid)
    assert db.execute("SELECT COUNT(*) FROM clusters WHERE run_id = ? AND label = 'Group of 3'", [rid]).fetchone()[0] == 6


@pytest.mark.parametrize("concurrency", [2, 3])
def test_ollama_requests_really_overlap(tux_db, tmp_path, fake, concurrency):
    """`concurrency` requests are in flight at once, never more: the first ones are only
    answered when that many have arrived (with one at a time they would time out)."""
    db, rid = _clustered_copy(tux_db, tmp_path, k=6)
    srv = fake(["together"] * concurrency, together=concurrency)
    n, failed = ollama.ollama_labels(db, rid, host=srv.url, timeout=30, retries=0, concurrency=concurrency)
    assert (n, failed) == (6, 0)
    assert srv.max_active == concurrency and len(srv.requests) == 6


def test_ollama_backoff_doubles_with_full_jitter(tux_db, tmp_path, fake, monkeypatch):
    """Retries wait a random time in [0, backoff * 2**(attempt-1)]: the caps double, and
    the waits themselves are drawn (jitter), not the caps."""
    import random
    import types

    db, rid = _clustered_copy(tux_db, tmp_path, k=3)
    caps, waits = [], []

    def uniform(a, b):
        caps.append((a, b))
        return random.uniform(a, b)

    # The retries live in the shared vision-LLM client (analysis/vlm.py) that ollama uses.
    monkeypatch.setattr(vlm, "random", types.SimpleNamespace(uniform=uniform))
    monkeypatch.setattr(vlm, "time", types.SimpleNamespace(sleep=waits.append))  # record, do not wait
    srv = fake(["500"] * 3)  # the first cluster fails three times, then succeeds
    n, failed = ollama.ollama_labels(db, rid, host=srv.url, retries=3, concurrency=1, backoff=0.4)
    assert (n, failed) == (3, 0) and len(srv.requests) == 6
    assert caps == [(0, 0.4), (0, 0.8), (0, 1.6)]
    assert len(waits) == 3 and all(0 <= w <= b for w, (_, b) in zip(waits, caps))
    assert len(set(waits)) == 3 and waits != [b for _, b in caps]  # drawn, not the caps


def test_ollama_gives_up_and_reports(tux_db, tmp_path, fake):
    db, rid = _clustered_copy(tux_db, tmp_path, k=3)
    srv = fake(["500"] * 3)  # the first cluster fails 3 times = all its attempts
    n, failed = ollama.ollama_labels(db, rid, host=srv.url, retries=2, concurrency=1, backoff=0.01)
    assert (n, failed) == (2, 1)


def test_ollama_unreachable_and_missing_model(tux_db, tmp_path, fake):
    import socket

    db, rid = _clustered_copy(tux_db, tmp_path, k=3)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    notes = labels.label_run(db, rid, ["terms", "ollama"], ollama={"host": f"http://127.0.0.1:{port}", "backoff": 0.01})
    assert "cannot reach Ollama" in notes["ollama"]
    assert db.execute("SELECT COUNT(*) FROM cluster_labels WHERE source = 'terms'").fetchone()[0] > 0
    srv = fake(["404"] * 10)
    notes = labels.label_run(db, rid, ["ollama"], ollama={"host": srv.url, "model": "nope", "backoff": 0.01})
    assert "ollama pull nope" in notes["ollama"]


def test_ollama_parse_is_strict():
    assert ollama.parse(json.dumps({"response": '{"title": " A  b ", "phrase": "c"}'}).encode()) == {"title": "A b", "phrase": "c"}
    for bad in (b"nope", json.dumps({"response": "[1]"}).encode(), json.dumps({"response": '{"title": 3}'}).encode(),
                json.dumps({"error": "x"}).encode()):
        with pytest.raises(ollama.TransientError):
            ollama.parse(bad)


def test_cluster_command_with_ollama(tux_db, tmp_path, fake):
    """End to end through the CLI: ollama titles become the best labels, terms are kept."""
    from click.testing import CliRunner

    from datasette_imageclust.cli import cli

    p = tmp_path / "c.db"
    shutil.copy(tux_db, p)
    srv = fake(["500"])
    r = CliRunner().invoke(cli, ["cluster", str(p), "--clusters", "5", "--labels", "terms,ollama", "--no-duplicates",
                                 "--ollama-host", srv.url, "--ollama-model", "llava:7b", "--json"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["labels"]["ollama"] == "5 clusters labelled"
    out = [json.loads(l) for l in CliRunner().invoke(cli, ["clusters", str(p), "--json"]).stdout.splitlines()]
    assert all(c["label"] == "Group of 3" for c in out)
    assert all(c["labels"][0]["source"] == "ollama" for c in out)
    assert sum(any(l["source"] == "terms" for l in c["labels"]) for c in out) >= 3
    assert all(req["model"] == "llava:7b" for req in srv.requests)
