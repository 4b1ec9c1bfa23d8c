"""Killing `imageclust load` at any moment loses at most the batch in flight; a re-run finishes the job."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from datasette_imageclust.store import connection as dbmod
from dbsnapshot import assert_same
from held_load import HELD
from imagefactory import photo_folder

N = 120
BATCH = 4
HELD_LOAD = Path(__file__).parent / "held_load.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    photo_folder(d, N, size=(480, 360))
    return d


def cmd(db, folder, model, *extra):
    return [sys.executable, "-m", "datasette_imageclust", "load", str(db), str(folder),
            "--model", model, "--batch-size", str(BATCH), *extra]


def count(path) -> int:
    try:
        d = dbmod.connect(path, readonly=True)
    except Exception:
        return 0
    try:
        return d.execute("select count(*) from images").fetchone()[0]
    except Exception:
        return 0
    finally:
        d.conn.close()


def kill_midway(db, folder, model, sig, batches=2):
    """Start a load held after ``batches`` committed batches (tests/held_load.py), and
    signal it there: it cannot have finished, whatever the machine's speed."""
    args = cmd(db, folder, model)[3:]  # the same CLI arguments, through the holding wrapper
    p = subprocess.Popen([sys.executable, str(HELD_LOAD), str(batches), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in p.stderr:  # progress bar lines first; the wrapper's line when it holds
        seen.append(line)
        if HELD in line:
            break
    assert p.poll() is None, "the load ended before it was held: " + "".join(seen)[-2000:]
    assert count(db) == batches * BATCH  # the committed batches, the next one in flight
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    return p.returncode, "".join(seen) + err


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, folder, stand_in_model, sig):
    reference = tmp_path / "ref.db"
    subprocess.run(cmd(reference, folder, stand_in_model), check=True, capture_output=True)
    db = tmp_path / "x.db"
    code, err = kill_midway(db, folder, stand_in_model, sig)
    if sig == signal.SIGINT:
        assert code == 130 and "resume" in err
    else:
        assert code == -signal.SIGKILL
    partial = count(db)
    assert partial == 2 * BATCH  # the batch in flight was rolled back, nothing else lost
    r = subprocess.run(cmd(db, folder, stand_in_model, "--json"), check=True, capture_output=True, text=True)
    import json

    summary = json.loads(r.stdout)
    assert summary["new"] == N - partial and summary["unchanged"] == partial and summary["errors"] == 0
    assert_same(reference, db)
    assert not os.path.exists(str(db) + "-wal") or os.path.getsize(str(db) + "-wal") == 0
