"""`imageclust describe`: a vision LLM writes a description of every image (and, asked for
JSON, tags), stored in ``descriptions`` (full-text indexed) and ``image_tags``.

Incremental on (image, model, prompt): an image that has a description for the same model
and prompt is never sent again. A few requests run at once on worker threads, which only
prepare images and talk HTTP; the calling thread is the one writer, and commits each answer
as it arrives, so Ctrl-C loses at most the requests in flight and a re-run does the rest.
A request that fails for good is recorded in ``description_errors`` with the reason (and
tried again by the next run); a server that cannot be used stops the step.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import sqlite_utils

from ..store import paths
from ..store.collection import ImageCollection
from ..store.schema import migrate, now
from . import vlm
from .describe_workers import Job, Outcome, Sender, Workers

__all__ = ["DEFAULT_PROMPT", "DescribeError", "DescribeSummary", "INPUTS", "TAGS_INSTRUCTION", "describe_images",
           "full_prompt", "pending", "read_prompt_file", "sha256_text", "summary_line"]

#: The default prompt, after the AoIR 2025 paper's: a factual paragraph on what the image
#: shows, its setting, the people, any text in it, and its evident purpose.
DEFAULT_PROMPT = (
    "Describe this image in one factual paragraph. Say what it shows: the main subjects and "
    "objects and what is happening; the setting (the kind of place, indoors or outdoors); the "
    "people, if any (how many, what they are doing, their expressions and clothing); any text "
    "in the image, quoted as written; and its evident purpose or genre (for example a news "
    "photo, a protest sign, an advertisement, a meme, a chart, a screenshot, a selfie). "
    "Describe only what can be seen, without guessing beyond it. Write plain prose, without "
    "lists or headings."
)
#: Appended to the prompt with ``tags``: the answer becomes JSON with tags.
TAGS_INSTRUCTION = (
    "\n\nAnswer with JSON only, exactly in this shape: {\"description\": \"<the paragraph>\", "
    "\"tags\": [\"<a short tag>\", ...]} with up to 10 short lowercase tags naming what the "
    "image is about, the most important first."
)
INPUTS = ("thumbnail", "original")
ERRORS_SHOWN = 10  # failures reported one by one; the rest are counted (all are recorded)


class DescribeError(Exception):
    """The step cannot run as asked (no images, an unreadable prompt file); one line."""


@dataclass
class DescribeSummary:
    model: str
    api: str
    url: str
    prompt_sha256: str
    input: str  # thumbnail, or original <N>px
    images: int  # in the database
    described_before: int  # images that already had a description for this model and prompt
    pending: int  # sent this run (at most --max-images)
    described: int = 0
    failed: int = 0  # recorded in description_errors
    fallbacks: int = 0  # --input original, but the file was gone or changed: the thumbnail was sent
    tags: int = 0  # image_tags rows written
    seconds: float = 0.0
    interrupted: bool = False
    prompt_id: int | None = None

    @property
    def images_per_second(self) -> float:
        return (self.described + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        out = dict(self.__dict__)
        out["seconds"] = round(self.seconds, 3)
        out["images_per_second"] = round(self.images_per_second, 3)
        return out


# --- prompts --------------------------------------------------------------------------


def full_prompt(prompt: str | None, tags: bool) -> str:
    """The text sent: ``prompt`` (default :data:`DEFAULT_PROMPT`), asking for JSON with tags
    if ``tags``; it is what is stored and hashed, so each variant is its own prompt."""
    text = (prompt if prompt is not None else DEFAULT_PROMPT).strip()
    if not text:
        raise DescribeError("the prompt is empty")
    return text + TAGS_INSTRUCTION if tags else text


def read_prompt_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            raw = f.read(1_000_001)
    except OSError as e:
        raise DescribeError(f"cannot read --prompt-file {paths.display(path)}: {e.strerror or e}") from e
    if len(raw) > 1_000_000:
        raise DescribeError(f"--prompt-file {paths.display(path)} is over 1 MB: is it the right file?")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DescribeError(f"--prompt-file {paths.display(path)} is not UTF-8 text") from e


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the step ----------------------------------------------------------------------------


def pending(db: sqlite_utils.Database, model: str, prompt_id: int | None) -> list[int]:
    """Images without a description for ``model`` and the prompt, by id."""
    if prompt_id is None:
        return [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    return [r[0] for r in db.execute(
        "SELECT i.id FROM images i WHERE NOT EXISTS (SELECT 1 FROM descriptions d WHERE d.image_id = i.id "
        "AND d.model = ? AND d.prompt_id = ?) ORDER BY i.id", [model, prompt_id])]


def describe_images(db: sqlite_utils.Database, client: vlm.Client, *, prompt: str, tags: bool = False,
                    input: str = "thumbnail", max_side: int = 768, concurrency: int = 2,
                    max_images: int | None = None, on_status: Callable[[str], None] = lambda s: None,
                    on_progress: Callable[[int, int], None] = lambda done, total: None) -> DescribeSummary:
    """Describe every image that has no description for ``client.model`` and ``prompt``
    (the full text sent: :func:`full_prompt`). Checks the server first (nothing is written
    if it cannot be used: :class:`vlm.ServerError`). Ctrl-C returns the summary with
    ``interrupted``; a server lost mid-way raises ServerError after keeping what was done."""
    start = time.perf_counter()
    coll = ImageCollection(db)
    if not coll.has("images"):
        raise DescribeError("this database has no images: run `imageclust load` first")
    sha = sha256_text(prompt)
    prompt_id = None
    if coll.has("prompts", "descriptions"):
        row = db.execute("SELECT id FROM prompts WHERE sha256 = ?", [sha]).fetchone()
        prompt_id = row[0] if row else None
    todo = pending(db, client.model, prompt_id)
    n_images = db.execute("SELECT count(*) FROM images").fetchone()[0]
    summary = DescribeSummary(client.model, client.api, client.url, sha,
                              f"original {max_side}px" if input == "original" else "thumbnail",
                              n_images, n_images - len(todo), 0, prompt_id=prompt_id)
    todo = todo[:max_images] if max_images is not None else todo
    summary.pending = len(todo)
    if not todo:
        summary.seconds = time.perf_counter() - start
        return summary
    client.preflight()  # before anything is written
    migrate(db, "core")
    migrate(db, "text")
    with db.conn:
        db.execute("INSERT OR IGNORE INTO prompts (sha256, text, created) VALUES (?, ?, ?)", [sha, prompt, now()])
    summary.prompt_id = prompt_id = db.execute("SELECT id FROM prompts WHERE sha256 = ?", [sha]).fetchone()[0]
    on_status(f"describing {len(todo)} images with {client.model} at {client.url} ({concurrency} at a time, "
              f"sending the {'original at up to %dpx' % max_side if input == 'original' else 'thumbnail'})")
    client.cancel = stop = threading.Event()
    workers = Workers(concurrency, Sender(client, prompt, tags=tags, input=input, max_side=max_side), stop)
    writer = Writer(db, client, prompt_id, summary, on_status)
    ids = iter(todo)
    in_flight = 0
    try:
        on_progress(0, len(todo))
        for _ in range(2 * concurrency):  # a few queued beyond the workers, so none waits for us
            in_flight += _feed(db, workers, ids, input)
        fatal: Outcome | None = None
        while in_flight:
            outcome = workers.next_result()
            in_flight -= 1
            if outcome.kind == "fatal":
                # Stop sending, but wait for the requests in flight: their answers are kept.
                fatal = fatal or outcome
                stop.set()
                continue
            writer.write(outcome)
            on_progress(summary.described + summary.failed, len(todo))
            if fatal is None:
                in_flight += _feed(db, workers, ids, input)
        if fatal is not None:
            writer.stop(fatal)
    except KeyboardInterrupt:
        summary.interrupted = True
        stop.set()
        for outcome in workers.drain():  # answers that arrived are kept; only those in flight are lost
            if outcome.kind != "fatal":
                writer.write(outcome)
    finally:
        workers.close()
        summary.seconds = time.perf_counter() - start
    if summary.failed > ERRORS_SHOWN:
        on_status(f"... {summary.failed - ERRORS_SHOWN} more failures: all are in description_errors")
    return summary


def _feed(db: sqlite_utils.Database, workers: Workers, ids: Any, input: str) -> int:
    """Queue the next image (read here: the database stays on the calling thread); 1 if one was."""
    image_id = next(ids, None)
    if image_id is None:
        return 0
    sha = db.execute("SELECT sha256 FROM images WHERE id = ?", [image_id]).fetchone()[0]
    thumb = db.execute("SELECT data, format FROM thumbnails WHERE image_id = ?", [image_id]).fetchone()
    files = []
    if input == "original":
        files = [paths.os_path(p, raw) for p, raw in
                 db.execute("SELECT path, path_bytes FROM files WHERE image_id = ? ORDER BY id", [image_id])]
    workers.jobs.put(Job(image_id, sha, thumb[0] if thumb else None, thumb[1] if thumb else None, files))
    return 1


class Writer:
    """Writes outcomes, one transaction each (the only thread that writes)."""

    def __init__(self, db: sqlite_utils.Database, client: vlm.Client, prompt_id: int, summary: DescribeSummary,
                 on_status: Callable[[str], None]) -> None:
        self.db, self.client, self.prompt_id, self.summary, self.on_status = db, client, prompt_id, summary, on_status
        self.key = (client.model, prompt_id)

    def stop(self, o: Outcome) -> None:
        """Raise a fatal outcome's error: the server cannot be used, or a bug on a worker."""
        s = self.summary
        if isinstance(o.error, vlm.ServerError) and (s.described or s.failed):
            self.on_status(f"stopped: the {s.described + s.failed} answers so far are kept (the same command resumes)")
        raise o.error  # type: ignore[misc]

    def write(self, o: Outcome) -> None:
        s = self.summary
        if o.kind == "cancelled":
            return
        iid = o.job.image_id
        with self.db.conn:
            if o.kind == "ok":
                cur = self.db.execute(
                    "INSERT INTO descriptions (image_id, model, api, prompt_id, text, input, created, seconds) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_id, model, prompt_id) DO NOTHING",
                    [iid, self.client.model, self.client.api, self.prompt_id, o.text, o.input, now(), o.seconds])
                self.db.execute("DELETE FROM description_errors WHERE image_id = ? AND model = ? AND prompt_id = ?",
                                [iid, *self.key])
                if o.tags and cur.rowcount:
                    s.tags += self._tags(iid, o.tags)
                s.described += 1
            else:
                self.db.execute("INSERT OR REPLACE INTO description_errors (image_id, model, prompt_id, reason, time) "
                                "VALUES (?, ?, ?, ?, ?)", [iid, *self.key, o.text, now()])
                s.failed += 1
                if s.failed <= ERRORS_SHOWN:
                    row = self.db.execute("SELECT path FROM files WHERE image_id = ? ORDER BY id LIMIT 1",
                                          [iid]).fetchone()
                    self.on_status(f"image {iid}" + (f" ({paths.display(row[0])})" if row else "") + f": {o.text}")
        s.fallbacks += o.fell_back

    def _tags(self, image_id: int, tags: list[str]) -> int:
        source = f"vlm:{self.client.model}"
        self.db.execute("DELETE FROM image_tags WHERE image_id = ? AND source = ?", [image_id, source])
        created = now()
        self.db.conn.executemany(
            "INSERT INTO image_tags (image_id, source, tag, score, rank, created) VALUES (?, ?, ?, NULL, ?, ?)",
            [(image_id, source, t, rank, created) for rank, t in enumerate(tags, 1)])
        return len(tags)


def summary_line(s: DescribeSummary) -> str:
    """The one line a command prints at the end."""
    line = (f"{s.described} images described, {s.failed} failed, {s.described_before} already described "
            f"({s.model}, prompt {s.prompt_sha256[:12]}) in {s.seconds:.1f}s ({s.images_per_second:.2f} images/s)")
    if s.tags:
        line += f"; {s.tags} tags"
    if s.fallbacks:
        line += f"; {s.fallbacks} files gone or changed: their thumbnails were sent"
    return line

