"""`imageclust load` end to end, with real files and the real stand-in embedder."""
from __future__ import annotations

import csv
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.store import vectors
from datasette_imageclust.ingest.loader import LoadError
from datasette_imageclust.pipeline import load
from imagefactory import photo, photo_folder, save


def rows(path, sql, params=()):
    d = dbmod.connect(path, readonly=True)
    try:
        return d.execute(sql, params).fetchall()
    finally:
        d.conn.close()


def test_tux_loaded_meaningfully(tux_db, tux_dir):
    """353 real images: one image, file, thumbnail and vector each; vectors are meaningful."""
    assert rows(tux_db, "select count(*) from images")[0][0] == 353
    assert rows(tux_db, "select count(*) from files")[0][0] == 353
    assert rows(tux_db, "select count(*) from thumbnails")[0][0] == 353
    assert rows(tux_db, "select count(*) from image_vectors")[0][0] == 353
    assert rows(tux_db, "pragma integrity_check")[0][0] == "ok"
    assert rows(tux_db, "pragma journal_mode")[0][0] == "delete"  # ready for datasette -i
    assert not os.path.exists(tux_db + "-wal")
    for w, h, data, fmt, iw, ih in rows(tux_db, "select t.width, t.height, data, t.format, i.width, "
                                             "i.height from thumbnails t join images i on i.id = t.image_id"):
        im = Image.open(io.BytesIO(data))
        assert fmt == "webp" and im.format == "WEBP" and im.size == (w, h)
        assert max(w, h) == min(256, max(iw, ih))  # never enlarged
    for (ph, dh) in rows(tux_db, "select phash, dhash from images"):
        assert len(ph) == 16 and len(dh) == 16 and int(ph, 16) >= 0
    # Nearest neighbours share the human label far more often than chance (1/16).
    d = dbmod.connect(tux_db, readonly=True)
    ids, V = vectors.read_all(d)
    rel = dict(d.execute("select image_id, relpath from files").fetchall())
    d.conn.close()
    assert np.allclose(np.linalg.norm(V, axis=1), 1, atol=1e-4)
    labels = {r["path"]: r["category"] for r in csv.DictReader(open(tux_dir / "labels.csv"))}
    y = np.array([labels[rel[i]] for i in ids])
    S = V @ V.T
    np.fill_diagonal(S, -1)
    assert (y[S.argmax(1)] == y).mean() > 0.7


def test_rerun_skips_unchanged(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 6)
    db = str(tmp_path / "x.db")
    s1 = load(db, [str(tmp_path / "p")], stand_in_model)
    assert (s1.scanned, s1.new, s1.unchanged, s1.errors) == (6, 6, 0, 0)
    before = rows(db, "select * from images order by id")
    s2 = load(db, [str(tmp_path / "p")], stand_in_model)
    assert (s2.scanned, s2.new, s2.unchanged, s2.duplicates) == (6, 0, 6, 0)
    assert rows(db, "select * from images order by id") == before


def test_exact_duplicates_renames_and_prune(tmp_path, stand_in_model):
    p = tmp_path / "p"
    files = photo_folder(p, 3)
    shutil.copy(files[0], p / "copy-a.jpg")
    (p / "sub").mkdir()
    shutil.copy(files[0], p / "sub" / "copy-b.jpg")
    db = str(tmp_path / "x.db")
    s = load(db, [str(p)], stand_in_model)
    assert (s.scanned, s.new, s.duplicates) == (5, 3, 2)
    assert rows(db, "select count(*) from images")[0][0] == 3
    assert rows(db, "select count(*), count(distinct image_id) from files")[0] == (5, 3)
    # A move is recognised by hash: no new image, the old path is reported as gone.
    os.rename(files[1], p / "moved.jpg")
    s = load(db, [str(p)], stand_in_model)
    assert (s.new, s.duplicates, s.unchanged, s.gone, s.pruned) == (0, 1, 4, 1, 0)
    assert rows(db, "select count(*) from files")[0][0] == 6  # old path kept without --prune
    s = load(db, [str(p)], stand_in_model, prune=True)
    assert (s.gone, s.pruned) == (1, 1)
    assert rows(db, "select count(*) from files where path = ?", [str(files[1])])[0][0] == 0
    assert rows(db, "select count(*) from images")[0][0] == 3
    # Deleting every copy of an image and pruning removes the image, thumbnail and vector.
    for f in (files[0], p / "copy-a.jpg", p / "sub" / "copy-b.jpg"):
        os.remove(f)
    s = load(db, [str(p)], stand_in_model, prune=True)
    assert s.pruned == 3
    assert rows(db, "select count(*) from images")[0][0] == 2
    assert rows(db, "select count(*) from thumbnails")[0][0] == 2
    assert rows(db, "select count(*) from image_vectors")[0][0] == 2


def test_changed_file_is_reprocessed(tmp_path, stand_in_model):
    p = tmp_path / "p"
    f = photo_folder(p, 2)[0]
    db = str(tmp_path / "x.db")
    load(db, [str(p)], stand_in_model)
    old_sha = rows(db, "select i.sha256 from files f join images i on i.id = f.image_id where f.path = ?", [str(f)])[0][0]
    save(photo(seed=99, w=200, h=300), f, quality=80)
    s = load(db, [str(p)], stand_in_model)
    assert (s.new, s.unchanged) == (1, 1)
    (sha, w, h), = rows(db, "select i.sha256, i.width, i.height from files f join images i on i.id = f.image_id where f.path = ?", [str(f)])
    assert sha != old_sha and (w, h) == (200, 300)
    # The old content has no file any more: it is gone with its vector.
    assert rows(db, "select count(*) from images where sha256 = ?", [old_sha])[0][0] == 0
    assert rows(db, "select count(*) from image_vectors")[0][0] == 2


def test_other_model_needs_reembed(tmp_path, stand_in_model, tiny_clip):
    p = tmp_path / "p"
    files = photo_folder(p, 4)
    db = str(tmp_path / "x.db")
    load(db, [str(p)], stand_in_model)
    with pytest.raises(LoadError, match="--reembed"):
        load(db, [str(p)], tiny_clip)
    os.remove(files[3])  # its image can only be re-embedded from the stored thumbnail
    s = load(db, [str(p)], tiny_clip, reembed=True)
    assert s.reembedded == 4 and s.new == 0
    d = dbmod.connect(db, readonly=True)
    assert vectors.dimensions(d) == 32
    (mid, name), = d.execute("select m.id, m.name from imageclust_meta k join models m "
                             "on m.id = cast(k.value as integer) where k.key = 'model_id'").fetchall()
    assert name == os.path.abspath(tiny_clip)
    assert d.execute("select count(*) from images where model_id = ?", [mid]).fetchone()[0] == 4
    assert d.execute("select count(*) from image_vectors").fetchone()[0] == 4
    d.conn.close()
    s = load(db, [str(p)], tiny_clip)
    assert s.unchanged == 3 and s.new == 0 and s.reembedded == 0


def test_exif_orientation_time_camera_gps(tmp_path, stand_in_model):
    im = photo(400, 200, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2021:06:05 14:03:22"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 31.0, 12.0)
    gps[3], gps[4] = "W", (1.0, 30.0, 0.0)
    save(im, tmp_path / "p" / "e.jpg", exif=exif.tobytes())
    db = str(tmp_path / "x.db")
    load(db, [str(tmp_path / "p")], stand_in_model)
    (w, h, taken, camera, lat, lon, tw, th), = rows(
        db, "select images.width, images.height, taken, camera, latitude, longitude, t.width, t.height "
            "from images join thumbnails t on t.image_id = images.id")
    assert (w, h) == (200, 400) and (tw, th) == (128, 256)
    assert taken == "2021-06-05T14:03:22" and camera == "Canon EOS 5D"
    assert lat == pytest.approx(52.52) and lon == pytest.approx(-1.5)


def test_no_recursive_hidden_and_symlink_cycle(tmp_path, stand_in_model):
    p = tmp_path / "p"
    photo_folder(p, 1)
    photo_folder(p / "sub", 1, start=1)
    photo_folder(p / ".hidden", 1, start=2)
    os.symlink(p, p / "sub" / "loop")  # a directory cycle
    db = str(tmp_path / "x.db")
    s = load(db, [str(p)], stand_in_model, recursive=False)
    assert s.scanned == 1
    s = load(db, [str(p)], stand_in_model)
    assert s.scanned == 2 and s.new == 1  # hidden skipped, the cycle entered once
    s = load(db, [str(p)], stand_in_model, hidden=True)
    assert s.new == 1


def test_jpeg_thumbnails_and_sizes(tmp_path, stand_in_model):
    photo_folder(tmp_path / "p", 2, size=(1000, 500))
    db = str(tmp_path / "x.db")
    load(db, [str(tmp_path / "p")], stand_in_model, thumbnail_format="jpeg", thumbnail_size=100)
    for fmt, w, h, data in rows(db, "select format, width, height, data from thumbnails"):
        assert fmt == "jpeg" and (w, h) == (100, 50)
        assert Image.open(io.BytesIO(data)).format == "JPEG"
    with pytest.raises(LoadError, match="thumbnail size"):
        load(db, [str(tmp_path / "p")], stand_in_model, thumbnail_size=5)


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_copies_within_one_run_across_batches(tmp_path, stand_in_model, batch_size):
    """The same bytes met again while the first copy is still in inference: one image."""
    p = tmp_path / "p"
    files = photo_folder(p, 5)
    for i, name in enumerate(["img0000b.jpg", "img0001b.jpg", "zz.jpg"]):
        shutil.copy(files[0 if i != 1 else 1], p / name)
    db = str(tmp_path / "x.db")
    s = load(db, [str(p)], stand_in_model, batch_size=batch_size)
    assert (s.scanned, s.new, s.duplicates, s.errors) == (8, 5, 3, 0)
    assert rows(db, "select count(*) from images")[0][0] == 5
    assert rows(db, "select count(*) from image_vectors")[0][0] == 5
    assert rows(db, "select count(*), count(distinct image_id) from files")[0] == (8, 5)


def test_load_while_datasette_reads(tmp_path, stand_in_model):
    """A real `datasette photos.db` serving the database keeps answering while load
    writes, and sees each committed batch (read between batches, not only before and after)."""
    import json
    import urllib.parse
    import urllib.request

    from browser import datasette_server

    photo_folder(tmp_path / "p", 3)
    db = str(tmp_path / "x.db")
    load(db, [str(tmp_path / "p")], stand_in_model)
    photo_folder(tmp_path / "p", 6, start=10)
    with datasette_server(db) as url:
        def count() -> int:
            q = urllib.parse.urlencode({"sql": "select count(*) as n from images", "_shape": "array"})
            with urllib.request.urlopen(f"{url}/x.json?{q}", timeout=30) as r:
                return json.load(r)[0]["n"]

        assert count() == 3
        seen = []  # read by Datasette from inside the load, between its transactions
        s = load(db, [str(tmp_path / "p")], stand_in_model, batch_size=1,
                 on_progress=lambda done, total: seen.append(count()))
        assert s.new == 6 and s.errors == 0
        assert any(3 < n < 9 for n in seen), seen  # a state in the middle of the load
        assert seen == sorted(seen)
        assert count() == 9
