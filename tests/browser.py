"""Shared by the real-browser tests, bench/map.py and .ci/run: finding Chromium, driving
it with Playwright, and a real `datasette` server on a free 127.0.0.1 port.

As a script, ``python tests/browser.py`` prints the Chromium the tests will use (exit 1,
saying what is missing, when there is none); ``--launch`` also starts it through Playwright.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Iterator

DEFAULT_CHROMIUM = "/usr/bin/chromium"  # Debian's package
# Without the background-networking flags Chromium keeps dialling out on this closed network.
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def find_chromium() -> tuple[str | None, str]:
    """(path, "") of the Chromium to use, or (None, what is missing): $CHROMIUM if set,
    else /usr/bin/chromium, else `chromium` on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env, ""
        return None, f"CHROMIUM={env} is not an executable file"
    if os.access(DEFAULT_CHROMIUM, os.X_OK):
        return DEFAULT_CHROMIUM, ""
    found = shutil.which("chromium")
    if found:
        return found, ""
    return None, (f"no Chromium: {DEFAULT_CHROMIUM} is absent and `chromium` is not on PATH "
                  f"(apt-get install chromium, or set CHROMIUM=/path/to/chromium)")


def missing_browser() -> str | None:
    """What keeps the browser tests from running, or None."""
    path, why = find_chromium()
    if path is None:
        return why
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def need_browser() -> None:
    """Skip (with the reason) where Chromium or Playwright is missing; under CI=true the
    skip is a failure (conftest.py)."""
    import pytest

    why = missing_browser()
    if why:
        pytest.skip(f"browser tests need Chromium and Playwright: {why}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def datasette_server(*args: str, timeout: float = 60, env: dict | None = None) -> Iterator[str]:
    """Run `datasette ARGS` (in environment ``env``, default this one) on a free port until
    the block ends; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "datasette", *args, "-h", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
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
        path, why = find_chromium()
        if path is None:
            raise RuntimeError(why)
        b = pw.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def editor_servers(db: str, folder, secret: str) -> Iterator[dict]:
    """Two real `datasette` servers for edit tests: ``db`` writable and an immutable copy
    (``-i``), both granting ``imageclust-edit`` to the actor ``editor`` (cookies signed with
    ``secret``), and a Chromium. Yields {"url", "frozen", "db", "browser"}."""
    import json
    from pathlib import Path

    import datasette

    flag = "-m" if datasette.__version__.startswith("0.") else "-c"  # 0.65 metadata, 1.0 config
    frozen = Path(folder) / "frozen" / Path(db).name
    frozen.parent.mkdir()
    shutil.copy(db, frozen)
    conf = Path(folder) / "conf.json"
    conf.write_text(json.dumps({"permissions": {"imageclust-edit": {"id": "editor"}}}))
    env = {**os.environ, "DATASETTE_SECRET": secret}
    with datasette_server(db, flag, str(conf), env=env) as url, \
            datasette_server("-i", str(frozen), flag, str(conf), env=env) as frozen_url:
        with chromium() as b:
            yield {"url": url, "frozen": frozen_url, "db": db, "browser": b}


def main(argv: list[str]) -> int:
    why = missing_browser() if "--launch" in argv else find_chromium()[1]
    if why:
        print(why, file=sys.stderr)
        return 1
    if "--launch" in argv:
        with chromium() as b:
            page = b.new_page()
            page.set_content("<p>ok</p>")
            assert page.inner_text("p") == "ok"
    print(find_chromium()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
