"""The work of one image for `imageclust describe`, on worker threads (no database here):
prepare what is sent (the thumbnail, or the original decoded at up to N px), ask the
vision LLM, parse its answer (plain text, or JSON with tags), and report an
:class:`Outcome`. :class:`Workers` runs this on a few daemon threads."""
from __future__ import annotations

import hashlib
import json
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import Callable

from ..ingest.decode import ImageError, jpeg_at_most
from ..ingest.scan import NotRegularFile, read_regular
from . import vlm

MAX_TAGS = 30

# --- answers ---------------------------------------------------------------------------

_THINKING = re.compile(r"^\s*<think>.*?</think>", re.S)  # reasoning models' preamble
_FENCE = re.compile(r"^```[a-zA-Z]*\s*(.*?)\s*```$", re.S)


def parse_text(text: str) -> tuple[str, list[str]]:
    """A plain answer: the description, no tags (an empty answer is asked again)."""
    text = _THINKING.sub("", text).strip()
    if not text:
        raise vlm.TransientError("empty answer")
    return text, []


def parse_json(text: str) -> tuple[str, list[str]]:
    """A JSON answer {"description": ..., "tags": [...]}: anything else is asked again.
    Tags: strings only, trimmed, lower-cased, each once, in the order given."""
    body = _THINKING.sub("", text).strip()
    fenced = _FENCE.match(body)
    body = fenced.group(1) if fenced else body
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
        i, j = body.find("{"), body.rfind("}")
        if 0 <= i < j:  # JSON wrapped in a sentence
            try:
                obj = json.loads(body[i:j + 1])
            except ValueError:
                pass
    if not isinstance(obj, dict):
        raise vlm.TransientError(f"malformed JSON answer: {vlm.one_line(text, 120)!r}")
    description, tags = obj.get("description"), obj.get("tags", [])
    if not isinstance(description, str) or not description.strip() or not isinstance(tags, list):
        raise vlm.TransientError(f"expected {{\"description\": text, \"tags\": [...]}}, got {vlm.one_line(body, 120)!r}")
    clean: list[str] = []
    for t in tags:
        t = " ".join(t.split()).lower()[:80] if isinstance(t, str) else ""
        if t and t not in clean:
            clean.append(t)
    return description.strip(), clean[:MAX_TAGS]


# --- the work of one image (on a worker thread: no database here) ------------------------


@dataclass
class Job:
    image_id: int
    sha256: str
    thumbnail: bytes | None
    thumbnail_format: str | None
    files: list[str] = field(default_factory=list)  # OS paths, for --input original


@dataclass
class Outcome:
    job: Job
    kind: str  # ok, failed, fatal, cancelled
    text: str = ""  # the description, or why it failed
    tags: list[str] = field(default_factory=list)
    seconds: float | None = None
    input: str = "thumbnail"
    fell_back: bool = False
    error: BaseException | None = None  # fatal: the ServerError; or a bug, raised by the caller


class Sender:
    """Prepares one image as asked and sends it (called on worker threads)."""

    def __init__(self, client: vlm.Client, prompt: str, *, tags: bool, input: str, max_side: int) -> None:
        self.client, self.prompt, self.tags = client, prompt, tags
        self.input, self.max_side = input, max_side

    def image(self, job: Job) -> tuple[vlm.Image, str, bool]:
        """(what to send, the `input` label, whether the thumbnail stood in for the file)."""
        fell_back = False
        if self.input == "original":
            for path in job.files:
                try:
                    data = read_regular(path)
                    if hashlib.sha256(data).hexdigest() != job.sha256:
                        continue  # changed since it was loaded: not this image any more
                    return vlm.Image(jpeg_at_most(data, self.max_side, name=path)[0]), \
                        f"original {self.max_side}px", False
                except (OSError, NotRegularFile, ImageError):
                    continue
            fell_back = True
        if job.thumbnail is None:
            raise vlm.Refused("no thumbnail stored" + (" and no readable file" if fell_back else ""))
        data = job.thumbnail
        if job.thumbnail_format != "jpeg":
            # WebP is not read by every server (llama.cpp's image loader, say); JPEG is.
            data = jpeg_at_most(data, 1 << 16)[0]
        return vlm.Image(data), "thumbnail", fell_back

    def __call__(self, job: Job) -> Outcome:
        try:
            image, label, fell_back = self.image(job)
        except (vlm.Refused, ImageError) as e:
            return Outcome(job, "failed", str(e))
        try:
            answer = self.client.ask(self.prompt, [image], json_mode=self.tags,
                                     parse=parse_json if self.tags else parse_text)
        except vlm.ServerError as e:
            return Outcome(job, "fatal", str(e), error=e)
        except vlm.Cancelled:
            return Outcome(job, "cancelled")
        except (vlm.TransientError, vlm.Refused) as e:
            return Outcome(job, "failed", str(e), input=label, fell_back=fell_back)
        text, tags = answer.value
        return Outcome(job, "ok", text, tags, answer.seconds, label, fell_back)


class Workers:
    """``n`` daemon threads running ``work`` on jobs: daemons, so that Ctrl-C never waits
    for a request in flight (its answer is simply not written)."""

    def __init__(self, n: int, work: Callable[[Job], Outcome], stop: threading.Event) -> None:
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.stop = stop
        self.work = work
        for _ in range(n):
            threading.Thread(target=self._run, daemon=True, name="imageclust-describe").start()
        self.n = n

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.stop.is_set():  # still accounted for: the caller counts every job back
                self.results.put(Outcome(job, "cancelled"))
                continue
            try:
                outcome = self.work(job)
            except BaseException as e:  # a bug: the caller raises it with its traceback
                outcome = Outcome(job, "fatal", repr(e), error=e)
            if outcome.kind == "fatal":
                self.stop.set()  # here, before this thread takes another job
            self.results.put(outcome)

    def next_result(self) -> Outcome:
        while True:  # short waits, so the calling thread stays responsive to Ctrl-C
            try:
                return self.results.get(timeout=0.5)
            except queue.Empty:
                continue

    def drain(self) -> list[Outcome]:
        """The results that have arrived, without waiting."""
        out = []
        try:
            while True:
                out.append(self.results.get_nowait())
        except queue.Empty:
            return out

    def close(self) -> None:
        self.stop.set()
        try:
            while True:
                self.jobs.get_nowait()
        except queue.Empty:
            pass
        for _ in range(self.n):
            self.jobs.put(None)
