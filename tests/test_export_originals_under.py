"""The ZIP and folder exports hold an image's original only when its REAL path lies under
``originals_under`` (export/archive.py; the web download passes the plugin's
``originals_root``): a symlink inside the allowed folder that points outside it, to a file
with the very bytes the database recorded, is not exported as an original; the image's
stored thumbnail stands in, and the manifest says why.

Real images loaded with the tiny CLIP, clustered; real symlinks (a file and a folder)."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import sqlite3
import zipfile

import pytest
from imagefactory import photo_folder
from test_plugin_pages import make_ds

from datasette_imageclust import pipeline
from datasette_imageclust.store.connection import close, connect

LINKED_FILE = "img0001.jpg"  # allowed/img0001.jpg -> outside/img0001.jpg
LINKED_DIR = "more"  # allowed/more -> outside/more (holds img0004.jpg, img0005.jpg)
INSIDE = {"img0000.jpg", "img0002.jpg", "img0003.jpg"}  # real files under allowed/
THUMB_NOTE = "originals are not served from here: its stored thumbnail"


@pytest.fixture(scope="module")
def tree(tmp_path_factory, tiny_clip) -> dict:
    top = tmp_path_factory.mktemp("under")
    allowed, outside = top / "allowed", top / "outside"
    photo_folder(allowed, 4)
    photo_folder(allowed / LINKED_DIR, 2, start=4)
    db_path = str(top / "photos.db")
    assert pipeline.load(db_path, [str(allowed)], tiny_clip).new == 6
    db = connect(db_path)
    pipeline.cluster_images(db, method="kmeans", name="k2", n_clusters=2, small="keep", labels=(),
                            duplicates=False, layout=False)
    close(db)
    # After loading, the same bytes move outside and a link stays at the recorded path:
    # the recorded sha256 still matches what the link reads.
    outside.mkdir()
    shutil.move(allowed / LINKED_FILE, outside / LINKED_FILE)
    os.symlink(outside / LINKED_FILE, allowed / LINKED_FILE)
    shutil.move(allowed / LINKED_DIR, outside / LINKED_DIR)
    os.symlink(outside / LINKED_DIR, allowed / LINKED_DIR, target_is_directory=True)
    with sqlite3.connect(db_path) as c:
        names = {os.path.basename(p): (i, s) for p, i, s in c.execute(
            "SELECT f.path, f.image_id, i.sha256 FROM files f JOIN images i ON i.id = f.image_id")}
        thumbs = {i: bytes(d) for i, d in c.execute("SELECT image_id, data FROM thumbnails")}
    assert set(names) == INSIDE | {LINKED_FILE, "img0004.jpg", "img0005.jpg"}
    return {"db": db_path, "allowed": allowed, "outside": outside, "names": names, "thumbs": thumbs}


def _check(tree: dict, manifest: list[dict], read, original: str = "original") -> None:
    """Originals for the three real files under allowed/; thumbnails for the three reached
    through links pointing outside."""
    by_name = {os.path.basename(m["original"]): m for m in manifest}
    assert set(by_name) == set(tree["names"])
    for name, m in by_name.items():
        iid, sha = tree["names"][name]
        assert int(m["image_id"]) == iid
        data = read(m["file"])
        if name in INSIDE:
            assert m["source"] == original, (name, m)
            assert data == (tree["allowed"] / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sha
        else:
            assert m["source"] == "thumbnail", (name, m)
            assert m["note"] == THUMB_NOTE
            assert m["file"].endswith(".thumbnail.webp")  # the stored thumbnails are WebP
            assert data == tree["thumbs"][iid]
            assert hashlib.sha256(data).hexdigest() != sha  # not the original's bytes


def _manifest(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_zip_export_leaves_out_originals_linked_from_outside(tree, tmp_path):
    out = tmp_path / "photos.zip"
    db = connect(tree["db"])
    result = pipeline.export(db, "zip", out, originals_under=str(tree["allowed"]))
    close(db)
    assert (result["originals"], result["thumbnails"], result["missing"]) == (3, 3, 0)
    with zipfile.ZipFile(out) as z:
        _check(tree, _manifest(z.read("manifest.csv").decode("utf-8")), z.read)


@pytest.mark.parametrize("symlink", [False, True])
def test_the_folder_export_leaves_out_originals_linked_from_outside(tree, tmp_path, symlink):
    out = tmp_path / "photos"
    db = connect(tree["db"])
    result = pipeline.export(db, "folder", out, symlink=symlink, originals_under=str(tree["allowed"]))
    close(db)
    assert (result["originals"], result["thumbnails"], result["missing"]) == (3, 3, 0)
    manifest = _manifest((out / "manifest.csv").read_text("utf-8"))
    _check(tree, manifest, lambda f: (out / f).read_bytes(), "symlink" if symlink else "original")
    outside = os.path.realpath(tree["outside"])
    for m in manifest:  # nothing in the folder leads outside, not even a link
        assert not os.path.realpath(out / m["file"]).startswith(outside + os.sep), m


@pytest.mark.asyncio
async def test_the_web_zip_download_leaves_out_originals_linked_from_outside(tree):
    # The caller: /-/imageclust/export?format=zip passes the plugin's originals_root.
    ds = make_ds([tree["db"]], plugin={"originals_root": str(tree["allowed"])})
    r = await ds.client.get("/photos/-/imageclust/export?format=zip")
    assert r.status_code == 200, r.text[:300]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        _check(tree, _manifest(z.read("manifest.csv").decode("utf-8")), z.read)


def test_the_allowed_folder_itself_may_be_reached_through_a_link(tree, tmp_path):
    # The rule compares real paths on both sides: originals_under given as a link to
    # allowed/ still admits the real files in it (and still not the links leading out).
    alias = tmp_path / "alias"
    os.symlink(tree["allowed"], alias, target_is_directory=True)
    out = tmp_path / "photos.zip"
    db = connect(tree["db"])
    result = pipeline.export(db, "zip", out, originals_under=str(alias))
    close(db)
    with zipfile.ZipFile(out) as z:
        _check(tree, _manifest(z.read("manifest.csv").decode("utf-8")), z.read)
    assert result["originals"] == 3
