"""DMI-TCAT's tweet exports ("Export all tweets from selection" / "Random set of tweets"),
CSV or TSV.

Read from digitalmethodsinitiative/dmi-tcat ``analysis/mod.export_tweets.php`` (the
header: ``id,time,created_at,from_user_name,text,...,from_user_id,...``, then, with the
export options ticked, ``urls,urls_expanded,...``, ``media_id,media_urls,media_type,...``,
``mentions``, ``hashtags``; every list cell is joined with ``"; "``),
``analysis/common/CSV.class.php`` (a UTF-8 BOM first; ``,`` or a tab between cells,
``"`` around them; tabs and newlines inside a cell become spaces),
``analysis/common/config.php`` (dates are UTC: ``time`` is ``strtotime(created_at)``
under ``date_default_timezone_set('UTC')``), ``capture/common/functions.php`` (a media
row's ``media_url_https`` and ``type`` come from the tweet's ``extended_entities.media``)
and ``analysis/mod.export_tweets_lang.php`` (the language export, same first columns).
The March 2015 exports named the column ``media_url``; it is read too.
"""
from __future__ import annotations


from .base import Format, Post, RowError, Sample, hashtag_list, id_of, iso_utc, tags_in, text_of, unique

# Every tweet export starts with these (mod.export_tweets.php, mod.export_tweets_lang.php).
_CORE = ("id", "time", "created_at", "from_user_name", "text")
# ... and has at least one of these user columns, which no other tool names so.
_USER = ("from_user_id", "from_user_lang", "from_user_realname")
_MEDIA = ("media_urls", "media_url")  # 'media_url' in the exports of March 2015
# Twitter's media types: media_url_https of a video or GIF is its still (a JPEG), so all
# three give an image; any other type is not known to be one and is left out.
_IMAGE_TYPES = {"photo", "video", "animated_gif", ""}


def _names(header: list[str]) -> set[str]:
    # A reader that decoded without utf-8-sig leaves the BOM on the first name.
    return {h.lstrip("\ufeff").strip() for h in header if isinstance(h, str)}


def detect(sample: Sample) -> str | None:
    """'media' when the export has its media columns, else 'no media columns'; None if not TCAT."""
    names = _names(sample.header)
    if not all(c in names for c in _CORE) or not any(c in names for c in _USER):
        return None
    return "media" if any(c in names for c in _MEDIA) else "no media columns"


def _split(cell: object) -> list[str]:
    """A ``"; "``-joined cell as its items, each trimmed (empty items kept: they keep
    media_urls and media_type in step)."""
    if not isinstance(cell, str) or not cell.strip():
        return []
    return [part.strip() for part in cell.split(";")]


def post(record: dict) -> Post:
    """One exported tweet as a :class:`Post` (its media URLs in the tweet's order)."""
    row = {k.lstrip("\ufeff").strip(): v for k, v in record.items() if isinstance(k, str)}
    post_id = id_of(row.get("id"))
    if post_id is None:
        raise RowError("no tweet id in the 'id' column")
    media = _split(next((row[c] for c in _MEDIA if c in row), None))
    types = _split(row.get("media_type"))
    urls = [url for n, url in enumerate(media)
            if (types[n].lower() if n < len(types) else "") in _IMAGE_TYPES]
    author = text_of(row.get("from_user_name"))
    if author is not None:
        author = author.lstrip("@")
    text = text_of(row.get("text"))
    if "hashtags" in row:
        hashtags = hashtag_list(row.get("hashtags"))
    else:  # the export was made without its 'hashtags' option: the text's own tags
        hashtags = tags_in(text)
    where = author if author else "i/web"
    return Post(
        post_id=post_id,
        urls=unique(urls),
        platform="x",
        permalink=f"https://twitter.com/{where}/status/{post_id}",
        author=author,
        created=iso_utc(row.get("time")) or iso_utc(row.get("created_at")),
        text=text,
        hashtags=hashtags,
    )


FORMATS: list[Format] = [
    Format(
        name="tcat",
        title="DMI-TCAT tweet export",
        kinds=("csv", "tsv"),
        detect=detect,
        post=post,
        fields=(
            ("post_id", "id"),
            ("urls", "media_urls (split on ';'; photo, video and GIF stills)"),
            ("platform", "'x'"),
            ("permalink", "https://twitter.com/<from_user_name>/status/<id>"),
            ("author", "from_user_name"),
            ("created", "time (epoch, UTC), else created_at"),
            ("text", "text"),
            ("hashtags", "hashtags (split on ';'), else #tags in text"),
        ),
        source="digitalmethodsinitiative/dmi-tcat: analysis/mod.export_tweets.php, "
               "analysis/common/CSV.class.php, capture/common/functions.php",
        note="image URLs are in the media columns: export with the 'media' option ticked",
    ),
]
