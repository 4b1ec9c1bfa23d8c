"""Shared by the real-browser tests and bench/map.py: Debian's Chromium via Playwright,
and a real `datasette` server on a free 127.0.0.1 port."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out on this closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def need_browser() -> None:
    """Skip (with the reason) where Chromium or Playwright is missing."""
    import pytest

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium): browser tests skipped")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def datasette_server(*args: str, timeout: float = 60) -> Iterator[str]:
    """Run `datasette ARGS` on a free port until the block ends; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "datasette", *args, "-h", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("datasette did not start: " + proc.stderr.read().decode()[-2000:])
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def chromium() -> Iterator["object"]:
    """A headless Chromium browser (Playwright), closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()
