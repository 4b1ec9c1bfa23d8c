"""Zeeschuimer exports are recognised and every item maps to the right Post.

The expected values are read off the fixtures (tests/fixtures/exports/zeeschuimer/, see
its README for the upstream files they follow); dates were converted by hand
(``date -u -d @1709374272``), not by the code under test.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from datasette_imageclust.ingest.formats import (
    Post,
    RowError,
    Sample,
    by_name,
    recognise,
)

DIR = Path(__file__).parent / "fixtures" / "exports" / "zeeschuimer"
H = "http://h"


def records(name: str) -> list:
    return [json.loads(line.replace("{base}", H)) for line in (DIR / name).read_text().splitlines() if line.strip()]


def mapped(name: str, detail: str) -> tuple[list[Post], int]:
    """Recognise the file from its first records, then map every record: (posts, row errors)."""
    recs = records(name)
    found = recognise(Sample("ndjson", [], recs[:5]))
    assert found is not None, name
    fmt, got = found
    assert (fmt.name, fmt.title, got) == ("zeeschuimer", "Zeeschuimer NDJSON", detail)
    posts, errors = [], 0
    for rec in recs:
        try:
            posts.append(fmt.post(rec))
        except RowError:
            errors += 1
    return posts, errors


def urls(post: Post) -> list[str]:
    """The URLs without their query strings (the fixtures' CDN-like parameters)."""
    return [u.split("?")[0] for u in post.urls]


def test_instagram_items_carousels_graph_and_polaris():
    posts, errors = mapped("instagram.ndjson", "instagram.com")
    assert (len(posts), errors) == (9, 1)
    by = {p.post_id: p for p in posts}
    assert {p.platform for p in posts} == {"instagram"}
    first = by["C4Xb1aLrT2k"]
    assert (first.author, first.created, first.permalink) == (
        "dunes.and.light", "2024-03-02T10:11:12Z", "https://www.instagram.com/p/C4Xb1aLrT2k")
    assert first.hashtags == ["travel", "namibia"]
    assert first.text == "Morning light over the dunes #travel #Namibia"
    # candidates[0], not the 640 one
    assert first.urls == [(f"{H}/img/a.jpg?stp=dst-jpg_e35_p1080x1080&_nc_ht=scontent-ams2-1.cdninstagram.com"
                           "&_nc_cat=105&oh=00_AfB1x&oe=65E8C1A2")]
    carousel = by["C4Yq7ZpM0sN"]
    assert urls(carousel) == [f"{H}/img/b.jpg", f"{H}/img/c.jpg", f"{H}/img/d.jpg"]
    assert carousel.hashtags == ["cats", "amsterdam"]  # '#cats' twice in the caption, once here
    assert (carousel.author, carousel.created) == ("catsofamsterdam", "2024-03-02T11:00:00Z")
    reel = by["C4Zr2xKvQ9a"]
    assert urls(reel) == [f"{H}/img/e.jpg"]  # the cover, never the .mp4
    assert reel.created == "2024-03-03T08:00:00Z"
    assert by["C4aF9hYLw3u"].urls == first.urls  # the same image URL as the first post
    assert by["C4aF9hYLw3u"].hashtags == []
    assert urls(by["C4a0zQ1N7Hk"]) == [f"{H}/gone404"]
    assert urls(by["C4bR8eXo2Pq"]) == [f"{H}/img/f.jpg", f"{H}/img/a-copy.jpg"]  # a video slide's cover too
    assert (by["C4bX2mN5kLd"].text, by["C4bX2mN5kLd"].hashtags) == (None, [])
    graph = by["B9kLm2nHq4R"]
    assert urls(graph) == [f"{H}/img/c.jpg", f"{H}/img/d.jpg"]
    assert (graph.author, graph.created, graph.hashtags) == ("catsofamsterdam", "2020-03-02T12:00:00Z", ["tbt", "cats"])
    polaris = by["C4cPz1rSx0Y"]
    assert (urls(polaris), polaris.author, polaris.created) == ([f"{H}/img/e.jpg"], "nos", None)
    assert polaris.permalink == "https://www.instagram.com/p/C4cPz1rSx0Y"


def test_tiktok_photo_posts_and_video_covers():
    posts, errors = mapped("tiktok.ndjson", "tiktok.com")
    assert (len(posts), errors) == (8, 1)
    by = {p.post_id: p for p in posts}
    assert {p.platform for p in posts} == {"tiktok"}
    photo = by["7341234567890123451"]
    # every image of the photo post (urlList[0] of each), not its video.cover (f.jpg)
    assert urls(photo) == [f"{H}/img/a.jpg", f"{H}/img/b.jpg", f"{H}/img/c.jpg"]
    assert all("idc=maliva" in u for u in photo.urls)
    assert (photo.author, photo.created, photo.hashtags) == ("carol.cats", "2024-03-02T10:11:12Z", ["cats", "caturday"])
    assert photo.permalink == "https://www.tiktok.com/@carol.cats/video/7341234567890123451"
    video = by["7341234567890123452"]
    assert urls(video) == [f"{H}/img/d.jpg"]
    assert video.hashtags == ["baking", "sourdough", "fyp"]
    assert video.text == "sourdough at 6am #baking #sourdough #fyp"
    assert by["7341234567890123453"].urls == video.urls  # the same cover URL
    assert by["7341234567890123453"].hashtags == []  # a mention is no hashtag
    assert urls(by["7341234567890123454"]) == [f"{H}/gone404"]
    assert by["7341234567890123455"].urls == [f"{H}/img/e.jpg?x-expires=1710000000&x-signature=s1"]
    embedded = by["7341234567890123456"]
    assert (embedded.author, embedded.created) == ("carol.cats", "2024-03-03T18:20:00Z")
    assert urls(embedded) == [f"{H}/img/e.jpg", f"{H}/img/a-copy.jpg"]
    assert embedded.hashtags == ["amsterdam", "food"]  # no textExtra: read from the text
    assert (by["7341234567890123458"].text, by["7341234567890123458"].created) == (None, "2024-03-03T23:53:20Z")


def test_x_every_photo_by_media_url_https():
    posts, errors = mapped("x.ndjson", "twitter.com")
    assert (len(posts), errors) == (10, 1)
    by = {p.post_id: p for p in posts}
    assert {p.platform for p in posts} == {"x"}
    four = by["1763941100213374976"]
    assert four.urls == [f"{H}/img/a.jpg", f"{H}/img/b.jpg", f"{H}/img/c.jpg", f"{H}/img/d.jpg"]
    assert not any("t.co" in u for p in posts for u in p.urls)
    assert (four.author, four.created) == ("mapsbyjan", "2024-03-02T10:11:12Z")
    assert four.permalink == "https://x.com/mapsbyjan/status/1763941100213374976"
    assert four.hashtags == ["maps", "cartography"]
    assert by["1763953412087521493"].urls == [f"{H}/img/e.jpg"]  # the video's still
    assert by["1763953412087521493"].author == "stormchaser_nl"
    legacy_user = by["1764003398771216721"]
    assert (legacy_user.author, legacy_user.urls, legacy_user.hashtags) == ("catfacts_daily", [], ["cats", "catfacts"])
    long = by["1764006600000000009"]  # the note's whole text, not the cut full_text
    assert long.text.endswith("about four times a second. #cats")
    assert long.hashtags == ["cats"]  # no entities.hashtags in legacy: from the text
    no_user = by["1764011223344556677"]
    assert (no_user.author, no_user.urls) == ("mapsbyjan", [f"{H}/img/a.jpg"])  # from the media's expanded_url
    retweet = by["1764020000000000001"]
    assert retweet.text == "RT @mapsbyjan: Four maps of the same delta #maps #cartography https://t.co/Qm3Xz1wE7r"
    assert retweet.urls == [f"{H}/img/a.jpg"] and retweet.author == "catfacts_daily"
    assert by["1764033300000000002"].urls == [f"{H}/gone404"]
    assert by["1764044400000000003"].urls == [f"{H}/img/f.jpg"]
    assert by["1764044400000000003"].hashtags == ["weer", "onweer"]
    reply = by["1764055500000000004"]  # its 'id' is a number; the id stays exact
    assert (reply.created, reply.urls) == ("2024-03-02T17:45:07Z", [])
    old = by["1234567890123456789"]
    assert (old.author, old.created, old.urls) == ("mapsbyjan", "2020-03-13T08:00:00Z",
                                                   [f"{H}/img/b.jpg", f"{H}/img/a-copy.jpg"])
    assert old.permalink == "https://x.com/mapsbyjan/status/1234567890123456789"


def test_threads_carousels():
    posts, errors = mapped("threads.ndjson", "threads.net")
    assert (len(posts), errors) == (8, 0)
    by = {p.post_id: p for p in posts}
    assert {p.platform for p in posts} == {"threads"}
    first = by["C4YbB1zLQ2s"]
    assert urls(first) == [f"{H}/img/a.jpg", f"{H}/img/b.jpg", f"{H}/img/c.jpg"]
    assert (first.author, first.created, first.hashtags) == ("marieke.draws", "2024-03-02T10:11:12Z",
                                                             ["sketchbook", "drawing"])
    assert first.permalink == "https://www.threads.com/@marieke.draws/post/C4YbB1zLQ2s"
    assert urls(by["C4Yf0aQN1rT"]) == [f"{H}/img/e.jpg"]  # a video's cover
    assert by["C4Yh7cRO2sU"].urls == [] and by["C4Yh7cRO2sU"].hashtags == ["threads"]
    assert by["C4Yj3dSP4tV"].urls == by["C4YdE9xM3pQ"].urls  # shared
    assert (urls(by["C4Yl8eTQ5uW"]), by["C4Yl8eTQ5uW"].text) == ([f"{H}/gone404"], None)
    assert urls(by["C4Yn1fUR6vX"]) == [f"{H}/img/f.jpg", f"{H}/img/a-copy.jpg"]
    assert by["C4Yp5gVS7wY"].urls == []  # a link preview's image is not the post's


def test_pinterest_json_and_html_pins():
    posts, errors = mapped("pinterest.ndjson", "pinterest.com")
    assert (len(posts), errors) == (8, 0)
    by = {p.post_id: p for p in posts}
    assert {p.platform for p in posts} == {"pinterest"}
    first = by["1054966812345678901"]
    assert (first.urls, first.author, first.created) == ([f"{H}/img/a.jpg"], "inkandcats", "2024-03-02T10:11:12Z")
    assert (first.permalink, first.hashtags) == ("https://www.pinterest.com/pin/1054966812345678901", ["inktober", "catart"])
    assert by["1054966812345678902"].urls == [f"{H}/img/c.jpg"]  # imageSpec_orig before images.orig
    assert by["1054966812345678903"].created is None
    assert (by["1054966812345678904"].urls, by["1054966812345678904"].created) == (
        [f"{H}/gone404"], "2024-03-04T11:30:00Z")  # '+0100' to UTC
    assert by["1054966812345678905"].urls == [f"{H}/img/d.jpg"]  # a video pin's cover
    assert by["1054966812345678906"].urls == [f"{H}/img/e.jpg"]
    html = by["1054966812345678907"]
    assert (html.urls, html.author, html.text) == ([f"{H}/img/f.jpg"], None, "pencil, 2023 #pencil")


def test_linkedin_images_article_video_and_dates_from_ids():
    posts, errors = mapped("linkedin.ndjson", "linkedin.com")
    assert (len(posts), errors) == (8, 0)
    by = {p.post_id: p for p in posts}
    assert {p.platform for p in posts} == {"linkedin"}
    first = by["7169841520993419264"]
    # the widest artifact of each image
    assert first.urls == [f"{H}/img/{n}?e=1712188800&v=beta&t=Xk2pL9" for n in ("a.jpg", "b.jpg", "c.jpg")]
    assert (first.author, first.created) == ("jane-doe-4a1b2c", "2024-03-02T23:50:27Z")
    assert first.permalink == "https://www.linkedin.com/feed/update/urn:li:activity:7169841520993419264"
    assert first.hashtags == ["research", "datascience"]
    article = by["7169900011122233344"]
    assert (urls(article), article.author, article.hashtags) == ([f"{H}/img/d.jpg"], "acme-research", ["hiring"])
    assert urls(by["7170011122233344455"]) == [f"{H}/img/e.jpg"]
    assert (by["7170122233344455566"].urls, by["7170122233344455566"].hashtags) == ([], ["openscience"])
    assert urls(by["7170344455566677788"]) == [f"{H}/gone404"]
    assert urls(by["7170455566677788899"]) == [f"{H}/img/f.jpg"]
    assert by["7170566677788899900"].created == "2024-03-04T23:51:58Z"


def test_the_csv_export_with_semicolons():
    text = (DIR / "instagram.csv").read_text().replace("{base}", H)
    reader = csv.DictReader(io.StringIO(text), delimiter=";")
    rows = list(reader)
    found = recognise(Sample("csv", list(reader.fieldnames or []), rows[:3], ";"))
    assert found is not None
    assert (found[0].name, found[0].title, found[1]) == ("zeeschuimer-csv", "Zeeschuimer CSV", "instagram.com")
    # The same columns separated by ',' are 4CAT's own CSV of a Zeeschuimer dataset, not this.
    assert by_name("zeeschuimer-csv").detect(Sample("csv", list(reader.fieldnames or []), rows[:3], ",")) is None
    posts = [found[0].post(r) for r in rows]
    assert [p.post_id for p in posts] == ["C4Xb1aLrT2k", "C4Yq7ZpM0sN", "C4cPz1rSx0Y"]
    assert posts[0].text == "Morning light; over the dunes #travel #Namibia"
    assert (posts[0].created, posts[0].author, posts[0].hashtags) == ("2024-03-02T10:11:12Z", "dunes.and.light",
                                                                      ["travel", "namibia"])
    assert posts[1].urls == [f"{H}/img/b.jpg", f"{H}/img/c.jpg", f"{H}/img/d.jpg"]
    assert posts[1].permalink == "https://www.instagram.com/p/C4Yq7ZpM0sN"
    assert (posts[2].created, posts[2].platform) == (None, "instagram")  # unix_timestamp 0 is no date


TCAT = ["id", "time", "created_at", "from_user_name", "from_user_lang", "text", "source", "location", "lat", "lng",
        "from_user_tweetcount", "from_user_followercount", "from_user_friendcount", "from_user_realname",
        "to_user_name", "in_reply_to_status_id", "quoted_status_id", "from_user_listed", "from_user_utcoffset",
        "from_user_timezone", "from_user_description", "from_user_url", "from_user_verified",
        "filter_level", "hashtags", "urls", "mentions", "media_urls"]
FOURCAT = ["id", "thread_id", "timestamp", "unix_timestamp", "author", "body", "hashtags", "mentions", "images",
           "likes", "retweets"]
FOURCHAN = ["thread_id", "id", "timestamp", "unix_timestamp", "subject", "body", "author", "author_trip",
            "country_code", "country_name", "image_file", "image_url", "image_4chan", "image_md5"]


@pytest.mark.parametrize("header", [TCAT, FOURCAT, FOURCHAN], ids=["tcat", "4cat-twitter", "4cat-4chan"])
def test_other_csv_headers_are_not_zeeschuimer(header):
    sample = Sample("csv", header, [dict.fromkeys(header, "1")])
    for name in ("zeeschuimer", "zeeschuimer-csv"):
        fmt = by_name(name)
        assert fmt is not None and (sample.kind not in fmt.kinds or fmt.detect(sample) is None)
    found = recognise(sample)
    assert found is None or not found[0].name.startswith("zeeschuimer")


def test_a_4cat_csv_fixture_header_is_not_zeeschuimer():
    header = (Path(__file__).parent / "fixtures" / "exports" / "4cat-twitter.csv").read_text().splitlines()[0]
    assert by_name("zeeschuimer-csv").detect(Sample("csv", header.split(","), [])) is None


def test_ndjson_that_is_not_zeeschuimer_is_not_recognised():
    fmt = by_name("zeeschuimer")
    # 4CAT's own NDJSON of an import: the platform's item with __import_meta, no envelope
    flattened = {"id": "1", "code": "C4Xb1aLrT2k", "__import_meta": {"source_platform": "instagram.com"}}
    gallery_dl = {"category": "twitter", "tweet_id": 1763941100213374976, "content": "x"}
    for recs in ([flattened], [gallery_dl], [], [records("x.ndjson")[0], gallery_dl]):
        assert fmt.detect(Sample("ndjson", [], recs)) is None


def test_a_broken_item_gives_a_row_error_or_a_post_never_another_exception():
    post = by_name("zeeschuimer").post
    envelope = {"nav_index": "1:2:3", "item_id": "99", "timestamp_collected": 1709900000000,
                "source_platform": "instagram.com", "source_platform_url": "https://www.instagram.com/"}
    for data in (None, "text", [1, 2], 5):
        with pytest.raises(RowError):
            post({**envelope, "data": data})
    for bad in ("a line", None, [1]):
        with pytest.raises(RowError):
            post(bad)  # type: ignore[arg-type]
    with pytest.raises(RowError):  # nothing at all to read
        post({**envelope, "item_id": None, "data": {}})
    # wrong types where objects are expected: a best-effort Post, not a TypeError
    odd = {"code": "C4odd", "carousel_media": "not a list", "user": ["x"], "caption": 7, "taken_at": "soon"}
    got = post({**envelope, "data": odd})
    assert (got.post_id, got.urls, got.author, got.created, got.text) == ("C4odd", [], None, None, None)
    for platform in ("tiktok.com", "twitter.com", "threads.net", "pinterest.com", "linkedin.com", "douyin.com",
                     "9gag.com", "imgur.com", "truthsocial.com", "gab.com", "xiaohongshu.com", "tiktok-comments"):
        weird = {"id": 12, "images": "x", "imagePost": 3, "legacy": [], "content": "s", "carousel_media": {},
                 "cover": [], "image_list": 1, "note": "n", "media_attachments": {"a": 1}, "video": "v"}
        got = post({**envelope, "source_platform": platform, "data": weird})
        # the platform's own id where it reads 'id', else the envelope's item_id
        assert got.post_id in ("12", "99") and got.urls == [], platform


def test_an_unknown_platform_is_read_best_effort():
    got = by_name("zeeschuimer").post({
        "item_id": "at://did:plc:abc/app.bsky.feed.post/3kq", "source_platform": "bsky.app",
        "data": {"text": "hello #fediverse", "created_at": "2024-03-02T10:11:12.000Z",
                 "author": {"username": "jan.bsky.social"}, "image_url": f"{H}/img/a.jpg"}})
    assert (got.platform, got.post_id, got.urls, got.author, got.created, got.hashtags) == (
        "bsky", "at://did:plc:abc/app.bsky.feed.post/3kq", [f"{H}/img/a.jpg"], "jan.bsky.social",
        "2024-03-02T10:11:12Z", ["fediverse"])


def test_4cat_flattened_items_map_like_zeeschuimer_ones():
    """4CAT keeps an item as data + __import_meta; post() reads that too (for the 4CAT format)."""
    rec = records("tiktok.ndjson")[0]
    flat = {**rec["data"], "__import_meta": {k: v for k, v in rec.items() if k != "data"}}
    fmt = by_name("zeeschuimer")
    assert fmt.post(flat) == fmt.post(rec)


def test_douyin_9gag_truth_gab_imgur_xiaohongshu():
    douyin, errors = mapped("douyin.ndjson", "douyin.com")
    assert (len(douyin), errors) == (4, 0)
    assert [urls(p) for p in douyin] == [[f"{H}/img/a.jpg", f"{H}/img/b.jpg", f"{H}/img/c.jpg"], [f"{H}/img/d.jpg"],
                                         [f"{H}/gone404"], [f"{H}/img/e.jpg"]]
    assert (douyin[0].post_id, douyin[0].author, douyin[0].created, douyin[0].hashtags) == (
        "7341555666777888991", "成都美食家", "2024-03-02T10:11:12Z", ["美食", "成都"])
    assert douyin[0].permalink == "https://www.douyin.com/video/7341555666777888991"
    assert (douyin[3].author, douyin[3].created, douyin[3].hashtags) == ("夜景", "2024-03-03T10:00:00Z", ["夜景"])

    gag, _ = mapped("9gag.ndjson", "9gag.com")
    assert [p.urls for p in gag] == [[f"{H}/img/a.jpg"], [f"{H}/img/b.jpg"], [f"{H}/gone404"]]  # image700, no video
    assert [p.author for p in gag] == ["purrfectday", "9GAGGER", "purrfectday"]
    assert (gag[0].permalink, gag[0].hashtags, gag[0].platform) == ("https://9gag.com/gag/aQz1Wn8", ["cats", "funny"], "9gag")

    truth, _ = mapped("truthsocial.ndjson", "truthsocial.com")
    assert [p.urls for p in truth] == [[f"{H}/img/a.jpg", f"{H}/img/b.jpg"], [f"{H}/img/c.jpg"]]  # a video's preview
    assert truth[0].text == "Two views of the front & the radar #weather"
    assert (truth[0].author, truth[0].created, truth[0].hashtags) == ("dailyweather", "2024-03-02T10:11:12Z", ["weather"])

    gab, _ = mapped("gab.ndjson", "gab.com")
    assert (gab[0].post_id, gab[0].urls, gab[0].author) == ("112027700000000001", [f"{H}/img/d.jpg", f"{H}/img/e.jpg"],
                                                            "lenslover")
    assert (gab[0].created, gab[0].hashtags) == ("2024-03-02T10:11:12Z", ["photography", "nature"])

    imgur, _ = mapped("imgur.ndjson", "imgur.com")
    assert [p.urls for p in imgur] == [[f"{H}/img/f.jpg"], []]  # a video cover is the video: left out
    assert (imgur[0].permalink, imgur[0].created) == ("https://imgur.com/gallery/Xk2LmQ9", "2024-03-02T10:11:12Z")

    xhs, _ = mapped("xiaohongshu.ndjson", "xiaohongshu.com")
    assert urls(xhs[0]) == [f"{H}/img/a.jpg", f"{H}/img/b.jpg", f"{H}/img/c.jpg"]
    assert xhs[0].permalink == ("https://www.xiaohongshu.com/explore/65e2f1a0000000001203abcd"
                                "?xsec_token=ABcD1234efGH5678ijKL=")
    assert (xhs[0].author, xhs[0].created, xhs[0].hashtags) == ("小红薯1234", "2024-03-02T10:11:12Z", ["猫咪", "日常"])
