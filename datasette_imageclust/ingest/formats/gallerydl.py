"""gallery-dl's ``--write-metadata`` sidecars: ``NAME.EXT.json`` beside each downloaded
file, the extractor's keyword dict for that one file (so the four photos of a tweet give
four sidecars that share ``tweet_id``, told apart by ``num`` of ``count``).

Read from mikf/gallery-dl: ``gallery_dl/postprocessor/metadata.py`` (the JSON is the
kwdict, private ``_`` keys dropped; ``NAME.EXT`` + ``.json``), ``gallery_dl/util.py``
(``json_default``: a date is written as ``str(datetime)``, ``2024-03-02 10:11:12``, UTC),
``gallery_dl/job.py`` (``category``/``subcategory`` set on every kwdict; the file's URL
only under the ``metadata-url`` option's name: ``_url`` by default, dropped as private,
``gdl_file_url`` as its docs suggest), ``docs/configuration.rst``, and the extractors
``gallery_dl/extractor/{twitter,instagram,reddit,tumblr,pinterest,bluesky,tiktok,
mastodon}.py`` with their ``test/results/*.py`` (the keys per site, below).
"""
from __future__ import annotations

import html
import re
from typing import Any, Callable

from .base import (Format, Post, RowError, Sample, first, hashtag_list, id_of, iso_utc, tags_in, text_of,
                   unique, value_at)

_CATEGORY = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Keys a metadata-url option is set to (job.py's default '_url' is kept only with
# "private": true; 'gdl_file_url' is the name docs/configuration.rst suggests).
_URL_KEYS = ("gdl_file_url", "_url")
_IMAGE_EXT = {"jpg", "jpeg", "png", "webp", "gif", "heic", "avif", "bmp", "tif", "tiff"}
# Subcategories whose files are a profile's pictures, not a post's.
_PROFILE = {"avatar", "background", "banner", "info"}
_BREAK = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>", re.I)  # between paragraphs: a new line
_TAGS = re.compile(r"<[^>]+>")


def detect(sample: Sample) -> str | None:
    """The kwdict's ``category`` (e.g. ``'twitter'``) when the sidecar is gallery-dl's."""
    if not sample.records or not isinstance(sample.records[0], dict):
        return None
    data = sample.records[0]
    category, sub = data.get("category"), data.get("subcategory")
    if not isinstance(category, str) or not isinstance(sub, str) or not _CATEGORY.fullmatch(category):
        return None
    if "node" in data and "instaloader" in data:  # Instaloader's envelope, never a kwdict
        return None
    # Every file's kwdict also has its name parts (text.nameext_from_url) or its counter,
    # unless the user filtered keys out: one of them is asked for, so that any JSON with
    # a 'category' is not taken for gallery-dl's.
    if not any(k in data for k in ("extension", "filename", "num", "count", "date")):
        return None
    return category


def _str(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _date(*values: Any) -> str | None:
    """The first value that reads as a date (gallery-dl's str(datetime), ISO, epoch, or
    Pinterest's RFC 2822 ``Sat, 02 Mar 2024 10:11:12 +0000``)."""
    for value in values:
        when = iso_utc(value)
        if when:
            return when
    return None


def _file_url(data: dict, *keys: str) -> list[str]:
    """The file's source URL when the kwdict holds it (a metadata-url key, else one of
    the site's ``keys``), for an image only: a video's URL is no image's, and its
    ``display_url`` is its cover's, which is another file."""
    if str(data.get("extension", "")).lower() not in _IMAGE_EXT:
        return []
    for key in (*_URL_KEYS, *keys):
        url = _str(value_at(data, key))
        if url and url.startswith(("http://", "https://")):
            return [url]
    return []


def _plain(value: Any) -> str | None:
    """Text of an HTML field (Mastodon's content, Tumblr's caption): tags out."""
    text = _str(value)
    return text_of(html.unescape(_TAGS.sub("", _BREAK.sub("\n", text)))) if text else None


def _twitter(d: dict) -> dict:
    # twitter.py _transform_tweet: tweet_id, author{name}, content, hashtags, date.
    author = _str(first(d, "author.name", "user.name"))
    tid = id_of(d.get("tweet_id"))
    return {"post_id": tid, "author": author, "text": _str(d.get("content")),
            "hashtags": hashtag_list(d.get("hashtags")), "created": _date(d.get("date")),
            "permalink": f"https://x.com/{author or 'i/web'}/status/{tid}" if tid else None,
            "urls": _file_url(d)}


def _instagram(d: dict) -> dict:
    # instagram.py _parse_post_graphql / _parse_post_rest: post_id, post_shortcode,
    # post_url, username, description, tags ('#tag'), post_date; per file display_url.
    user = _str(d.get("username"))
    if d.get("type") in ("story", "highlight"):  # post_id is the reel's: each item is a post
        mid = id_of(d.get("media_id"))
        return {"post_id": mid, "author": user, "created": _date(d.get("date")),
                "permalink": f"https://www.instagram.com/stories/{user}/{mid}/" if user and mid else None,
                "urls": _file_url(d, "display_url")}
    text = _str(d.get("description"))
    code = _str(d.get("post_shortcode"))
    return {"post_id": id_of(first(d, "post_id", "sidecar_media_id", "media_id")), "author": user,
            "text": text, "hashtags": hashtag_list(d.get("tags")) if d.get("tags") else tags_in(text),
            "created": _date(d.get("post_date"), d.get("date")),
            "permalink": _str(d.get("post_url")) or (f"https://www.instagram.com/p/{code}/" if code else None),
            "urls": _file_url(d, "display_url")}


def _reddit(d: dict) -> dict:
    # reddit.py: the submission's own JSON (id, author, title, selftext, permalink,
    # created_utc, url), 'comment' set when the file is from a comment.
    src = d["comment"] if isinstance(d.get("comment"), dict) else d
    link = _str(src.get("permalink"))
    if link and link.startswith("/"):
        link = "https://www.reddit.com" + link
    if src is d:
        text = "\n\n".join(t for t in (_str(d.get("title")), _str(d.get("selftext"))) if t) or None
    else:
        text = _str(src.get("body"))
    url = _str(d.get("url")) if src is d else None
    return {"post_id": id_of(src.get("id")), "author": _str(src.get("author")), "text": text,
            "created": _date(src.get("created_utc"), d.get("date")), "permalink": link,
            "urls": _file_url(d) or ([url] if url and url.startswith("https://i.redd.it/") else [])}


def _tumblr(d: dict) -> dict:
    # tumblr.py: the API's post (id, id_string, blog_name, post_url, tags, summary,
    # timestamp); 'date' replaced by a datetime.
    return {"post_id": id_of(first(d, "id_string", "id")), "author": _str(d.get("blog_name")),
            "text": _str(d.get("summary")) or _plain(first(d, "caption", "body")),
            "hashtags": hashtag_list(d.get("tags")), "created": _date(d.get("date"), d.get("timestamp")),
            "permalink": _str(d.get("post_url")), "urls": _file_url(d, "photo.original_size.url")}


def _pinterest(d: dict) -> dict:
    # pinterest.py: the pin (id, description, title, created_at), the file's own 'url'.
    pid = id_of(d.get("id"))
    return {"post_id": pid, "author": _str(first(d, "pinner.username", "native_creator.username")),
            "text": _str(first(d, "description", "title", "grid_title")),
            "created": _date(d.get("created_at"), d.get("date")),
            "permalink": f"https://www.pinterest.com/pin/{pid}/" if pid else None,
            "urls": _file_url(d, "url")}


def _bluesky(d: dict) -> dict:
    # bluesky.py _prepare: the post and its record merged: post_id (rkey), author
    # {handle}, text, hashtags (with metadata facets), createdAt, date.
    handle, pid = _str(value_at(d, "author.handle")), id_of(d.get("post_id"))
    return {"post_id": pid, "author": handle, "text": _str(d.get("text")),
            "hashtags": hashtag_list(d.get("hashtags")) if d.get("hashtags") else tags_in(_str(d.get("text"))),
            "created": _date(d.get("createdAt"), d.get("date")),
            "permalink": f"https://bsky.app/profile/{handle}/post/{pid}" if handle and pid else None,
            "urls": _file_url(d)}


def _tiktok(d: dict) -> dict:
    # tiktok.py: the item (id, desc, author{uniqueId}, createTime), user, post_type.
    user, pid = _str(first(d, "author.uniqueId", "user")), id_of(d.get("id"))
    kind = "photo" if d.get("post_type") == "image" else "video"
    text = _str(d.get("desc"))
    return {"post_id": pid, "author": user, "text": text,
            "hashtags": tags_in(text),
            "created": _date(d.get("createTime"), d.get("date")),
            "permalink": f"https://www.tiktok.com/@{user}/{kind}/{pid}" if user and pid else None,
            "urls": _file_url(d)}


def _mastodon(d: dict) -> dict:
    # mastodon.py: the status (id, url, content (HTML), account{acct}, tags as names,
    # created_at); the file is media{url}.
    return {"post_id": id_of(d.get("id")), "author": _str(value_at(d, "account.acct")),
            "text": _plain(d.get("content")), "hashtags": hashtag_list(d.get("tags")),
            "created": _date(d.get("created_at"), d.get("date")), "permalink": _str(d.get("url")),
            "urls": _file_url(d, "media.url")}


def _generic(d: dict) -> dict:
    # Any other extractor: the keys most of them share.
    link = _str(first(d, "post_url", "permalink"))
    text = _str(first(d, "content", "description", "caption", "title", "text"))
    return {"post_id": id_of(first(d, "post_id", "id")),
            "author": _str(first(d, "author.name", "username", "user.name", "author", "uploader")),
            "text": text, "hashtags": hashtag_list(first(d, "hashtags", "tags")),
            "created": _date(d.get("date")),
            "permalink": link if link and link.startswith(("http://", "https://")) else None,
            "urls": _file_url(d)}


_SITES: dict[str, Callable[[dict], dict]] = {
    "twitter": _twitter, "instagram": _instagram, "reddit": _reddit, "tumblr": _tumblr,
    "pinterest": _pinterest, "bluesky": _bluesky, "tiktok": _tiktok,
}
_PLATFORM = {"twitter": "x"}


def post(data: dict) -> Post:
    """One file's kwdict as the :class:`Post` it belongs to (its post's id, so the files
    of one post group together)."""
    category = data.get("category")
    if not isinstance(category, str) or not _CATEGORY.fullmatch(category):
        raise RowError("no gallery-dl 'category' in the sidecar")
    # Mastodon instances are categories of their own ('mastodon.social', 'pawoo', ...).
    mastodon = isinstance(data.get("account"), dict) and "acct" in data["account"]
    site = "mastodon" if mastodon else category
    fields = (_mastodon if mastodon else _SITES.get(category, _generic))(data)
    if data.get("subcategory") in _PROFILE:  # a profile's picture: no post to group under
        fields["post_id"] = fields["permalink"] = None
    return Post(
        post_id=fields.get("post_id"),
        urls=unique(fields.get("urls") or []),
        platform=_PLATFORM.get(site, site),
        permalink=fields.get("permalink"),
        author=(fields.get("author") or "").lstrip("@") or None,
        created=fields.get("created"),
        text=fields.get("text"),
        hashtags=fields.get("hashtags") or [],
    )


FORMATS: list[Format] = [
    Format(
        name="gallery-dl",
        title="gallery-dl metadata sidecars",
        kinds=("sidecar",),
        detect=detect,
        post=post,
        fields=(
            ("post_id", "tweet_id / post_id / id (the post's, shared by its files)"),
            ("urls", "gdl_file_url or _url (metadata-url); instagram display_url, pinterest url"),
            ("platform", "category ('twitter' -> 'x')"),
            ("permalink", "post_url / permalink / url, else built as the site does"),
            ("author", "author.name / username / author / author.handle / blog_name"),
            ("created", "date ('YYYY-MM-DD HH:MM:SS', UTC)"),
            ("text", "content / description / title / text / desc"),
            ("hashtags", "hashtags / tags, else #tags in the text"),
        ),
        source="mikf/gallery-dl: gallery_dl/postprocessor/metadata.py, gallery_dl/job.py, "
               "gallery_dl/extractor/{twitter,instagram,reddit,tumblr,pinterest,bluesky,tiktok,mastodon}.py",
        note="one sidecar per file: the files of one post share its post_id",
    ),
]
