"""The Datasette side of `load --from`: the image page says how an image circulates, the
cluster page how many posts its images appear in, when (a timeline) and its top hashtags
and authors; ready-made queries and facets for posts. A real export loaded from a real
local image server (tests/imageserver.py), clustered, served by a real Datasette."""
from __future__ import annotations

import re
from collections import Counter
from datetime import date
from html import unescape
from pathlib import Path

import pytest

from datasette_imageclust import pipeline
from datasette_imageclust.pipeline_posts import load_export
from datasette_imageclust.store import connection
from imageserver import ImageServer
from test_load_export import FAST
from test_plugin_pages import get_json, make_ds
from dbrows import rows as sql

pytestmark = pytest.mark.asyncio
HOSTILE = "<script>alert(1)</script>"
# A 4CAT-shaped export: dates over several months (one post without a date), an image
# shared by posts (a.jpg, and the same bytes at a-copy.jpg), hashtags as text and as a
# JSON list, and an author whose name is markup.
EXPORT = """id,timestamp,author,hashtags,images
1,2024-01-05 10:00:00,alice,"cats,#Dogs","{base}/img/a.jpg,{base}/img/b.jpg"
2,2024-03-02 11:00:00,bob,cats,{base}/img/a.jpg
3,2024-03-20 12:00:00,"<script>alert(1)</script>","<b>x</b>,cats","{base}/img/a-copy.jpg,{base}/img/c.jpg"
4,2024-06-01 00:00:00,alice,"[""json"",""Cats""]",{base}/img/d.jpg
5,,carol,,{base}/img/d.jpg
6,2024-06-15 08:00:00,dave,,"{base}/img/e.jpg,{base}/img/f.jpg,{base}/gone404"
"""


def _images(tux_dir: Path) -> dict[str, bytes]:
    files = sorted((tux_dir / "fruit").glob("*.jpg"))[:6]
    out = {f"{k}.jpg": f.read_bytes() for k, f in zip("abcdef", files)}
    out["a-copy.jpg"] = out["a.jpg"]
    return out


def _cluster(path: str) -> None:
    db = connection.connect(path)
    pipeline.cluster_images(db, method="kmeans", n_clusters=2, labels=["terms"], duplicates=False, layout=False)
    connection.close(db)


@pytest.fixture(scope="module")
def posts_db(tmp_path_factory, tux_dir, stand_in_model) -> str:
    d = tmp_path_factory.mktemp("webposts")
    with ImageServer(_images(tux_dir)) as server:
        export = d / "4cat.csv"
        export.write_text(EXPORT.replace("{base}", server.base))
        path = str(d / "posts.db")
        s = load_export(path, str(export), url_column="images", id_column="id", separator=",",
                        columns=["timestamp", "author", "hashtags"], limits=FAST, model=stand_in_model)
    assert (s.posts, s.failed) == (6, 1) and s.load["new"] == 6
    _cluster(path)
    return path


@pytest.fixture(scope="module")
def plain_db(tmp_path_factory, tux_dir, stand_in_model) -> str:
    """The same images from a folder: no posts tables."""
    from datasette_imageclust.pipeline import load

    d = tmp_path_factory.mktemp("webplain")
    folder = d / "imgs"
    folder.mkdir()
    for name, data in _images(tux_dir).items():
        (folder / name).write_bytes(data)
    path = str(d / "plain.db")
    assert load(path, [str(folder)], stand_in_model).new == 6
    _cluster(path)
    return path


async def test_image_page_says_how_many_posts_share_it_and_when(posts_db):
    ds = make_ds([posts_db])
    for (image_id,) in sql(posts_db, "select id from images"):
        want = sql(posts_db, """select count(distinct p.id), min(p.created), max(p.created)
                                from post_images pi join posts p on p.id = pi.post where pi.image_id = ?""", [image_id])[0]
        got = (await get_json(ds, f"/posts/-/imageclust/image/{image_id}.json"))["posts"]
        assert (got["posts"], got["first"], got["last"]) == want
        assert got["columns"] == {"date": "created", "author": "author", "hashtags": "hashtags"}
    # The image of a.jpg: three posts (two by URL, one by the same bytes at another URL).
    (a,) = sql(posts_db, "select image_id from post_images where url like '%/img/a.jpg' limit 1")[0]
    html = (await ds.client.get(f"/posts/-/imageclust/image/{a}")).text
    assert "shared by <span class=\"ic-post-count\">3</span> posts, first <span class=\"ic-first\">2024-01-05T10:00:00" in html
    # The link to the posts runs, as a Datasette query, and lists those posts.
    link = unescape(re.search(r'<a href="([^"]+)">the posts</a>', html).group(1))
    path, query = link.split("?", 1)
    r = await ds.client.get(f"{path}.json?{query}&_shape=objects")
    assert r.status_code == 200, r.text[:300]
    assert sorted(row["post_id"] for row in r.json()["rows"]) == ["1", "2", "3"]


async def test_cluster_page_counts_posts_per_month_hashtags_and_authors(posts_db):
    ds = make_ds([posts_db])
    clusters = sql(posts_db, "select c.id from clusters c join cluster_runs r on r.id = c.run_id where r.is_default = 1")
    assert len(clusters) >= 2
    for (cid,) in clusters:
        posts = sql(posts_db, """select distinct p.id, p.created, p.author, p.hashtags from posts p
                                 join post_images pi on pi.post = p.id join cluster_members m on m.image_id = pi.image_id
                                 where m.cluster_id = ?""", [cid])
        got = (await get_json(ds, f"/posts/-/imageclust/cluster/{cid}.json"))["posts"]
        assert got["posts"] == len(posts)
        months = Counter(t[:7] for _, t, _, _ in posts if t)
        assert {m["month"]: m["posts"] for m in got["months"]} == months
        authors = Counter(a for _, _, a, _ in posts if a)
        assert {a["value"]: a["posts"] for a in got["authors"]} == authors
        html = (await ds.client.get(f"/posts/-/imageclust/cluster/{cid}")).text
        assert f'<strong class="ic-post-count">{len(posts)}</strong>' in html
        if months:  # one bar per bin (its unit by the span) from the first to the last, each titled
            line = got["timeline"]
            first, last = min(t for _, t, _, _ in posts if t), max(t for _, t, _, _ in posts if t)
            span = (date.fromisoformat(last[:10]) - date.fromisoformat(first[:10])).days
            assert line["unit"] == ("day" if span <= 60 else "week" if span <= 366 else "month")
            assert html.count("<rect ") == len(line["bins"]) and sum(b["posts"] for b in line["bins"]) == sum(months.values())
            if line["unit"] == "month":
                assert [b["bin"] for b in line["bins"]] == pipeline_months(min(months), max(months))
            for b in line["bins"]:
                when = b["bin"] if line["unit"] != "week" else f"{b['bin']} ({b['start']} to {b['end']})"
                assert f"<title>{when}: {b['posts']} post{'' if b['posts'] == 1 else 's'}</title>" in html
        assert HOSTILE not in html and "<b>x</b>" not in html
        if posts:  # the link to the posts runs as a Datasette query and lists those posts
            link = unescape(re.search(r'<a href="([^"]+)">the posts</a>', html).group(1))
            path, query = link.split("?", 1)
            r = await ds.client.get(f"{path}.json?{query}&_shape=objects")
            assert r.status_code == 200, r.text[:300]
            assert sorted(row["id"] for row in r.json()["rows"]) == sorted(p[0] for p in posts)
    # Hashtags of the cluster of a.jpg: text and JSON lists alike, '#' and case folded.
    (a,) = sql(posts_db, "select m.cluster_id from cluster_members m join post_images pi on pi.image_id = m.image_id "
                         "join cluster_runs r on r.id = m.run_id where r.is_default = 1 and pi.url like '%/img/a.jpg'")[0]
    got = (await get_json(ds, f"/posts/-/imageclust/cluster/{a}.json"))["posts"]
    tags = {t["value"]: t["posts"] for t in got["hashtags"]}
    assert tags["cats"] >= 3 and tags["dogs"] == 1 and tags["<b>x</b>"] == 1
    html = (await ds.client.get(f"/posts/-/imageclust/cluster/{a}")).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html


def pipeline_months(first: str, last: str) -> list[str]:
    y, m = map(int, first.split("-"))
    out = []
    while True:
        out.append(f"{y:04d}-{m:02d}")
        if out[-1] == last:
            return out
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


@pytest.mark.parametrize("table", ["posts", "post_images"])
async def test_posts_denied_the_sections_are_absent(posts_db, table):
    ds = make_ds([posts_db], databases={"posts": {"tables": {table: {"allow": False}}}})
    (a,) = sql(posts_db, "select image_id from post_images where url like '%/img/a.jpg' limit 1")[0]
    img = await get_json(ds, f"/posts/-/imageclust/image/{a}.json")
    assert img["posts"] is None and "posts" in img["withheld"]
    cl = await get_json(ds, "/posts/-/imageclust/cluster/1.json")
    assert cl["posts"] is None and "posts" in cl["withheld"]
    for path in (f"/posts/-/imageclust/image/{a}", "/posts/-/imageclust/cluster/1"):
        html = (await ds.client.get(path)).text
        assert "ic-posts" not in html and "alice" not in html and "ic-timeline" not in html


async def test_a_database_without_posts_is_unchanged(plain_db):
    ds = make_ds([plain_db])
    img = await get_json(ds, "/plain/-/imageclust/image/1.json")
    assert img["posts"] is None
    cl = await get_json(ds, "/plain/-/imageclust/cluster/1.json")
    assert cl["posts"] is None
    for path in ("/plain/-/imageclust/image/1", "/plain/-/imageclust/cluster/1"):
        r = await ds.client.get(path)
        assert r.status_code == 200 and "ic-posts" not in r.text


async def test_configured_columns_win_and_unknown_ones_show_nothing(posts_db):
    ds = make_ds([posts_db], plugin={"post_author_column": "hashtags", "post_date_column": "nonesuch"})
    got = (await get_json(ds, "/posts/-/imageclust/cluster/1.json"))["posts"]
    assert got["columns"]["author"] == "hashtags" and got["columns"]["date"] is None and got["months"] == []


async def test_ready_made_queries_clusters_by_month_and_hashtag(posts_db):
    ds = make_ds([posts_db])
    await ds.invoke_startup()
    r = await ds.client.get("/posts/imageclust_clusters_by_month.json?_shape=objects")
    assert r.status_code == 200, r.text[:300]
    got = {(row["cluster_id"], row["month"]): row["posts"] for row in r.json()["rows"]}
    want = Counter()
    for cid, pid, t in sql(posts_db, """select distinct m.cluster_id, p.id, p.created from cluster_members m
                                        join cluster_runs r on r.id = m.run_id and r.is_default = 1
                                        join post_images pi on pi.image_id = m.image_id join posts p on p.id = pi.post
                                        where p.created is not null"""):
        want[(cid, t[:7])] += 1
    assert got == dict(want)
    r = await ds.client.get("/posts/imageclust_clusters_by_hashtag.json?_shape=objects")
    assert r.status_code == 200, r.text[:300]
    rows_ = r.json()["rows"]
    (a,) = sql(posts_db, "select m.cluster_id from cluster_members m join post_images pi on pi.image_id = m.image_id "
                         "join cluster_runs r on r.id = m.run_id where r.is_default = 1 and pi.url like '%/img/a.jpg'")[0]
    page = (await get_json(ds, f"/posts/-/imageclust/cluster/{a}.json"))["posts"]["hashtags"]
    assert {(x["hashtag"], x["posts"]) for x in rows_ if x["cluster_id"] == a} >= {(t["value"], t["posts"]) for t in page}
    # Denied the posts: the queries are refused too (they read posts).
    ds = make_ds([posts_db], databases={"posts": {"tables": {"posts": {"allow": False}}}})
    await ds.invoke_startup()
    assert (await ds.client.get("/posts/imageclust_clusters_by_month.json")).status_code == 403


async def test_posts_table_facets_by_date_and_author(posts_db, plain_db):
    ds = make_ds([posts_db, plain_db])
    await ds.invoke_startup()
    r = await ds.client.get("/posts/posts.json?_extra=facet_results")
    assert r.status_code == 200, r.text[:300]
    facets = r.json()["facet_results"]
    facets = facets.get("results", facets)
    assert {"created", "author"} <= set(facets)
    authors = {f["value"]: f["count"] for f in facets["author"]["results"]}
    assert authors == dict(sql(posts_db, "select author, count(*) from posts group by author"))
    assert (await ds.client.get("/plain/images.json")).status_code == 200


async def test_the_date_column_is_created_or_else_the_first_holding_iso_dates(tmp_path):
    import sqlite_utils

    from datasette_imageclust.store.postcolumns import post_columns
    from datasette_imageclust.store.schema import migrate

    db = sqlite_utils.Database(str(tmp_path / "cols.db"))
    # posts as schema v1 made it (a database served read-only before its migration)
    db.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, export TEXT, post_id TEXT, row INTEGER, loaded TEXT)")
    db.execute("CREATE TABLE post_images (post INTEGER, position INTEGER, url TEXT, sha256 TEXT, image_id INTEGER)")
    db.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER, applied TEXT)")
    db.execute("INSERT INTO schema_versions VALUES ('posts', 1, 'then')")
    for name in ("code", "n", "year", "when", "Username", "Tags"):
        db.execute(f'ALTER TABLE posts ADD COLUMN "{name}"')
    # Digits as text and a number read as Julian days by SQLite's date(); a bare year: none is a date.
    db.execute("INSERT INTO posts (export, post_id, row, loaded, code, n, year, \"when\", Username, Tags) "
               "VALUES ('e', '1', 1, 'now', '007', 2460000, '2024', '2024-03-02T10:11:12', 'ann', 'a,b')")
    db.conn.commit()
    cols = post_columns(db.conn)  # no normalised columns: the guess
    assert (cols.date, cols.author, cols.hashtags) == ("when", "Username", "Tags")
    assert post_columns(db.conn, date="CODE", author="nonesuch").as_dict() == {
        "date": "code", "author": None, "hashtags": "Tags"}
    # The v2 migration renames nothing here and fills the normalised columns from that guess.
    migrate(db, "posts")
    assert sql(str(tmp_path / "cols.db"), "select created, author, hashtags from posts") == [
        ("2024-03-02T10:11:12Z", "ann", '["a","b"]')]
    # Since v2, the normalised columns, unless configured otherwise.
    assert post_columns(db.conn).as_dict() == {"date": "created", "author": "author", "hashtags": "hashtags"}
    assert post_columns(db.conn, date="CODE", author="nonesuch").as_dict() == {
        "date": "code", "author": None, "hashtags": "hashtags"}


async def test_the_v2_migration_renames_kept_columns_named_like_the_normalised_ones(tmp_path):
    import sqlite_utils

    from datasette_imageclust.store.schema import migrate

    path = str(tmp_path / "v1.db")
    db = sqlite_utils.Database(path)
    db.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, export TEXT, post_id TEXT, row INTEGER, loaded TEXT, "
               "timestamp, Author, hashtags, text, hashtags_)")
    db.execute("CREATE TABLE post_images (post INTEGER, position INTEGER, url TEXT, sha256 TEXT, image_id INTEGER)")
    db.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER, applied TEXT)")
    db.execute("INSERT INTO schema_versions VALUES ('posts', 1, 'then')")
    db.execute("INSERT INTO posts VALUES (1, 'e', '1', 1, 'now', '2024-03-02T10:11:12', '@ann', 'Cats, #dogs', "
               "'hello', 'taken')")
    db.execute("INSERT INTO post_images VALUES (1, 1, 'u1', NULL, NULL), (1, 2, 'u2', NULL, NULL)")
    db.conn.commit()
    migrate(db, "posts")
    cols = [c for (c,) in sql(path, "select name from pragma_table_info('posts')")]
    assert cols[:10] == ["id", "export", "post_id", "row", "loaded", "timestamp", "Author_", "hashtags__", "text_",
                         "hashtags_"]
    assert sql(path, 'select "Author_", hashtags__, text_, hashtags_, created, author, hashtags, text, image_count '
                     "from posts") == [("@ann", "Cats, #dogs", "hello", "taken", "2024-03-02T10:11:12Z", "ann",
                                        '["cats","dogs"]', None, 2)]


async def test_the_map_colours_by_the_first_posts_author_and_year(posts_db, tmp_path):
    """colour.json by post:<column> and postyear:<column>: each image's first post (the one
    loaded first) gives its author; the earliest dated post its year. Offered in the menu only
    when the posts tables are viewable."""
    import shutil

    path = str(tmp_path / "map.db")
    shutil.copy(posts_db, path)
    db = connection.connect(path)
    pipeline.build_map(db, method="tsne")
    connection.close(db)
    ds = make_ds([path])
    meta = await get_json(ds, "/map/-/imageclust/map.json")
    offered = [o["value"] for o in meta["colour_options"]]
    assert "post:author" in offered and "postyear:created" in offered
    on_map = [i for (i,) in sql(path, "select image_id from layout_points order by image_id")]
    for by, q in (("post:author", "select pi.image_id, p.author, min(p.id) from post_images pi join posts p "
                                  "on p.id = pi.post where pi.image_id is not null group by pi.image_id"),
                  ("postyear:created", "select pi.image_id, substr(min(p.timestamp), 1, 4), 0 from post_images pi "
                                         "join posts p on p.id = pi.post where pi.image_id is not null "
                                         "and p.created is not null group by pi.image_id")):
        want = {iid: value for iid, value, _ in sql(path, q)}
        got = await get_json(ds, f"/map/-/imageclust/map/colour.json?by={by}")
        legend = [e["value"] for e in got["legend"]]
        assert len(got["values"]) == len(on_map)
        # points.bin's order is the map's: compare as a multiset of (value) per image set
        assert Counter(legend[v] for v in got["values"] if v >= 0) == Counter(want[i] for i in on_map if i in want)
    denied = make_ds([path], databases={"map": {"tables": {"post_images": {"allow": False}}}})
    meta = await get_json(denied, "/map/-/imageclust/map.json")
    assert not [o for o in meta["colour_options"] if o["value"].startswith("post")]
    r = await denied.client.get("/map/-/imageclust/map/colour.json?by=post:author")
    assert r.status_code == 403
    r = await ds.client.get("/map/-/imageclust/map/colour.json?by=post:nope")
    assert r.status_code == 400 and "posts has no column 'nope'" in r.json()["error"]


async def test_exports_carry_the_posts(posts_db, tmp_path):
    """csv/json exports (and the web download) carry each image's post count, its posts'
    ids in the export and the kept columns of its first post; a download leaves them out
    when the posts tables may not be viewed."""
    import csv
    import json

    want = {}
    for iid, pid, author, ts in sql(posts_db, "select pi.image_id, p.post_id, p.author, p.created from post_images pi "
                                              "join posts p on p.id = pi.post where pi.image_id is not null "
                                              "group by pi.image_id, p.id order by pi.image_id, p.id"):
        want.setdefault(iid, []).append((str(pid), author, ts))
    db = connection.connect(posts_db, readonly=True)
    out = tmp_path / "rows.json"
    pipeline.export(db, "json", out)
    pipeline.export(db, "csv", tmp_path / "rows.csv")
    connection.close(db)
    rows = json.loads(out.read_text())
    assert {r["image_id"] for r in rows} == set(want)
    for r in rows:
        posts = want[r["image_id"]]
        assert r["posts"] == len(posts) and [str(p) for p in r["post_ids"]] == [p[0] for p in posts]
        # The first post is the earliest dated (store/imagenames.py's rule), then the first loaded.
        first = min(posts, key=lambda p: (p[2] is None, p[2] or "", int(p[0])))
        assert (r["author"], r["created"]) == first[1:]
        assert "id" not in r["first_post"] and "export" not in r["first_post"]
    by_id = {r["image_id"]: r for r in rows}
    for r in csv.DictReader((tmp_path / "rows.csv").open(encoding="utf-8")):
        assert r["author"] == by_id[int(r["image_id"])]["author"]
    ds = make_ds([posts_db])
    got = (await ds.client.get("/posts/-/imageclust/export?format=json")).json()
    assert all(r["posts"] == len(want[r["image_id"]]) for r in got)
    denied = make_ds([posts_db], databases={"posts": {"tables": {"posts": {"allow": False}}}})
    got = (await denied.client.get("/posts/-/imageclust/export?format=json")).json()
    assert got and all(r["posts"] is None and r["first_post"] is None for r in got)
    assert HOSTILE not in json.dumps(got)
