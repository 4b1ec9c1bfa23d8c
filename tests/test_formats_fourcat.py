"""4CAT's exports (CSV per datasource, Bluesky and Telegram NDJSON, the image-download ZIP)
are recognised without mapping flags and become the right posts. Expected values are
written here from reading the fixtures in tests/fixtures/exports/fourcat/."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest

from datasette_imageclust.ingest.formats import (
    Post,
    Sample,
    fourcat,
    fourcat_zip,
    recognise,
)

FIX = Path(__file__).parent / "fixtures" / "exports" / "fourcat"
BASE = "http://127.0.0.1:8765"


def img(name: str) -> str:
    return f"{BASE}/img/{name}"


DEAD = f"{BASE}/gone404"


def read_csv(name: str) -> tuple[Sample, list[dict]]:
    text = (FIX / name).read_text(encoding="utf-8").replace("{base}", BASE)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    return Sample("csv", list(reader.fieldnames or []), rows[:20]), rows


def read_ndjson(path: Path) -> tuple[Sample, list[dict]]:
    lines = path.read_text(encoding="utf-8").replace("{base}", BASE).splitlines()
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:  # zeeschuimer-tiktok.ndjson has a broken line on purpose
            pass
    return Sample("ndjson", [], rows[:20]), rows


def load_csv(name: str, detail: str) -> dict[str, Post]:
    """The fixture's posts by id, after checking it is recognised as 4CAT's with ``detail``."""
    sample, rows = read_csv(name)
    found = recognise(sample)
    assert found is not None, name
    fmt, got = found
    assert (fmt.name, got) == ("4cat", detail)
    posts = [fmt.post(row) for row in rows]
    by_id = {p.post_id: p for p in posts}
    assert len(by_id) == len(posts) == 8
    return by_id


def test_instagram():
    posts = load_csv("instagram.csv", "instagram")
    p = posts["C4aaa001"]
    # a comma inside a query string stays in its URL
    assert p.urls == [img("a.jpg"), img("b.jpg?stp=dst-jpg_e35&_nc_ht=x,y"), img("c.jpg")]
    assert (p.platform, p.author, p.created) == ("instagram", "alice", "2024-03-02T10:11:12Z")
    assert p.permalink == "https://www.instagram.com/p/C4aaa001"
    assert p.hashtags == ["cats", "caturday"]
    assert p.text == "Three cats #cats #Caturday"
    assert posts["C4aaa002"].urls == [img("a.jpg")]  # shared with C4aaa001
    assert posts["C4aaa003"].urls == [DEAD, img("d.jpg")]
    assert posts["C4aaa004"].hashtags == ["reels", "fun"]
    assert posts["C4aaa005"].urls == [img("f.jpg"), img("a-copy.jpg")]
    # a partial item: timestamp 0 is no date, no media is no URL
    assert (posts["C4aaa006"].urls, posts["C4aaa006"].created) == ([], None)
    assert posts["C4aaa008"].created == "2024-03-02T17:11:12Z"


def test_x():
    posts = load_csv("x.csv", "x")
    p = posts["1764000000000000001"]
    assert p.urls == [img("a.jpg"), img("b.jpg")]
    assert (p.platform, p.author) == ("x", "alice")
    assert p.permalink == "https://x.com/alice/status/1764000000000000001"
    assert p.hashtags == ["cats", "dogs"]
    assert posts["1764000000000000002"].text == "Reposting alice's cat\n(second line)"
    assert posts["1764000000000000002"].urls == [img("a.jpg?name=orig")]
    assert posts["1764000000000000003"].urls == [DEAD, img("c.jpg"), img("d.jpg"), img("e.jpg")]
    assert posts["1764000000000000003"].created == "2024-03-02T10:13:12Z"
    assert posts["1764000000000000004"].urls == []
    # the video's own URL (videos column) is not an image
    assert posts["1764000000000000005"].urls == [img("f.jpg")]
    assert posts["1764000000000000008"].hashtags == ["last"]


def test_tiktok():
    posts = load_csv("tiktok.csv", "tiktok")
    shared = img("a.jpg?x-expires=1900000000&x-signature=abc")
    assert posts["7340000000000000001"].urls == posts["7340000000000000002"].urls == [shared]
    p = posts["7340000000000000001"]
    assert (p.platform, p.author, p.created) == ("tiktok", "alice", "2024-03-02T10:11:12Z")
    assert p.permalink == "https://www.tiktok.com/@alice/video/7340000000000000001"
    assert p.hashtags == ["fyp", "cats"]
    assert posts["7340000000000000003"].urls == [DEAD]
    assert posts["7340000000000000005"].hashtags == ["duet"]
    assert posts["7340000000000000006"].urls == []
    assert posts["7340000000000000008"].created == "2024-03-09T10:11:12Z"


def test_9gag():
    posts = load_csv("9gag.csv", "9gag")
    assert posts["aAbB001"].urls == posts["aAbB002"].urls == [img("a.jpg")]
    p = posts["aAbB002"]
    assert (p.platform, p.author, p.created) == ("9gag", "9GAGGER", "2024-03-02T12:11:12Z")
    assert p.permalink == "https://9gag.com/gag/aAbB002"
    assert posts["aAbB005"].hashtags == ["gaming", "memes"]  # 9GAG's tags column
    assert posts["aAbB003"].urls == [DEAD]
    assert posts["aAbB001"].text is None  # 9GAG's body (description) is empty; the title is 'subject'


def test_threads():
    posts = load_csv("threads.csv", "threads")
    p = posts["C5th001"]
    assert p.urls == [img("a.jpg"), img("b.jpg"), img("c.jpg")]
    assert (p.platform, p.author, p.created) == ("threads", "alice", "2024-03-02T10:11:12Z")
    assert p.permalink == "https://www.threads.com/@alice/post/C5th001"
    assert posts["C5th003"].urls == [img("d.jpg"), DEAD]
    assert posts["C5th003"].hashtags == ["a", "b"]
    assert posts["C5th006"].urls == [img("f.jpg?_nc_cat=1,2&oh=x")]
    assert posts["C5th004"].urls == []


def test_tumblr():
    posts = load_csv("tumblr.csv", "tumblr")
    p = posts["740000000000000001"]
    assert p.urls == [img("a.jpg"), img("b.jpg")]
    assert (p.platform, p.author) == ("tumblr", "alice-blog")
    assert p.permalink == "https://alice-blog.tumblr.com/post/740000000000000001"
    assert p.hashtags == ["cats", "art"]
    # own images, then reblogged ones, then video thumbnails
    assert posts["740000000000000002"].urls == [img("a.jpg")]
    assert posts["740000000000000004"].urls == [img("c.jpg"), img("d.jpg")]
    assert posts["740000000000000004"].hashtags == ["mixed", "tags with spaces"]
    assert posts["740000000000000005"].urls == [img("e.jpg")]
    assert posts["740000000000000006"].urls == []
    assert posts["740000000000000007"].created == "2024-03-02T11:51:12Z"


def test_linkedin():
    posts = load_csv("linkedin.csv", "linkedin")
    p = posts["7170000000000000001"]
    assert p.urls == [img("a.jpg"), img("b.jpg")]
    assert (p.platform, p.author) == ("linkedin", "in/alice")
    assert p.permalink == "https://www.linkedin.com/feed/update/urn:li:activity:7170000000000000001"
    assert p.hashtags == ["jobs", "ai"]
    assert posts["7170000000000000002"].urls == [img("a.jpg")]
    assert posts["7170000000000000004"].urls == [img("c.jpg")]  # a video's thumbnail
    assert posts["7170000000000000005"].urls == [img("d.jpg"), img("e.jpg"), img("f.jpg")]
    assert posts["7170000000000000008"].created == "2024-03-02T17:11:12Z"


def test_telegram_csv_and_ndjson_have_the_note():
    for sample in (read_csv("telegram.csv")[0], read_ndjson(FIX / "telegram.ndjson")[0]):
        found = recognise(sample)
        assert found is not None
        fmt, detail = found
        assert (fmt.name, detail) == ("4cat-telegram", "telegram")
        assert "Download images" in fmt.note and "ZIP" in fmt.note


def test_bluesky_ndjson():
    sample, items = read_ndjson(FIX / "bluesky.ndjson")
    found = recognise(sample)
    assert found is not None
    fmt, detail = found
    assert (fmt.name, detail) == ("4cat-ndjson", "bluesky")
    posts = {p.post_id: p for p in map(fmt.post, items)}
    assert len(posts) == 8
    p = posts["at://did:plc:alice/app.bsky.feed.post/3kaaa001"]
    assert p.urls == [img("a.jpg"), img("b.jpg")]  # fullsize, not thumb
    assert (p.platform, p.author, p.created) == ("bluesky", "alice.bsky.social", "2024-03-02T10:11:12Z")
    assert p.permalink == "https://bsky.app/profile/alice.bsky.social/post/3kaaa001"
    assert p.hashtags == ["cats", "caturday"]
    assert p.text == "Two cats #cats #Caturday"
    by_author = {p.author: p for p in posts.values()}
    assert by_author["bob.bsky.social"].urls == [img("a.jpg")]
    assert by_author["carol.bsky.social"].urls == [DEAD, img("c.jpg")]
    assert by_author["dave.bsky.social"].urls == [img("d.jpg")]  # recordWithMedia's media
    assert by_author["erin.bsky.social"].urls == [img("e.jpg")]  # a video's thumbnail
    assert by_author["frank.bsky.social"].urls == [img("f.jpg")]  # a link card's thumb
    assert by_author["grace.bsky.social"].urls == []
    assert by_author["heidi.bsky.social"].urls == [img("a-copy.jpg"), img("b.jpg"), img("c.jpg"), img("d.jpg")]


def test_zeeschuimer_items_are_not_claimed_as_4cat():
    """Zeeschuimer's envelope, and 4CAT's NDJSON of a Zeeschuimer import (the item with the
    envelope under '__import_meta', common/lib/helpers.py format_import_item), are not 4CAT's own."""
    sample, items = read_ndjson(FIX.parent / "zeeschuimer-tiktok.ndjson")
    assert len(items) == 3 and all("data" in i for i in items)
    fourcat_ndjson = [f for f in fourcat.FORMATS if "ndjson" in f.kinds]
    assert fourcat_ndjson
    for fmt in fourcat_ndjson:
        assert fmt.detect(sample) is None
        unwrapped = [{**i["data"], "__import_meta": {k: v for k, v in i.items() if k != "data"}} for i in items]
        assert fmt.detect(Sample("ndjson", [], unwrapped)) is None


def test_not_4cat_csv():
    assert fourcat.datasource_of(["url", "caption", "image"]) is None
    gallery = Sample("csv", ["id", "body", "likes"], [{"id": "1", "body": "x", "likes": "2"}])
    assert all(f.detect(gallery) is None for f in fourcat.FORMATS if "csv" in f.kinds)


def test_split_urls():
    assert fourcat.split_urls("https://a/1.jpg?x=1,2, https://b/2.jpg,https://a/1.jpg?x=1,2") == \
        ["https://a/1.jpg?x=1,2", "https://b/2.jpg"]
    assert fourcat.split_urls("") == fourcat.split_urls(None) == []


# --- the image-download ZIP ---------------------------------------------------------------

def build_zip(tmp_path: Path, tux_dir: Path, metadata: object, extra: dict[str, bytes] | None = None) -> Path:
    """A ZIP as 4CAT's download_images.py writes it: each downloaded file at the top under
    its metadata file name (real image bytes), and .metadata.json."""
    stamps = sorted((tux_dir / "birds").glob("*.jpg"))
    path = tmp_path / "4cat-images.zip"
    with zipfile.ZipFile(path, "w") as zf:
        if isinstance(metadata, dict):
            for i, entry in enumerate(metadata.values()):
                if isinstance(entry, dict) and entry.get("success") is True:
                    zf.writestr(entry["filename"], stamps[i % len(stamps)].read_bytes())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        zf.writestr(".metadata.json", json.dumps(metadata))
    return path


def zip_sample(zf: zipfile.ZipFile) -> Sample:
    try:
        meta = json.loads(zf.read(".metadata.json"))
    except ValueError:
        return Sample("zip", zf.namelist(), [])
    return Sample("zip", zf.namelist(), [meta])


def metadata() -> dict:
    return json.loads((FIX / "download-images.metadata.json").read_text().replace("{base}", BASE))


def test_zip_posts(tmp_path, tux_dir):
    path = build_zip(tmp_path, tux_dir, metadata())
    with zipfile.ZipFile(path) as zf:
        found = recognise(zip_sample(zf))
        assert found is not None
        assert (found[0].name, found[1]) == ("4cat-zip", "downloaded images")
        out = list(fourcat_zip.zip_posts(zf, json.loads(zf.read(".metadata.json"))))
        assert [o for o in out if isinstance(o, tuple)] == []
        posts = {p.post_id: p for p in out if isinstance(p, Post)}
        assert len(posts) == 7
        p = posts["1764000000000000001"]
        assert (p.urls, p.files) == ([img("a.jpg"), img("b.jpg")], ["a.jpg", "b.jpg"])
        assert (posts["1764000000000000002"].urls, posts["1764000000000000002"].files) == ([img("a.jpg")], ["a.jpg"])
        # the dead link stays, without a file; a redirected URL is kept as the original
        p = posts["1764000000000000003"]
        assert p.urls == [DEAD, img("c.jpg?name=orig&format=jpg"), f"{BASE}/redirect/d"]
        assert p.files == ["", "c.jpeg", "d.png"]
        assert posts["1764000000000000007"].files == posts["1764000000000000008"].files == ["f.jpg"]
        # the reader reads members by name: each file named is one the ZIP holds
        for p in posts.values():
            for name in filter(None, p.files):
                assert zf.read(name)[:2] == b"\xff\xd8"


def test_zip_hostile(tmp_path, tux_dir):
    meta = metadata()
    meta[f"{BASE}/img/evil.jpg"] = {"filename": "../x", "success": True, "post_ids": ["9"]}
    meta[f"{BASE}/img/abs.jpg"] = {"filename": "/etc/passwd", "success": True, "post_ids": ["9"]}
    meta[f"{BASE}/img/bs.jpg"] = {"filename": "..\\y.jpg", "success": True, "post_ids": ["9"]}
    meta[f"{BASE}/img/ids.jpg"] = {"filename": "ids.jpg", "success": False, "post_ids": "1764000000000000001"}
    meta[f"{BASE}/img/nofile.jpg"] = {"filename": "nofile.jpg", "success": True, "post_ids": ["10"]}
    meta["not-an-entry"] = ["a", "list"]
    # the ZIP holds a member '../x' (and '/etc/passwd'): named in metadata, still never used
    path = build_zip(tmp_path, tux_dir, {k: v for k, v in meta.items() if "nofile" not in k})
    with zipfile.ZipFile(path) as zf:
        assert "../x" in zf.namelist() and "..\\y.jpg" in zf.namelist()
        out = list(fourcat_zip.zip_posts(zf, meta))
    reasons = dict(o for o in out if isinstance(o, tuple))
    assert "unsafe" in reasons[f"{BASE}/img/evil.jpg"]
    assert "unsafe" in reasons[f"{BASE}/img/abs.jpg"]
    assert "unsafe" in reasons[f"{BASE}/img/bs.jpg"]
    assert "post_ids" in reasons[f"{BASE}/img/ids.jpg"]
    assert "not in the ZIP" in reasons[f"{BASE}/img/nofile.jpg"]
    assert "not an object" in reasons["not-an-entry"]
    posts = {p.post_id: p for p in out if isinstance(p, Post)}
    # the URLs whose files were unsafe or missing stay, with no file
    assert (posts["9"].urls, posts["9"].files) == (
        [f"{BASE}/img/evil.jpg", f"{BASE}/img/abs.jpg", f"{BASE}/img/bs.jpg"], ["", "", ""])
    assert (posts["10"].urls, posts["10"].files) == ([f"{BASE}/img/nofile.jpg"], [""])
    assert all("../x" not in p.files for p in posts.values())


@pytest.mark.parametrize("bad", [[1, 2], "text", None, 3])
def test_zip_metadata_not_an_object(tmp_path, tux_dir, bad):
    path = build_zip(tmp_path, tux_dir, bad)
    with zipfile.ZipFile(path) as zf:
        assert recognise(zip_sample(zf)) == (fourcat_zip.FORMATS[0], "unreadable .metadata.json")
        out = list(fourcat_zip.zip_posts(zf, bad))
    assert len(out) == 1 and isinstance(out[0], tuple) and "not a JSON object" in out[0][1]


def test_zip_telegram_media(tmp_path, tux_dir):
    """download_telegram_videos.py (images too) keys by file name, with a reason; no URL."""
    meta = {
        "somechannel-100.jpg": {"filename": "somechannel-100.jpg", "success": True, "reason": "ok",
                                "reason_description": "downloaded", "from_dataset": "k", "post_ids": ["somechannel-100"]},
        "somechannel-101": {"filename": "", "success": False, "reason": "no_media",
                            "reason_description": "Message has no media attached", "from_dataset": "k",
                            "post_ids": ["somechannel-101"]},
    }
    path = build_zip(tmp_path, tux_dir, meta)
    with zipfile.ZipFile(path) as zf:
        assert recognise(zip_sample(zf)) == (fourcat_zip.FORMATS[0], "telegram media")
        out = list(fourcat_zip.zip_posts(zf, meta))
    posts = [o for o in out if isinstance(o, Post)]
    assert [(p.post_id, p.urls, p.files) for p in posts] == [("somechannel-100", [""], ["somechannel-100.jpg"])]
    assert out[0] == ("somechannel-101", "no URL and no file")


def test_zip_of_something_else_is_not_claimed():
    assert fourcat_zip.FORMATS[0].detect(Sample("zip", ["a.jpg", "b.jpg"], [])) is None
    other = Sample("zip", ["a.jpg", ".metadata.json"], [{"version": 2, "tool": "x"}])
    assert fourcat_zip.FORMATS[0].detect(other) is None


# The columns of datasources without a fixture, as their map_item() returns them (read from
# github.com/digitalmethodsinitiative/4cat datasources/<name>/search_*.py).
OTHER_HEADERS = {
    "douyin": "collected_from_url id thread_id subject body timestamp post_url region hashtags mentions video_tags "
              "prevent_download video_url video_thumbnail video_duration image_urls music_author music_title music_url "
              "collect_count comment_count digg_count download_count forward_count play_count share_count "
              "count_total_streams_viewers count_current_stream_viewers author_user_id author_nickname "
              "author_profile_url author_thumbnail_url author_region author_is_ad_fake part_of_collection "
              "4CAT_first_video_displayed collection_id collection_name place_in_collection unix_timestamp",
    "pinterest": "collected_from_url id thread_id author author_fullname author_original body subject ai_description "
                 "pinner_original pinner_via board board_pins board_url timestamp idea_tags url is_video image_url "
                 "dominant_colour unix_timestamp",
    "imgur": "collected_from_url id subject body timestamp author type media_url post_url album_media is_ad is_album "
             "is_mature is_viral views upvotes downvotes score comments favourites virality_score unix_timestamp",
    "truth": "collected_from_url id created_at body url reblogs_count replies_count account_id account_username "
             "account_display_name account_avatar account_verified account_followers account_following mentions "
             "hashtags images video_thumbs video_urls group_id group_display_name group_avatar group_note "
             "group_members_count thread_id timestamp",
    "gab": "collected_at collected_from_url id created_at body url reaction_count favourites_count replies_count "
           "reblogs_count mentions tags group_id group_title group_description group_member_count group_is_private "
           "group_url group_created_at account_id account_username account_account account_display_name account_note "
           "link_id link_url link_title link_description link_type link_image image_urls video_urls thread_id timestamp",
    "vk": "id thread_id timestamp unix_timestamp link item_type body author_id author_type author_screen_name "
          "author_name author_sex author_city author_country author_photo author_is_admin author_is_advertiser "
          "author_deactivated author_privacy_is_closed author_followers in_reply_to_user in_reply_to_comment_id "
          "source views likes post_comments edited photos videos audio links docs subject",
    "facebook": "id url body timestamp author author_name image_url video_url is_in_group group_name unix_timestamp",
    "x-api": "id thread_id timestamp unix_timestamp subject body author author_fullname author_id author_followers "
             "source language_guess possibly_sensitive is_retweet retweeted_user is_quote_tweet quoted_user is_reply "
             "replied_user hashtags urls images videos mentions long_lat",
    "bluesky": "collected_at query rank id thread_id created_at author author_id body link tags like_count quote_count "
               "reply_count repost_count quoted_post quoted_user replied_to_post replied_to_user replies_allowed "
               "mentions links images labels has_poll languages author_display_name author_profile author_avatar "
               "author_created_at timestamp",
    "xiaohongshu": "collected_from_url id thread_id url title body hashtags timestamp author author_avatar_url "
                   "image_urls video_url likes unix_timestamp",
}


@pytest.mark.parametrize("name", sorted(OTHER_HEADERS))
def test_other_datasources_by_header(name):
    header = OTHER_HEADERS[name].split()
    found = recognise(Sample("csv", header, []))
    assert found is not None and (found[0].name, found[1]) == ("4cat", name)


def test_vk_photos_and_gab_author():
    """VK joins photos with ', ', Gab's author is account_username and tags its hashtags."""
    vk = dict.fromkeys(OTHER_HEADERS["vk"].split(), "")
    vk.update(id="-1_2", photos=f"{img('a.jpg')}, {img('b.jpg')}", author_screen_name="someone",
              link="https://vk.com/wall-1_2", timestamp="2024-03-02 10:11:12")
    p = recognise(Sample("csv", list(vk), [vk]))[0].post(vk)  # type: ignore[index]
    assert (p.urls, p.author, p.platform, p.created) == ([img("a.jpg"), img("b.jpg")], "someone", "vk", "2024-03-02T10:11:12Z")
    gab = dict.fromkeys(OTHER_HEADERS["gab"].split(), "")
    gab.update(id="1", image_urls=img("c.jpg"), account_username="gabber", tags="a,B", url="https://gab.com/gabber/posts/1")
    p = recognise(Sample("csv", list(gab), [gab]))[0].post(gab)  # type: ignore[index]
    assert (p.urls, p.author, p.hashtags, p.permalink) == ([img("c.jpg")], "gabber", ["a", "b"], "https://gab.com/gabber/posts/1")


def test_tumblr_ndjson():
    sample, items = read_ndjson(FIX / "tumblr.ndjson")
    found = recognise(sample)
    assert found is not None
    fmt, detail = found
    assert (fmt.name, detail) == ("4cat-ndjson", "tumblr")
    posts = {p.post_id: p for p in map(fmt.post, items)}
    assert len(posts) == 8
    p = posts["740000000000000101"]
    assert p.urls == [img("a.jpg"), img("b.jpg")]  # media[0], the largest
    assert (p.platform, p.author, p.created) == ("tumblr", "alice-blog", "2024-03-02T10:11:12Z")
    assert p.permalink == "https://alice-blog.tumblr.com/post/740000000000000101"
    assert (p.text, p.hashtags) == ("Two cats", ["cats", "art"])
    assert posts["740000000000000102"].urls == [img("a.jpg")]  # the reblogged image (trail)
    assert posts["740000000000000103"].urls == [DEAD, img("c.jpg")]
    assert posts["740000000000000104"].urls == [img("d.jpg"), img("e.jpg")]  # the layout's order
    assert posts["740000000000000105"].urls == [img("f.jpg")]  # the video's filmstrip
    assert posts["740000000000000106"].urls == []
    assert posts["740000000000000107"].urls == [img("a-copy.jpg"), img("b.jpg")]
    assert posts["740000000000000108"].created == "2024-03-02T10:22:52Z"


def test_douyin_cover_only_without_images():
    row = dict.fromkeys(OTHER_HEADERS["douyin"].split(), "")
    row.update(id="1", image_urls=f"{img('a.jpg')},{img('b.jpg')}", video_thumbnail=img("c.jpg"),
               author_nickname="抖音", post_url="https://www.douyin.com/video/1", unix_timestamp="1709374272")
    fmt = recognise(Sample("csv", list(row), [row]))[0]  # type: ignore[index]
    p = fmt.post(row)
    assert (p.urls, p.author, p.permalink, p.created) == (
        [img("a.jpg"), img("b.jpg")], "抖音", "https://www.douyin.com/video/1", "2024-03-02T10:11:12Z")
    row["image_urls"] = ""
    assert fmt.post(row).urls == [img("c.jpg")]


def test_csv_with_a_byte_order_mark():
    sample, rows = read_csv("9gag.csv")
    rows = [{("\ufeff" + k if k == "collected_from_url" else k): v for k, v in r.items()} for r in rows]
    header = ["\ufeffcollected_from_url", *sample.header[1:]]
    fmt, detail = recognise(Sample("csv", header, rows))  # type: ignore[misc]
    assert detail == "9gag" and fmt.post(rows[0]).post_id == "aAbB001"
    rows[0]["\ufeffid"] = rows[0].pop("id")
    assert fmt.post(rows[0]).post_id == "aAbB001"


def test_zip_video_downloader(tmp_path, tux_dir):
    """download_videos.py lists each URL's files (yt-dlp may give several)."""
    url = f"{BASE}/watch?v=1"
    meta = {url: {"from_dataset": "k", "post_ids": ["p1"], "success": True, "downloader": "yt_dlp",
                  "files": [{"filename": "v1.mp4", "success": True, "metadata": {}},
                            {"filename": "v2.mp4", "success": True, "metadata": {}},
                            {"filename": "v3.mp4", "success": False}]},
            f"{BASE}/dead": {"from_dataset": "k", "post_ids": ["p2"], "success": False, "error": "404"}}
    path = tmp_path / "videos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("v1.mp4", b"1")
        zf.writestr("v2.mp4", b"2")
        zf.writestr(".metadata.json", json.dumps(meta))
    with zipfile.ZipFile(path) as zf:
        assert recognise(zip_sample(zf)) == (fourcat_zip.FORMATS[0], "downloaded videos")
        out = list(fourcat_zip.zip_posts(zf, meta))
    assert [(p.post_id, p.urls, p.files) for p in out if isinstance(p, Post)] == [
        ("p1", [url, url], ["v1.mp4", "v2.mp4"]), ("p2", [f"{BASE}/dead"], [""])]


def test_created_falls_back_to_a_date_that_reads():
    sample, rows = read_csv("x.csv")
    row = dict(rows[0], unix_timestamp="")
    assert recognise(sample)[0].post(row).created == "2024-03-02T10:11:12Z"  # type: ignore[index]
    tg = Sample("csv", ["\ufeffid", *read_csv("telegram.csv")[0].header[1:]], [])
    assert recognise(tg)[1] == "telegram"  # type: ignore[index]
