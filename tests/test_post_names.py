"""Every result traceable to its post: an image downloaded from posts is named by its first
post (store/imagenames.py) on the pages and contact sheets, never by its cache file's
name (a hash); its cluster's ``terms`` label comes from the posts' text and hashtags, never
from hex; the cluster timeline's bins follow the span; the posts table facets by platform
and hashtag. Real SQLite databases (tests/postsdb.py), a real Datasette, real PDFs."""
from __future__ import annotations

import json
import re
from html import unescape

import pytest

from datasette_imageclust.analysis import labels
from datasette_imageclust.store import connection as dbmod
from dbrows import rows as sql
from postsdb import LONG_ID, clusters, make_posts_db
from test_plugin_pages import get_json, make_ds

pypdf = pytest.importorskip("pypdf", reason="pypdf (the test extra) reads the PDFs back")
FIRST = "@carol_singer · 2024-03-01 · instagram C4xYzAbCdEfG…"  # image 1's first post (the earliest)


@pytest.fixture
def posts_db(tmp_path) -> str:
    return make_posts_db(str(tmp_path / "posts.db"))


def _title(html: str) -> str:
    return unescape(re.search(r"<title>(.*?)</title>", html, re.S).group(1)).strip()


@pytest.mark.asyncio
async def test_the_image_page_title_is_the_first_post_not_the_cache_file(posts_db):
    (sha,) = sql(posts_db, "select sha256 from images where id = 1")[0]
    (relpath,) = sql(posts_db, "select relpath from files where image_id = 1")[0]
    assert relpath == f"{sha[:2]}/{sha}.jpg"  # named as a download cache names it
    ds = make_ds([posts_db])
    html = (await ds.client.get("/posts/-/imageclust/image/1")).text
    assert _title(html) == FIRST
    assert f"<h1>{FIRST}</h1>" in html and sha not in _title(html)
    assert (await get_json(ds, "/posts/-/imageclust/image/1.json"))["name"] == FIRST
    # ... with a link to that post, only when it is a web link.
    assert f'<a class="ic-permalink" href="https://www.instagram.com/p/{LONG_ID}/"' in html
    db = dbmod.connect(posts_db)
    with db.conn:
        db.execute("UPDATE posts SET permalink = 'javascript:alert(1)' WHERE post_id = ?", [LONG_ID])
    dbmod.close(db)
    html = (await ds.client.get("/posts/-/imageclust/image/1")).text
    assert "ic-permalink" not in html and "javascript:" not in html
    # Image 2's only post is its cluster's author's.
    (author,) = sql(posts_db, "select p.author from posts p join post_images pi on pi.post = p.id "
                              "where pi.image_id = 2")[0]
    assert _title((await ds.client.get("/posts/-/imageclust/image/2")).text) == f"@{author} · 2024-03-07 · instagram P2"
    # The cluster page's tiles are named by the posts too, never by a hash.
    cid = next(c for c, ids in clusters(posts_db).items() if 1 in ids)
    members = (await get_json(ds, f"/posts/-/imageclust/cluster/{cid}.json"))["members"]
    assert {m["image_id"]: m["name"] for m in members}[1] == FIRST
    assert all(m["name"].startswith("@") for m in members)
    html = (await ds.client.get(f"/posts/-/imageclust/cluster/{cid}")).text
    assert f'title="{FIRST}"' in html
    for (h,) in sql(posts_db, "select sha256 from images"):
        assert f"{h[:2]}/{h}" not in html


@pytest.mark.asyncio
async def test_without_the_posts_the_name_is_the_path(posts_db):
    ds = make_ds([posts_db], databases={"posts": {"tables": {"posts": {"allow": False}}}})
    (relpath,) = sql(posts_db, "select relpath from files where image_id = 1")[0]
    assert _title((await ds.client.get("/posts/-/imageclust/image/1")).text) == relpath
    ds = make_ds([posts_db], databases={"posts": {"tables": {"posts": {"allow": False}, "files": {"allow": False}}}})
    assert _title((await ds.client.get("/posts/-/imageclust/image/1")).text) == "image 1"


def test_the_contact_sheet_names_images_by_their_posts(posts_db, tmp_path):
    from datasette_imageclust.pipeline import export

    db = dbmod.connect(posts_db, readonly=True, create=False)
    try:
        export(db, "contact-sheet", tmp_path / "sheet.pdf", dpi=100)
    finally:
        dbmod.close(db)
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(tmp_path / "sheet.pdf").pages)
    # On two lines: "@author · date", then "platform id".
    assert "@carol_singer · 2024-03-01" in text and "instagram C4xYzAbCdEfG…" in text
    assert "@alice_wonder · 2024-03-" in text and "@Bob_Builder · 2024-03-" in text
    for (sha,) in sql(posts_db, "select sha256 from images"):
        assert sha[:8] not in text


def test_terms_labels_come_from_the_posts_never_from_hex(posts_db):
    db = dbmod.connect(posts_db)
    try:
        (run_id,) = db.execute("SELECT id FROM cluster_runs WHERE is_default = 1").fetchone()
        with db.conn:
            assert labels.terms_labels(db, run_id) == 2
        got = {cid: (label, json.loads(detail)) for cid, label, detail in db.execute(
            "SELECT cluster_id, label, detail FROM cluster_labels WHERE source = 'terms'")}
    finally:
        dbmod.close(db)
    groups = clusters(posts_db)
    by_author = {}
    for cid, ids in groups.items():
        (author,) = sql(posts_db, "select p.author from posts p join post_images pi on pi.post = p.id "
                                  "where pi.image_id = ? and p.author != 'carol_singer'", [ids[-1]])[0]
        by_author[author] = got[cid]
    alice, bob = by_author["alice_wonder"], by_author["Bob_Builder"]
    # Words of the cluster's own posts (text and hashtags), and nothing else.
    assert set(alice[0].split(", ")) <= {"protestsign", "cats", "marching", "downtown", "banners"}
    assert set(bob[0].split(", ")) <= {"sunsetbeach", "golden", "sunset", "harbour", "thanks"}
    assert {"protestsign", "cats"} <= {t["term"] for t in alice[1]["terms"]} or len(alice[1]["terms"]) == 3
    assert alice[1]["from"] == bob[1]["from"] == "posts"
    for label, detail in got.values():
        for term in (t["term"] for t in detail["terms"]):
            assert not re.fullmatch(r"[0-9a-f]+", term), term
            # Neither @mentions nor the words of a poster's name ("thanks alice_wonder").
            assert "bob" not in term and "alice" not in term and "wonder" not in term
    # Hex runs are never words, in file names or texts; real words stay.
    assert labels.tokens("02/027737abcf3e9e1d0c.jpg") == set()
    assert labels.tokens("deadbeefcafe/decade_face.png") == {"decade", "face"}


def test_all_hex_file_names_give_no_words(tmp_path):
    from synthdb import make_db

    path = make_db(str(tmp_path / "hexnames.db"), 12, clusters=2, seed=3)
    db = dbmod.connect(path)
    try:
        with db.conn:  # short hex names (under the 6 digits of a hex run) and real words beside them
            db.execute("UPDATE files SET relpath = 'abcd3/harbour/' || printf('%x', 40000 + id) || 'fe.jpg'")
        words = labels.image_words(db)
    finally:
        dbmod.close(db)
    assert set(words) == set(range(1, 13)) and all(w == {"harbour"} for w in words.values()), words


def test_file_names_still_label_a_folder_load(tmp_path):
    # No posts: the terms come from the (non-hex) folder names, as before.
    from synthdb import make_db

    path = make_db(str(tmp_path / "plain.db"), 12, clusters=2, seed=3)
    db = dbmod.connect(path)
    try:
        with db.conn:
            db.execute("UPDATE files SET relpath = 'harbour/' || relpath")
            (run_id,) = db.execute("SELECT id FROM cluster_runs WHERE is_default = 1").fetchone()
            labels.terms_labels(db, run_id)
        details = [json.loads(d) for (d,) in db.execute("SELECT detail FROM cluster_labels WHERE source = 'terms'")]
    finally:
        dbmod.close(db)
    assert all(d["from"] == "file names" and d["terms"] for d in details)


def _dated(path: str, dates: list[str]) -> tuple[str, int]:
    """A posts database whose first cluster's posts have ``dates`` (its first images)."""
    make_posts_db(path)
    cid, ids = next(iter(clusters(path).items()))
    assert len(ids) >= len(dates)
    db = dbmod.connect(path)
    with db.conn:
        db.execute("DELETE FROM post_images WHERE post = (SELECT id FROM posts WHERE post_id = ?)", [LONG_ID])
        db.execute("DELETE FROM posts WHERE post_id = ?", [LONG_ID])
        for iid in ids:
            db.execute("UPDATE posts SET created = ? WHERE post_id = ?",
                       [dates[ids.index(iid)] if ids.index(iid) < len(dates) else None, f"P{iid}"])
    dbmod.close(db)
    return path, cid


@pytest.mark.asyncio
@pytest.mark.parametrize("dates, unit, bins, title", [
    # 2 weeks: a bar a day, every day from the first to the last.
    (["2024-03-01T10:00:00Z", "2024-03-03T23:59:59Z", "2024-03-03T00:00:00Z", "2024-03-14T12:00:00Z"],
     "day", 14, "2024-03-03: 2 posts"),
    # ~4 months: ISO weeks from Monday (2024-01-03 and -04 are in the week of Monday 2024-01-01).
    (["2024-01-03T10:00:00Z", "2024-01-04T10:00:00Z", "2024-04-30T10:00:00Z"],
     "week", 18, "2024-W01 (2024-01-01 to 2024-01-07): 2 posts"),
    # 2 years: months.
    (["2023-01-15T10:00:00Z", "2024-12-20T10:00:00Z", "2023-01-31T10:00:00Z"], "month", 24, "2023-01: 2 posts"),
])
async def test_the_timeline_bins_follow_the_span(tmp_path, dates, unit, bins, title):
    path, cid = _dated(str(tmp_path / "dated.db"), dates)
    ds = make_ds([path])
    got = (await get_json(ds, f"/dated/-/imageclust/cluster/{cid}.json"))["posts"]["timeline"]
    assert got["unit"] == unit and len(got["bins"]) == bins
    assert sum(b["posts"] for b in got["bins"]) == len(dates)
    assert [b["start"] for b in got["bins"]] == sorted(b["start"] for b in got["bins"])
    html = (await ds.client.get(f"/dated/-/imageclust/cluster/{cid}")).text
    svg = re.search(r'<svg class="ic-timeline".*?</svg>', html, re.S).group(0)
    assert svg.count("<rect ") == bins
    assert f"<title>{title}</title>" in svg and f"posts per {unit}" in svg


@pytest.mark.asyncio
async def test_the_posts_table_facets_by_platform_and_hashtag(posts_db):
    ds = make_ds([posts_db])
    await ds.invoke_startup()
    r = await ds.client.get("/posts/posts.json?_extra=facet_results")
    assert r.status_code == 200, r.text[:300]
    facets = r.json()["facet_results"]
    facets = facets.get("results", facets)
    assert {"created", "author", "platform", "hashtags"} <= set(facets)
    assert {f["value"]: f["count"] for f in facets["platform"]["results"]} == {"instagram": 13}
    tags = {f["value"]: f["count"] for f in facets["hashtags"]["results"]}
    groups = [len(ids) for ids in clusters(posts_db).values()]
    assert tags["sunsetbeach"] in groups and tags["protestsign"] == tags["cats"] in groups


def test_a_sidecar_post_is_named_by_its_file_not_its_folders():
    from datasette_imageclust.store.imagenames import post_name

    # A sidecar's post id is its path on the loading machine: only its file name is shown.
    assert post_name("alice", "2024-03-02T10:11:12Z", "instagram", "/home/ana/Fieldwork/gdl/C4xYz.json",
                     "sidecars") == "@alice · 2024-03-02 · instagram C4xYz.json"
    assert post_name(None, None, None, "17", "tweets.csv") == "tweets.csv 17"
