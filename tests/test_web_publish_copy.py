"""`imageclust publish-copy`: real images with injected private EXIF, under a distinctive
absolute folder, loaded, clustered, described, tagged and evaluated; the copy's BYTES
must not hold the folder, the GPS values or the private EXIF strings, and every page must
answer on it served immutable."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import struct
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from datasette_imageclust.cli import cli
from datasette_imageclust.store.publish import real_bytes

ROOT_NAME = "Fieldwork-SECRET-ROOT"
PRIVATE = ["SN-93417-QX", "Alice Zzyzxartist", "Owner Qwertyowner", "(c) Copyholder Vexley",
           "MAKERNOTE-PRIVATE-BLOB"]
GPS = [(52.5163271, 13.3777041), (-33.8567844, 151.2152967)]
# The safe list as the README states it, written out here (not read from the code), so a
# key added to or removed from SAFE_EXIF fails the test below.
SAFE = {"DateTimeOriginal", "DateTime", "Make", "Model", "LensModel", "ExposureTime", "FNumber",
        "ISOSpeedRatings", "PhotographicSensitivity", "FocalLength", "ExifImageWidth", "ExifImageHeight",
        "ImageWidth", "ImageLength", "Orientation"}
UNSAFE = {"BodySerialNumber", "SerialNumber", "LensSerialNumber", "CameraOwnerName", "OwnerName", "Artist",
          "Copyright", "MakerNote", "Software", "ImageDescription", "UserComment", "XPAuthor", "XPComment",
          "HostComputer", "GPSInfo", "GPSLatitude", "GPSLongitude", "ImageUniqueID", "DocumentName"}


def _gps_ifd(lat: float, lon: float) -> dict:
    def dms(x: float) -> tuple:
        x = abs(x)
        d = int(x)
        m = int((x - d) * 60)
        s = round(((x - d) * 60 - m) * 60, 4)
        return (d, m, s)
    return {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}


def _with_exif(src: Path, dest: Path, i: int) -> None:
    im = Image.open(src).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "EOS 5D"  # Model
    exif[0x013B] = PRIVATE[1]  # Artist
    exif[0x8298] = PRIVATE[3]  # Copyright
    exif[0x0132] = "2021:06:01 10:00:00"  # DateTime
    ifd = exif.get_ifd(0x8769)
    ifd[0xA431] = PRIVATE[0]  # BodySerialNumber
    ifd[0xA430] = PRIVATE[2]  # CameraOwnerName
    ifd[0x927C] = PRIVATE[4].encode()  # MakerNote
    ifd[0x9003] = "2021:06:01 10:00:00"  # DateTimeOriginal
    ifd[0x8827] = 200  # ISO
    exif[0x8825] = _gps_ifd(*GPS[i % 2])
    dest.parent.mkdir(parents=True, exist_ok=True)
    im.save(dest, "JPEG", quality=85, exif=exif)


@pytest.fixture(scope="module")
def source(tmp_path_factory, stand_in_model, tux_dir) -> tuple[str, Path]:
    """A database loaded from ROOT_NAME (plus a broken file), clustered with a layout,
    with a description (naming the folder), tags and an evaluation task."""
    tmp = tmp_path_factory.mktemp("pub")
    root = tmp / ROOT_NAME
    n = 0
    for cat in ("birds", "coins"):
        for f in sorted((tux_dir / cat).iterdir())[:5]:
            _with_exif(f, root / "Interviewee-3" / cat / f"{f.stem}.jpg", n)
            n += 1
    (root / "Interviewee-3" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    # a name that is not UTF-8 (stored in path_bytes), an exact duplicate of the first image
    first = next((root / "Interviewee-3" / "birds").iterdir())
    open(os.path.join(os.fsencode(root / "Interviewee-3"), b"caf\xe9.jpg"), "wb").write(first.read_bytes())
    db = str(tmp / "source.db")
    for args in (["load", db, str(root), "--model", stand_in_model],
                 ["cluster", db, "--method", "kmeans", "--clusters", "2", "--labels", "terms", "--min-size", "1"],
                 ["evaluate", "create", db, "--name", "t", "--set-size", "1"]):
        r = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    from datasette_imageclust.store.connection import close, connect
    from datasette_imageclust.store.schema import migrate

    d = connect(db)
    migrate(d, "text")
    close(d)
    c = sqlite3.connect(db)
    c.execute("INSERT INTO prompts (sha256, text, created) VALUES ('x', 'Describe.', '2024')")
    c.execute("INSERT INTO descriptions (image_id, model, api, prompt_id, text, input, created) VALUES "
              "(1, 'llava', 'ollama', 1, ?, 'thumbnail', '2024')", [f"A bird seen in {root}/Interviewee-3 file"])
    c.execute("INSERT INTO image_tags VALUES (1, 'clip', 'bird', 0.9, 1, '2024')")
    c.commit()
    c.close()
    return db, root


def _counts(db: str) -> dict[str, int]:
    """Rows of every table, the vec0 and FTS tables included (their shadow tables not)."""
    from datasette_imageclust.store.connection import close, connect

    d = connect(db, readonly=True)
    virtual = {n for (n,) in d.execute("SELECT name FROM sqlite_master WHERE sql LIKE 'CREATE VIRTUAL%'")}
    names = [n for n in d.table_names() if not any(n.startswith(v + "_") for v in virtual)]
    out = {n: d.execute(f"SELECT count(*) FROM [{n}]").fetchone()[0] for n in names}
    close(d)
    return out


def _publish(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["publish-copy", *args])
    assert "Traceback" not in r.stderr, r.stderr
    return r.exit_code, r.stdout, r.stderr


def test_default_copy_holds_no_private_bytes(source, tmp_path, stand_in_model):
    db, root = source
    before = Path(db).read_bytes()
    raw = Path(db).read_bytes()
    # The test itself is sound: every value looked for is in the source.
    for s in (str(root), stand_in_model, PRIVATE[1], PRIVATE[3]):
        assert s.encode() in raw, s
    assert real_bytes(round(GPS[0][0], 7)) in raw or struct.pack(">d", GPS[0][0]) in raw
    out = tmp_path / "public.db"
    code, stdout, stderr = _publish(db, str(out), "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["gps_removed"] == 10 and summary["bytes"] == out.stat().st_size
    assert "public.db" in stderr and "removed" in stderr
    data = out.read_bytes()
    for s in (str(root), str(root.parent), stand_in_model, ROOT_NAME, *PRIVATE):
        assert s.encode() not in data, s
    # nor in the full-text index's segments, which hold the words lower-cased
    assert b"secret" not in data.lower() and b"zzyzxartist" not in data.lower()
    c = sqlite3.connect(db)
    coords = [v for row in c.execute("SELECT latitude, longitude FROM images") for v in row]
    c.close()
    assert len(coords) == 20 and all(v is not None for v in coords)
    for v in coords:
        assert real_bytes(v) not in data and repr(v).encode() not in data, v
    assert Path(db).read_bytes() == before  # the source is never written
    c = sqlite3.connect(out)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert all(not p.startswith("/") for (p,) in c.execute("SELECT path FROM files UNION ALL SELECT path FROM errors"))
    assert c.execute("SELECT path_bytes FROM files WHERE path_bytes IS NOT NULL").fetchall() == [
        (b"Interviewee-3/caf\xe9.jpg",)]
    assert c.execute("SELECT name FROM models").fetchone()[0] == Path(stand_in_model).name
    exif = json.loads(c.execute("SELECT exif FROM images WHERE id = 1").fetchone()[0])
    assert set(exif) <= SAFE and exif["Make"] == "Canon" and exif["ISOSpeedRatings"] == 200
    assert json.loads(c.execute("SELECT value FROM imageclust_meta WHERE key = 'redacted'").fetchone()[0])[
        "location"] == "drop"
    assert c.execute("SELECT count(*) FROM descriptions_fts WHERE descriptions_fts MATCH 'bird'").fetchone()[0] == 1
    c.close()
    src_counts, out_counts = _counts(db), _counts(str(out))
    assert {"image_vectors", "descriptions_fts", "cluster_members", "layout_points", "atlas_sheets", "image_tags",
            "eval_tasks", "eval_sets", "search_vectors"} <= set(out_counts)
    assert {k: v for k, v in out_counts.items() if k != "imageclust_meta"} == \
        {k: v for k, v in src_counts.items() if k != "imageclust_meta"}
    assert not [p for p in tmp_path.iterdir() if p.name != "public.db"]  # no temporary left


def test_safe_exif_keeps_exactly_the_listed_fields(source, tmp_path):
    db, _ = source
    src = tmp_path / "src.db"
    shutil.copy(db, src)
    every = {**{k: f"value of {k}" for k in SAFE}, **{k: f"private {k}" for k in UNSAFE}}
    c = sqlite3.connect(src)
    loaded = json.loads(c.execute("SELECT exif FROM images WHERE id = 1").fetchone()[0])
    c.execute("UPDATE images SET exif = ? WHERE id = 2", [json.dumps(every)])
    c.commit()
    c.close()
    out = tmp_path / "public.db"
    assert _publish(str(src), str(out))[0] == 0
    c = sqlite3.connect(out)
    exif = {i: json.loads(e) for i, e in c.execute("SELECT id, exif FROM images WHERE id IN (1, 2)")}
    c.close()
    assert exif[2] == {k: f"value of {k}" for k in SAFE}  # every safe field, nothing else
    # What load stored from the real file: the safe ones of those (and load did store unsafe ones).
    assert set(loaded) - SAFE and exif[1] == {k: v for k, v in loaded.items() if k in SAFE}
    assert {"Make", "Model", "DateTime", "DateTimeOriginal"} <= set(exif[1])
    # The README names the same list.
    readme = (Path(__file__).parent.parent / "README.md").read_text("utf-8")
    listed = readme.split("The safe EXIF list", 1)[1].split(". Removed:", 1)[0].split("):", 1)[1]
    assert {w.strip(" `,\n") for w in listed.replace("\n", " ").split(",")} == SAFE


@pytest.mark.asyncio
async def test_every_page_answers_on_the_copy_served_immutable(source, tmp_path):
    from datasette.app import Datasette

    db, _ = source
    out = tmp_path / "pub.db"
    assert _publish(db, str(out))[0] == 0
    ds = Datasette(immutables=[str(out)])
    base = "/pub/-/imageclust"
    idx = (await ds.client.get(base + ".json")).json()
    cid = idx["clusters"][0]["id"]
    img = (await ds.client.get(base + "/image/1.json")).json()
    assert img["redacted"] == "redacted: paths relative, GPS removed, EXIF reduced"
    assert img["image"]["latitude"] is None and img["files"][0]["path"].startswith("Interviewee-3/")
    page = await ds.client.get(base + "/image/1")
    assert page.status_code == 200 and "redacted: paths relative, GPS removed, EXIF reduced" in page.text
    fid = img["files"][0]["id"]
    for path in (base, f"{base}/cluster/{cid}", f"{base}/cluster/{cid}.json", f"{base}/image/2",
                 f"{base}/search?like=1", f"{base}/search.json?like=1", f"{base}/thumb/1", f"{base}/map",
                 f"{base}/map.json?points=1", f"{base}/map/points.bin", f"{base}/evaluate", "/pub/files",
                 "/pub/errors", "/pub/images/1"):
        r = await ds.client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    # original files stay off unless configured
    assert (await ds.client.get(f"{base}/original/{fid}")).status_code == 404


@pytest.mark.asyncio
async def test_originals_of_a_relative_copy_are_found_under_originals_root(source, tmp_path):
    from datasette.app import Datasette

    db, root = source
    out = tmp_path / "pub.db"
    assert _publish(db, str(out))[0] == 0
    ds = Datasette(immutables=[str(out)],
                   metadata={"plugins": {"datasette-imageclust": {"originals_root": str(root)}}})
    img = (await ds.client.get("/pub/-/imageclust/image/1.json")).json()
    r = await ds.client.get(img["files"][0]["original_url"])
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == img["image"]["sha256"]
    assert img["files"][0]["path"] == "Interviewee-3/caf\\xe9.jpg"  # served by its exact bytes


def test_options(source, tmp_path):
    db, root = source
    out = tmp_path / "b.db"
    assert _publish(db, str(out), "--paths", "basename", "--location", "coarse", "--exif", "drop",
                    "--drop-errors", "--drop-thumbnails")[0] == 0
    c = sqlite3.connect(out)
    names = [p for (p,) in c.execute("SELECT path FROM files ORDER BY id")]
    assert all("/" not in p and p.endswith(".jpg") for p in names) and len(set(names)) == len(names) == 11
    coords = c.execute("SELECT latitude, longitude FROM images ORDER BY id").fetchall()
    assert coords[0] == (round(GPS[0][0], 2), round(GPS[0][1], 2))
    assert c.execute("SELECT count(*) FROM images WHERE exif IS NOT NULL OR camera IS NOT NULL").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM errors").fetchone()[0] == 0
    assert c.execute("SELECT count(*) FROM thumbnails").fetchone()[0] == 0
    c.close()
    data = out.read_bytes()
    assert real_bytes(round(GPS[0][0], 7)) not in data
    assert str(root).encode() not in data and b"Interviewee-3/birds" not in data

    out = tmp_path / "n.db"
    assert _publish(db, str(out), "--paths", "none", "--location", "keep", "--exif", "keep")[0] == 0
    c = sqlite3.connect(out)
    assert [p for (p,) in c.execute("SELECT path FROM files ORDER BY id")] == [str(i) for i in range(1, 12)]
    assert c.execute("SELECT latitude FROM images WHERE id = 1").fetchone()[0] == round(GPS[0][0], 7)
    assert PRIVATE[1] in c.execute("SELECT exif FROM images WHERE id = 1").fetchone()[0]
    assert c.execute("SELECT count(*) FROM errors WHERE path LIKE 'error %'").fetchone()[0] == 1
    c.close()
    assert str(root).encode() not in out.read_bytes()


def test_bad_input_is_one_line_and_leaves_nothing(source, tmp_path):
    db, _ = source
    dest = tmp_path / "exists.db"
    dest.write_bytes(b"keep me")
    code, _, err = _publish(db, str(dest))
    assert code == 1 and "exists" in err and "--force" in err and dest.read_bytes() == b"keep me"
    assert _publish(db, str(dest), "--force")[0] == 0 and dest.read_bytes()[:15] == b"SQLite format 3"
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    for args, words in (([str(plain), str(tmp_path / "o.db")], "not an imageclust database"),
                        ([db, str(tmp_path / "missing" / "o.db")], "does not exist"),
                        ([str(tmp_path / "nope.db"), str(tmp_path / "o.db")], "does not exist")):
        names = sorted(p.name for p in tmp_path.iterdir())
        code, out, err = _publish(*args)
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_info_and_load_warn_about_gps_and_absolute_paths(source, tmp_path, stand_in_model):
    db, root = source
    r = CliRunner().invoke(cli, ["info", db])
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("warning:")]
    assert "GPS" in line and "absolute file paths" in line and "imageclust publish-copy" in line
    out = tmp_path / "pub.db"
    assert _publish(db, str(out))[0] == 0
    assert "warning:" not in CliRunner().invoke(cli, ["info", str(out)]).stderr
    work = tmp_path / "work.db"
    shutil.copy(db, work)
    r = CliRunner().invoke(cli, ["load", str(work), str(root), "--model", stand_in_model], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    assert "imageclust publish-copy" in r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("where", ["beside", "elsewhere"])
def test_two_load_folders(source, tmp_path, stand_in_model, tux_dir, where):
    """Named relative to their common parent; with none but "/", each by its own name
    (never relative to "/", which would keep the absolute path minus its slash)."""
    db, root = source
    work = tmp_path / "two.db"
    shutil.copy(db, work)
    if where == "elsewhere" and not os.access("/var/tmp", os.W_OK):
        pytest.skip("/var/tmp is not writable: no second folder outside /tmp")
    second = Path(tempfile.mkdtemp(dir="/var/tmp" if where == "elsewhere" else tmp_path)) / "Second"
    try:
        second.mkdir()
        shutil.copy(sorted((tux_dir / "fish").iterdir())[0], second / "fish.png")
        r = CliRunner().invoke(cli, ["load", str(work), str(second), "--model", stand_in_model],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
        out = tmp_path / "pub2.db"
        assert _publish(str(work), str(out))[0] == 0
    finally:
        if where == "elsewhere":
            shutil.rmtree(second.parent)
    common = Path(os.path.commonpath([root, second]))
    if where == "elsewhere":
        assert str(common) == "/"
        names = (ROOT_NAME, "Second")
    else:
        names = (str(root.relative_to(common)), str(second.relative_to(common)))
    c = sqlite3.connect(out)
    rows = dict(c.execute("SELECT root, count(*) FROM files GROUP BY root").fetchall())
    assert rows == {names[0]: 11, names[1]: 1}
    assert c.execute("SELECT path, relpath FROM files WHERE root = ?", [names[1]]).fetchone() == (
        f"{names[1]}/fish.png", "fish.png")
    c.close()
    data = out.read_bytes()
    for s in (str(root), str(second), str(second.parent), str(root.parent)):
        assert s.encode() not in data, s


@pytest.mark.asyncio
async def test_exports_work_on_the_copy(source, tmp_path):
    """The copy's paths are relative and its originals are elsewhere: exports still work,
    carry the relative paths and fall back to the stored thumbnails."""
    import csv
    import zipfile

    from datasette.app import Datasette

    db, root = source
    out = tmp_path / "pub.db"
    assert _publish(db, str(out))[0] == 0
    rows_csv, zip_path = tmp_path / "rows.csv", tmp_path / "c.zip"
    for fmt, dest in (("csv", rows_csv), ("zip", zip_path)):
        r = CliRunner().invoke(cli, ["export", str(out), "--format", fmt, "-o", str(dest)])
        assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(rows_csv.open(encoding="utf-8")))
    assert rows and all(r["path"].startswith("Interviewee-3/") for r in rows)
    assert ROOT_NAME not in rows_csv.read_text(encoding="utf-8")
    with zipfile.ZipFile(zip_path) as z:
        manifest = [m for m in z.namelist() if m.endswith("manifest.csv")]
        assert manifest
        listed = list(csv.DictReader(io.TextIOWrapper(z.open(manifest[0]), encoding="utf-8")))
        assert listed and {r["source"] for r in listed} == {"thumbnail"}
    ds = Datasette(immutables=[str(out)])
    r = await ds.client.get("/pub/-/imageclust/export?format=csv")
    assert r.status_code == 200 and ROOT_NAME not in r.text and "Interviewee-3/" in r.text
