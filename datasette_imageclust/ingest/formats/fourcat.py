"""4CAT's exports of a dataset: its CSV (one row per item, the columns each datasource's
``map_item()`` returns) and the NDJSON of items 4CAT collected itself (Bluesky, Telegram).

Read from github.com/digitalmethodsinitiative/4cat (``datasources/*/search_*.py``,
``map_item``; ``common/lib/helpers.py`` ``format_import_item``). 4CAT joins lists in a cell
with ``,`` (hashtags, image URLs; VK with ``", "``). Most datasources write ``timestamp``
with ``datetime.fromtimestamp`` (the server's local time), so ``unix_timestamp`` is read
first. 4CAT's NDJSON of a Zeeschuimer import is the platform's own item with the envelope
moved to ``__import_meta``: that is Zeeschuimer's data and is not claimed here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .base import (
    Format,
    Post,
    RowError,
    Sample,
    first,
    hashtag_list,
    id_of,
    iso_utc,
    text_of,
    unique,
    value_at,
    values_at,
)

REPO = "github.com/digitalmethodsinitiative/4cat"


@dataclass(frozen=True)
class Datasource:
    """How one 4CAT datasource's CSV columns become a Post."""
    name: str  # the detail, e.g. 'instagram'
    platform: str
    needs: frozenset[str]  # columns only this datasource writes (with id and body)
    images: tuple[str, ...]  # image URL columns, post images first, then video thumbnails
    permalink: str | None
    author: str = "author"
    hashtags: str | None = "hashtags"
    path: str = ""  # the upstream file
    fallback: tuple[str, ...] = ()  # read only when ``images`` give none (a video's cover)


def _ds(name: str, platform: str, needs: str, images: str, permalink: str | None,
        path: str, author: str = "author", hashtags: str | None = "hashtags",
        fallback: str = "") -> Datasource:
    return Datasource(name, platform, frozenset(needs.split()), tuple(images.split()),
                      permalink, author, hashtags, path, tuple(fallback.split()))


# Most specific first: a datasource is known by columns no other one writes.
DATASOURCES: tuple[Datasource, ...] = (
    _ds("instagram", "instagram", "image_urls media_urls num_media", "image_urls", "url",
        "datasources/instagram/search_instagram.py"),
    _ds("x", "x", "images quote_images link", "images", "link",
        "datasources/twitter-import/search_twitter.py"),
    _ds("x-api", "x", "images videos quoted_user replied_user", "images", None,
        "datasources/twitterv2/search_twitter.py"),
    _ds("tiktok", "tiktok", "tiktok_url thumbnail_url music_name", "thumbnail_url", "tiktok_url",
        "datasources/tiktok/search_tiktok.py"),
    _ds("9gag", "9gag", "image_url tags_annotated is_vote_masked", "image_url", "url",
        "datasources/ninegag/search_9gag.py", hashtags="tags"),
    _ds("linkedin", "linkedin", "image_urls video_thumb_url post_url inclusion_context",
        "image_urls", "post_url", "datasources/linkedin/search_linkedin.py", fallback="video_thumb_url"),
    _ds("threads", "threads", "image_url audio_url link_thumbnail_url reposts", "image_url", "url",
        "datasources/threads/search_threads.py"),
    _ds("pinterest", "pinterest", "image_url board pinner_via", "image_url", "url",
        "datasources/pinterest/search_pinterest.py", hashtags=None),
    # a Douyin photo gallery also has a cover: the cover is only the image of a video
    _ds("douyin", "douyin", "image_urls video_thumbnail post_url author_nickname",
        "image_urls", "post_url", "datasources/douyin/search_douyin.py",
        author="author_nickname", fallback="video_thumbnail"),
    _ds("imgur", "imgur", "media_url post_url album_media virality_score", "media_url", "post_url",
        "datasources/imgur/search_imgur.py", hashtags=None),
    _ds("tumblr", "tumblr", "image_urls image_urls_reblogged reblog_key post_url",
        "image_urls image_urls_reblogged video_thumb_urls", "post_url",
        "datasources/tumblr/search_tumblr.py", hashtags="tags"),
    _ds("bluesky", "bluesky", "images author_profile created_at link", "images", "link",
        "datasources/bsky/search_bsky.py", hashtags="tags"),
    _ds("truth", "truthsocial", "images video_thumbs account_username reblogs_count",
        "images video_thumbs", "url", "datasources/truth/search_truth.py", author="account_username"),
    _ds("gab", "gab", "image_urls link_image account_username reaction_count", "image_urls", "url",
        "datasources/gab/search_gab.py", author="account_username", hashtags="tags"),
    _ds("vk", "vk", "photos author_screen_name item_type", "photos", "link",
        "datasources/vk/search_vk.py", author="author_screen_name", hashtags=None),
    _ds("facebook", "facebook", "image_url video_url is_in_group group_name", "image_url", "url",
        "datasources/facebook/search_facebook.py"),
    # RedNote writes 'image_urls' (feed items) or 'image_url' (notes, search results)
    _ds("xiaohongshu", "xiaohongshu", "title url author_avatar_url video_url likes",
        "image_urls image_url", "url", "datasources/xiaohongshu/search_rednote.py"),
)

# Telegram's columns: no image URLs at all (media are only in Telegram itself).
TELEGRAM_COLUMNS = frozenset({"chat", "author_is_bot", "attachment_type", "attachment_data"})
TELEGRAM_NOTE = ("4CAT's Telegram data carries no image URLs: in 4CAT, run the "
                 "\"Download images\" processor on this dataset and load the ZIP it makes.")
# Every 4CAT item has these (map_item's common fields).
COMMON = frozenset({"id", "body"})
# A 4CAT-looking CSV of a datasource not listed above: its image columns, if any.
ANY_IMAGES = ("image_urls", "images", "image_url", "photos", "media_url", "thumbnail_url")


def datasource_of(columns: Any) -> Datasource | None:
    """The datasource whose columns these are (None: not a known 4CAT datasource)."""
    cols = frozenset(c.lstrip("\ufeff") for c in columns if isinstance(c, str))  # Excel's BOM
    if not COMMON <= cols:
        return None
    for ds in DATASOURCES:
        if ds.needs <= cols:
            return ds
    present = tuple(c for c in ANY_IMAGES if c in cols)
    if present and {"timestamp", "author"} <= cols:
        # e.g. an older 4CAT's or a new datasource's CSV: still 4CAT's common columns
        return Datasource("unknown datasource", "", frozenset(), present, None, path="")
    return None


_URL_START = re.compile(r"\s*,\s*(?=https?://)")


def split_urls(cell: Any) -> list[str]:
    """A 4CAT cell of URLs as a list: split on a comma only where a URL starts after it
    (a comma inside a URL's query stays), each URL once."""
    text = text_of(cell)
    if text is None:
        return []
    return unique(p for p in _URL_START.split(text) if p.strip().startswith(("http://", "https://")))


def _csv_detect(sample: Sample) -> str | None:
    ds = datasource_of(sample.header or (sample.records[0].keys() if sample.records else ()))
    return ds.name if ds else None


def _csv_post(record: dict) -> Post:
    if not isinstance(record, dict):
        raise RowError("not a row of columns")
    if any(isinstance(k, str) and k.startswith("\ufeff") for k in record):  # a BOM before 'id'
        record = {k.lstrip("\ufeff") if isinstance(k, str) else k: v for k, v in record.items()}
    ds = datasource_of(record.keys())
    if ds is None:
        raise RowError("not a 4CAT row (no id and body columns)")
    urls: list[str] = []
    for column in ds.images:
        urls.extend(split_urls(record.get(column)))
    for column in ds.fallback if not urls else ():
        urls.extend(split_urls(record.get(column)))
    return Post(
        post_id=id_of(record.get("id")),
        urls=unique(urls),
        platform=ds.platform or None,
        permalink=text_of(record.get(ds.permalink)) if ds.permalink else None,
        author=(text_of(record.get(ds.author)) or "").lstrip("@") or None,
        # the first date that reads: Instagram's partial items write 0 for both
        created=next(filter(None, (iso_utc(record.get(c)) for c in ("unix_timestamp", "timestamp", "created_at"))), None),
        text=text_of(record.get("body")),
        hashtags=hashtag_list(record.get(ds.hashtags)) if ds.hashtags else [],
    )


def _telegram_detect(sample: Sample) -> str | None:
    if sample.kind == "ndjson":
        return "telegram" if any(_is_telegram_item(r) for r in sample.records[:1]) else None
    cols = sample.header or (sample.records[0].keys() if sample.records else ())
    names = {c.lstrip("\ufeff") for c in cols if isinstance(c, str)}
    return "telegram" if (COMMON | TELEGRAM_COLUMNS) <= names else None


def _is_telegram_item(item: Any) -> bool:
    """A message 4CAT's Telegram collector stored (Telethon's message, serialised)."""
    return (isinstance(item, dict) and isinstance(item.get("4CAT_metadata"), dict)
            and ("_chat" in item or item.get("_type") == "Message") and "message" in item)


def _no_urls(record: dict) -> Post:
    raise RowError("4CAT's Telegram data has no image URLs")


# --- NDJSON: items 4CAT's own collectors stored ------------------------------------------

def _is_bluesky_item(item: Any) -> bool:
    """A post 4CAT's Bluesky search stored (atproto's PostView, ``model_dump()``)."""
    return (isinstance(item, dict) and isinstance(item.get("4CAT_metadata"), dict)
            and isinstance(item.get("uri"), str) and isinstance(item.get("record"), dict))


def _is_tumblr_item(item: Any) -> bool:
    """A post 4CAT's Tumblr search stored (the Tumblr API's post, Neue Post Format)."""
    return (isinstance(item, dict) and isinstance(item.get("blog_name"), str)
            and "reblog_key" in item and isinstance(item.get("content"), list))


def _ndjson_detect(sample: Sample) -> str | None:
    # Zeeschuimer's envelope (and 4CAT's '__import_meta' items) are Zeeschuimer's: only
    # the items of 4CAT's own collectors are claimed.
    records = [r for r in sample.records if isinstance(r, dict)][:5]
    if records and all(_is_bluesky_item(r) for r in records):
        return "bluesky"
    if records and all(_is_tumblr_item(r) for r in records):
        return "tumblr"
    return None


def _npf_urls(blocks: Any, kind: str) -> list[Any]:
    """URLs of a Tumblr post's content blocks as search_tumblr.py's map_item takes them:
    an image block's media[0].url; a video block's filmstrip.url, else poster[0].url."""
    urls: list[Any] = []
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict) or block.get("type") != kind:
            continue
        if kind == "image":
            urls.append(value_at(block, "media[0].url"))
        else:
            urls.append(first(block, "filmstrip.url", "poster[0].url"))
    return urls


def _tumblr_post(item: dict) -> Post:
    content = item["content"]
    # the 'rows' layout may reorder the blocks: follow it, as map_item does
    order = [i for i in values_at(item, "layout[0].display[*].blocks[0]") if isinstance(i, int)]
    if value_at(item, "layout[0].type") == "rows" and order:
        content = [content[i] for i in order if 0 <= i < len(content)]
    urls = _npf_urls(content, "image")
    for reblog in values_at(item, "trail[*].content"):
        urls.extend(_npf_urls(reblog, "image"))
    urls.extend(_npf_urls(content, "video"))
    texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return Post(
        post_id=id_of(first(item, "id_string", "id")),
        urls=unique(urls),
        platform="tumblr",
        permalink=text_of(item.get("post_url")),
        author=text_of(item.get("blog_name")),
        created=iso_utc(item.get("timestamp")),
        text="\n".join(t for t in texts if isinstance(t, str)) or None,
        hashtags=hashtag_list(item.get("tags")),
    )


def _bluesky_images(item: dict) -> list[str]:
    """Image URLs as search_bsky.py's map_item finds them: the embeds of the post view and
    of its record, through recordWithMedia's media; images' fullsize (else thumb), a
    video's thumbnail, an external link's thumb."""
    urls: list[str] = []
    embeds = [item.get("embed"), value_at(item, "record.embed")]
    while embeds:
        embed = embeds.pop(0)
        if not isinstance(embed, dict):
            continue
        kind = str(embed.get("py_type") or embed.get("$type") or "")
        if kind.startswith("app.bsky.embed.recordWithMedia"):
            embeds.extend(v for v in embed.values() if isinstance(v, dict))
        elif isinstance(embed.get("images"), list):
            for image in embed["images"]:
                if isinstance(image, dict):
                    link = image.get("fullsize") or image.get("thumb")
                    if isinstance(link, str):
                        urls.append(link)
        elif kind.startswith("app.bsky.embed.video"):
            urls.append(embed.get("thumbnail"))
        elif isinstance(embed.get("external"), dict):
            urls.append(embed["external"].get("thumb"))  # a blob reference (a dict) is no URL
    return unique(urls)


def _ndjson_post(item: dict) -> Post:
    if _is_tumblr_item(item):
        return _tumblr_post(item)
    if not _is_bluesky_item(item):
        raise RowError("not a Bluesky or Tumblr post stored by 4CAT")
    handle = text_of(value_at(item, "author.handle"))
    uri = item["uri"]
    tags = [f.get("tag") for f in values_at(item, "record.facets[*].features[*]") if isinstance(f, dict)]
    return Post(
        post_id=id_of(uri),
        urls=_bluesky_images(item),
        platform="bluesky",
        permalink=f"https://bsky.app/profile/{handle}/post/{uri.rsplit('/', 1)[-1]}" if handle else None,
        author=handle,
        created=iso_utc(first(item, "record.created_at", "record.createdAt")),
        text=text_of(value_at(item, "record.text")),
        hashtags=hashtag_list([t for t in tags if isinstance(t, str)]),
    )


# --- the formats ----------------------------------------------------------------------------

def _columns(ds: Datasource) -> str:
    more = f" (else {', '.join(ds.fallback)})" if ds.fallback else ""
    return f"{ds.name}: " + ", ".join(ds.images) + more


FORMATS: list[Format] = [
    Format(
        name="4cat-telegram", title="4CAT Telegram (CSV or NDJSON)", kinds=("csv", "ndjson"),
        detect=_telegram_detect, post=_no_urls,
        fields=(("post_id", "id"),),
        source=f"{REPO} datasources/telegram/search_telegram.py",
        note=TELEGRAM_NOTE, images=False,
    ),
    Format(
        name="4cat", title="4CAT CSV", kinds=("csv",),
        detect=_csv_detect, post=_csv_post,
        fields=(
            ("post_id", "id"),
            ("urls", "; ".join(_columns(ds) for ds in DATASOURCES) + " (comma-joined)"),
            ("platform", "the datasource, told by its columns"),
            ("permalink", "; ".join(f"{ds.name}: {ds.permalink}" for ds in DATASOURCES if ds.permalink)),
            ("author", "author (douyin: author_nickname; truth, gab: account_username; vk: author_screen_name)"),
            ("created", "unix_timestamp, else timestamp, else created_at"),
            ("text", "body"),
            ("hashtags", "hashtags (9gag, tumblr, bluesky, gab: tags; comma-joined)"),
        ),
        source=f"{REPO} " + ", ".join(ds.path for ds in DATASOURCES),
    ),
    Format(
        name="4cat-ndjson", title="4CAT NDJSON (Bluesky, Tumblr)", kinds=("ndjson",),
        detect=_ndjson_detect, post=_ndjson_post,
        fields=(
            ("post_id", "bluesky: uri; tumblr: id_string"),
            ("urls", ("bluesky: embed / record.embed images[*].fullsize (else thumb), video thumbnail, "
                      "external.thumb, recordWithMedia's media; tumblr: content[*] image blocks' "
                      "media[0].url, then trail[*].content[*] images, then video filmstrip.url / poster[0].url")),
            ("permalink", "bluesky: https://bsky.app/profile/{author.handle}/post/{last part of uri}; tumblr: post_url"),
            ("author", "bluesky: author.handle; tumblr: blog_name"),
            ("created", "bluesky: record.created_at; tumblr: timestamp"),
            ("text", "bluesky: record.text; tumblr: the text blocks"),
            ("hashtags", "bluesky: record.facets[*].features[*].tag; tumblr: tags"),
        ),
        source=f"{REPO} datasources/bsky/search_bsky.py, datasources/tumblr/search_tumblr.py",
    ),
]
