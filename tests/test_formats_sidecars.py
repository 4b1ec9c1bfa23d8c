"""gallery-dl and Instaloader sidecars: recognised by their shape, each a Post with the
values read off the fixtures (tests/fixtures/exports/{gallery-dl,instaloader}/, see
their READMEs). The folders are rebuilt as the tools leave them, images from the
tuxpaint stamps, and each image's sidecar found by ``ingest.sidecars.sidecar_for``."""
from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import pytest

from datasette_imageclust.ingest.formats import Sample, recognise
from datasette_imageclust.ingest.formats import gallerydl, instaloader
from datasette_imageclust.ingest.formats.base import RowError
from datasette_imageclust.ingest.sidecars import read_sidecar, sidecar_for

EXPORTS = Path(__file__).parent / "fixtures" / "exports"
GDL = EXPORTS / "gallery-dl"
IL = EXPORTS / "instaloader"


def manifest(folder: Path) -> list[tuple[str, str]]:
    lines = (folder / "manifest.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def lay_out(folder: Path, into: Path, tux: Path, *, xz: bool = False) -> list[Path]:
    """The fixture folder as the tool leaves it (images copied in, Instaloader's JSON as
    .json.xz when ``xz``); the images' paths."""
    for src in folder.rglob("*.json"):
        dest = into / src.relative_to(folder)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if xz:  # save_structure_to_file: compact JSON, LZMA, no check
            data = json.loads(src.read_text(encoding="utf-8"))
            with lzma.open(str(dest) + ".xz", "wt", check=lzma.CHECK_NONE) as fh:
                json.dump(data, fh, separators=(",", ":"))
        else:
            shutil.copyfile(src, dest)
    images = []
    for name, stamp in manifest(folder):
        dest = into / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tux / stamp, dest)
        images.append(dest)
    return images


def posts_of(images: list[Path]) -> dict[str, tuple]:
    """image name relative to its tool folder -> (format name, detail, Post) via its sidecar."""
    out = {}
    for image in images:
        side = sidecar_for(str(image))
        assert side, f"no sidecar found beside {image}"
        data = read_sidecar(side)
        assert isinstance(data, dict), data
        found = recognise(Sample(kind="sidecar", header=[], records=[data]))
        assert found is not None, side
        fmt, detail = found
        out[image.name] = (fmt.name, detail, fmt.post(data))
    return out


# --- gallery-dl -----------------------------------------------------------------------------

TWEET = "1763869657003001234"


def test_gallery_dl_folder(tmp_path, tux_dir):
    got = posts_of(lay_out(GDL, tmp_path, tux_dir))
    assert len(got) == 9
    assert {(name, detail) for name, detail, _ in got.values()} == {
        ("gallery-dl", "twitter"), ("gallery-dl", "instagram"), ("gallery-dl", "reddit"),
        ("gallery-dl", "bluesky")}

    # The 4 photos of one tweet: four sidecars, one post.
    four = [got[f"{TWEET}_{n}.jpg"][2] for n in (1, 2, 3, 4)]
    assert {p.post_id for p in four} == {TWEET}
    for p in four:
        assert p.platform == "x"
        assert p.author == "alice"
        assert p.created == "2024-03-02T10:11:12Z"
        assert p.text == "Four cats, one thread #cats #Dogs"
        assert p.hashtags == ["cats", "dogs"]
        assert p.permalink == f"https://x.com/alice/status/{TWEET}"
        assert p.urls == []  # the kwdict does not hold the file's URL (metadata-url unset)

    one = got["1764199027307500002_1.jpg"][2]
    assert (one.post_id, one.text, one.hashtags) == ("1764199027307500002", "One fish", [])
    assert one.urls == ["https://pbs.twimg.com/media/GHy2EeeXsAAq9Zz?format=jpg&name=orig"]  # gdl_file_url

    ig = got["3316000000000000002.jpg"][2]
    assert ig.post_id == "3316000000000000002"
    assert (ig.platform, ig.author, ig.created) == ("instagram", "bob", "2024-03-04T09:30:00Z")
    assert ig.permalink == "https://www.instagram.com/p/C4bcdEFGhij/"
    assert ig.text == "Sunday apples #Fruit #apples"
    assert ig.hashtags == ["fruit", "apples"]
    assert ig.urls == ["https://scontent.cdninstagram.com/v/t51.29350-15/431_n.jpg"
                       "?stp=dst-jpg_e35&_nc_ht=scontent.cdninstagram.com"]

    cover = got["3316000000000000003p.jpg"][2]  # a video post's cover (previews option)
    assert cover.post_id == "3316000000000000003"
    assert cover.permalink == "https://www.instagram.com/p/C4cdeFGHijk/"
    assert cover.created == "2024-03-05T12:00:00Z"
    assert cover.hashtags == []
    assert cover.urls == ["https://scontent.cdninstagram.com/v/t51.29350-15/432_n.jpg?stp=dst-jpg_e15"]

    rd = got["1b4xyz9 Apples on a table.jpeg"][2]
    assert (rd.post_id, rd.platform, rd.author) == ("1b4xyz9", "reddit", "carol_c")
    assert rd.permalink == "https://www.reddit.com/r/pics/comments/1b4xyz9/apples_on_a_table/"
    assert (rd.text, rd.created) == ("Apples on a table", "2024-03-05T12:00:00Z")
    assert rd.urls == ["https://i.redd.it/k2m9x0abc1lc1.jpeg"]

    bs = got["2024-03-06T18_45_30_3kmz4abcd2x2k_1.jpeg"][2]
    assert (bs.post_id, bs.platform, bs.author) == ("3kmz4abcd2x2k", "bluesky", "dave.bsky.social")
    assert bs.permalink == "https://bsky.app/profile/dave.bsky.social/post/3kmz4abcd2x2k"
    assert (bs.text, bs.created) == ("A bird on the feeder #birds #Spring", "2024-03-06T18:45:30Z")
    assert bs.hashtags == ["birds", "spring"]


def gdl(path: str) -> dict:
    return json.loads((GDL / path).read_text(encoding="utf-8"))


def test_gallery_dl_post_without_an_id_is_its_own_post():
    data = gdl(f"twitter/alice/{TWEET}_1.jpg.json")
    del data["tweet_id"]
    post = gallerydl.post(data)
    assert post.post_id is None and post.permalink is None
    assert post.author == "alice"
    # a profile picture (subcategory 'avatar') is no post's file either
    avatar = dict(gdl(f"twitter/alice/{TWEET}_1.jpg.json"), subcategory="avatar")
    assert gallerydl.post(avatar).post_id is None


def test_gallery_dl_other_sites_and_mastodon_instances():
    base = {"filename": "x", "extension": "jpg", "num": 1, "count": 1}
    toot = dict(base, category="mastodon.social", subcategory="status", id="112233",
                url="https://mastodon.social/@eve/112233", content="<p>Hello <a>#Birds</a></p>",
                account={"acct": "eve", "username": "eve"}, tags=["birds"],
                created_at="2024-03-02T10:11:12.000Z", date="2024-03-02 10:11:12",
                media={"id": "9", "url": "https://files.mastodon.social/media/9.jpg"})
    assert gallerydl.detect(Sample("sidecar", [], [toot])) == "mastodon.social"
    p = gallerydl.post(toot)
    assert (p.platform, p.post_id, p.author) == ("mastodon", "112233", "eve")
    assert (p.permalink, p.text, p.hashtags) == ("https://mastodon.social/@eve/112233", "Hello #Birds", ["birds"])
    assert p.urls == ["https://files.mastodon.social/media/9.jpg"]

    tt = dict(base, category="tiktok", subcategory="post", id="7340000000000000001",
              desc="Look #Cat", author={"uniqueId": "frank"}, post_type="image", createTime=1709374272)
    p = gallerydl.post(tt)
    assert p.permalink == "https://www.tiktok.com/@frank/photo/7340000000000000001"
    assert (p.created, p.hashtags) == ("2024-03-02T10:11:12Z", ["cat"])

    pin = dict(base, category="pinterest", subcategory="pin", id="858146903966145189",
               description="Apples", created_at="Sat, 02 Mar 2024 10:11:12 +0000",
               url="https://i.pinimg.com/originals/d4/f4/7f/d4.jpg")
    p = gallerydl.post(pin)
    assert (p.post_id, p.created) == ("858146903966145189", "2024-03-02T10:11:12Z")
    assert p.urls == ["https://i.pinimg.com/originals/d4/f4/7f/d4.jpg"]


def test_gallery_dl_tumblr_story_and_reddit_comment():
    base = {"filename": "x", "extension": "jpg", "num": 1, "count": 2}
    # tumblr.py: the API's post; 'date' replaced by str(datetime)
    tb = dict(base, category="tumblr", subcategory="post", id=812307562622042112,
              id_string="812307562622042112", blog_name="oidial", date="2026-03-28 05:47:39",
              timestamp=1774676859, post_url="https://www.tumblr.com/oidial/812307562622042112/slug",
              summary="", caption="<p>two <b>birds</b></p><p>#notatag</p>", tags=["Birds", "spring"])
    p = gallerydl.post(tb)
    assert (p.platform, p.post_id, p.author) == ("tumblr", "812307562622042112", "oidial")
    assert (p.text, p.hashtags, p.created) == ("two birds\n#notatag", ["birds", "spring"], "2026-03-28T05:47:39Z")
    assert p.permalink == "https://www.tumblr.com/oidial/812307562622042112/slug"
    # instagram.py _parse_post_rest of a story: post_id is the reel's, each item its own post
    story = dict(gdl("instagram/bob/3316000000000000002.jpg.json"), type="story", post_id="77",
                 media_id="3316000000000000009", post_url="https://www.instagram.com/stories/bob/")
    p = gallerydl.post(story)
    assert p.post_id == "3316000000000000009"
    assert p.permalink == "https://www.instagram.com/stories/bob/3316000000000000009/"
    # reddit.py: a file from a comment carries the comment beside the submission
    rd = gdl("reddit/pics/1b4xyz9 Apples on a table.jpeg.json")
    rd.update(num=1, comment={"id": "kx1y2z3", "author": "dave", "body": "mine too",
                              "permalink": "/r/pics/comments/1b4xyz9/apples_on_a_table/kx1y2z3/",
                              "created_utc": 1709643600.0})
    p = gallerydl.post(rd)
    assert (p.post_id, p.author, p.text, p.created) == ("kx1y2z3", "dave", "mine too", "2024-03-05T13:00:00Z")
    assert p.permalink == "https://www.reddit.com/r/pics/comments/1b4xyz9/apples_on_a_table/kx1y2z3/"
    assert p.urls == []  # the submission's url is not this file's


def test_gallery_dl_a_video_file_has_no_image_url():
    # NAME.mp4.json: its video_url is no image, its display_url the cover's (another file)
    data = dict(gdl("instagram/bob/3316000000000000003p.jpg.json"), extension="mp4",
                media_id="3316000000000000003", gdl_file_url="https://scontent.cdninstagram.com/o1/v/t16/f2/m86/AQ.mp4")
    post = gallerydl.post(data)
    assert post.urls == []
    assert post.post_id == "3316000000000000003"  # still the same post as its cover


def test_the_older_sidecar_fixture_is_gallery_dl_too():
    data = json.loads((EXPORTS / "sidecars" / "gallery-dl-tweet.json").read_text(encoding="utf-8"))
    fmt, detail = recognise(Sample(kind="sidecar", header=[], records=[data]))
    assert (fmt.name, detail) == ("gallery-dl", "twitter")
    assert fmt.post(data).post_id == "1764001"


@pytest.mark.parametrize("data", [
    {"id": 1, "name": "not a tool's JSON"},
    {"category": "twitter"},  # no subcategory
    {"category": "Cats & Dogs", "subcategory": "x", "extension": "jpg"},  # not an extractor name
    {"category": "twitter", "subcategory": "tweet"},  # nothing a file's kwdict always has
    [1, 2, 3],
])
def test_non_tool_json_is_not_gallery_dl(data):
    assert gallerydl.detect(Sample(kind="sidecar", header=[], records=[data])) is None
    assert recognise(Sample(kind="sidecar", header=[], records=[data])) is None


# --- Instaloader ----------------------------------------------------------------------------

def test_instaloader_folder_with_xz_sidecars(tmp_path, tux_dir):
    images = lay_out(IL, tmp_path, tux_dir, xz=True)
    assert not list(tmp_path.rglob("*.json"))  # only .json.xz, as Instaloader writes by default
    got = posts_of(images)
    assert len(got) == 7
    assert {(name, detail) for name, detail, _ in got.values()} == {
        ("instaloader", "Post"), ("instaloader", "StoryItem")}

    cdn = "https://scontent.cdninstagram.com/v/t51.29350-15/"
    carousel = [got[f"2024-03-02_10-11-12_UTC_{n}.jpg"][2] for n in (1, 2, 3)]
    assert all(p == carousel[0] for p in carousel)  # POST_1..3.jpg share POST.json.xz
    c = carousel[0]
    assert (c.post_id, c.platform, c.author) == ("C4abcDEFghi", "instagram", "bob")
    assert c.permalink == "https://www.instagram.com/p/C4abcDEFghi/"
    assert c.created == "2024-03-02T10:11:12Z"
    assert c.text == "Three fruits for Saturday #Fruit #market\n#apples"
    assert c.hashtags == ["fruit", "market", "apples"]
    assert c.urls == [f"{cdn}50{n}_n.jpg?stp=dst-jpg_e35&_nc_ht=scontent.cdninstagram.com" for n in (1, 2, 3)]

    single = got["2024-03-03_08-00-00_UTC.jpg"][2]
    assert (single.post_id, single.text, single.hashtags) == ("C4defGHIjkl", None, [])
    assert single.urls == [f"{cdn}504_n.jpg?stp=dst-jpg_e35"]
    assert single.created == "2024-03-03T08:00:00Z"

    video = got["2024-03-04_09-30-00_UTC.jpg"][2]  # the cover beside POST.mp4
    assert (video.post_id, video.hashtags) == ("C4efgHIJklm", ["garden"])
    assert video.urls == [f"{cdn}505_n.jpg?stp=dst-jpg_e15"]  # the cover, not video_url

    iphone = got["2024-03-05_12-00-00_UTC.jpg"][2]
    assert (iphone.post_id, iphone.author, iphone.created) == ("C4fghIJKlmn", "bob", "2024-03-05T12:00:00Z")
    assert (iphone.text, iphone.hashtags) == ("Pears! #Pears", ["pears"])

    story = got["2024-03-06_18-45-30_UTC.jpg"][2]
    assert (story.post_id, story.author, story.created) == ("3316000000000000007", "bob", "2024-03-06T18:45:30Z")
    assert story.permalink == "https://www.instagram.com/stories/bob/3316000000000000007/"
    assert story.urls == [f"{cdn}507_n.jpg?stp=dst-jpg_e15"]


def il(path: str) -> dict:
    return json.loads((IL / path).read_text(encoding="utf-8"))


def test_instaloader_profile_sidecar_is_recognised_but_no_post():
    data = il("bob/bob_77.json")
    assert instaloader.detect(Sample(kind="sidecar", header=[], records=[data])) == "Profile"
    with pytest.raises(RowError, match="profile"):
        instaloader.post(data)


def test_instaloader_iphone_only_node_and_owner_from_iphone_struct():
    data = il("bob/2024-03-05_12-00-00_UTC.json")
    node = data["node"]
    del node["owner"], node["display_url"], node["caption"]
    post = instaloader.post(data)
    assert post.author == "bob"  # iphone_struct.user.username
    assert post.text == "Pears! #Pears"  # iphone_struct.caption.text
    assert post.urls == ["https://scontent.cdninstagram.com/v/t51.29350-15/506_n.jpg?stp=dst-jpg_e35"]


def test_instaloader_post_without_shortcode_is_a_row_error():
    data = il("bob/2024-03-03_08-00-00_UTC.json")
    del data["node"]["shortcode"]
    with pytest.raises(RowError):
        instaloader.post(data)


def test_a_gallery_dl_sidecar_is_not_instaloader_and_back():
    g = gdl(f"twitter/alice/{TWEET}_1.jpg.json")
    i = il("bob/2024-03-02_10-11-12_UTC.json")
    assert instaloader.detect(Sample("sidecar", [], [g])) is None
    assert gallerydl.detect(Sample("sidecar", [], [i])) is None
    assert recognise(Sample("sidecar", [], [i]))[0].name == "instaloader"


def test_instaloader_iphone_carousel_without_graphql_children():
    data = il("bob/2024-03-05_12-00-00_UTC.json")
    ist = data["node"]["iphone_struct"]
    ist["media_type"] = 8
    ist["carousel_media"] = [{"media_type": 1, "image_versions2": {"candidates": [{"url": f"https://cdn.example/{n}.jpg"}]}}
                             for n in (1, 2)]
    assert instaloader.post(data).urls == ["https://cdn.example/1.jpg", "https://cdn.example/2.jpg"]
