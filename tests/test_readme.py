"""Every ```python block of the README runs as written, against a small database of real
images made here, in a folder laid out as the examples assume: ``photos.db`` and
``photos/`` in the current folder, the stand-in model at ``../shared/models/``."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


BLOCKS = python_blocks()


def test_the_examples_use_the_pipeline_api():
    assert len(BLOCKS) >= 3
    assert any("from datasette_imageclust import pipeline" in b for b in BLOCKS)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, stand_in_model, tux_dir) -> Path:
    from datasette_imageclust import pipeline

    root = tmp_path_factory.mktemp("readme")
    (root / "shared").symlink_to(Path(stand_in_model).resolve().parent.parent)  # ../shared as in the README
    work = root / "work"
    (work / "photos").mkdir(parents=True)
    images = sorted(p for p in tux_dir.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for f in images[:50]:  # image ids 1..50: the examples' image 42 exists
        dest = work / "photos" / f.relative_to(tux_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    summary = pipeline.load(str(work / "photos.db"), [str(work / "photos")], stand_in_model)
    assert summary.errors == 0 and summary.new >= 42
    return work


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_python_example_runs(workdir, monkeypatch, number):
    monkeypatch.chdir(workdir)
    exec(compile(BLOCKS[number], f"README.md, python example {number + 1}", "exec"), {"__name__": "readme"})
