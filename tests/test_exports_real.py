"""Every export fixture built from a real tool's field names (tests/fixtures/exports/<tool>/,
each folder's README names the upstream source files) loads completely with NO mapping
flag: `imageclust load DB --from FILE` recognises it, every image URL its format maps (the
mapping itself is checked against hand-written values in tests/test_formats_*.py; here
the file is parsed by the test's own plain reader) is linked, every image a local server
has is downloaded and loaded, and every post has an author and a date. Then the sidecar
folders of gallery-dl and Instaloader, grouped one post per post."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from dbrows import rows
from imageserver import ImageServer

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
# Posts whose source has no date at all (the fixture READMEs say why): never made up.
UNDATED = {"fourcat/instagram.csv": 1,  # 4CAT's partial_item (a grid item Zeeschuimer saw without a date)
           "zeeschuimer/instagram.ndjson": 1,  # a partial Polaris grid item (display_uri, no taken_at)
           "zeeschuimer/instagram.csv": 1,  # the same partial item as Zeeschuimer's CSV writes it (timestamp 0)
           "zeeschuimer/pinterest.ndjson": 2}  # a pin without created_at, and an HTML item
ANONYMOUS = {"zeeschuimer/pinterest.ndjson": 1}  # the HTML item: a pin scraped from the page names nobody
TOOLS = {"tcat": "DMI-TCAT", "zeeschuimer": "Zeeschuimer", "fourcat": "4CAT"}
# Telegram exports carry no image URL (tested below, as the ZIP's metadata is).
FILES = sorted(p for tool in TOOLS for p in (EXPORTS / tool).glob("*")
               if p.suffix in (".csv", ".tsv", ".ndjson", ".jsonl", ".json")
               and not p.name.startswith("telegram") and not p.name.endswith(".metadata.json"))


def plain_records(text: str, suffix: str) -> tuple[str, list[str], list[dict], str | None]:
    """The file's kind, header and records, read the plainest way (not with the loader's reader)."""
    if suffix in (".ndjson", ".jsonl"):
        out = []
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return "ndjson", [], out, None
    if suffix == ".json":
        return "json", [], json.loads(text), None
    text = text.lstrip("\ufeff")
    delimiter = "\t" if suffix == ".tsv" else (";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",")
                                                else ",")
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    return ("tsv" if suffix == ".tsv" else "csv"), list(reader.fieldnames or []), list(reader), delimiter


def mapped_urls(text: str, suffix: str) -> set[str]:
    from datasette_imageclust.ingest import formats
    from datasette_imageclust.ingest.formats.base import RowError, Sample

    kind, header, records, delimiter = plain_records(text, suffix)
    found = formats.recognise(Sample(kind, header, records[:20], delimiter))
    assert found is not None
    urls: set[str] = set()
    for rec in records:
        try:
            urls.update(found[0].post(rec).urls)
        except RowError:
            pass
    return urls


@pytest.fixture(scope="module")
def server(tux_dir):
    files = sorted((tux_dir / "fruit").glob("*.jpg"))[:6]
    images = {f"{c}.jpg": f.read_bytes() for c, f in zip("abcdef", files)}
    images["a-copy.jpg"] = images["a.jpg"]
    with ImageServer(images) as s:
        yield s


def test_there_are_fixtures_of_every_tool():
    assert {p.parent.name for p in FILES} == set(TOOLS)


@pytest.mark.parametrize("fixture", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_real_export_loads_completely_with_no_mapping_flag(fixture, tmp_path, server, stand_in_model):
    raw = fixture.read_bytes().decode("utf-8")
    export = tmp_path / fixture.name
    export.write_bytes(raw.replace("{base}", server.base).encode("utf-8"))
    in_file = mapped_urls(raw.replace("{base}", server.base), fixture.suffix)
    assert in_file, f"{fixture} maps to no image URL"
    db = str(tmp_path / "x.db")
    result = CliRunner().invoke(cli, ["load", db, "--from", str(export), "--allow-private", "--retries", "0",
                                      "--model", stand_in_model, "--json"])
    assert result.exit_code == 0, result.output
    assert f"recognised: {TOOLS[fixture.parent.name]}" in result.stderr
    summary = json.loads(result.stdout)
    # Every URL of the file is a link of some post: none is lost (and none made up).
    linked = {u for (u,) in rows(db, "select distinct url from post_images")}
    assert linked == in_file
    # The summary's numbers are the tables'.
    assert summary["posts"] == rows(db, "select count(*) from posts")[0][0]
    assert summary["links"] == rows(db, "select count(*) from post_images")[0][0]
    assert summary["urls"] == len(linked)
    # Every image the server has is downloaded and loaded; only what it lacks failed.
    good = {u for u in linked if "/img/" in u}
    assert {u for (u,) in rows(db, "select url from downloads where status = 'ok'")} == good
    assert rows(db, "select count(*) from post_images where url in (%s) and image_id is null"
                % ",".join("?" * len(good)), list(good)) == [(0,)]
    # Every post knows its author and date, and how many images it has.
    assert rows(db, "select count(*) from posts where author is null") == [
        (ANONYMOUS.get(f"{fixture.parent.name}/{fixture.name}", 0),)]
    assert rows(db, "select count(*) from posts where created is null") == [
        (UNDATED.get(f"{fixture.parent.name}/{fixture.name}", 0),)]
    assert rows(db, "select count(*) from posts p where image_count != "
                    "(select count(*) from post_images where post = p.id)") == [(0,)]
    assert rows(db, "select count(*) from posts where created not glob '[0-9][0-9][0-9][0-9]-[0-9][0-9]-*Z'") == [(0,)]


def test_tcat_hashtags_are_exact(tmp_path, server, stand_in_model):
    # tcat-fullExport.csv's first tweet: hashtags "cats; Dogs" (TCAT joins with "; ").
    src = EXPORTS / "tcat" / "tcat-fullExport.csv"
    export = tmp_path / src.name
    export.write_text(src.read_text(encoding="utf-8-sig").replace("{base}", server.base), encoding="utf-8-sig")
    db = str(tmp_path / "t.db")
    result = CliRunner().invoke(cli, ["load", db, "--from", str(export), "--allow-private", "--model",
                                      stand_in_model])
    assert result.exit_code == 0, result.output
    assert rows(db, "select hashtags, author, created, permalink, image_count from posts "
                    "where post_id = '1763869657003001234'") == [
        ('["cats", "dogs"]', "alice", "2024-03-02T10:11:12Z",
         "https://twitter.com/alice/status/1763869657003001234", 4)]
    tags = [t for (h,) in rows(db, "select hashtags from posts where hashtags is not null") for t in json.loads(h)]
    assert tags and not [t for t in tags if t != t.strip() or ";" in t or "#" in t]


def _folder(tool: str, tux_dir: Path, tmp_path: Path) -> Path:
    """The tool's fixture folder with the images its manifest names copied in beside the sidecars."""
    folder = tmp_path / tool
    shutil.copytree(EXPORTS / tool, folder)
    for line in (folder / "manifest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            target, stamp = line.split("\t")
            shutil.copy(tux_dir / stamp, folder / target)
    return folder


@pytest.mark.parametrize("tool, posts, images", [("gallery-dl", 6, 9), ("instaloader", 5, 7)])
def test_sidecar_folders_load_one_post_per_post(tool, posts, images, tmp_path, tux_dir, stand_in_model):
    import lzma

    folder = _folder(tool, tux_dir, tmp_path)
    if tool == "instaloader":  # Instaloader compresses its sidecars (the fixtures are kept readable)
        for side in folder.rglob("*.json"):
            side.with_name(side.name + ".xz").write_bytes(lzma.compress(side.read_bytes()))
            side.unlink()
    db = str(tmp_path / "s.db")
    result = CliRunner().invoke(cli, ["load", db, str(folder), "--sidecars", "--model", stand_in_model])
    assert result.exit_code == 0, result.output
    assert rows(db, "select count(*) from posts") == [(posts,)]
    assert rows(db, "select count(*), count(distinct image_id) from post_images") == [(images, images)]
    assert rows(db, "select count(*) from posts where author is null or created is null or platform is null") \
        == [(0,)]


@pytest.mark.parametrize("name", ["telegram.csv", "telegram.ndjson"])
def test_a_telegram_export_says_where_its_images_are(name, tmp_path, stand_in_model):
    db = tmp_path / "t.db"
    result = CliRunner().invoke(cli, ["load", str(db), "--from", str(EXPORTS / "fourcat" / name), "--model",
                                      stand_in_model])
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: ") and f"{name} is 4CAT Telegram" in line and '"Download images"' in line
    assert not db.exists()


def test_4cats_image_zip_loads_its_images_linked_to_their_posts(tmp_path, tux_dir, stand_in_model):
    from test_formats_fourcat import build_zip

    meta = json.loads((EXPORTS / "fourcat" / "download-images.metadata.json").read_text()
                      .replace("{base}", "https://cdn.example"))
    zpath = build_zip(tmp_path, tux_dir, meta)
    db = str(tmp_path / "z.db")
    args = ["load", db, "--from", str(zpath), "--model", stand_in_model, "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "recognised: 4CAT image-download ZIP" in result.stderr
    s = json.loads(result.stdout)
    ok = {url for url, entry in meta.items() if entry.get("success") is True}
    failed = {url for url, entry in meta.items() if entry.get("success") is not True}
    post_ids = {str(p) for entry in meta.values() for p in entry.get("post_ids", [])}
    # Nothing downloaded: every file came from the ZIP, every post and link is there.
    assert (s["unpacked"], s["fetched"], s["failed"], s["posts"]) == (len(ok), 0, len(failed), len(post_ids))
    assert {p for (p,) in rows(db, "select post_id from posts")} == post_ids
    linked = dict(rows(db, "select url, count(image_id) from post_images group by url"))
    assert set(linked) == ok | failed
    assert all(linked[u] > 0 for u in ok) and all(linked[u] == 0 for u in failed)
    assert rows(db, "select count(*) from images")[0][0] == len({e["filename"] for u, e in meta.items() if u in ok})
    # A re-run takes nothing again and duplicates nothing.
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    s2 = json.loads(again.stdout)
    assert (s2["unpacked"], s2["cached"], s2["failed_before"]) == (0, len(ok), len(failed))
    assert rows(db, "select count(*) from posts") == [(len(post_ids),)]


def test_4cats_ndjson_of_a_zeeschuimer_import_reads_as_the_capture(tmp_path, server, stand_in_model):
    # 4CAT keeps an imported item as the platform's JSON with Zeeschuimer's envelope moved
    # to __import_meta (4cat common/lib/helpers.py format_import_item); its NDJSON download is that.
    src = (EXPORTS / "zeeschuimer" / "instagram.ndjson").read_text().replace("{base}", server.base)
    moved = []
    for line in src.splitlines():
        item = json.loads(line)
        if isinstance(item.get("data"), dict):
            moved.append(json.dumps({**item.pop("data"), "__import_meta": item}))
    (tmp_path / "zs.ndjson").write_text(src)
    (tmp_path / "4cat.ndjson").write_text("\n".join(moved) + "\n")
    got = {}
    for name in ("zs.ndjson", "4cat.ndjson"):
        db = str(tmp_path / f"{name}.db")
        result = CliRunner().invoke(cli, ["load", db, "--from", str(tmp_path / name), "--allow-private",
                                          "--retries", "0", "--model", stand_in_model])
        assert result.exit_code == 0, result.output
        got[name] = (rows(db, "select post_id, platform, permalink, author, created, text, hashtags, image_count "
                              "from posts order by post_id"),
                     rows(db, "select p.post_id, pi.position, pi.url from post_images pi join posts p on p.id = "
                              "pi.post order by 1, 2"))
    assert "recognised: 4CAT NDJSON of a Zeeschuimer import, instagram.com" in result.stderr
    assert got["4cat.ndjson"] == got["zs.ndjson"] and len(got["zs.ndjson"][0]) >= 8


def test_an_unpacked_4cat_zip_loads_with_from_and_a_folder_load_says_so(tmp_path, tux_dir, stand_in_model):
    import zipfile

    from test_formats_fourcat import build_zip

    meta = json.loads((EXPORTS / "fourcat" / "download-images.metadata.json").read_text()
                      .replace("{base}", "https://cdn.example"))
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(build_zip(tmp_path, tux_dir, meta)) as zf:
        zf.extractall(folder)
    plain = CliRunner().invoke(cli, ["load", str(tmp_path / "plain.db"), str(folder), "--model", stand_in_model])
    assert plain.exit_code == 0, plain.output
    assert f"--from {folder} links its images to their posts" in plain.stderr
    db = str(tmp_path / "u.db")
    result = CliRunner().invoke(cli, ["load", db, "--from", str(folder) + "/", "--model", stand_in_model])
    assert result.exit_code == 0, result.output
    assert {e for (e,) in rows(db, "select distinct export from posts")} == {"unpacked"}
    post_ids = {str(p) for entry in meta.values() for p in entry.get("post_ids", [])}
    assert {p for (p,) in rows(db, "select post_id from posts")} == post_ids
    ok = sum(entry.get("success") is True for entry in meta.values())
    assert rows(db, "select count(distinct url) from post_images where image_id is not null") == [(ok,)]


@pytest.mark.parametrize("network", ["hashtags", "authors", "knn"])
def test_a_zeeschuimer_load_exports_valid_networks_labelled_by_post(network, tmp_path, server, stand_in_model):
    """The issue's finish line: a Zeeschuimer Instagram capture, loaded with no flag and
    clustered, exported as GEXF and GraphML that the official schemas accept, its image
    nodes labelled by their post (never a cache hash) and carrying author and url."""
    from test_export_posts import read_graph
    from xsd import errors

    src = (EXPORTS / "zeeschuimer" / "instagram.ndjson").read_text().replace("{base}", server.base)
    (tmp_path / "ig.ndjson").write_text(src)
    db = str(tmp_path / "ig.db")
    runner = CliRunner()
    result = runner.invoke(cli, ["load", db, "--from", str(tmp_path / "ig.ndjson"), "--allow-private",
                                 "--retries", "0", "--model", stand_in_model])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["cluster", db, "--method", "kmeans", "--clusters", "2", "--no-layout"])
    assert result.exit_code == 0, result.output
    first = {}  # each image's first post (the earliest dated): the last row per image, read in reverse
    for iid, author, url in reversed(rows(
            db, "select pi.image_id, p.author, pi.url from post_images pi join posts p on p.id = pi.post "
                "where pi.image_id is not null order by pi.image_id, p.created is null, p.created, p.id, "
                "pi.position")):
        first[iid] = (author, url)
    hashes = {h for (h,) in rows(db, "select sha256 from images")}
    for fmt in ("gexf", "graphml"):
        out = tmp_path / f"{network}-{fmt}"
        result = runner.invoke(cli, ["export", db, "--format", fmt, "-o", str(out), "--network", network])
        assert result.exit_code == 0, result.output
        assert errors(out / f"network.{fmt}", fmt) == []
        nodes, edges, _ = read_graph(out, fmt)
        images = {n: v for n, v in nodes.items() if v[1].get("type", "image") == "image"}
        assert len(images) == len(first) >= 5 and edges  # the server has 6 distinct images
        for label, attrs in images.values():
            assert label.startswith("@") and " · instagram " in label
            assert not any(h[:12] in label for h in hashes)
            assert (attrs["author"], attrs["url"]) in first.values()
            assert label.startswith("@" + attrs["author"] + " · ")
