"""The worker side of ``load --engine dask``: what runs in each Dask worker process.

Each task reads, hashes, decodes and embeds a chunk of files and sends back everything
but the pixels; the driver (:mod:`.dask_engine`) writes it. A worker process keeps one
onnxruntime session and one copy of the known digests for every chunk it runs, and
:func:`probe` checks, before any work, that it can see the model and the files.
Tasks are pickled by reference, so the driver and every worker must run the same
version of this module (:func:`version`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..models import ImageEmbedder, ModelFiles, devices, file_sha256
from ..store import paths
from .scan import FoundFile
from .stages import DecodeOptions, Read, read
from .summary import LoadError


class Known(Container[str]):
    """The sha256 of every image the model has embedded, as sorted 32-byte digests: 64 MB
    for 2M images, sent to each worker once, where a Python set of hex strings is ~3× that."""

    def __init__(self, hexes: Iterable[str] = (), *, packed: bytes | None = None):
        if packed is not None:  # as :meth:`packed` gave it
            self.digests = np.frombuffer(packed, dtype="S32")
        else:
            self.digests = np.array(sorted(bytes.fromhex(h) for h in hexes), dtype="S32")

    def packed(self) -> bytes:
        return self.digests.tobytes()

    def __contains__(self, sha256: object) -> bool:
        if not isinstance(sha256, str) or not len(self.digests):
            return False
        d = bytes.fromhex(sha256)
        i = int(np.searchsorted(self.digests, d))
        # numpy strips trailing NULs from S32 values; compare padded
        return i < len(self.digests) and self.digests[i].ljust(32, b"\0") == d


@dataclass(frozen=True)
class Job:
    """What every chunk needs: a few hundred bytes, sent with each task (so the scheduler
    holds it: no worker's death loses it). The known digests, which can be large, wait in
    a Dask ``Variable`` on the scheduler (``known``), fetched once per worker process."""

    files: ModelFiles
    sha256: str  # of the vision model file the driver registered
    device: str
    threads: int | None
    options: DecodeOptions | None  # None in the probe
    known: str | None = None  # the name of the Variable holding Known.packed(); None: nothing known


@dataclass
class Chunk:
    """A chunk's results: every file's :class:`Read` (crops dropped) and, in order, a
    vector for each one that was decoded."""

    reads: list[Read]
    vectors: np.ndarray | None
    decode_seconds: float = 0.0
    inference_seconds: float = 0.0


def version() -> str:
    """This package's installed version (the driver's and every worker's must match)."""
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("datasette-imageclust")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


@dataclass
class Probe:
    dimensions: int
    cores: int
    error: str | None = None
    provider: str = ""  # the one the worker's session runs on (an accelerator may have fallen back)
    # of this package where the probe ran: chunks travel as its classes, so workers must match the driver
    version: str = field(default_factory=version)


_sessions: dict[tuple, ImageEmbedder] = {}


def _embedder(job: Job) -> ImageEmbedder:
    key = (str(job.files.vision), job.sha256, job.device, job.threads)
    if key not in _sessions:
        if file_sha256(job.files.vision) != job.sha256:
            raise LoadError(f"the model file {paths.display(str(job.files.vision))} on worker {_worker_name()} "
                            "differs from the driver's: workers must see the same model files")
        devices.choose(job.device, report=lambda line: None)
        _sessions.clear()  # one session per worker process: a new run's model replaces the last
        # the worker's cores shared by the tasks it runs at once (each runs this session)
        threads = job.threads or max(1, cores() // _worker_threads())
        _sessions[key] = ImageEmbedder(job.files, threads=threads, spinning=False)
    return _sessions[key]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what Slurm or a container gives this process
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return 1


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "?"


def probe(job: Job, sample: str | None) -> Probe:
    """Run on each worker before any work: can it load the model and see the files?"""
    if sample is not None and not os.path.exists(sample):
        return Probe(0, cores(), f"cannot see {paths.display(sample)}: the files must be on a filesystem "
                                  "the workers share, at the same path as on this machine")
    if not os.path.exists(job.files.vision):
        return Probe(0, cores(), f"cannot see the model at {paths.display(str(job.files.vision))}: "
                                  "put it on a filesystem the workers share (--model DIRECTORY)")
    try:
        embedder = _embedder(job)
        return Probe(embedder.dimensions, cores(), provider=embedder.session.get_providers()[0])
    except Exception as e:  # shown to the user as one line
        return Probe(0, cores(), first_line(e))


_known: dict[str, Known] = {}


def _known_digests(name: str | None) -> Container[str]:
    """The digests of the images the model has embedded (whose bytes need no decoding),
    fetched from the scheduler once per worker process and run."""
    if name is None:
        return ()
    if name not in _known:
        from distributed import Variable, get_client

        _known.clear()
        _known[name] = Known(packed=Variable(name, client=get_client()).get(timeout=600))
    return _known[name]


def embed_chunk(job: Job, files: list[FoundFile]) -> Chunk:
    """Read, hash, decode and embed ``files`` on a worker."""
    embedder = _embedder(job)
    known = _known_digests(job.known)
    reads = [read(f, job.options, known) for f in files]
    out = Chunk(reads, None, decode_seconds=sum(r.seconds for r in reads))
    new = [r for r in reads if r.decoded is not None]
    if new:
        t0 = time.perf_counter()
        out.vectors = embedder.embed_uint8(np.stack([r.decoded.crop for r in new]))
        out.inference_seconds = time.perf_counter() - t0
        for r in new:  # the driver needs no crop: ~150 KB each not sent back
            r.decoded.crop = np.empty((0, 0, 3), np.uint8)
    return out


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
