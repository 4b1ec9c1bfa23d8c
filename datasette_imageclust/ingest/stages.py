"""The overlapping stages of ``load``: read and decode -> inference -> write.

A pool of low-priority threads reads each file, hashes it and decodes it once; one
thread runs inference on a batch; the caller's thread writes the previous batch
meanwhile, so the model is never waiting for SQLite. Decoding runs at a lower CPU
priority so it fills the inference session's idle time instead of competing with it.
"""
from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import signal
import threading
import time
import warnings
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Container

import numpy as np
from PIL import Image

from ..models import Preprocessor
from .decode import Decoded, ImageError, decode
from .scan import FoundFile, NotRegularFile, read_regular


@dataclass
class Read:
    """One file's result from the decode pool."""

    found: FoundFile
    sha256: str | None = None
    decoded: Decoded | None = None  # None for known bytes (nothing to decode) or an error
    error: str | None = None
    seconds: float = 0.0  # spent reading and decoding it, measured where it ran (thread or process)


@dataclass
class Pending:
    """An image waiting for inference, with every file that holds its bytes."""

    sha256: str
    size: int
    decoded: Decoded
    files: list[FoundFile] = field(default_factory=list)


@dataclass
class Batch:
    """Images in inference (``vectors`` is their future) plus files and errors to write with them."""

    pending: dict[str, Pending]
    links: list[tuple[FoundFile, str]]  # (file, sha256 of an image written before it)
    errors: list[tuple[FoundFile, str]]
    vectors: Future | None


CPU_BATCH, ACCELERATOR_BATCH = 16, 64


def shape(provider: str, cores: int, decode_workers: int | None = None,
          batch_size: int | None = None) -> tuple[int, int]:
    """(decode processes, batch size) for a session on ``provider``, each as asked, else:
    on the CPU, decode threads (0 processes: threads fill inference's idle time) and
    batches of 16; on an accelerator, which leaves the CPU to decoding alone, one decode
    process per core (threads share one interpreter) and batches of 64 (fewer, larger
    transfers and kernel launches)."""
    on_cpu = provider == "CPUExecutionProvider"
    processes = decode_workers if decode_workers is not None else (0 if on_cpu else cores)
    return processes, batch_size or (CPU_BATCH if on_cpu else ACCELERATOR_BATCH)


@dataclass(frozen=True)
class DecodeOptions:
    preprocessor: Preprocessor
    thumbnail_size: int = 256
    thumbnail_format: str = "webp"


def read(f: FoundFile, options: DecodeOptions, embedded: Container[str]) -> Read:
    """Read, hash and (unless its bytes are ``embedded`` already) decode one file; any
    problem becomes ``Read.error``, the reason recorded in ``errors``."""
    t0 = time.perf_counter()
    r = _read(f, options, embedded)
    r.seconds = time.perf_counter() - t0
    return r


def _read(f: FoundFile, options: DecodeOptions, embedded: Container[str]) -> Read:
    r = Read(f)
    try:
        data = read_regular(f.path)
    except NotRegularFile as e:
        r.error = f"not a regular file: {e.kind}"
        return r
    except OSError as e:
        r.error = f"cannot read: {e.strerror or e}"
        return r
    r.sha256 = hashlib.sha256(data).hexdigest()
    if r.sha256 in embedded:  # known bytes: a copy or a move, nothing to decode
        return r
    try:
        r.decoded = decode(data, options.preprocessor, thumb_size=options.thumbnail_size,
                           thumb_format=options.thumbnail_format, name=f.path)
    except ImageError as e:
        r.error = str(e)
    except Exception as e:  # a bug or an exotic file must not stop the run
        r.error = f"unexpected {type(e).__name__}: {e}"
    return r


# --- decoding in worker processes (an accelerator leaves decoding as the bottleneck) ---

_worker: tuple[DecodeOptions, frozenset] | None = None


def _start_worker(options: DecodeOptions, embedded: frozenset) -> None:
    global _worker
    _worker = (options, embedded)  # once per process, not with every file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it stops the pool)
    _lower_priority()


def _read_in_worker(f: FoundFile) -> Read:
    return read(f, *_worker)


def process_pool(workers: int, options: DecodeOptions, embedded: Container[str]) -> ProcessPoolExecutor:
    """``workers`` processes that read and decode files (``embedded`` as it is now: bytes
    embedded later are still recognised by the writer, only decoded once more)."""
    # forkserver: forking this process, with onnxruntime's threads running, is unsafe
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in multiprocessing.get_all_start_methods()
                                      else "spawn")
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start_worker,
                               initargs=(options, frozenset(embedded)))


def _lower_priority() -> None:
    # On Linux, setpriority(PRIO_PROCESS, tid) applies to one thread: decoding yields
    # the CPU to onnxruntime's threads whenever they can run.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass


class StageTimes:
    """Seconds spent in each stage, summed over its threads (decode: every decode thread)."""

    def __init__(self) -> None:
        self.decode = self.inference = self.write = 0.0
        self._lock = threading.Lock()

    def timed(self, stage: str, f: Callable) -> Callable:
        """``f``, adding the time of each call to ``stage`` (measured in the calling thread)."""
        def call(*args):
            t0 = time.perf_counter()
            try:
                return f(*args)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:  # decode threads add concurrently
                    setattr(self, stage, getattr(self, stage) + dt)
        return call


def run(todo: list[FoundFile], *, read: Callable[[FoundFile], Read], embed: Callable[[np.ndarray], np.ndarray],
        write: Callable[[Batch], None], embedded: Container[str], batch_size: int, workers: int,
        on_progress: Callable[[int, int], None], on_skip: Callable[[str, str], None],
        times: StageTimes | None = None, pool: ProcessPoolExecutor | None = None) -> None:
    """Push ``todo`` through the stages: ``read`` in ``workers`` threads, ``embed`` (on
    batches of up to ``batch_size`` new images) in one thread, ``write`` here.

    While batch k is in inference, this thread gathers batch k+1 from the decode pool
    and then writes batch k. A file that cannot be loaded goes to ``on_skip`` and is
    written with its batch as an error. ``times`` collects the seconds of each stage.
    With a process ``pool`` (:func:`process_pool`), files are read there instead.
    """
    times = times or StageTimes()
    embed, write = times.timed("inference", embed), times.timed("write", write)
    total = len(todo)
    on_progress(0, total)
    batch: dict[str, Pending] = {}
    links: list[tuple[FoundFile, str]] = []
    errors: list[tuple[FoundFile, str]] = []
    inflight: Batch | None = None
    window = max(2 * batch_size, 2 * workers)

    def submit(pending: dict[str, Pending]) -> Future | None:
        if not pending:
            return None
        return infer.submit(embed, np.stack([p.decoded.crop for p in pending.values()]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if pool is None:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="decode", initializer=_lower_priority)
        else:
            read = _read_in_worker
        infer = ThreadPoolExecutor(1, thread_name_prefix="inference")
        queue: collections.deque[Future] = collections.deque()
        it = iter(todo)
        try:
            for f in it:
                queue.append(pool.submit(read, f))
                if len(queue) >= window:
                    break
            done = 0
            while queue:
                r: Read = queue.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    queue.append(pool.submit(read, nxt))
                done += 1
                times.decode += r.seconds
                if r.error:
                    errors.append((r.found, r.error))
                    on_skip(r.found.path, r.error)
                elif r.sha256 in batch:
                    batch[r.sha256].files.append(r.found)
                elif (r.sha256 in embedded or r.decoded is None
                      or (inflight and r.sha256 in inflight.pending)):
                    links.append((r.found, r.sha256))  # written after the image it points to
                else:
                    batch[r.sha256] = Pending(r.sha256, r.found.size, r.decoded, [r.found])
                if len(batch) >= batch_size or len(links) + len(errors) >= 500:
                    nxt_batch = Batch(batch, links, errors, submit(batch))
                    if inflight:
                        write(inflight)
                    inflight = nxt_batch
                    batch, links, errors = {}, [], []
                    on_progress(done - len(inflight.pending), total)
            last = Batch(batch, links, errors, submit(batch))
            if inflight:
                write(inflight)
            write(last)
            on_progress(total, total)
        finally:
            for q in queue:
                q.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            infer.shutdown(wait=True, cancel_futures=True)
