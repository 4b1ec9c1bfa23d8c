"""`load` features the README promises that no other test checked: the similarity index it
builds and how a stale one is detected, symlinked files and folders, a GIF's first frame,
and a re-run that does not open unchanged files. Real files, the real stand-in embedder."""
from __future__ import annotations

import hashlib
import io
import os
import shutil

import numpy as np
from PIL import Image

from audit import watching
from datasette_imageclust.store import connection as dbmod
from datasette_imageclust.analysis import search
from datasette_imageclust.store import vectors
from datasette_imageclust.pipeline import load
from imagefactory import photo, photo_folder, save


def test_load_builds_the_index_and_keeps_it_fresh(tmp_path, stand_in_model, tiny_clip):
    photo_folder(tmp_path / "p", 5)
    db = str(tmp_path / "x.db")
    load(db, [str(tmp_path / "p")], stand_in_model)
    d = dbmod.connect(db, readonly=True)
    st = search.status(d)
    assert st.present and st.fresh and st.indexed == 5
    d.conn.close()
    photo_folder(tmp_path / "p", 2, start=10)
    load(db, [str(tmp_path / "p")], stand_in_model)  # new images: the index follows
    d = dbmod.connect(db, readonly=True)
    assert search.status(d).fresh and search.status(d).indexed == 7
    model = d.execute("SELECT model_id FROM search_index").fetchone()[0]
    d.conn.close()
    load(db, [str(tmp_path / "p")], tiny_clip, reembed=True)  # another model: rebuilt for it
    d = dbmod.connect(db, readonly=True)
    st = search.status(d)
    assert st.fresh and st.indexed == 7 and st.dimensions == 32
    assert d.execute("SELECT model_id FROM search_index").fetchone()[0] != model
    d.conn.close()


def _indexed_copy(tux_db, tmp_path) -> str:
    path = str(tmp_path / "tux.db")
    shutil.copy(tux_db, path)
    d = dbmod.connect(path)
    search.build_index(d)
    d.conn.close()
    search.clear_cache()
    return path


def test_stale_index_after_an_id_change(tux_db, tmp_path):
    """Same number of vectors, different ids (one image gone, another added, as a load
    without the index step would leave it): detected, and the answer comes from the
    exact scan, so the new image is found."""
    path = _indexed_copy(tux_db, tmp_path)
    d = dbmod.connect(path)
    ids, x = vectors.read_all(d)
    assert search.status(d).fresh
    with d.conn:
        vectors.delete(d, [int(ids[5])])
        vectors.put(d, [int(ids.max()) + 1], x[5:6])  # image 6's vector under a new id
    st = search.status(d)
    assert st.present and not st.fresh and st.n_vectors == st.indexed == 353
    assert "imageclust index" in st.reason
    got = search.knn(d, x[5], 1)
    assert got[0][0] == int(ids.max()) + 1
    d.conn.close()


def test_stale_index_after_a_model_change(tux_db, tmp_path):
    path = _indexed_copy(tux_db, tmp_path)
    d = dbmod.connect(path)
    assert search.status(d).fresh
    with d.conn:  # the vectors now belong to another model (same dimensions, same ids)
        row = d.execute("SELECT name, dimensions, preprocess FROM models").fetchone()
        mid = d.execute("INSERT INTO models (name, dimensions, sha256, preprocess, created) "
                        "VALUES (?, ?, ?, ?, 'now')", [row[0] + "-other", row[1], "f" * 64, row[2]]).lastrowid
        d.execute("UPDATE imageclust_meta SET value = ? WHERE key = 'model_id'", [str(mid)])
    st = search.status(d)
    assert st.present and not st.fresh and "model changed" in st.reason
    d.conn.close()


def test_symlinked_files_and_folders(tmp_path, stand_in_model):
    outside = tmp_path / "outside"
    a = save(photo(seed=1), tmp_path / "p" / "a.jpg")
    b = save(photo(seed=2), outside / "b.jpg")
    c = save(photo(seed=3), outside / "dir" / "c.jpg")
    p = tmp_path / "p"
    os.symlink(b, p / "link-to-b.jpg")  # a file outside the folder
    os.symlink(outside / "dir", p / "linkdir")  # a folder outside it
    os.symlink(a, p / "again.jpg")  # a second name for a file inside: an exact duplicate
    db = str(tmp_path / "x.db")
    s = load(db, [str(p)], stand_in_model)
    assert (s.scanned, s.new, s.duplicates, s.errors) == (4, 3, 1, 0)
    d = dbmod.connect(db, readonly=True)
    files = dict(d.execute("SELECT relpath, image_id FROM files").fetchall())
    assert set(files) == {"a.jpg", "again.jpg", "link-to-b.jpg", os.path.join("linkdir", "c.jpg")}
    assert files["a.jpg"] == files["again.jpg"] and len(set(files.values())) == 3
    # The recorded path is the link's (where the user sees the file), the bytes the target's.
    shas = dict(d.execute("SELECT f.relpath, i.sha256 FROM files f JOIN images i ON i.id = f.image_id").fetchall())
    assert shas["link-to-b.jpg"] == hashlib.sha256(b.read_bytes()).hexdigest()
    assert shas[os.path.join("linkdir", "c.jpg")] == hashlib.sha256(c.read_bytes()).hexdigest()
    d.conn.close()


def test_gif_loads_its_first_frame(tmp_path, stand_in_model):
    first = photo(seed=5, w=160, h=120)
    second = Image.new("RGB", first.size, (0, 0, 255))
    gif = tmp_path / "p" / "anim.gif"
    gif.parent.mkdir(parents=True)
    first.save(gif, save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(gif) as im:  # frame 0 exactly as a GIF decoder gives it (palette colours)
        frame0 = im.convert("RGB")
        frame1 = (im.seek(1), im.convert("RGB"))[1]
    save(frame0, tmp_path / "q" / "frame0.png")
    save(frame1, tmp_path / "q" / "frame1.png")
    db = str(tmp_path / "x.db")
    load(db, [str(tmp_path / "p"), str(tmp_path / "q")], stand_in_model)
    d = dbmod.connect(db, readonly=True)
    (fmt, frames, w, h), = d.execute("SELECT format, frames, width, height FROM images WHERE format = 'GIF'")
    assert (fmt, frames, w, h) == ("GIF", 2, 160, 120)
    rel = {r[0]: r[1] for r in d.execute("SELECT relpath, image_id FROM files")}
    ids, x = vectors.read_all(d)
    v = {int(i): x[k] for k, i in enumerate(ids)}
    gif_v, f0, f1 = v[rel["anim.gif"]], v[rel["frame0.png"]], v[rel["frame1.png"]]
    assert float(gif_v @ f0) > 0.99 > float(gif_v @ f1)
    thumb = d.execute("SELECT data FROM thumbnails WHERE image_id = ?", [rel["anim.gif"]]).fetchone()[0]
    colour = np.asarray(Image.open(io.BytesIO(thumb)).convert("RGB"), np.float32).mean((0, 1))
    assert np.abs(colour - np.asarray(frame0, np.float32).mean((0, 1))).max() < 8  # not the blue frame
    d.conn.close()


def test_rerun_does_not_open_unchanged_files(tmp_path, stand_in_model):
    files = photo_folder(tmp_path / "p", 6)
    db = str(tmp_path / "x.db")
    load(db, [str(tmp_path / "p")], stand_in_model)
    with watching() as w:
        s = load(db, [str(tmp_path / "p")], stand_in_model)
    assert s.unchanged == 6 and s.new == 0
    assert not w.paths() & {os.path.realpath(f) for f in files}
    # The watch sees the loader's reads: a changed file is opened (and only that one).
    save(photo(seed=42), files[2])
    with watching() as w:
        s = load(db, [str(tmp_path / "p")], stand_in_model)
    assert (s.unchanged, s.new) == (5, 1)
    assert w.paths() & {os.path.realpath(f) for f in files} == {os.path.realpath(files[2])}
