"""Run the real `imageclust` CLI, but hold a `load` at a known point, so a test can
interrupt it there (no race with the load finishing first).

    python tests/held_load.py BATCHES imageclust-args...

After BATCHES batches are committed, the writer of the next batch (inside its open
transaction) prints ``held after BATCHES batches`` to stderr and waits until it is
signalled. Only the wait is added: scanning, decoding, inference, the transactions and
the CLI's interrupt handling are the real ones.
"""
from __future__ import annotations

import sys
import threading

from datasette_imageclust.store import vectors
from datasette_imageclust.cli import cli

HELD = "held after"


def hold_after(batches: int) -> None:
    put = vectors.put
    calls = [0]

    def held_put(*args, **kw):
        if calls[0] == batches:
            print(f"{HELD} {batches} batches", file=sys.stderr, flush=True)
            threading.Event().wait()  # until a signal: SIGINT raises KeyboardInterrupt here
        calls[0] += 1
        return put(*args, **kw)

    vectors.put = held_put


if __name__ == "__main__":
    hold_after(int(sys.argv[1]))
    cli(sys.argv[2:], prog_name="imageclust")
