"""A corpus of awkward and broken files: each is converted correctly or recorded and skipped."""
from __future__ import annotations

import errno
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import paths
from datasette_imageclust.ingest import stages
from datasette_imageclust.ingest.scan import FoundFile
from datasette_imageclust.pipeline import load
from imagefactory import jpeg_bytes, photo, save


def make_corpus(d):
    """Awkward-but-valid images (``good``) and broken files (``bad``) in folder ``d``."""
    good = {}
    # --- awkward but valid: must load ---
    good["cmyk.jpg"] = save(photo(seed=1).convert("CMYK"), d / "cmyk.jpg", quality=90)
    arr16 = (np.linspace(0, 65535, 200 * 150).reshape(150, 200)).astype(np.uint16)
    good["gray16.png"] = save(Image.fromarray(arr16), d / "gray16.png")
    pal = photo(seed=2).convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.info["transparency"] = 0
    good["palette_alpha.png"] = save(pal, d / "palette_alpha.png", transparency=0)
    rgba = photo(seed=3).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    good["rgba.webp"] = save(rgba, d / "rgba.webp", "WEBP")
    frames = [photo(seed=s) for s in (4, 5, 6)]
    good["animated.gif"] = d / "animated.gif"
    frames[0].save(good["animated.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    good["gray.tif"] = save(photo(seed=7).convert("L"), d / "gray.tif", "TIFF")
    good["plain.bmp"] = save(photo(seed=8), d / "plain.bmp", "BMP")
    good["la.png"] = save(photo(seed=9).convert("LA"), d / "la.png")
    good["UPPER.JPG"] = save(photo(seed=10), d / "UPPER.JPG", "JPEG")
    good["tiny.png"] = save(photo(3, 2, seed=11), d / "tiny.png")
    good["photo.avif"] = save(photo(seed=16), d / "photo.avif", "AVIF")
    # --- broken: must be recorded and skipped ---
    bad = {}
    bad["empty.jpg"] = d / "empty.jpg"
    bad["empty.jpg"].write_bytes(b"")
    bad["text.jpg"] = d / "text.jpg"
    bad["text.jpg"].write_text("this is not an image\n" * 20)
    full = jpeg_bytes(photo(640, 480, seed=12), quality=90)
    bad["truncated.jpg"] = d / "truncated.jpg"
    bad["truncated.jpg"].write_bytes(full[: len(full) // 3])
    corrupt = bytearray(jpeg_bytes(photo(seed=13)))
    corrupt[200:2000] = os.urandom(1800)
    bad["corrupt_header.png"] = d / "corrupt_header.png"
    bad["corrupt_header.png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(corrupt[8:300]))
    bad["strip.png"] = save(photo(2000, 10, seed=14), d / "strip.png")
    # not images at all: ignored by extension, never counted
    (d / "notes.txt").write_text("hello")
    return d, good, bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def test_corpus_loads_good_and_records_bad(corpus, tmp_path, stand_in_model):
    d, good, bad = corpus
    skipped = []
    db = str(tmp_path / "x.db")
    s = load(db, [str(d)], stand_in_model, on_skip=lambda p, r: skipped.append((p, r)))
    assert s.scanned == len(good) + len(bad)
    assert s.new == len(good) and s.errors == len(bad)
    conn = dbmod.connect(db, readonly=True)
    errors = dict(conn.execute("select path, reason from errors").fetchall())
    assert set(errors) == {str(p) for p in bad.values()} == {p for p, _ in skipped}
    assert "empty" in errors[str(bad["empty.jpg"])]
    assert "not a recognised image" in errors[str(bad["text.jpg"])]
    assert "aspect" in errors[str(bad["strip.png"])]
    loaded = dict(conn.execute(
        "select f.relpath, i.mode || ' ' || i.frames from files f join images i on i.id = f.image_id").fetchall())
    assert set(loaded) == set(good)
    assert loaded["cmyk.jpg"].startswith("CMYK") and loaded["animated.gif"].endswith(" 3")
    assert loaded["gray16.png"].startswith("I;16")
    # every good image has a thumbnail that decodes and a vector
    for (data,) in conn.execute("select data from thumbnails"):
        Image.open(io.BytesIO(data)).load()
    assert conn.execute("select count(*) from image_vectors").fetchone()[0] == len(good)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    conn.close()
    # A fixed file loads on the next run and its error row goes away.
    save(photo(seed=15), bad["text.jpg"], "JPEG")
    s = load(db, [str(d)], stand_in_model)
    assert s.new == 1 and s.errors == len(bad) - 1 and s.unchanged == len(good)
    conn = dbmod.connect(db, readonly=True)
    assert conn.execute("select count(*) from errors where path = ?", [str(bad["text.jpg"])]).fetchone()[0] == 0
    conn.close()


def test_cmyk_and_16bit_look_right(corpus, stand_in_model, tmp_path):
    """Converted images keep their content: the CMYK JPEG's thumbnail matches the RGB source."""
    d, good, _ = corpus
    db = str(tmp_path / "x.db")
    load(db, [str(good["cmyk.jpg"]), str(good["gray16.png"])], stand_in_model)
    conn = dbmod.connect(db, readonly=True)
    thumbs = dict(conn.execute("select f.relpath, t.data from files f join thumbnails t using (image_id)").fetchall())
    conn.close()
    cmyk = np.asarray(Image.open(io.BytesIO(thumbs["cmyk.jpg"])).convert("RGB"), dtype=np.float32)
    ref = np.asarray(photo(seed=1).resize((cmyk.shape[1], cmyk.shape[0])), dtype=np.float32)
    assert np.abs(cmyk - ref).mean() < 20
    g16 = np.asarray(Image.open(io.BytesIO(thumbs["gray16.png"])).convert("L"), dtype=np.float32)
    # the full 16-bit ramp, scaled to 8 bits (not clipped to white)
    assert g16[0, 0] < 10 and g16[-1, -1] > 240 and g16[:40].mean() < g16[55:95].mean() < g16[110:].mean() and abs(g16.mean() - 127) < 15


def test_decompression_bomb_is_recorded(tmp_path, stand_in_model, monkeypatch):
    save(photo(300, 300, seed=1), tmp_path / "p" / "bomb.png")
    save(photo(100, 100, seed=2), tmp_path / "p" / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    db = str(tmp_path / "x.db")
    s = load(db, [str(tmp_path / "p")], stand_in_model)
    assert s.new == 1 and s.errors == 1
    conn = dbmod.connect(db, readonly=True)
    (reason,), = conn.execute("select reason from errors").fetchall()
    conn.close()
    assert "decompression bomb" in reason


def test_unreadable_file_is_an_error_not_a_crash(tmp_path):
    """A file that vanishes or cannot be opened between scan and read."""
    # Reading comes first: no decoding options are needed to meet the error.
    work = stages.read(FoundFile(str(tmp_path), str(tmp_path / "gone.jpg"), "gone.jpg", 10, 0.0), None, set())
    assert work.error and work.error.startswith("cannot read")


def _without_root_file_access() -> None:
    # Drop CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from the bounding set
    # (prctl PR_CAPBSET_DROP = 24): after exec, root obeys file modes like anyone else.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


def test_unreadable_permissions(tmp_path, stand_in_model):
    """A file the user may not read is an error, the rest loads. Root reads anything, so
    as root (CI) the load runs without the capabilities that override file permissions:
    the same path is tested everywhere."""
    import json
    import subprocess
    import sys

    p = tmp_path / "p"
    f = save(photo(seed=1), p / "secret.jpg")
    save(photo(seed=2), p / "ok.jpg")
    os.chmod(f, 0)
    r = subprocess.run([sys.executable, "-m", "datasette_imageclust", "load", str(tmp_path / "x.db"), str(p),
                        "--model", stand_in_model, "--json"], capture_output=True, text=True,
                       preexec_fn=_without_root_file_access if os.getuid() == 0 else None)
    os.chmod(f, 0o644)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["scanned"], s["new"], s["errors"]) == (2, 1, 1)
    assert f"skipping {f}: cannot read" in r.stderr and "Traceback" not in r.stderr


def _heic(path):
    import pillow_heif

    pillow_heif.from_pillow(photo(seed=20)).save(str(path), quality=80)
    return path


def test_heic_loads_with_the_extra(tmp_path, stand_in_model):
    pytest.importorskip("pillow_heif", reason="the heif extra (pillow-heif) is not installed")
    (tmp_path / "p").mkdir()
    _heic(tmp_path / "p" / "phone.heic")
    s = load(str(tmp_path / "x.db"), [str(tmp_path / "p")], stand_in_model)
    assert s.new == 1 and s.errors == 0
    conn = dbmod.connect(str(tmp_path / "x.db"), readonly=True)
    assert conn.execute("select format, width, height from images").fetchone() == ("HEIF", 320, 240)
    conn.close()


def test_heic_without_the_extra_is_recorded_unsupported(tmp_path, stand_in_model):
    """Without pillow-heif (blocked in a subprocess), a HEIC file is an 'unsupported' error."""
    import subprocess
    import sys

    pytest.importorskip("pillow_heif", reason="needed here only to write the HEIC test file")
    (tmp_path / "p").mkdir()
    _heic(tmp_path / "p" / "phone.heic")
    save(photo(seed=21), tmp_path / "p" / "ok.jpg")
    code = ("import sys; sys.modules['pillow_heif'] = None; "
            "from datasette_imageclust.cli import cli; cli()")
    r = subprocess.run([sys.executable, "-c", code, "load", str(tmp_path / "x.db"), str(tmp_path / "p"),
                        "--model", stand_in_model], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "skipping" in r.stderr and "datasette-imageclust[heif]" in r.stderr
    conn = dbmod.connect(str(tmp_path / "x.db"), readonly=True)
    (reason,), = conn.execute("select reason from errors").fetchall()
    assert reason.startswith("unsupported format .heic")
    assert conn.execute("select count(*) from images").fetchone()[0] == 1
    conn.close()


# --- entries the scan cannot use ------------------------------------------------


def too_long_folder(d: Path) -> str:
    """Folders nested past PATH_MAX (made with dir_fd, as the OS allows), an image at the
    bottom; returns the first folder whose path the OS refuses (ENAMETOOLONG)."""
    fd = os.open(d, os.O_RDONLY)
    path = str(d)
    refused = None
    try:
        while len(os.fsencode(path)) < 4400:
            os.mkdir("n" * 200, dir_fd=fd)
            nfd = os.open("n" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, path = nfd, path + "/" + "n" * 200
            if refused is None:
                try:
                    os.stat(path)
                except OSError as e:
                    assert e.errno == errno.ENAMETOOLONG
                    refused = path
        with open(os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "wb") as f:
            f.write(jpeg_bytes(photo(seed=30)))
    finally:
        os.close(fd)
    assert refused is not None
    return refused


def hostile_entries(d: Path, monkeypatch) -> dict[str, str]:
    """Entries with image names that are not image files -> what their reason must say.
    Also a hidden FIFO and a non-image FIFO, which are passed over without a row."""
    d.mkdir(parents=True, exist_ok=True)
    expect = {}
    os.symlink(d / "nowhere.jpg", d / "dangling.jpg")
    expect[str(d / "dangling.jpg")] = "dangling symlink"
    os.symlink("loop.jpg", d / "loop.jpg")
    expect[str(d / "loop.jpg")] = "symlink loop"
    os.mkfifo(d / "fifo.jpg")
    expect[str(d / "fifo.jpg")] = "FIFO"
    os.symlink("/dev/null", d / "device.png")
    expect[str(d / "device.png")] = "character device"
    monkeypatch.chdir(d)  # AF_UNIX paths are short: bind by relative name
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("socket.webp")
    sock.close()
    expect[str(d / "socket.webp")] = "socket"
    expect[too_long_folder(d)] = "cannot read folder"
    os.mkfifo(d / ".hidden.jpg")  # hidden: skipped without a row (unless --hidden)
    os.mkfifo(d / "pipe.txt")  # not an image name: never looked at
    return expect


def everything(db: str) -> dict:
    conn = dbmod.connect(db, readonly=True)
    try:
        return {t: conn.execute(f"SELECT * FROM [{t}] ORDER BY 1, 2").fetchall()
                for t in ("files", "errors", "images", "thumbnails", "image_vectors")}
    finally:
        conn.close()


def test_unusable_entries_get_an_error_row_each(tmp_path, stand_in_model, monkeypatch):
    d = tmp_path / "p"
    expect = hostile_entries(d, monkeypatch)
    save(photo(seed=1), d / "ok.jpg")
    db = str(tmp_path / "x.db")
    skipped = []
    s = load(db, [str(d)], stand_in_model, on_skip=lambda p, r: skipped.append(p))
    conn = dbmod.connect(db, readonly=True)
    errors = dict(conn.execute("SELECT path, reason FROM errors").fetchall())
    conn.conn.close()
    assert set(errors) == set(expect) == set(skipped)
    for path, word in expect.items():
        assert word in errors[path], (path, errors[path])
    assert s.errors == len(errors) and s.new == 1
    before = everything(db)
    s = load(db, [str(d)], stand_in_model)
    assert s.errors == len(expect) and everything(db) == before  # the second run changes nothing
    # --hidden looks at hidden names too: the hidden FIFO gets its row
    s = load(db, [str(d)], stand_in_model, hidden=True)
    assert s.errors == len(expect) + 1


def test_a_file_swapped_for_a_fifo_never_blocks(tmp_path):
    """Between scan and read a file can become a FIFO: reading must not wait for a writer."""
    os.mkfifo(tmp_path / "late.jpg")
    result = []
    t = threading.Thread(target=lambda: result.append(
        stages.read(FoundFile(str(tmp_path), str(tmp_path / "late.jpg"), "late.jpg", 10, 0.0), None, set())),
        daemon=True)
    t.start()
    t.join(20)
    if t.is_alive():  # unblock the thread so the test run can end
        os.close(os.open(tmp_path / "late.jpg", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO blocked")
    assert result[0].error == "not a regular file: a FIFO (named pipe)"


def test_every_kind_of_hostile_file_in_one_folder(tmp_path, stand_in_model, monkeypatch):
    """The issue's acceptance: exit 0, every good image loaded, every bad entry in errors
    with a reason, and a second run that changes nothing."""
    from test_filenames import BAD, make_folder, fs

    d = tmp_path / "hostile"
    d.mkdir()
    _, good, bad = make_corpus(d)
    odd = make_folder(d / "names")
    expect_bad = {str(p) for p in bad.values()} | set(hostile_entries(d / "entries", monkeypatch))
    expect_bad.add(fs(d / "names", BAD))
    db = str(tmp_path / "x.db")
    cmd = [sys.executable, "-m", "datasette_imageclust", "load", db, str(d), "--model", stand_in_model, "--json"]
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert b"Traceback" not in r.stderr
    first = json.loads(r.stdout)
    conn = dbmod.connect(db, readonly=True)
    loaded = {paths.os_path(p, raw) for p, raw in conn.execute("SELECT path, path_bytes FROM files")}
    errors = {paths.os_path(p, raw): reason for p, raw, reason in conn.execute(
        "SELECT path, path_bytes, reason FROM errors")}
    conn.conn.close()
    assert loaded == {str(p) for p in good.values()} | set(odd)
    assert set(errors) == expect_bad and all(errors.values())
    assert first["errors"] == len(expect_bad) and first["new"] == len(loaded)
    before = everything(db)
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    assert r.returncode == 0 and json.loads(r.stdout)["unchanged"] == len(loaded)
    assert everything(db) == before
