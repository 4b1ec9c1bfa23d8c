"""Shared fixtures: real images and models from ../shared, a tiny CLIP built on the fly.

Under ``CI=true`` (as ``.ci/run`` sets) a skip is a failure: a CI run without ../shared,
Chromium or an extra fails, saying what is missing, instead of quietly running half the
suite. Elsewhere those tests skip with the reason (``-rs`` shows it).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tinyclip import SHARED, make_tiny_clip

STAND_IN = SHARED / "models" / "efficientnet-lite0"
TUX = SHARED / "imagesets" / "tuxpaint-stamps"
TUX_DUPES = SHARED / "imagesets" / "tuxpaint-stamps-dupes"


CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# A test run started in the background without job control (nohup, `cmd &` in a script)
# inherits SIGINT ignored, and so would every process a test starts, which then shrugs off
# the Ctrl-C the interrupt tests send: give this process Python's own handler back (a
# handler, unlike "ignored", is reset to the default in each child).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def need(path: Path) -> Path:
    """Skip (with the reason printed by -rs) when ../shared material is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests need ../shared beside the checkout "
                    f"(or IMAGECLUST_SHARED=/path/to/shared)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # The one home of the CI rule: whatever skipped (need(), need_browser(), importorskip,
    # a skip marker) fails instead, with the skip's reason as the message.
    outcome = yield
    rep = outcome.get_result()
    if CI and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"CI=true, so this skip is a failure: {reason}"


@pytest.fixture(scope="session")
def stand_in_model() -> str:
    return str(need(STAND_IN))


@pytest.fixture(scope="session")
def tux_dir() -> Path:
    return need(TUX)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> str:
    return str(make_tiny_clip(tmp_path_factory.mktemp("tinyclip")))


@pytest.fixture(scope="session")
def tiny_sentence(tmp_path_factory) -> str:
    from synthtext import WORDS as DESCRIPTION_WORDS
    from tinysentence import WORDS, make_tiny_sentence

    return str(make_tiny_sentence(tmp_path_factory.mktemp("tinysentence"), words=[*WORDS, *DESCRIPTION_WORDS]))


@pytest.fixture(scope="session")
def tux_db(tmp_path_factory, stand_in_model, tux_dir) -> str:
    """The 353 labelled tuxpaint stamps loaded with the real stand-in embedder (read-only use!)."""
    from datasette_imageclust.pipeline import load

    path = str(tmp_path_factory.mktemp("tux") / "tux.db")
    summary = load(path, [str(tux_dir)], stand_in_model)
    assert summary.new == 353 and summary.errors == 0
    return path


@pytest.fixture(scope="session")
def tiny_clip_db(tmp_path_factory, tiny_clip, tux_dir) -> str:
    """18 tuxpaint stamps (birds, coins, space: 6 each) loaded with the tiny CLIP, which has
    a text tower (read-only use: copy it to write)."""
    import shutil

    from datasette_imageclust.pipeline import load

    tmp = tmp_path_factory.mktemp("tinyclipdb")
    for cat in ("birds", "coins", "space"):
        (tmp / "imgs" / cat).mkdir(parents=True)
        for f in sorted((tux_dir / cat).iterdir())[:6]:
            shutil.copy(f, tmp / "imgs" / cat / f.name)
    path = str(tmp / "tiny.db")
    assert load(path, [str(tmp / "imgs")], tiny_clip).new == 18
    return path


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch):
    # Tests never reach the network: the Hub is unreachable here anyway.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def map_db(tmp_path_factory) -> str:
    """600 synthetic images in 12 clusters (labels with HTML in them), with a default
    clustering run, a layout and an atlas (read-only use!)."""
    from synthdb import make_map_db

    path = str(tmp_path_factory.mktemp("map") / "map.db")
    return make_map_db(path, 600, clusters=12, thumb_px=48, distinct_thumbs=120,
                       label_prefix='<img src=x onerror="window.__xss=1">')
