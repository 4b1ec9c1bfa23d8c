"""Zeeschuimer's exports (digitalmethodsinitiative/zeeschuimer, the browser extension
that captures what a platform's web interface loads).

* NDJSON (``.ndjson (original)``): one item a line, as ``js/zs-background.js`` stores it:
  ``{"nav_index", "item_id", "timestamp_collected", "last_updated", "source_platform",
  "source_platform_url", "source_url", "user_agent", "data": {...}}``, where
  ``source_platform`` is the module's id (``instagram.com``, ``tiktok.com``,
  ``twitter.com``, ``threads.net``, ``tiktok-comments``, ... from ``modules/*.js``) and
  ``data`` is the platform's own JSON. Each platform is mapped in
  :mod:`.zeeschuimer_platforms`, after 4CAT's ``map_item()``.
* CSV (``.csv``, ``popup/interface.js`` ``get_csv_blob``): ``;``-separated, a header
  row, one row per item as the module's ``map_item()`` maps it, so its columns are 4CAT's
  for that platform (URL lists joined with ``,``).

4CAT keeps an imported item as the platform JSON with the envelope under
``__import_meta`` (``js/lib.js`` ``wrap_for_map_item`` does the same); ``post()`` reads
that shape too, though it is 4CAT's file and recognised as 4CAT's.
"""
from __future__ import annotations

from typing import Any

from .base import (
    Format,
    Post,
    RowError,
    Sample,
    hashtag_list,
    id_of,
    iso_utc,
    text_of,
    unique,
)
from .zeeschuimer_platforms import MAPPERS, generic

_ENVELOPE = ("item_id", "source_platform", "data")
_SOURCE = ("digitalmethodsinitiative/zeeschuimer js/zs-background.js (the envelope), "
           "popup/interface.js (the CSV), modules/*.js; digitalmethodsinitiative/4cat "
           "datasources/{instagram,tiktok,tiktok_comments,twitter-import,threads,pinterest,linkedin,"
           "douyin,ninegag,imgur,truth,gab,xiaohongshu}/search_*.py map_item(); "
           "mikf/gallery-dl gallery_dl/extractor/tiktok.py (TikTok photo posts)")


def short_name(source_platform: str) -> str | None:
    """'bsky.app' -> 'bsky', 'xiaohongshu-comments' -> 'xiaohongshu' (an unknown module)."""
    name = source_platform.strip().lower().removeprefix("www.")
    return name.split(".")[0].split("-")[0] or None


# --- NDJSON -------------------------------------------------------------------------------

def _is_item(record: Any) -> bool:
    return isinstance(record, dict) and all(k in record for k in _ENVELOPE) \
        and isinstance(record.get("source_platform"), str)


def detect_items(sample: Sample) -> str | None:
    """Every record of the sample is a Zeeschuimer item: their ``source_platform``(s)."""
    records = [r for r in sample.records if isinstance(r, dict)]
    if not records or not all(_is_item(r) for r in records):
        return None
    return ", ".join(unique(r["source_platform"] for r in records))


def _is_imported(record: Any) -> bool:
    meta = record.get("__import_meta") if isinstance(record, dict) else None
    return isinstance(meta, dict) and isinstance(meta.get("source_platform"), str)


def detect_imported(sample: Sample) -> str | None:
    """Every record is 4CAT's form of a Zeeschuimer item (4CAT's NDJSON download of a
    Zeeschuimer import: the item with the envelope under ``__import_meta``)."""
    records = [r for r in sample.records if isinstance(r, dict)]
    if not records or not all(_is_imported(r) for r in records):
        return None
    return ", ".join(unique(r["__import_meta"]["source_platform"] for r in records))


def item_post(record: dict) -> Post:
    """A Zeeschuimer item (or 4CAT's ``__import_meta`` form of one) as a Post."""
    if not isinstance(record, dict):
        raise RowError("not a JSON object")
    data = record.get("data")
    meta = record
    if not isinstance(data, dict):
        if isinstance(record.get("__import_meta"), dict) and "data" not in record:
            meta, data = record["__import_meta"], {k: v for k, v in record.items() if k != "__import_meta"}
        else:
            raise RowError("its 'data' is not an object (the platform's item is missing)")
    platform = meta.get("source_platform")
    platform = platform.strip().lower() if isinstance(platform, str) else ""
    mapper = MAPPERS.get(platform)
    try:
        post = mapper(data) if mapper else generic(data, short_name(platform) if platform else None)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        # the mappers read defensively; this is the net for a shape no one has seen yet
        post = generic(data, short_name(platform) if platform else None)
    post.post_id = post.post_id or id_of(meta.get("item_id"))
    if not (post.post_id or post.urls or post.text):
        raise RowError(f"nothing readable in this {platform or 'unknown platform'} item")
    return post


# --- CSV ----------------------------------------------------------------------------------

# source_platform -> (columns that only that module's map_item() writes, image URL columns,
# permalink column, author column); from the keys of each modules/*.js map_item().
_CSV: dict[str, tuple[frozenset[str], tuple[str, ...], str, str]] = {
    "instagram.com": (frozenset({"id", "url", "body", "author", "media_type", "num_media", "image_urls",
                                 "media_urls", "usertags", "likes_hidden", "missing_media"}),
                      ("image_urls",), "url", "author"),
    "tiktok.com": (frozenset({"id", "author", "author_full", "body", "tiktok_url", "thumbnail_url",
                              "music_name", "challenges", "diversification_labels"}),
                   ("thumbnail_url",), "tiktok_url", "author"),
    "twitter.com": (frozenset({"id", "link", "body", "author", "images", "videos", "retweeted_user",
                               "quote_images", "is_quote_withheld"}), ("images",), "link", "author"),
    "threads.net": (frozenset({"id", "url", "body", "author", "image_url", "video_url", "audio_url",
                               "link_thumbnail_url", "reposts", "quotes"}), ("image_url",), "url", "author"),
    "pinterest.com": (frozenset({"id", "author", "body", "subject", "board", "board_url", "idea_tags",
                                 "url", "image_url", "dominant_colour"}), ("image_url",), "url", "author"),
    "douyin.com": (frozenset({"id", "post_url", "body", "video_thumbnail", "image_urls", "author_nickname",
                              "collection_id", "4CAT_first_video_displayed"}),
                   ("image_urls", "video_thumbnail"), "post_url", "author_nickname"),
    "9gag.com": (frozenset({"id", "url", "subject", "body", "author", "image_url", "video_url", "upvotes",
                            "downvotes", "tags_annotated"}), ("image_url",), "url", "author"),
    "imgur.com": (frozenset({"id", "subject", "body", "author", "media_url", "post_url", "album_media",
                             "virality_score"}), ("media_url",), "post_url", "author"),
    "truthsocial.com": (frozenset({"id", "created_at", "body", "url", "account_username", "images",
                                   "video_thumbs", "group_display_name"}),
                        ("images", "video_thumbs"), "url", "account_username"),
    "gab.com": (frozenset({"id", "created_at", "body", "url", "account_username", "image_urls",
                           "link_image", "group_title"}), ("image_urls",), "url", "account_username"),
    "xiaohongshu.com": (frozenset({"id", "url", "title", "body", "hashtags", "author", "author_avatar_url",
                                   "video_url", "likes"}), ("image_urls", "image_url"), "url", "author"),
    "tiktok-comments": (frozenset({"id", "author", "body", "post_id", "post_url", "comment_url",
                                   "is_liked_by_post_author", "is_sticky"}), (), "comment_url", "author"),
}
_PLATFORM = {"twitter.com": "x", "truthsocial.com": "truthsocial", "tiktok-comments": "tiktok"}
_TAG_COLUMNS = ("hashtags", "challenges", "tags")


def _csv_platform(columns: Any) -> str | None:
    names = {c.strip() for c in columns if isinstance(c, str)}
    return next((p for p, (needed, *_rest) in _CSV.items() if needed <= names), None)


def detect_csv(sample: Sample) -> str | None:
    """A ';'-separated header with every column one module's ``map_item()`` writes: that
    module's id (the same header with ',' is 4CAT's own CSV, for ``fourcat``)."""
    if sample.delimiter != ";":
        return None
    return _csv_platform(sample.header)


def _cell(row: dict, column: str) -> str | None:
    value = text_of(row.get(column))
    # the CSV holds JS String(value): a missing value reads 'undefined' or 'null'
    return None if value in ("undefined", "null") else value


def csv_post(row: dict) -> Post:
    """One row of a Zeeschuimer CSV (its header names the module)."""
    if not isinstance(row, dict):
        raise RowError("not a CSV row")
    platform = _csv_platform(row.keys())
    if platform is None:
        raise RowError("the columns are not those of a Zeeschuimer CSV")
    _, url_columns, link, author = _CSV[platform]
    urls = unique(u for c in url_columns for u in (_cell(row, c) or "").split(","))
    if platform == "douyin.com" and _cell(row, "image_urls"):
        urls = unique((_cell(row, "image_urls") or "").split(","))  # a photo post: not its cover too
    text = _cell(row, "body") or _cell(row, "subject") or _cell(row, "title")
    tags = hashtag_list(",".join(t for t in (_cell(row, c) for c in _TAG_COLUMNS) if t))
    created = iso_utc(_cell(row, "unix_timestamp")) or iso_utc(_cell(row, "created_at")) \
        or iso_utc(_cell(row, "timestamp"))
    post_id = id_of(_cell(row, "id"))
    if not (post_id or urls or text):
        raise RowError("an empty row")
    return Post(post_id=post_id, urls=urls, platform=_PLATFORM.get(platform, short_name(platform)),
                permalink=_cell(row, link), author=_cell(row, author), created=created, text=text,
                hashtags=tags or hashtag_list([t for t in (text or "").split() if t.startswith("#")]))


FORMATS: list[Format] = [
    Format(
        name="zeeschuimer", title="Zeeschuimer NDJSON", kinds=("ndjson", "json"),
        detect=detect_items, post=item_post,
        fields=(
            ("post_id", ("instagram data.code | data.shortcode; tiktok data.id; x data.rest_id | "
                        "data.legacy.id_str; threads data.code; linkedin the urn:li:activity id; else item_id")),
            ("urls", ("instagram data.carousel_media[*].image_versions2.candidates[0].url | "
                     "data.image_versions2.candidates[0].url | data.edge_sidecar_to_children.edges[*].node."
                     "display_url | data.display_url | data.display_uri; tiktok data.imagePost.images[*]."
                     "imageURL.urlList[0] | data.video.cover; x data.legacy.extended_entities.media[*]."
                     "media_url_https; threads as instagram; pinterest data.imageSpec_orig.url | "
                     "data.images.orig.url; linkedin data.content.images[*] vectorImage rootUrl+segment; "
                     "douyin data.images[*].url_list[0] | data.video.cover; others: see the module")),
            ("platform", "from source_platform (twitter.com -> x)"),
            ("permalink", ("built as 4CAT does: instagram.com/p/<code>, tiktok.com/@<user>/video/<id>, "
                          "x.com/<user>/status/<id>, threads.com/@<user>/post/<code>, pinterest.com/pin/<id>")),
            ("author", ("data.user.username | data.author.uniqueId | data.core.user_results.result."
                       "{core,legacy}.screen_name | data.pinner.username | ...")),
            ("created", "data.taken_at | data.createTime | data.legacy.created_at | data.created_at"),
            ("text", ("data.caption.text | data.desc | data.note_tweet.note_tweet_results.result.text | "
                      "data.legacy.full_text | data.description")),
            ("hashtags", ("data.textExtra[*].hashtagName + data.challenges[*].title | data.legacy.entities."
                         "hashtags[*].text | data.tags[*].name; else #words of the text")),
        ),
        source=_SOURCE,
        note="Instagram grid items marked partial (_zs_partial) have no date; LinkedIn's date is "
             "read from its activity id; an Imgur post gives its cover image only.",
    ),
    Format(
        name="4cat-zeeschuimer", title="4CAT NDJSON of a Zeeschuimer import", kinds=("ndjson", "json"),
        detect=detect_imported, post=item_post,
        fields=(("post_id", "as zeeschuimer, the item at the top level"),
                ("urls", "as zeeschuimer"), ("platform", "__import_meta.source_platform"),
                ("permalink", "as zeeschuimer"), ("author", "as zeeschuimer"), ("created", "as zeeschuimer"),
                ("text", "as zeeschuimer"), ("hashtags", "as zeeschuimer")),
        source=_SOURCE + "; 4cat common/lib/helpers.py (format_import_item: the envelope moved to __import_meta)",
    ),
    Format(
        name="zeeschuimer-csv", title="Zeeschuimer CSV", kinds=("csv",),
        detect=detect_csv, post=csv_post,
        fields=(
            ("post_id", "id"),
            ("urls", ("image_urls | thumbnail_url | images | image_url | media_url | video_thumbs "
                     "(split on ',')")),
            ("platform", "the module whose columns the header has"),
            ("permalink", "url | tiktok_url | link | post_url"),
            ("author", "author | account_username | author_nickname"),
            ("created", "unix_timestamp | created_at | timestamp"),
            ("text", "body | subject | title"),
            ("hashtags", "hashtags, challenges, tags"),
        ),
        source=_SOURCE,
        note="separated by ';' (not ','); its columns are 4CAT's map_item() columns, so 4CAT's "
             "'mapped result' CSV of a Zeeschuimer dataset reads the same.",
    ),
]
