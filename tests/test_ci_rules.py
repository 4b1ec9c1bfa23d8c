"""The suite cannot quietly shrink: run pytest itself (a subprocess on one real test) with
../shared or Chromium hidden. Under CI=true that is a failure naming what is missing;
elsewhere a skip with the same reason."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS_SHARED = "tests/test_load.py::test_rerun_skips_unchanged"
NEEDS_BROWSER = "tests/test_map_browser.py::test_unknown_layout_is_a_404_page"


def pytest_run(tmp_path: Path, test: str, ci: bool, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "IMAGECLUST_SHARED", "CHROMIUM")}
    env.update(env_extra)
    if ci:
        env["CI"] = "true"
    # Its own --basetemp: a nested run must not prune this run's temporary folders.
    return subprocess.run([sys.executable, "-m", "pytest", "-rs", "-q", "-p", "no:cacheprovider",
                           "--basetemp", str(tmp_path / "inner"), test],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("ci", [True, False])
def test_without_shared(tmp_path, ci):
    missing = tmp_path / "no-shared-here"
    r = pytest_run(tmp_path, NEEDS_SHARED, ci, IMAGECLUST_SHARED=str(missing))
    what = f"{missing}/models/efficientnet-lite0 is absent"
    assert what in r.stdout, r.stdout[-3000:]
    if ci:
        assert r.returncode == 1 and "1 error" in r.stdout and "CI=true, so this skip is a failure" in r.stdout
    else:
        assert r.returncode == 0 and "1 skipped" in r.stdout


@pytest.mark.parametrize("ci", [True, False])
def test_without_chromium(tmp_path, ci):
    r = pytest_run(tmp_path, NEEDS_BROWSER, ci, CHROMIUM=str(tmp_path / "no-chromium"))
    what = f"CHROMIUM={tmp_path / 'no-chromium'} is not an executable file"
    assert what in r.stdout, r.stdout[-3000:]
    if ci:
        assert r.returncode == 1 and "1 error" in r.stdout and "CI=true, so this skip is a failure" in r.stdout
    else:
        assert r.returncode == 0 and "1 skipped" in r.stdout


def test_chromium_lookup_order(tmp_path, monkeypatch):
    """$CHROMIUM first, then /usr/bin/chromium, then `chromium` on PATH (one lookup for the
    tests, bench/map.py and .ci/run, which calls `python tests/browser.py`)."""
    import browser

    fake = tmp_path / "bin" / "chromium"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert browser.find_chromium() == (str(fake), "")
    monkeypatch.delenv("CHROMIUM")
    monkeypatch.setattr(browser, "DEFAULT_CHROMIUM", str(tmp_path / "absent"))
    monkeypatch.setenv("PATH", str(fake.parent))
    assert browser.find_chromium() == (str(fake), "")
    monkeypatch.setenv("PATH", str(tmp_path))
    path, why = browser.find_chromium()
    assert path is None and "not on PATH" in why
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "browser.py")], capture_output=True, text=True,
                       env={**os.environ, "CHROMIUM": str(tmp_path / "absent")})
    assert r.returncode == 1 and "is not an executable file" in r.stderr
