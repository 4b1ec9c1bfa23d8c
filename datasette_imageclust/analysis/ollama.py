"""``ollama`` labels: a local vision LLM names each cluster from its representatives.

POST {host}/api/generate with the representatives' stored thumbnails (base64), ``format:
"json"`` and ``stream: false``; the reply's ``response`` must be strict JSON
``{"title": ..., "phrase": ...}``. Transient failures (timeouts, 5xx, 429, invalid JSON)
are retried with exponential backoff and jitter; a few requests run at once. A server
that cannot be reached stops the source with one clear message.
"""
from __future__ import annotations

import base64
import json
import random
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, NamedTuple

import sqlite_utils

from .clusterstore import put_label

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_MODEL = "llava"
PROMPT = (
    "These {n} images were grouped together because they look alike. Give the group a short "
    "title (at most 5 words) and one descriptive phrase (at most 15 words). Answer with JSON "
    'only, exactly: {{"title": "...", "phrase": "..."}}'
)


class OllamaError(Exception):
    """The server cannot be used at all (unreachable, model missing)."""


class TransientError(Exception):
    """A transient failure of one request (retried; after the last retry, that cluster fails)."""


@dataclass
class OllamaClient:
    host: str = DEFAULT_HOST
    model: str = DEFAULT_MODEL
    timeout: float = 120.0
    retries: int = 3
    backoff: float = 1.0  # first delay, doubled per attempt, with full jitter

    def generate(self, prompt: str, images: list[bytes]) -> dict:
        """One label: {"title", "phrase"}. Raises OllamaError (fatal) or TransientError (gave up)."""
        body = json.dumps({"model": self.model, "prompt": prompt, "format": "json", "stream": False,
                           "images": [base64.b64encode(i).decode("ascii") for i in images]}).encode()
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(random.uniform(0, self.backoff * 2 ** (attempt - 1)))
            try:
                return self._once(body)
            except TransientError as e:
                last = str(e)
        raise TransientError(f"gave up after {self.retries + 1} attempts: {last}")

    def _once(self, body: bytes) -> dict:
        url = self.host.rstrip("/") + "/api/generate"
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace")
            if e.code == 404:
                raise OllamaError(f"{self.host} has no model {self.model!r} ({detail.strip()}): "
                                  f"run `ollama pull {self.model}`") from e
            if e.code in (408, 429) or e.code >= 500:
                raise TransientError(f"HTTP {e.code}: {detail.strip()}") from e
            raise OllamaError(f"{url} answered HTTP {e.code}: {detail.strip()}") from e
        except (socket.timeout, TimeoutError) as e:
            raise TransientError(f"no answer within {self.timeout:g}s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise TransientError(f"no answer within {self.timeout:g}s") from e
            raise OllamaError(f"cannot reach Ollama at {self.host} ({e.reason}): is `ollama serve` "
                              f"running? (--ollama-host to change)") from e
        except (ConnectionError, OSError) as e:
            raise TransientError(f"connection failed: {e}") from e
        return parse(raw)


class OllamaResult(NamedTuple):
    """What ``ollama_labels`` did (a tuple, so ``n, failed = ollama_labels(...)`` works)."""
    labelled: int
    failed: int

    def as_dict(self) -> dict:
        return self._asdict()


def parse(raw: bytes) -> dict:
    """Strictly parse an /api/generate reply; invalid content is a transient failure."""
    try:
        outer = json.loads(raw)
        inner = json.loads(outer["response"])
    except (ValueError, KeyError, TypeError) as e:
        raise TransientError(f"invalid JSON from the model: {raw[:120]!r}") from e
    if not isinstance(inner, dict):
        raise TransientError(f"expected a JSON object, got {inner!r:.80}")
    title, phrase = inner.get("title"), inner.get("phrase")
    if not isinstance(title, str) or not title.strip() or not isinstance(phrase, str):
        raise TransientError(f"expected {{'title', 'phrase'}} strings, got {inner!r:.120}")
    return {"title": " ".join(title.split())[:80], "phrase": " ".join(phrase.split())[:300]}


def ollama_labels(db: sqlite_utils.Database, run_id: int, *, host: str = DEFAULT_HOST,
                  model: str = DEFAULT_MODEL, timeout: float = 120.0, retries: int = 3,
                  concurrency: int = 2, backoff: float = 1.0,
                  on_status: Callable[[str], None] = lambda s: None) -> OllamaResult:
    """Label every real cluster of a run: (labelled, failed). Raises OllamaError when
    the server cannot be used (nothing more is attempted)."""
    client = OllamaClient(host, model, timeout, retries, backoff)
    reps = db.execute("SELECT representatives FROM cluster_runs WHERE id = ?", [run_id]).fetchone()[0]
    work: dict[int, list[bytes]] = {}
    for cid, data in db.execute(
            "SELECT m.cluster_id, t.data FROM cluster_members m JOIN clusters c ON c.id = m.cluster_id "
            "JOIN thumbnails t ON t.image_id = m.image_id "
            "WHERE m.run_id = ? AND c.kind = 'cluster' AND m.rank <= ? ORDER BY m.cluster_id, m.rank",
            [run_id, reps]):
        work.setdefault(cid, []).append(data)
    if not work:
        return OllamaResult(0, 0)
    on_status(f"asking {model} at {host} to label {len(work)} clusters ({concurrency} at a time)")
    results: dict[int, dict] = {}
    failed: dict[int, str] = {}
    fatal: list[OllamaError] = []

    def one(cid: int) -> None:
        if fatal:
            return
        try:
            results[cid] = client.generate(PROMPT.format(n=len(work[cid])), work[cid])
        except OllamaError as e:
            fatal.append(e)
        except TransientError as e:
            failed[cid] = str(e)

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        list(pool.map(one, list(work)))
    with db.conn:  # whatever succeeded is kept, even if the server went away later
        for cid, r in results.items():
            put_label(db, cid, "ollama", r["title"], {"phrase": r["phrase"], "model": model})
    if fatal and not results:
        raise fatal[0]
    if fatal:
        on_status(f"ollama: {fatal[0]}")
    for cid, why in list(failed.items())[:3]:
        on_status(f"ollama: cluster {cid}: {why}")
    return OllamaResult(len(results), len(failed) + (len(work) - len(results) - len(failed) if fatal else 0))
