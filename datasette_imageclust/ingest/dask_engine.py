"""``load --engine dask``: the read, decode and embed stages on the workers of a Dask cluster.

Why Dask (not Ray): university clusters already run Dask through Slurm/PBS
(``dask-jobqueue``), it installs from PyPI as two pure-Python wheels, and a task that
is a plain function over a list of paths needs none of Ray's actors: each worker
process keeps one onnxruntime session (made on its first chunk) for every later one.

The driver (this process) scans, decides what to load, and stays the only writer of
SQLite: workers get chunks of file paths and send back each file's hash, metadata,
thumbnail and vector, which the driver writes chunk by chunk, one transaction each, as
a local run does. So everything ``load`` promises holds: a killed worker's chunk is
run again elsewhere (Dask retries it), a chunk that keeps killing workers is split to
find the one file that does, and a killed driver resumes on the next run.
Workers must see the files and the model at the same paths as the driver (a shared
filesystem); :func:`.dask_worker.probe` checks that on every worker before any work.
What runs on the workers is in :mod:`.dask_worker`.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..models import ModelFiles
from .dask_worker import Chunk, Job, Known, Probe, cores, embed_chunk, first_line, probe, version
from .scan import FoundFile
from .stages import Batch, DecodeOptions, Pending, Read, StageTimes
from .summary import LoadError

INSTALL = "pip install 'datasette-imageclust[dask]'"
POLL_SECONDS = 1.0
NO_WORKERS_SECONDS = 120.0  # then give up: a batch system may take a while to start workers, not forever
FETCH_SECONDS = 10.0  # a chunk's result is a few MB; longer, and its worker may have died since wait()
WORKER_DIED = "a worker process died while reading this file (it crashed the decoder or ran out of memory)"


def available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True




@dataclass
class DaskEngine:
    """A connection to a Dask scheduler (``address``), or a local cluster of one worker
    process per core when there is none (``dask.config`` ``scheduler-address`` counts)."""

    address: str | None = None
    client: Any = None
    cluster: Any = None
    workers: int = 0
    threads: int = 0
    providers: list[str] = field(default_factory=list)
    dimensions: int = 0
    _job: Any = None

    def start(self) -> None:
        if not available():
            raise LoadError(f"--engine dask needs Dask's distributed scheduler: {INSTALL}")
        import dask
        from distributed import Client, LocalCluster

        address = self.address or dask.config.get("scheduler-address", None)
        try:
            if address:
                self.client = Client(address, timeout="10s", set_as_default=False)
            else:
                # its HTTP server starts whatever the options: on a free port of this host only
                self.cluster = LocalCluster(n_workers=cores(), threads_per_worker=1, processes=True,
                                            host="127.0.0.1", dashboard_address="127.0.0.1:0")
                self.client = Client(self.cluster, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise LoadError(f"cannot reach the Dask scheduler at {address}: {first_line(e)}") from None
        self.address = self.client.scheduler.address

    def close(self) -> None:
        for thing in (self.client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - the scheduler may be gone; nothing to keep
                    pass
        self.client = self.cluster = None

    def prepare(self, files: ModelFiles, sha256: str, device: str, threads: int | None,
                sample: str | None) -> None:
        """Check that every worker can load the model (``sha256``: the same file) and see
        ``sample`` (a path given to ``load``); sets ``dimensions``, ``workers``, ``threads``."""
        if threads is None and self.cluster is not None:
            threads = 1  # a local cluster's workers all see every core: one each, not cores²
        self._job = Job(files, sha256, device, threads, None)
        try:
            probes: dict[str, Probe] = self.client.run(probe, self._job, sample)
        except (OSError, TimeoutError) as e:
            raise LoadError(f"lost the Dask scheduler at {self.address}: {first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - the probe could not even run there (Dask re-raises it as text)
            raise LoadError(f"the Dask workers at {self.address} cannot run datasette-imageclust ({first_line(e)}): "
                            f"install version {version()} on every worker: {INSTALL}") from None
        if not probes:
            raise LoadError(f"the Dask cluster at {self.address} has no workers")
        for worker, p in sorted(probes.items()):
            if p.version != version():
                raise LoadError(f"Dask worker {worker} has datasette-imageclust {p.version}, this machine "
                                f"{version()}: install the same version on every worker")
            if p.error:
                raise LoadError(f"Dask worker {worker}: {p.error}")
        self.workers = len(probes)
        self.threads = sum(self.client.nthreads().values())
        self.providers = sorted({p.provider for p in probes.values()})
        self.dimensions = next(iter(probes.values())).dimensions

    def run(self, todo: list[FoundFile], *, options: DecodeOptions, write: Callable[[Batch], None],
            embedded: set[str], chunk_size: int, on_progress: Callable[[int, int], None],
            on_skip: Callable[[str, str], None], times: StageTimes) -> None:
        """Embed ``todo`` on the workers, ``write`` each chunk here as it comes back.
        ``embedded`` (the writer's) grows as chunks are written: bytes seen in two chunks
        become one image and links."""
        from distributed import Variable

        known = None
        if embedded:  # kept by the scheduler, so the death of every worker loses nothing
            known = Variable(f"imageclust-known-{uuid.uuid4().hex}", client=self.client)
            known.set(Known(embedded).packed())
        job = dataclasses.replace(self._job, options=options, known=known.name if known else None)
        write = times.timed("write", write)
        done, total = 0, len(todo)
        on_progress(0, total)
        try:
            for files, chunk in self._results(job, todo, chunk_size):
                times.decode += chunk.decode_seconds
                times.inference += chunk.inference_seconds
                write(_batch(chunk, embedded, on_skip))
                done += len(files)
                on_progress(done, total)
        finally:
            if known is not None:
                try:
                    known.delete()
                except Exception:  # noqa: BLE001 - the scheduler may be gone; it took the variable along
                    pass

    def _results(self, job: Job, todo: list[FoundFile], chunk_size: int) -> Iterator[tuple[list[FoundFile], Chunk]]:
        """Each chunk of ``todo`` with its result, as they finish, with a bounded number in
        flight. A chunk whose workers keep dying (Dask gives up after its
        ``allowed-failures``) is split into one task per file. A file whose own task Dask
        gives up on may only have been queued on the worker beside the file that killed it,
        so it is run again once nothing else is in flight: only a file that kills its worker
        with no other task in the cluster gets an error of its own. With no worker left, the
        tasks wait on the scheduler for new ones (a batch system restarting them) for up to
        ``NO_WORKERS_SECONDS``, then the run stops."""
        from distributed import wait
        from distributed.scheduler import KilledWorker

        chunks = iter([todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)])
        window = max(4, 3 * self.threads)  # enough queued to keep every worker thread busy
        sent: dict[Any, list[FoundFile]] = {}
        # Dask blames every task on a worker that dies, so a lone file it gave up on may be
        # innocent; such files wait here and run one at a time, with nothing beside them
        probation: list[FoundFile] = []
        alone = None  # the future of the file on probation now running by itself

        def submit(files: list[FoundFile]) -> Any:
            fut = self.client.submit(embed_chunk, job, files, pure=False)
            sent[fut] = files
            return fut

        for files in itertools.islice(chunks, window):
            submit(files)
        try:
            idle_since = None
            while sent or probation:
                if not sent:  # every chunk is done (each result brings in the next): the suspects, alone
                    alone = submit([probation.pop(0)])
                try:
                    with self.client.as_current():  # wait() asks for the default client; not made ours globally
                        finished = wait(list(sent), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED").done
                except TimeoutError:  # tasks wait for workers forever: with none left, give up in time
                    idle_since = self._check_workers(idle_since)
                    continue
                except (OSError, CancelledError) as e:  # the scheduler or our connection to it went
                    raise self._lost(e) from None
                # "lost": computed on a worker that died before we fetched it; wait() counts it
                # as done, but its result() would block until it is computed again
                finished = {f for f in finished if f.status != "lost"}
                if not finished:
                    idle_since = self._check_workers(idle_since)
                    time.sleep(POLL_SECONDS)
                    continue
                idle_since = None
                for fut in finished:
                    files = sent.pop(fut)
                    try:
                        chunk = self._fetch(fut)
                        if chunk is None:  # lost since wait() saw it done: computed again, waited for again
                            sent[fut] = files
                            continue
                    except KilledWorker:
                        if fut is alone:  # it killed its worker with no other task in the cluster
                            chunk = Chunk([Read(files[0], error=WORKER_DIED)], None)
                        elif len(files) == 1:
                            probation.append(files[0])
                            chunk = None
                        else:  # one task per file, to find the one that kills its worker
                            for f in files:
                                submit([f])
                            continue
                    except (OSError, CancelledError) as e:
                        raise self._lost(e) from None
                    except LoadError:
                        raise
                    except Exception as e:  # a worker's own failure (the model, onnxruntime), not a file's
                        raise LoadError(f"a Dask worker failed: {type(e).__name__}: {first_line(e)}") from None
                    if chunk is not None:
                        yield files, chunk
                    nxt = next(chunks, None)
                    if nxt is not None:
                        submit(nxt)
        finally:
            for f in sent:
                f.cancel()

    def _fetch(self, fut: Any) -> Chunk | None:
        """A finished task's result, or None once it is "lost" (its worker died before we
        fetched it, perhaps after ``wait()`` said done; ``result()`` would then block until
        it is computed again, which without workers is never)."""
        timeout = FETCH_SECONDS
        while fut.status in ("finished", "error", "cancelled"):
            try:
                return fut.result(timeout=timeout)
            except TimeoutError:  # still "finished": a slow transfer; longer rather than again and again
                self._check_workers(None)  # (a scheduler that is gone raises)
                timeout *= 2
        return None

    def _check_workers(self, idle_since: float | None) -> float | None:
        """None while the cluster has workers, else since when it has had none (raising
        after ``NO_WORKERS_SECONDS``)."""
        try:
            if self.client.scheduler_info().get("workers"):
                return None
        except OSError as e:
            raise self._lost(e) from None
        now = time.monotonic()
        if idle_since is not None and now - idle_since > NO_WORKERS_SECONDS:
            raise self._no_workers()
        return idle_since if idle_since is not None else now

    def _no_workers(self) -> LoadError:
        return LoadError(f"the Dask cluster at {self.address} has had no workers for {NO_WORKERS_SECONDS:.0f} s; "
                         "what was written is kept: start workers and run the same command again to resume")

    def _lost(self, e: BaseException) -> LoadError:
        return LoadError(f"lost the Dask cluster at {self.address} ({first_line(e)}); "
                         "what was written is kept: run the same command again to resume")


def _batch(chunk: Chunk, embedded: set[str], on_skip: Callable[[str, str], None]) -> Batch:
    """A chunk as the writer's batch: new images (with their vectors), links to known bytes, errors."""
    new: dict[str, Pending] = {}
    vecs: list[np.ndarray] = []
    links: list[tuple[FoundFile, str]] = []
    errors: list[tuple[FoundFile, str]] = []
    rows = iter(chunk.vectors if chunk.vectors is not None else ())
    for r in chunk.reads:
        vec = next(rows) if r.decoded is not None else None
        if r.error:
            errors.append((r.found, r.error))
            on_skip(r.found.path, r.error)
        elif r.sha256 in new:
            new[r.sha256].files.append(r.found)
        elif r.sha256 in embedded or r.decoded is None:
            links.append((r.found, r.sha256))
        else:
            new[r.sha256] = Pending(r.sha256, r.found.size, r.decoded, [r.found])
            vecs.append(vec)
    vectors: Future = Future()
    vectors.set_result(np.stack(vecs) if vecs else None)
    return Batch(new, links, errors, vectors if vecs else None)
