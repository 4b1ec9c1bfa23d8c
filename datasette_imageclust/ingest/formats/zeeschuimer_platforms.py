"""The platform half of the Zeeschuimer format: one function per Zeeschuimer module that
maps an item's ``data`` (the platform's own JSON, as Zeeschuimer captured it) to a
:class:`~.base.Post`.

Each follows 4CAT's ``map_item()`` for that platform (digitalmethodsinitiative/4cat,
``datasources/<platform>/search_<platform>.py``; Zeeschuimer's ``modules/<platform>.js``
carry the same mapping, synced from 4CAT), except that it keeps *every* image of a post
where 4CAT keeps one, and never raises on a missing field (it is left empty instead).
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from .base import (
    Post,
    first,
    hashtag_list,
    id_of,
    iso_utc,
    tags_in,
    text_of,
    unique,
    value_at,
    values_at,
)

_TAG = re.compile(r"<[^>]+>")


def plain(markup: Any) -> str | None:
    """HTML (Mastodon-style ``content``) as text: paragraph breaks kept, tags dropped."""
    text = text_of(markup)
    if text is None:
        return None
    text = re.sub(r"<br\s*/?>|</p>", "\n", text, flags=re.IGNORECASE)
    return text_of(html.unescape(_TAG.sub("", text)))


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# --- Instagram: 4cat datasources/instagram/search_instagram.py ------------------------------

def instagram(d: dict) -> Post:
    """Three shapes: the 'item list' API (``media_type``, ``carousel_media``), the older
    Graph API (``shortcode``, ``edge_sidecar_to_children``) and the Polaris grid
    (``__typename`` XIGPolaris*, partial: ``display_uri`` and no date)."""
    typename = str(d.get("__typename") or "")
    if "shortcode" in d or typename.startswith("Graph"):
        children = values_at(d, "edge_sidecar_to_children.edges[*].node.display_url")
        urls = unique(children or [d.get("display_url")])
        text = text_of(value_at(d, "edge_media_to_caption.edges[0].node.text"))
        created = iso_utc(d.get("taken_at_timestamp"))
        code = id_of(d.get("shortcode"))
    else:
        # A carousel's own image_versions2 is its first slide; the slides are the post.
        nodes = _dicts(d.get("carousel_media")) or [d]
        urls = unique(value_at(n, "image_versions2.candidates[0].url") for n in nodes)
        if not urls:  # Polaris grid items carry the shown image only
            urls = unique([d.get("display_uri")])
        text = text_of(value_at(d, "caption.text"))
        created = iso_utc(d.get("taken_at"))
        code = id_of(d.get("code"))
    return Post(post_id=code, urls=urls, platform="instagram",
                permalink=f"https://www.instagram.com/p/{code}" if code else None,
                author=text_of(first(d, "user.username", "owner.username")),
                created=created, text=text, hashtags=tags_in(text))


# --- TikTok: 4cat datasources/tiktok/search_tiktok.py; photo posts as gallery-dl reads them ---

def tiktok(d: dict) -> Post:
    """A video's cover, or every image of a photo post (``imagePost.images``)."""
    post_id = id_of(d.get("id"))
    author = d.get("author")
    # The API gives an author object; items embedded in the page give the handle as text.
    handle = text_of(author.get("uniqueId")) if isinstance(author, dict) else text_of(author)
    urls = unique(values_at(d, "imagePost.images[*].imageURL.urlList[0]"))
    if not urls:
        # the video's still: cover, else (as 4CAT) the last shareCover
        share = value_at(d, "video.shareCover")
        share = share[-1:] if isinstance(share, list) else []
        urls = unique([first(d, "video.cover", "video.originCover")] + share)[:1]
    text = text_of(d.get("desc"))
    tags = hashtag_list(values_at(d, "textExtra[*].hashtagName") + values_at(d, "challenges[*].title"))
    return Post(post_id=post_id, urls=urls, platform="tiktok",
                permalink=f"https://www.tiktok.com/@{handle}/video/{post_id}" if handle and post_id else None,
                author=handle, created=iso_utc(d.get("createTime")), text=text,
                hashtags=tags or tags_in(text))


def tiktok_comment(d: dict) -> Post:
    """4cat datasources/tiktok_comments/search_tiktok_comments.py: a comment has no image."""
    return Post(post_id=id_of(d.get("cid")), platform="tiktok",
                permalink=text_of(value_at(d, "share_info.url")),
                author=text_of(value_at(d, "user.unique_id")), created=iso_utc(d.get("create_time")),
                text=text_of(d.get("text")), hashtags=tags_in(text_of(d.get("text"))))


# --- X/Twitter: 4cat datasources/twitter-import/search_twitter.py -------------------------

_MEDIA_AUTHOR = re.compile(r"^https?://(?:x|twitter)\.com/([^/]+)/status/")


def _screen_name_from_media(legacy: Any) -> str | None:
    """The author from a media ``expanded_url`` when X left the user object out (as 4CAT)."""
    for url in values_at(legacy, "extended_entities.media[*].expanded_url") + \
            values_at(legacy, "entities.media[*].expanded_url"):
        m = _MEDIA_AUTHOR.match(url) if isinstance(url, str) else None
        if m:
            return m.group(1)
    return None


def _tweet_media(legacy: Any) -> list[str]:
    # media_url_https is the photo itself, or a video's / GIF's still; never the t.co 'url'.
    return unique(values_at(legacy, "extended_entities.media[*].media_url_https")
                  + values_at(legacy, "entities.media[*].media_url_https"))


def x(d: dict) -> Post:
    """The GraphQL tweet (``rest_id``, ``legacy``, ``core.user_results.result``) or the
    older 'adaptive' one (``type: adaptive``, ``legacy``, ``user``)."""
    legacy = d.get("legacy") if isinstance(d.get("legacy"), dict) else {}
    # Zeeschuimer's 'id' is sometimes parseInt() of the id (a float past 2^53): prefer text ids.
    post_id = id_of(d.get("rest_id")) or id_of(legacy.get("id_str")) or id_of(d.get("id"))
    author = text_of(first(d, "core.user_results.result.core.screen_name",
                           "core.user_results.result.legacy.screen_name", "user.screen_name"))
    author = author or _screen_name_from_media(legacy)
    # a post over 280 characters is cut short in full_text; its whole text is the note's
    text = text_of(value_at(d, "note_tweet.note_tweet_results.result.text")) or text_of(legacy.get("full_text"))
    urls = _tweet_media(legacy)
    retweet = value_at(legacy, "retweeted_status_result.result")
    if isinstance(retweet, dict):
        retweet = retweet.get("tweet", retweet)  # sometimes nested once more
        rt_legacy = retweet.get("legacy") if isinstance(retweet, dict) else None
        if isinstance(rt_legacy, dict):
            rt_author = text_of(first(retweet, "core.user_results.result.core.screen_name",
                                      "core.user_results.result.legacy.screen_name")) \
                or _screen_name_from_media(rt_legacy)
            rt_text = text_of(rt_legacy.get("full_text"))
            if rt_text:  # the tweet's own full_text is cut short; 4CAT rebuilds it so
                text = f"RT @{rt_author}: {rt_text}" if rt_author else rt_text
            urls = urls or _tweet_media(rt_legacy)
    if author and post_id:
        permalink = f"https://x.com/{author}/status/{post_id}"
    else:
        permalink = f"https://x.com/i/web/status/{post_id}" if post_id else None
    tags = hashtag_list(values_at(legacy, "entities.hashtags[*].text"))
    return Post(post_id=post_id, urls=urls, platform="x", permalink=permalink, author=author,
                created=iso_utc(legacy.get("created_at")), text=text, hashtags=tags or tags_in(text))


# --- Threads: 4cat datasources/threads/search_threads.py ----------------------------------

def threads(d: dict) -> Post:
    """Instagram's item shape: ``carousel_media[*]`` or the post's own ``image_versions2``."""
    nodes = _dicts(d.get("carousel_media")) or [d]
    code = id_of(d.get("code"))
    author = text_of(value_at(d, "user.username"))
    text = text_of(value_at(d, "caption.text"))
    return Post(post_id=code, urls=unique(value_at(n, "image_versions2.candidates[0].url") for n in nodes),
                platform="threads",
                permalink=f"https://www.threads.com/@{author}/post/{code}" if author and code else None,
                author=author, created=iso_utc(d.get("taken_at")), text=text, hashtags=tags_in(text))


# --- Pinterest: 4cat datasources/pinterest/search_pinterest.py ----------------------------

def pinterest(d: dict) -> Post:
    """A pin from the JSON API (``imageSpec_orig`` or ``images.orig``), or one Zeeschuimer
    read from the page (``_zs-origin: html``: ``image``, ``body``, no author or date)."""
    if d.get("_zs-origin") == "html":
        post_id = id_of(d.get("id"))
        text = text_of(d.get("body")) or text_of(d.get("title"))
        return Post(post_id=post_id, urls=unique([d.get("image")]), platform="pinterest",
                    permalink=f"https://www.pinterest.com/pin/{post_id}" if post_id else None,
                    text=text, hashtags=tags_in(text))
    post_id = id_of(d.get("entityId")) or id_of(d.get("id"))
    text = text_of(d.get("description")) or text_of(d.get("title"))
    return Post(post_id=post_id, urls=unique([first(d, "imageSpec_orig.url", "images.orig.url", "images.url")]),
                platform="pinterest",
                permalink=f"https://www.pinterest.com/pin/{post_id}" if post_id else None,
                author=text_of(value_at(d, "pinner.username")),
                created=iso_utc(d.get("created_at") or d.get("createdAt")), text=text, hashtags=tags_in(text))


# --- LinkedIn (module removed from Zeeschuimer in 2025; older exports): 4cat linkedin ------

_ACTIVITY = re.compile(r"urn:li:activity:(\d+)")


def _vector_image(image: Any) -> str | None:
    """``rootUrl`` + the widest artifact's path segment (as 4CAT)."""
    if not isinstance(image, dict) or not isinstance(image.get("rootUrl"), str):
        return None
    artifacts = [a for a in _dicts(image.get("artifacts")) if isinstance(a.get("fileIdentifyingUrlPathSegment"), str)]
    if not artifacts:
        return None
    widest = max(artifacts, key=lambda a: a.get("width") if isinstance(a.get("width"), int) else 0)
    return image["rootUrl"] + widest["fileIdentifyingUrlPathSegment"]


def linkedin(d: dict) -> Post:
    """A 'Voyager V2' feed update: images in ``content.images[*]``, an article's
    ``largeImage``, or a video's thumbnail."""
    urn = text_of(first(d, "updateMetadata.urn", "preDashEntityUrn")) or ""
    m = _ACTIVITY.search(urn)
    activity = m.group(1) if m else None
    content = d.get("content") if isinstance(d.get("content"), dict) else {}
    urls = [_vector_image(value_at(i, "attributes[0].vectorImage")) for i in _dicts(content.get("images"))]
    large = value_at(content, "articleComponent.largeImage.attributes[0]")
    urls += [_vector_image(value_at(large, "detailData.vectorImage")), value_at(large, "imageUrl.url")]
    for path in ("*videoPlayMetadata", "linkedInVideoComponent.*videoPlayMetadata",
                 "externalVideoComponent.*videoPlayMetadata"):
        urls.append(_vector_image(value_at(content, f"{path}.thumbnail")))
    target = text_of(value_at(d, "actor.navigationContext.actionTarget")) or ""
    # '.../in/jane-doe?mini...' -> 'jane-doe' (4CAT keeps 'in/jane-doe'; a handle has no kind)
    author = target.split("linkedin.com/")[-1].split("?")[0].strip("/").split("/")[-1] if "linkedin.com/" in target else None
    text = text_of(value_at(d, "commentary.text.text"))
    tags = [a.get("trackingUrn") for a in _dicts(value_at(d, "commentary.text.attributes"))
            if a.get("type") == "HASHTAG"]
    tags += values_at(d, "commentary.text.attributesV2[*].detailData.*hashtag.trackingUrn")
    tags = hashtag_list([t.split(":")[-1] for t in tags if isinstance(t, str)])
    # LinkedIn gives no date, only '18h ago'; an activity id's first 41 bits are its
    # creation time in ms (Ollie Boyd's finding), which is exact where 4CAT estimates.
    created = iso_utc(int(bin(int(activity))[2:43], 2)) if activity and len(activity) >= 16 else None
    return Post(post_id=activity, urls=unique(urls), platform="linkedin",
                permalink=f"https://www.linkedin.com/feed/update/urn:li:activity:{activity}" if activity else None,
                author=author or None, created=created, text=text, hashtags=tags or tags_in(text))


# --- Douyin: 4cat datasources/douyin/search_douyin.py -------------------------------------

def douyin(d: dict) -> Post:
    """The API item (snake_case: ``aweme_id``, ``images[*].url_list``) or the one embedded in
    the page (``ZS_collected_from_embed``: camelCase, ``urlList``)."""
    embedded = bool(d.get("ZS_collected_from_embed"))
    post_id = id_of(d.get("awemeId" if embedded else "aweme_id"))
    images = unique(values_at(d, "images[*].url_list[0]") + values_at(d, "images[*].urlList[0]"))
    cover = first(d, "video.cover.url_list[0]", "video.cover")
    author = text_of(first(d, "author.unique_id", "author.nickname", "authorInfo.nickname"))
    text = text_of(d.get("desc"))
    tags = hashtag_list(values_at(d, "text_extra[*].hashtag_name") + values_at(d, "textExtra[*].hashtagName"))
    return Post(post_id=post_id, urls=images or unique([cover] if isinstance(cover, str) else []),
                platform="douyin",
                permalink=f"https://www.douyin.com/video/{post_id}" if post_id else None, author=author,
                created=iso_utc(d.get("createTime" if embedded else "create_time")), text=text,
                hashtags=tags or tags_in(text))


# --- 9GAG: 4cat datasources/ninegag/search_9gag.py ----------------------------------------

def _area(v: dict) -> int:
    w, h = v.get("width"), v.get("height")
    return w * h if isinstance(w, int) and isinstance(h, int) else 0


def ninegag(d: dict) -> Post:
    """The largest still of ``images`` (versions keyed by size; ``hasAudio`` ones are video)."""
    versions = [v for v in d.get("images", {}).values() if isinstance(v, dict) and "hasAudio" not in v] \
        if isinstance(d.get("images"), dict) else []
    best = max(versions, key=_area, default={})
    text = "\n".join(t for t in (text_of(d.get("title")), text_of(d.get("description"))) if t) or None
    # anonymous posts show as '9GAGGER' on the site (4CAT names them so too)
    author = text_of(value_at(d, "creator.username")) or ("9GAGGER" if "creator" in d else None)
    return Post(post_id=id_of(d.get("id")), urls=unique([best.get("url")]), platform="9gag",
                permalink=text_of(d.get("url")), author=author, created=iso_utc(d.get("creationTs")),
                text=text, hashtags=hashtag_list(values_at(d, "tags[*].key")) or tags_in(text))


# --- Imgur: 4cat datasources/imgur/search_imgur.py ----------------------------------------

def imgur(d: dict) -> Post:
    """A gallery post: its ``cover`` only (the other images of an album are not captured);
    a video cover's URL is the video, so it is left out."""
    cover = d.get("cover") if isinstance(d.get("cover"), dict) else {}
    url = cover.get("url") if cover.get("type") != "video" else None
    text = "\n".join(t for t in (text_of(d.get("title")), text_of(d.get("description"))) if t) or None
    return Post(post_id=id_of(d.get("id")), urls=unique([url]), platform="imgur",
                permalink=text_of(d.get("url")), author=id_of(d.get("account_id")),
                created=iso_utc(d.get("created_at")), text=text, hashtags=tags_in(text))


# --- Truth Social and Gab (Mastodon-like): 4cat datasources/truth, datasources/gab --------

def _attachments(items: Any) -> list[str]:
    urls = []
    for m in _dicts(items):
        kind = m.get("type", m.get("t"))
        if kind == "image":
            urls.append(m.get("url", m.get("u")))
        elif kind == "video":  # its still, not the video
            urls.append(m.get("preview_url"))
        elif kind == "tv":  # Truth's 'TV' items: the url is a thumbnail (4CAT)
            urls.append(m.get("url"))
    return unique(urls)


def truth(d: dict) -> Post:
    text = plain(d.get("content"))
    return Post(post_id=id_of(d.get("id")), urls=_attachments(d.get("media_attachments")),
                platform="truthsocial", permalink=text_of(d.get("url")),
                author=text_of(value_at(d, "account.username")), created=iso_utc(d.get("created_at")),
                text=text, hashtags=hashtag_list(values_at(d, "tags[*].name")) or tags_in(text))


def gab(d: dict) -> Post:
    """Gab's items come long-keyed or short-keyed (``i``, ``c``, ``ca``, ``ul``, ``tg``)."""
    text = plain(first(d, "c", "content"))
    tags = hashtag_list(values_at(d, "tg[*].name") + values_at(d, "tags[*].name"))
    return Post(post_id=id_of(first(d, "i", "id")),
                urls=_attachments(first(d, "image_info", "media_attachments")), platform="gab",
                permalink=text_of(first(d, "ul", "url")),
                author=text_of(first(d, "author_info.un", "account.username")),
                created=iso_utc(first(d, "ca", "created_at")), text=text, hashtags=tags or tags_in(text))


# --- Xiaohongshu (RedNote): 4cat datasources/xiaohongshu/search_rednote.py ----------------

def _rednote_image(image: dict) -> Any:
    if image.get("url_default") or image.get("urlDefault"):
        return image.get("url_default") or image.get("urlDefault")
    infos = _dicts(image.get("info_list"))
    wb = [i.get("url") for i in infos if i.get("image_scene") == "WB_DFT"]
    return (wb or [i.get("url") for i in infos] or [None])[0]


def rednote(d: dict) -> Post:
    """An explore-API note (``note_card``), a note embedded in the page (``note``) or a tile
    Zeeschuimer read from the HTML (``_zs-origin: html``)."""
    post_id = id_of(d.get("id")) or id_of(d.get("note_id"))
    if d.get("_zs-origin") == "html":
        note, urls, token = d, unique([d.get("thumbnail_url")]), None
        author = text_of(d.get("author_name"))
    else:
        note = d.get("note") if isinstance(d.get("note"), dict) else \
            d.get("note_card") if isinstance(d.get("note_card"), dict) else d
        images = _dicts(note.get("image_list")) or _dicts(note.get("imageList"))
        urls = unique(_rednote_image(i) for i in images) or unique([value_at(note, "cover.url_default")])
        author = text_of(first(note, "user.nickname", "user.nick_name"))
        token = text_of(d.get("xsec_token")) or text_of(note.get("xsecToken"))
    text = "\n".join(t for t in (text_of(first(note, "title", "display_title")), text_of(note.get("desc"))) if t)
    permalink = f"https://www.xiaohongshu.com/explore/{post_id}" if post_id else None
    if permalink and token:  # without its token the link is a 404 (4CAT)
        permalink += f"?xsec_token={token}"
    return Post(post_id=post_id, urls=urls, platform="xiaohongshu", permalink=permalink, author=author,
                created=iso_utc(note.get("time")), text=text or None, hashtags=tags_in(text))


# --- anything else ------------------------------------------------------------------------

def generic(d: dict, platform: str | None) -> Post:
    """Best effort for a module this file does not know (a newer Zeeschuimer's)."""
    text = text_of(first(d, "caption.text", "text", "desc", "description", "content", "body", "title"))
    url = first(d, "image_versions2.candidates[0].url", "display_url", "display_uri", "image_url",
                "thumbnail_url", "video.cover", "cover.url")
    return Post(post_id=id_of(first(d, "id", "code", "shortcode", "rest_id")),
                urls=unique([url] if isinstance(url, str) else []), platform=platform,
                permalink=text_of(first(d, "url", "permalink", "link")),
                author=text_of(first(d, "user.username", "author.username", "author.uniqueId",
                                     "account.username", "owner.username", "username")),
                created=iso_utc(first(d, "taken_at", "createTime", "create_time", "created_at",
                                      "creationTs", "timestamp")),
                text=plain(text) if text and "<" in text else text, hashtags=tags_in(text))


# source_platform (Zeeschuimer's module id) -> mapper
MAPPERS: dict[str, Callable[[dict], Post]] = {
    "instagram.com": instagram, "tiktok.com": tiktok, "tiktok-comments": tiktok_comment,
    "twitter.com": x, "x.com": x, "threads.net": threads, "threads.com": threads,
    "pinterest.com": pinterest, "linkedin.com": linkedin, "douyin.com": douyin, "9gag.com": ninegag,
    "imgur.com": imgur, "truthsocial.com": truth, "gab.com": gab, "xiaohongshu.com": rednote,
}
