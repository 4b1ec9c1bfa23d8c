"""`imageclust load --from EXPORT`: real export-shaped files (a 4CAT-style CSV, a
Zeeschuimer-style NDJSON), real images served by a real local HTTP server that also
misbehaves (tests/imageserver.py), the real stand-in embedder and real SQLite files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from datasette_imageclust.cli import cli
from datasette_imageclust.ingest.download import Limits, address_kind, download_all, fetch
from datasette_imageclust.ingest.exports import split_urls, typed
from datasette_imageclust.pipeline_posts import load_export
from imageserver import ImageServer
from dbrows import rows

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
# Limits small enough for a test: a 1 s read timeout, one retry, a 1 MB cap.
FAST = Limits(allow_private=True, connect_timeout=2, read_timeout=1, retries=1, backoff=0.05, max_bytes=1_000_000)


@pytest.fixture
def images(tux_dir) -> dict[str, bytes]:
    files = sorted((tux_dir / "fruit").glob("*.jpg"))[:6]
    out = {name: f.read_bytes() for name, f in zip("abcdef", files)}
    out = {f"{k}.jpg": v for k, v in out.items()}
    out["a-copy.jpg"] = out["a.jpg"]  # the same bytes at another URL
    return out


@pytest.fixture
def server(images):
    with ImageServer(images) as s:
        yield s


def export_file(tmp_path: Path, name: str, server: ImageServer) -> str:
    text = (EXPORTS / name).read_text().replace("{base}", server.base).replace("{host}", server.base[7:])
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_4cat_csv_loads_posts_images_links_and_every_failure(tmp_path, server, stand_in_model):
    export = export_file(tmp_path, "4cat-twitter.csv", server)
    db = str(tmp_path / "posts.db")
    skipped: list[tuple[str, str]] = []
    s = load_export(db, export, url_column="images", id_column="id", separator=",",
                    columns=["timestamp", "author", "hashtags", "mentions", "likes", "id"], limits=FAST,
                    model=stand_in_model, on_skip=lambda what, why: skipped.append((what, why)))
    assert (s.posts, s.bad_rows, s.links, s.urls, s.fetched, s.failed) == (10, 1, 17, 16, 7, 9)
    # 7 URLs downloaded, 6 contents: a.jpg and a-copy.jpg are one image.
    assert rows(db, "select count(*) from images") == [(6,)]
    assert s.load["new"] == 6 and s.load["errors"] == 0
    assert rows(db, "select count(*) from posts") == [(10,)]
    assert rows(db, "select count(*), count(image_id), count(distinct image_id) from post_images") == [(17, 8, 6)]
    # The image of a.jpg is shared by three posts (two by URL, one by content).
    assert rows(db, """select count(distinct post) from post_images where image_id =
                       (select image_id from post_images where url like '%/img/a.jpg' limit 1)""") == [(3,)]
    failures = dict(rows(db, "select url, error from downloads where status = 'failed'"))
    reasons = {url.replace(server.base, ""): why for url, why in failures.items()}
    assert reasons["/gone404"] == "HTTP 404 Not Found"
    assert reasons["/gone410"] == "HTTP 410 Gone"
    assert reasons["/html"].startswith("not an image (content type text/html")
    assert reasons["/always503"] == "HTTP 503 Service Unavailable (after 1 retries)"
    assert reasons["/slow"].startswith("timed out")
    assert reasons["/loop"] == "more than 5 redirects"
    assert reasons["/endless"] == "too large: more than 1000000 bytes"
    assert reasons["file:///etc/passwd"] == "only http and https URLs are fetched, not file:"
    assert reasons[f"ftp://{server.base[7:]}/x.jpg"] == "only http and https URLs are fetched, not ftp:"
    assert len(reasons) == 9 and {w for w, _ in skipped} >= set(failures)
    assert rows(db, "select export, row, reason from export_errors") == [
        ("4cat-twitter.csv", 5, "12 fields where the header has 11")]
    # 429 (Retry-After) and 503 were retried once, the image kept; the wrong content type is accepted by content.
    assert server.seen["/r429/e.jpg"] == 2 and server.seen["/r503/f.jpg"] == 2
    assert server.seen["/img/a.jpg"] == 1 and server.seen["/img/b.jpg"] == 1  # each in two posts, fetched once
    ok = dict(rows(db, "select url, content_type from downloads where status = 'ok'"))
    assert ok[server.url("/wrongtype/d.jpg")] == "text/plain"
    # Columns typed: dates ISO, numbers numbers, JSON lists JSON; the export's "id", "author" and
    # "hashtags" kept as "id_", "author_", "hashtags_" beside the normalised columns of those names.
    post = rows(db, "select post_id, timestamp, typeof(likes), likes, mentions, hashtags_, id_, author_ from posts "
                    "where post_id = '1764002'")
    assert post == [("1764002", "2024-03-02T11:00:00", "integer", 5, '["alice"]', "cats,reposts", 1764002, "bob")]
    # Mapped by flags, the normalised columns are still filled from the usual names.
    assert rows(db, "select author, created, hashtags, image_count from posts where post_id = '1764002'") == [
        ("bob", "2024-03-02T11:00:00Z", '["cats", "reposts"]', 2)]
    cache = tmp_path / "posts-cache"
    files = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(files) == 6 and all(p.parent.name == p.name[:2] and p.suffix == ".jpg" for p in files)

    # A re-run sends no request and duplicates nothing.
    before = len(server.requests)
    again = load_export(db, export, url_column="images", id_column="id", separator=",",
                        columns=["timestamp", "author", "hashtags", "mentions", "likes", "id"], limits=FAST,
                        model=stand_in_model)
    assert len(server.requests) == before
    assert (again.fetched, again.failed, again.cached, again.failed_before) == (0, 0, 7, 9)
    assert rows(db, "select (select count(*) from images), (select count(*) from posts), "
                    "(select count(*) from post_images), (select count(*) from downloads), "
                    "(select count(*) from files)") == [(6, 10, 17, 16, 6)]


def test_private_and_loopback_addresses_are_refused_without_allow_private(tmp_path, server, stand_in_model):
    export = export_file(tmp_path, "4cat-twitter.csv", server)
    db = str(tmp_path / "p.db")
    s = load_export(db, export, url_column="images", separator=",", limits=Limits(retries=0),
                    model=stand_in_model)
    assert server.requests == []  # not one request reached the server
    assert s.fetched == 0 and s.failed == 16
    errors = [e for (e,) in rows(db, "select error from downloads where url like 'http://127.0.0.1:%'")]
    assert len(errors) == 14
    assert set(errors) == {"127.0.0.1 is a loopback address (--allow-private fetches it)"}
    assert rows(db, "select count(*) from images") == [(0,)]
    assert s.problem == ("no image could be fetched of the 16 URLs: 14 refused as private, loopback or link-local "
                         "addresses (--allow-private fetches them); 2 not http(s) URLs")
    assert rows(db, "select count(*) from posts") == [(10,)]  # the posts are kept
    # The CLI says it in one line and exits 1.
    result = CliRunner().invoke(cli, ["load", db, "--from", export, "--url-column", "images", "--separator", ",",
                                      "--retries", "0", "--model", stand_in_model])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1] == "Error: " + s.problem.replace("16 URLs", "16 URLs")


def test_a_zeeschuimer_ndjson_with_nested_columns(tmp_path, server, stand_in_model):
    export = export_file(tmp_path, "zeeschuimer-tiktok.ndjson", server)
    db = str(tmp_path / "t.db")
    s = load_export(db, export, url_column="data.imagePost.images", id_column="data.id",
                    columns=["data.author.uniqueId", "data.createTime", "data.desc"], limits=FAST,
                    model=stand_in_model)
    assert (s.posts, s.bad_rows, s.links, s.fetched, s.failed) == (3, 1, 3, 3, 0)
    assert rows(db, 'select post_id, "data.author.uniqueId", typeof("data.createTime") from posts order by row') == [
        ("7340000000000000001", "alice", "integer"), ("7340000000000000002", "bob", "integer"),
        ("7340000000000000004", "carol", "integer")]
    assert rows(db, "select row, reason like 'not JSON:%' from export_errors") == [(3, 1)]
    assert rows(db, "select count(*) from images") == [(3,)]


def test_a_server_trickling_its_headers_is_cut_off_by_the_total_timeout(tmp_path, server):
    # Each byte comes within the 1 s read timeout, so only the deadline on the whole
    # response (3 s here) ends the request; before it, http.client read headers for 40 s.
    limits = Limits(allow_private=True, connect_timeout=2, read_timeout=1, total_timeout=3, retries=0)
    f = fetch(server.url("/trickle"), str(tmp_path), limits)
    assert (f.status, f.error) == ("failed", "timed out: the response took more than 3s")


def test_per_host_and_total_concurrency_are_held(tmp_path, server):
    server.slow_ok = 0.3
    # 127.0.0.1 and localhost are two hosts (one server): 2 each at most, 4 in all.
    urls = [f"http://{host}:{server.server_address[1]}/slowok/{n}.jpg" for host in ("127.0.0.1", "localhost")
            for n in "abcdef"]
    got = []
    download_all(urls, str(tmp_path / "cache"), FAST, concurrency=8, per_host=2, on_result=got.append)
    assert len(got) == 12 and all(f.status == "ok" for f in got)
    assert server.max_active == 4
    server.max_active = 0
    download_all([u.replace("slowok", "slowok/x") for u in urls], str(tmp_path / "cache"), FAST,
                 concurrency=3, per_host=2, on_result=got.append)
    assert server.max_active == 3


def test_an_interrupted_download_resumes_without_fetching_twice(tmp_path, server, stand_in_model):
    server.slow_ok = 0.4
    names = [f"{c}.jpg" for c in "abcdef"]
    export = tmp_path / "slow.csv"
    export.write_text("id,image\n" + "".join(f"{i},{server.url('/slowok/' + n)}\n" for i, n in enumerate(names)))
    db = str(tmp_path / "slow.db")
    args = [sys.executable, "-m", "datasette_imageclust", "load", db, "--from", str(export), "--url-column", "image",
            "--concurrency", "1", "--allow-private", "--model", stand_in_model]
    log = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while server.count("/slowok/") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.count("/slowok/") >= 3, (tmp_path / "stderr").read_text()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    done = [u for (u,) in rows(db, "select url from downloads where status = 'ok'")]
    assert 2 <= len(done) < 6  # killed mid-run, after some downloads
    server.slow_ok = 0
    result = CliRunner().invoke(cli, args[3:])
    assert result.exit_code == 0, result.output
    for url in done:
        assert server.seen[url.replace(server.base, "")] == 1  # never fetched again
    assert rows(db, "select count(*), sum(status = 'ok') from downloads") == [(6, 6)]
    assert rows(db, "select count(*), count(image_id) from post_images") == [(6, 6)]
    assert rows(db, "select count(*) from images") == [(6,)]
    assert not any((tmp_path / "slow-cache" / ".partial").iterdir())


@pytest.mark.parametrize("args, message", [
    (["--from", "{txt}"], "cannot tell which tool wrote"),
    (["--from", "{csv}", "--id-column", "id"], "--id-column goes with --url-column"),
    (["--from", "{csv}", "--export-format", "nosuch"], "no export format 'nosuch'"),
    (["--from", "{csv}", "--url-column", "pictures"], "has no column 'pictures' (its columns: id, thread_id"),
    (["--from", "{csv}", "--url-column", "images", "photos"], "give PATH... or --from EXPORT, not both"),
    (["--url-column", "images", "photos"], "--url-column goes with --from EXPORT"),
    (["--columns", "date", "photos"], "--columns goes with --from EXPORT"),
    (["--sidecars", "--from", "{csv}", "--url-column", "images"], "--sidecars goes with folders (PATH...), not --from"),
    ([], "give PATH... (folders or image files) or --from EXPORT"),
    (["--from", "{missing}", "--url-column", "images"], "cannot read"),
    (["--from", "{bin}", "--url-column", "images"], "cannot tell the format"),
    (["--from", "{csv}", "--url-column", "images", "--per-host", "0"], "--per-host must be between 1 and 64"),
    (["--from", "{csv}", "--url-column", "images", "--columns", "id", "--all-columns"], "not both"),
    (["--from", "{csv}", "--url-column", "images", "--cache", "{txt}", "--model", "{model}"],
     "as the cache folder: File exists"),
])
def test_bad_options_and_exports_are_one_line_and_write_nothing(tmp_path, args, message, stand_in_model):
    (tmp_path / "x.txt").write_text("id,images\n")
    (tmp_path / "x.bin").write_bytes(b"\x00\x01binary")
    paths = {"csv": str(EXPORTS / "4cat-twitter.csv"), "missing": str(tmp_path / "nope.csv"), "bin": str(tmp_path / "x.bin"),
             "txt": str(tmp_path / "x.txt"), "model": stand_in_model}
    db = tmp_path / "x.db"
    result = CliRunner().invoke(cli, ["load", str(db), *[a.format(**paths) for a in args]])
    assert result.exit_code != 0 and result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output
    assert not db.exists()


def test_cells_are_typed_and_split_as_documented():
    assert [typed(v) for v in ("12", "-3", "007", "1.5", "2024-03-02 10:11:12", "2024-03-02", "2024-03-02T10:11:12Z",
                               '["a", "b"]', "[not json", "", "text", True, [1, 2])] == [
        12, -3, "007", 1.5, "2024-03-02T10:11:12", "2024-03-02", "2024-03-02T10:11:12+00:00", '["a", "b"]',
        "[not json", None, "text", 1, "[1, 2]"]
    assert split_urls("http://a/1.jpg, http://a/2.jpg", ",") == ["http://a/1.jpg", "http://a/2.jpg"]
    assert split_urls('["http://a/1.jpg", "http://a/2.jpg"]', None) == ["http://a/1.jpg", "http://a/2.jpg"]
    assert split_urls("http://a/1.jpg,x", None) == ["http://a/1.jpg,x"]  # no separator named: one URL
    assert split_urls([{"url": "http://a/1.jpg"}, " ", None], None) == ["http://a/1.jpg"]
    assert json.loads(typed({"k": "é"})) == {"k": "é"}


def test_ctrl_c_during_downloads_exits_130_saying_how_to_resume(tmp_path, server, stand_in_model):
    server.slow_ok = 0.5
    export = tmp_path / "e.csv"
    export.write_text("id,image\n" + "".join(f"{i},{server.url(f'/slowok/{c}.jpg')}\n" for i, c in enumerate("abcdef")))
    db = str(tmp_path / "e.db")
    args = [sys.executable, "-m", "datasette_imageclust", "load", db, "--from", str(export), "--url-column", "image",
            "--concurrency", "2", "--allow-private", "--model", stand_in_model]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while server.count("/slowok/") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: run the same command again to resume" in err and "Traceback" not in err
    kept = rows(db, "select count(*) from downloads where status = 'ok'")[0][0]
    assert 1 <= kept < 6
    server.slow_ok = 0
    assert subprocess.run(args, capture_output=True).returncode == 0
    assert rows(db, "select count(*), count(image_id) from post_images") == [(6, 6)]


def test_json_and_tsv_exports_are_read_row_by_row(tmp_path):
    from datasette_imageclust.ingest.exports import BadRow, ExportError, read_export

    j = tmp_path / "arena.json"
    j.write_text(json.dumps({"posts": [{"id": 7, "image": {"url": "https://x/1.png"}, "created_at": "2024-01-05"},
                                       "not a post", {"id": 8, "image": None}]}))
    got = list(read_export(str(j), url_column="image.url", id_column="id", all_columns=True))
    assert [(r.row, r.post_id, r.urls) for r in got if not isinstance(r, BadRow)] == [
        (1, "7", ["https://x/1.png"]), (3, "8", [])]
    assert got[0].columns == {"id": 7, "image": '{"url": "https://x/1.png"}', "created_at": "2024-01-05"}
    assert [(r.row, r.reason) for r in got if isinstance(r, BadRow)] == [(2, "not a JSON object but str")]
    t = tmp_path / "tcat.tsv"
    t.write_bytes(b"id\tmedia_urls\ttext\n1\thttps://x/a.jpg https://x/b.jpg\tcaf\xe9\n\n2\t\tok\n")
    rows_ = list(read_export(str(t), url_column="media_urls", separator=" ", columns=["text"]))
    assert [(r.post_id, r.urls, r.columns) for r in rows_] == [
        ("1", ["https://x/a.jpg", "https://x/b.jpg"], {"text": "caf\ufffd"}), ("2", [], {"text": "ok"})]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ExportError, match="is not JSON"):
        read_export(str(tmp_path / "bad.json"), url_column="u")
    with pytest.raises(ExportError, match="cannot read"):
        read_export(str(tmp_path / "none.csv"), url_column="u")


def test_sidecars_of_gallery_dl_and_instaloader_become_posts(tmp_path, images, stand_in_model):
    import lzma

    side = EXPORTS / "sidecars"
    folder = tmp_path / "downloads"
    g = folder / "gallery-dl" / "twitter" / "alice"
    i = folder / "instaloader" / "cats"
    g.mkdir(parents=True)
    i.mkdir(parents=True)
    tweet = json.loads((side / "gallery-dl-tweet.json").read_text())
    for n, name in ((1, "a.jpg"), (2, "b.jpg")):  # gallery-dl: one sidecar per file, NAME.EXT.json
        (g / f"1764001_{n}.jpg").write_bytes(images[name])
        (g / f"1764001_{n}.jpg.json").write_text(json.dumps({**tweet, "num": n}))
    for n, name in ((1, "c.jpg"), (2, "a-copy.jpg")):  # Instaloader: POST_1.jpg, POST_2.jpg, POST.json.xz
        (i / f"2024-03-02_11-00-00_UTC_{n}.jpg").write_bytes(images[name])
    (i / "2024-03-02_11-00-00_UTC.json.xz").write_bytes(lzma.compress((side / "instaloader-post.json").read_bytes()))
    (folder / "lonely.jpg").write_bytes(images["d.jpg"])  # no sidecar: an image, no post
    (folder / "broken.jpg").write_bytes(images["e.jpg"])
    (folder / "broken.jpg.json").write_text('{"tweet_id": ')
    db = str(tmp_path / "s.db")
    args = ["load", db, str(folder), "--sidecars", "--model", stand_in_model, "--columns",
            "date,author.name,hashtags,favorite_count,node.owner.username,node.taken_at_timestamp"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # gallery-dl writes a sidecar per file: the two of tweet 1764001 are one post.
    assert "sidecars: 2 posts linking 4 images, 1 unreadable" in result.output
    assert "broken.jpg.json: not JSON" in result.output
    posts = rows(db, 'select export, post_id, platform, author, created, hashtags, permalink, image_count, '
                     '"author.name", date, favorite_count, "node.owner.username", "node.taken_at_timestamp" '
                     "from posts order by export")
    assert posts == [
        ("gallery-dl:x", "1764001", "x", "alice", "2024-03-02T10:11:12Z", '["cats"]',
         "https://x.com/alice/status/1764001", 2, "alice", "2024-03-02T10:11:12", 12, None, None),
        ("instaloader:instagram", "C4abcDEFghi", "instagram", "bob", "2024-03-02T11:00:00Z", '["cats", "reposts"]',
         "https://www.instagram.com/p/C4abcDEFghi/", 2, None, None, None, "bob", 1709377200)]
    # a.jpg is in the tweet and (as a-copy) in the Instaloader post: one image, two posts.
    assert rows(db, "select count(*), count(distinct image_id), count(distinct post) from post_images") == [(4, 3, 2)]
    assert rows(db, "select count(*) from images") == [(5,)]
    assert rows(db, "select reason like 'not JSON:%' from export_errors") == [(1,)]
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert rows(db, "select (select count(*) from posts), (select count(*) from post_images)") == [(2, 4)]


def test_every_redirect_hop_is_checked_and_internal_addresses_are_named(tmp_path, server):
    import ipaddress

    f = fetch(server.url("/tofile"), str(tmp_path), FAST)
    assert (f.status, f.error) == ("failed", "only http and https URLs are fetched, not file:")
    kinds = {a: address_kind(ipaddress.ip_address(a)) for a in (
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "::1", "fe80::1",
        "::ffff:127.0.0.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "8.8.8.8", "2606:4700:4700::1111")}
    assert kinds == {"127.0.0.1": "a loopback", "10.1.2.3": "a private", "172.16.0.1": "a private",
                     "192.168.1.1": "a private", "169.254.169.254": "a link-local", "::1": "a loopback",
                     "fe80::1": "a link-local", "::ffff:127.0.0.1": "a loopback", "100.64.0.1": "a non-public",
                     "0.0.0.0": "an unspecified", "224.0.0.1": "a multicast", "8.8.8.8": None,
                     "2606:4700:4700::1111": None}
