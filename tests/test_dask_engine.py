"""``load --engine dask`` on a real local Dask cluster (a scheduler and two worker
processes started with Dask's CLI): the same database as a local run, and every
guarantee of ``load`` when workers or the driver die."""
from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from PIL import Image

from dask_cluster import LocalDask, need_dask
from datasette_imageclust import pipeline
from datasette_imageclust.ingest import dask_engine, dask_worker
from datasette_imageclust.ingest.loader import LoadError
from dbrows import rows
from dbsnapshot import assert_same
from held_load import HELD

HELD_LOAD = Path(__file__).parent / "held_load.py"
BATCH = 4
N_IMAGES = 40


HANG_SECONDS = 300
HANG_LOG = Path(tempfile.gettempdir()) / "imageclust-test-hang.log"  # .ci/run prints it if the run died


@pytest.fixture(autouse=True)
def no_hang():
    """A cluster test that hangs (workers that never come back) fails after 5 minutes with
    every thread's stack, instead of holding CI until its limit. One that a signal cannot
    interrupt ends the test process a minute later, the stacks in HANG_LOG (pytest holds
    stderr, where they would be lost)."""
    def expire(signum, frame):
        stacks = "".join(f"\nthread {ident}:\n" + "".join(traceback.format_stack(f))
                         for ident, f in sys._current_frames().items())
        raise TimeoutError(f"the test hung for {HANG_SECONDS} s; every thread's stack:{stacks}")

    before = signal.signal(signal.SIGALRM, expire)
    signal.alarm(HANG_SECONDS)
    with open(HANG_LOG, "w") as log:
        faulthandler.dump_traceback_later(HANG_SECONDS + 60, exit=True, file=log)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
            signal.alarm(0)
            signal.signal(signal.SIGALRM, before)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tux_dir):
    """Real images (every category), a copy of one, a broken file and a name that is not UTF-8."""
    d = tmp_path_factory.mktemp("photos")
    images = sorted(p for p in tux_dir.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    step = max(1, len(images) // N_IMAGES)
    for i, p in enumerate(images[::step][:N_IMAGES]):
        shutil.copyfile(p, d / f"{i:03d}-{p.name}")
    first = sorted(d.iterdir())[0]
    shutil.copyfile(first, d / "copy-of-first.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with open(os.path.join(os.fsencode(d), b"caf\xe9.png"), "wb") as f:
        f.write(images[-1].read_bytes())
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, folder, stand_in_model):
    db = tmp_path_factory.mktemp("ref") / "local.db"
    s = pipeline.load(db, [str(folder)], stand_in_model, batch_size=BATCH)
    assert s.new == N_IMAGES + 1 and s.errors == 1 and s.duplicates == 1
    return db


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need_dask()
    with LocalDask(tmp_path_factory.mktemp("dask"), workers=2) as c:
        yield c


def load(db, folder, model, **kw):
    return pipeline.load(db, [str(folder)], model, batch_size=BATCH, threads=1, engine="dask", **kw)


def test_same_database_as_a_local_run(tmp_path, folder, stand_in_model, reference, cluster):
    db = tmp_path / "dask.db"
    s = load(db, folder, stand_in_model, address=cluster.address)
    assert (s.new, s.duplicates, s.errors) == (N_IMAGES + 1, 1, 1)
    assert s.engine == "dask (2 workers)"
    assert s.inference_seconds > 0 and s.decode_seconds > 0  # measured on the workers, reported here
    assert_same(reference, db)
    again = load(db, folder, stand_in_model, address=cluster.address)  # incremental: nothing to send
    assert (again.new, again.unchanged, again.errors) == (0, N_IMAGES + 2, 1)  # the broken file is tried again
    assert_same(reference, db)


def test_without_an_address_a_local_cluster(tmp_path, folder, stand_in_model, reference, monkeypatch):
    """No --address and no DASK_SCHEDULER_ADDRESS: load starts (and stops) a cluster of
    one worker process per core on this machine."""
    need_dask()
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    said = []
    db = tmp_path / "dask.db"
    s = pipeline.load(db, [str(folder)], stand_in_model, batch_size=BATCH, engine="dask", on_status=said.append)
    cores = len(os.sched_getaffinity(0))
    assert s.engine == f"dask ({cores} workers)" and "starting a local Dask cluster" in said
    assert any(line.startswith(f"dask: {cores} workers, {cores} threads, at tcp://127.0.0.1:") for line in said)
    assert_same(reference, db)


def test_cli_reports_the_cluster(tmp_path, folder, stand_in_model, reference, cluster):
    db = tmp_path / "cli.db"
    r = subprocess.run([sys.executable, "-m", "datasette_imageclust", "load", str(db), str(folder), "--model",
                        stand_in_model, "--engine", "dask", "--address", cluster.address, "--batch-size", str(BATCH),
                        "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (f"dask: 2 workers, 2 threads, at {cluster.address}, running on CPUExecutionProvider; "
            f"model {stand_in_model} (fp32)") in r.stderr
    assert '"engine": "dask (2 workers)"' in r.stdout and "Traceback" not in r.stderr
    assert_same(reference, db)


def test_a_worker_killed_mid_run(tmp_path, folder, stand_in_model, reference):
    """Dask runs the dead worker's chunks again on the other one: the run completes, and
    the database is the local run's."""
    with LocalDask(tmp_path, workers=2) as c:
        killed = []

        def progress(done, total):
            if done and not killed:
                assert done < total  # mid-run, whatever the machine's speed: 11 chunks
                c.kill_worker(0)
                killed.append(done)

        db = tmp_path / "dask.db"
        s = load(db, folder, stand_in_model, address=c.address, on_progress=progress)
        assert killed and s.new == N_IMAGES + 1 and c.alive() == 1
    assert_same(reference, db)


@pytest.mark.parametrize("known", [False, True])
def test_every_worker_killed_then_resumed(tmp_path, folder, stand_in_model, reference, monkeypatch, known):
    """With no worker left the run stops with one line (not a hang), keeps what it wrote,
    and a re-run on new workers finishes the job. ``known``: the database already holds an
    image, so the workers held its digest (sent once, lost with them, sent again)."""
    monkeypatch.setattr(dask_engine, "NO_WORKERS_SECONDS", 3.0)
    db = tmp_path / "dask.db"
    if known:
        pipeline.load(db, [str(sorted(Path(folder).glob("0*"))[5])], stand_in_model)
    with LocalDask(tmp_path, workers=2) as c:
        written_chunks = []

        def progress(done, total):
            if not done:
                return
            written_chunks.append(done)
            if len(written_chunks) == 1:
                time.sleep(3)  # every chunk in flight finishes meanwhile: the next wait() sees several done
            elif len(written_chunks) == 2:
                # between two results of that set: the rest are "lost" with their workers, unfetched
                # (result() would wait for them to be computed again: with no workers, forever)
                c.kill_worker(0)
                c.kill_worker(1)

        with pytest.raises(LoadError, match="no workers for 3 s; what was written is kept"):
            load(db, folder, stand_in_model, address=c.address, on_progress=progress)
        written = rows(str(db), "select count(*) from images")[0][0]
        assert int(known) < written < N_IMAGES + 1
        c.add_workers(2)
        s = load(db, folder, stand_in_model, address=c.address)
        assert s.new == N_IMAGES + 1 - written and s.unchanged > 0
    assert_same(reference, db)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_driver_resumes(tmp_path, folder, stand_in_model, reference, cluster, sig):
    """Kill or Ctrl-C the process that writes SQLite (held after two committed chunks, so
    it has not finished whatever the machine's speed): the re-run completes, with no duplicates."""
    db = tmp_path / "dask.db"
    args = ["load", str(db), str(folder), "--model", stand_in_model, "--engine", "dask", "--address",
            cluster.address, "--batch-size", str(BATCH)]
    p = subprocess.Popen([sys.executable, str(HELD_LOAD), "2", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen = []
    for line in p.stderr:
        seen.append(line)
        if HELD in line:
            break
    assert p.poll() is None, "the load ended before it was held: " + "".join(seen)[-2000:]
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert p.returncode == 130 and "run the same command again to resume" in err and "Traceback" not in err
    partial = rows(str(db), "select count(*) from images")[0][0]
    assert 0 < partial < N_IMAGES + 1
    r = subprocess.run([sys.executable, "-m", "datasette_imageclust", *args], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same(reference, db)


@pytest.mark.parametrize("known", [False, True])
def test_a_file_that_kills_its_worker(tmp_path, folder, stand_in_model, reference, known):
    """A file whose decoding kills the worker (a decoder crash, the OOM killer) gets an
    error row of its own; its chunk's other files load. The workers run under nannies,
    which restart them, and Dask gives up on a task after one death."""
    d = tmp_path / "photos"
    shutil.copytree(folder, d)
    shutil.copyfile(d / "broken.jpg", d / "broken-too.jpg")
    # a real image no other file holds (so it is decoded): only its name makes it deadly
    im = Image.open(sorted(Path(folder).glob("0*"))[3]).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    im.save(d / "zz-poison.png")
    with LocalDask(tmp_path, workers=2, nanny=True, preload="dask_poison",
                   env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"}) as c:
        db = tmp_path / "dask.db"
        if known:  # the workers also fetch the digests of the images already embedded
            pipeline.load(db, [str(sorted(d.glob("0*"))[0])], stand_in_model)
        s = load(db, d, stand_in_model, address=c.address)
    errors = dict(rows(str(db), "select path, reason from errors"))
    assert errors[str(d / "zz-poison.png")] == dask_engine.WORKER_DIED
    assert errors[str(d / "broken-too.jpg")] == errors[str(d / "broken.jpg")]
    assert s.errors == 3 and s.new == N_IMAGES + 1 - known


def test_files_queued_beside_a_deadly_one_are_not_blamed(tmp_path, folder, stand_in_model):
    """Dask blames every task on a worker that dies, not only the one that killed it. One
    worker that takes every task at once (worker-saturation inf), one file per task and the
    deadly file first: the files after it wait on that worker each time it dies, so Dask
    gives up on them too. They load all the same; only the deadly file gets an error row.
    (Before, they were errors too, unless they happened to be sent again before it: a CI
    run saw one.)"""
    d = tmp_path / "photos"
    shutil.copytree(folder, d)
    im = Image.open(sorted(Path(folder).glob("0*"))[3]).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    im.save(d / "0-poison.png")  # sorts first, so it is the first task and has followers queued
    with LocalDask(tmp_path, workers=1, nanny=True, preload="dask_poison",
                   env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
                        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "inf"}) as c:
        db = tmp_path / "dask.db"
        s = pipeline.load(db, [str(d)], stand_in_model, batch_size=1, threads=1, engine="dask",
                          address=c.address)
    errors = dict(rows(str(db), "select path, reason from errors"))
    assert errors == {str(d / "0-poison.png"): dask_engine.WORKER_DIED,
                      str(d / "broken.jpg"): errors[str(d / "broken.jpg")]}
    assert errors[str(d / "broken.jpg")] != dask_engine.WORKER_DIED
    assert (s.new, s.duplicates, s.errors) == (N_IMAGES + 1, 1, 2)


def test_probe_says_what_a_worker_cannot_see(tmp_path, stand_in_model):
    from datasette_imageclust.models import file_sha256, find_model

    files = find_model(stand_in_model)
    job = dask_worker.Job(files, file_sha256(files.vision), "cpu", 1, None)
    p = dask_worker.probe(job, str(tmp_path / "not-on-this-worker"))
    assert p.error.startswith("cannot see ") and "filesystem the workers share" in p.error
    ok = dask_worker.probe(job, str(tmp_path))
    assert ok.error is None and ok.dimensions == 1280
    wrong = dask_worker.probe(dask_worker.Job(files, "0" * 64, "cpu", 1, None), None)
    assert "differs from the driver's" in wrong.error


def test_workers_without_this_package_or_on_another_version(tmp_path, folder, stand_in_model):
    """Workers must run the driver's version of the package: one without it, then one on an
    old release, each stops the run in one line before the database exists."""
    db = tmp_path / "x.db"
    with LocalDask(tmp_path, workers=0, preload="dask_no_package") as cluster:
        cluster.add_workers(1)
        with pytest.raises(LoadError) as e:
            pipeline.load(db, [str(folder)], stand_in_model, engine="dask", address=cluster.address)
        assert "cannot run datasette-imageclust (ModuleNotFoundError" in str(e.value)
        assert f"install version {dask_worker.version()} on every worker" in str(e.value)
        assert "\n" not in str(e.value) and not db.exists()
        cluster.kill_worker(0)
        cluster.wait_for(0)
        cluster.preload = "dask_old_version"
        cluster.add_workers(1)
        with pytest.raises(LoadError) as e:
            pipeline.load(db, [str(folder)], stand_in_model, engine="dask", address=cluster.address)
        assert f"has datasette-imageclust 0.0.1, this machine {dask_worker.version()}" in str(e.value)
        assert dask_worker.version() != "0.0.1" and not db.exists()


def test_known_digests():
    shas = [f"{i:064x}" for i in (0, 1, 2 ** 200, 255 << 8)]
    known = dask_worker.Known(shas)
    assert all(s in known for s in shas)
    assert f"{3:064x}" not in known and f"{256:064x}" not in known and "" not in dask_worker.Known(())
    again = dask_worker.Known(packed=known.packed())  # as the workers get it from the scheduler
    assert all(s in again for s in shas) and f"{3:064x}" not in again


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "datasette_imageclust", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("extra, message", [
    (["--address", "tcp://127.0.0.1:9"], "--address goes with --engine dask"),
    (["--engine", "dask", "--decode-workers", "2"], "--decode-workers goes with the local engine"),
    (["--engine", "dask", "--address", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    (["--engine", "ray"], "Invalid value for '--engine'"),
])
def test_one_line_errors(tmp_path, folder, stand_in_model, extra, message):
    need_dask()
    db = tmp_path / "x.db"
    r = cli("load", str(db), str(folder), "--model", stand_in_model, *extra)
    assert r.returncode in (1, 2) and message in r.stderr and "Traceback" not in r.stderr
    assert not db.exists()  # refused before the database was made


def test_from_export_refuses_the_engine(tmp_path, stand_in_model):
    export = tmp_path / "posts.csv"
    export.write_text("id,image_url\n1,http://127.0.0.1:9/a.jpg\n")
    r = cli("load", str(tmp_path / "x.db"), "--from", str(export), "--model", stand_in_model, "--engine", "dask")
    assert r.returncode == 1 and "--engine goes with folders (PATH...), not --from" in r.stderr


def test_without_dask_installed(tmp_path, folder, stand_in_model):
    """An environment without the extra: one line naming the extra to install."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['distributed'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    db = tmp_path / "x.db"
    r = cli("load", str(db), str(folder), "--model", stand_in_model, "--engine", "dask", env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith(
        "--engine dask needs Dask's distributed scheduler: pip install 'datasette-imageclust[dask]'")
    assert not db.exists()
