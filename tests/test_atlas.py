"""Sprite atlases: every image a cell at every level, right pixels, spatial sheets."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from datasette_imageclust.analysis import atlas as A
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.analysis.layout import compute_layout
from synthdb import make_db


def _sheet(db, level: int, sheet: int) -> Image.Image:
    data = db.execute("SELECT data FROM atlas_sheets WHERE level = ? AND sheet = ?", [level, sheet]).fetchone()[0]
    return Image.open(io.BytesIO(data)).convert("RGB")


def _cell(db, image_id: int, level: int) -> np.ndarray:
    sheet, cell = db.execute("SELECT sheet, cell FROM atlas_cells WHERE image_id = ? AND level = ?",
                             [image_id, level]).fetchone()
    size = int(db.execute("SELECT value FROM imageclust_meta WHERE key = 'atlas_sheet_size'").fetchone()[0])
    per_row = size // level
    im = _sheet(db, level, sheet)
    x, y = (cell % per_row) * level, (cell // per_row) * level
    return np.asarray(im.crop((x, y, x + level, y + level)), np.float32)


def _thumb(db, image_id: int, level: int) -> np.ndarray:
    data = db.execute("SELECT data FROM thumbnails WHERE image_id = ?", [image_id]).fetchone()[0]
    im = Image.open(io.BytesIO(data)).convert("RGB")
    from PIL import ImageOps

    return np.asarray(ImageOps.fit(im, (level, level)), np.float32)


@pytest.fixture
def synth(tmp_path):
    path = make_db(str(tmp_path / "a.db"), 700, clusters=7, thumb_px=64, distinct_thumbs=70)
    db = dbmod.connect(path)
    yield db
    db.conn.close()


def test_every_image_has_a_cell_with_its_pixels(synth):
    db = synth
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY id DESC")]
    s = A.build_atlas(db, ids, levels=(8, 32), sheet_size=1024)
    assert s.images == 700 and s.levels == [8, 32]
    # 1024/8 = 128 per row -> 16384 per sheet: one sheet; 1024/32 = 32 per row -> 1024 per sheet: one.
    assert s.sheets == {8: 1, 32: 1}
    for level in (8, 32):
        rows = db.execute("SELECT image_id, sheet, cell FROM atlas_cells WHERE level = ? ORDER BY sheet, cell",
                          [level]).fetchall()
        assert [r[0] for r in rows] == ids  # packed in the given order
        assert len({(r[1], r[2]) for r in rows}) == 700
    w, h = db.execute("SELECT width, height FROM atlas_sheets WHERE level = 32").fetchone()
    assert (w, h) == (1024, 1024)  # 700 cells -> 22 rows of 32 px = 704 -> next power of two
    w, h = db.execute("SELECT width, height FROM atlas_sheets WHERE level = 8").fetchone()
    assert (w, h) == (1024, 64)    # 6 rows of 8 px = 48 -> 64
    for image_id in (ids[0], ids[350], ids[-1]):
        for level in (8, 32):
            diff = np.abs(_cell(db, image_id, level) - _thumb(db, image_id, level)).mean()
            # Lossy WebP (chroma at half resolution bleeds a little across 8-px cells).
            assert diff < (20 if level == 8 else 12), (image_id, level, diff)
    # A different image's pixels are far off (the check above can fail).
    assert np.abs(_cell(db, ids[0], 32) - _thumb(db, ids[1], 32)).mean() > 12 or \
        np.abs(_cell(db, ids[0], 32) - _thumb(db, ids[5], 32)).mean() > 12
    meta = dict(db.execute("SELECT key, value FROM imageclust_meta WHERE key LIKE 'atlas_%'").fetchall())
    assert meta["atlas_levels"] == "8,32" and meta["atlas_build"] == s.build


def test_many_sheets_and_jpeg(synth):
    db = synth
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    s = A.build_atlas(db, ids, levels=(64,), fmt="jpeg", quality=80, sheet_size=1024)
    assert s.sheets == {64: 3}  # 256 cells a sheet
    fmts = {r[0] for r in db.execute("SELECT format FROM atlas_sheets")}
    assert fmts == {"jpeg"}
    assert _sheet(db, 64, 2).size == (1024, 1024)  # 188 cells: 12 rows of 64 px = 768 -> 1024
    rebuilt = A.build_atlas(db, ids[:10], levels=(16,))
    assert rebuilt.build != s.build
    # Replaced, not added: the new build has its own rows; the one it replaced is kept
    # (for map pages opened before) until the next build, and no longer.
    count = "SELECT count(*) FROM atlas_cells WHERE build = ?"
    assert db.execute(count, [rebuilt.build]).fetchone()[0] == 10
    assert db.execute("SELECT count(DISTINCT level) FROM atlas_sheets WHERE build = ?",
                      [rebuilt.build]).fetchone()[0] == 1
    assert db.execute(count, [s.build]).fetchone()[0] == 700
    third = A.build_atlas(db, ids[:5], levels=(16,))
    assert {r[0] for r in db.execute("SELECT DISTINCT build FROM atlas_sheets")} == {rebuilt.build, third.build}
    assert db.execute("SELECT count(*) FROM atlas_cells").fetchone()[0] == 15


def test_missing_and_broken_thumbnails_get_placeholders(synth):
    db = synth
    db.execute("DELETE FROM thumbnails WHERE image_id = 1")
    db.execute("UPDATE thumbnails SET data = ? WHERE image_id = 2", [b"not an image"])
    db.conn.commit()
    s = A.build_atlas(db, [1, 2, 3], levels=(16,))
    assert s.images == 3
    for iid in (1, 2):
        cell = _cell(db, iid, 16)
        assert np.abs(cell - np.array(A.PLACEHOLDER, np.float32)).mean() < 4
    assert np.abs(_cell(db, 3, 16) - np.array(A.PLACEHOLDER, np.float32)).mean() > 8


def test_sheets_follow_the_map(tmp_path):
    """In layout order, one detail sheet covers a compact region of the map."""
    path = make_db(str(tmp_path / "m.db"), 2000, clusters=40, thumb_px=16, distinct_thumbs=40)
    db = dbmod.connect(path)
    s = compute_layout(db, landmarks=200)
    order = A.layout_order(db, s.layout_id)
    assert sorted(order) == list(range(1, 2001))
    A.build_atlas(db, order, levels=(16, 64), sheet_size=1024)  # 256 cells per 64-px sheet
    rows = db.execute("SELECT a.sheet, p.x, p.y FROM atlas_cells a JOIN layout_points p ON p.image_id = a.image_id "
                      "WHERE a.level = 64").fetchall()
    xy = np.array([r[1:] for r in rows])
    total = np.prod(xy.max(0) - xy.min(0))
    sheet = np.array([r[0] for r in rows])
    areas = [np.prod(xy[sheet == k].max(0) - xy[sheet == k].min(0)) for k in range(sheet.max() + 1)]
    assert sheet.max() == 7 and np.median(areas) < 0.35 * total
    db.conn.close()


def test_real_thumbnails(tux_db, tmp_path):
    path = str(tmp_path / "tux.db")
    shutil.copy(tux_db, path)
    db = dbmod.connect(path)
    ids = [r[0] for r in db.execute("SELECT image_id FROM thumbnails ORDER BY image_id")]
    s = A.build_atlas(db, ids)
    assert s.images == 353 and s.sheets == {16: 1, 64: 1}
    # The overview level of 353 images is small; the detail level holds real pictures.
    assert s.bytes[16] < 150_000
    for iid in ids[:5]:
        assert np.abs(_cell(db, iid, 64) - _thumb(db, iid, 64)).mean() < 25
    db.conn.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"levels": "2"}, "out of range"),
    ({"levels": ""}, "1 to 4"),
    ({"levels": "8,16,32,64,128"}, "1 to 4"),
    ({"fmt": "png"}, "webp or jpeg"),
    ({"quality": 0}, "quality"),
    ({"sheet_size": 3000}, "sheet size"),
    ({"levels": (256,), "sheet_size": 1024}, None),
])
def test_bad_options(synth, kwargs, message):
    if message is None:  # the largest level is fine: a real 256-px cell of image 1
        s = A.build_atlas(synth, [1], **kwargs)
        assert s.levels == [256] and s.sheets == {256: 1} and s.images == 1
        assert synth.execute("SELECT width, height FROM atlas_sheets WHERE level = 256").fetchone() == (1024, 256)
        assert np.abs(_cell(synth, 1, 256) - _thumb(synth, 1, 256)).mean() < 12
        return
    with pytest.raises(A.AtlasError, match=message):
        A.build_atlas(synth, [1], **kwargs)


def test_auto_levels_add_a_small_overview_for_large_maps():
    assert A.auto_levels(10_000) == [16, 64]
    assert A.auto_levels(100_000) == [8, 16, 64]
