"""``ollama`` labels: a local vision LLM names each cluster from its representatives.

POST {host}/api/generate with the representatives' stored thumbnails (base64), ``format:
"json"`` and ``stream: false``, through :class:`.vlm.OllamaClient` (its preflight, timeouts,
retries with backoff and jitter); the reply's ``response`` must be strict JSON ``{"title":
..., "phrase": ...}``, and anything else is retried like a transient failure. A few
requests run at once. A server that cannot be used stops the source with one clear message.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, NamedTuple

import sqlite_utils

from .clusterstore import put_label
from .vlm import DEFAULT_OLLAMA_URL, Image, Refused, TransientError, make_client
from .vlm import ServerError as OllamaError

__all__ = ["DEFAULT_HOST", "DEFAULT_MODEL", "OllamaError", "OllamaResult", "PROMPT", "TransientError",
           "ollama_labels", "parse", "parse_reply"]

DEFAULT_HOST = DEFAULT_OLLAMA_URL
DEFAULT_MODEL = "llava"
PROMPT = (
    "These {n} images were grouped together because they look alike. Give the group a short "
    "title (at most 5 words) and one descriptive phrase (at most 15 words). Answer with JSON "
    'only, exactly: {{"title": "...", "phrase": "..."}}'
)


class OllamaResult(NamedTuple):
    """What ``ollama_labels`` did (a tuple, so ``n, failed = ollama_labels(...)`` works)."""
    labelled: int
    failed: int

    def as_dict(self) -> dict:
        return self._asdict()


def parse(raw: bytes) -> dict:
    """Strictly parse an /api/generate reply body; invalid content is a transient failure."""
    try:
        outer = json.loads(raw)
    except ValueError as e:
        raise TransientError(f"invalid JSON from the model: {raw[:120]!r}") from e
    return parse_reply(outer)


def parse_reply(outer: Any) -> dict:
    """:func:`parse` of a reply already read as JSON."""
    try:
        inner = json.loads(outer["response"])
    except (ValueError, KeyError, TypeError) as e:
        raise TransientError(f"invalid JSON from the model: {str(outer)[:120]!r}") from e
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
    client = make_client("ollama", host, model, timeout=timeout, retries=retries, backoff=backoff,
                         url_option="--ollama-host")
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
    client.preflight()
    on_status(f"asking {model} at {host} to label {len(work)} clusters ({concurrency} at a time)")
    results: dict[int, dict] = {}
    failed: dict[int, str] = {}
    fatal: list[OllamaError] = []

    def one(cid: int) -> None:
        if fatal:
            return
        try:
            images = [Image(d) for d in work[cid]]
            results[cid] = client.generate(PROMPT.format(n=len(images)), images, parse_reply).value
        except OllamaError as e:
            fatal.append(e)
        except (TransientError, Refused) as e:
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
