"""Instaloader's metadata sidecars: ``POST.json.xz`` (or ``POST.json`` with
``--no-compress-json``) beside ``POST.jpg``, or ``POST_1.jpg``, ``POST_2.jpg``... for a
carousel; a video's cover is ``POST.jpg`` beside ``POST.mp4``.

Read from instaloader/instaloader ``instaloader/structures.py``:
``get_json_structure`` writes ``{"node": <_asdict()>, "instaloader": {"version",
"node_type"}}`` with node_type ``Post``, ``StoryItem``, ``Profile``, ``Hashtag`` or
``FrozenNodeIterator``; ``Post`` reads ``shortcode`` (or ``code``), ``id``,
``owner.username``, ``taken_at_timestamp`` (or ``date`` in a post made by
``from_iphone_struct``), ``edge_media_to_caption.edges[0].node.text`` (or ``caption``),
``display_url``, ``is_video``, ``edge_sidecar_to_children.edges[*].node.display_url``,
``iphone_struct`` (the iPhone API's media: ``user.username``, ``carousel_media``);
``StoryItem`` reads ``id``, ``owner``, ``taken_at_timestamp``,
``display_resources[-1].src``; hashtags are ``#(\\w{1,150})`` of the caption, lower
case. ``instaloader/instaloader.py`` (``download_post``, ``save_metadata_json``) names
the files; a Profile's sidecar is ``<profile>_<id>.json.xz``, beside no image of its own.
"""
from __future__ import annotations


from .base import (Format, Post, RowError, Sample, first, id_of, iso_utc, tags_in, text_of,
                   unique, value_at, values_at)

_NOT_POSTS = {"Profile": "a profile's metadata", "Hashtag": "a hashtag's metadata",
              "FrozenNodeIterator": "a resumable download's state"}


def _envelope(data: object) -> tuple[dict, str] | None:
    """(node, node_type) of an Instaloader JSON, else None."""
    if not isinstance(data, dict):
        return None
    node, meta = data.get("node"), data.get("instaloader")
    if not isinstance(node, dict) or not isinstance(meta, dict) or not isinstance(meta.get("node_type"), str):
        return None
    return node, meta["node_type"]


def detect(sample: Sample) -> str | None:
    """The node_type (``'Post'``, ``'StoryItem'``, ...) of an Instaloader sidecar."""
    if not sample.records:
        return None
    found = _envelope(sample.records[0])
    return found[1] if found else None


def _caption(node: dict) -> str | None:
    edges = value_at(node, "edge_media_to_caption.edges")
    if isinstance(edges, list) and edges:
        return text_of(value_at(edges[0], "node.text"))
    return text_of(node.get("caption")) or text_of(value_at(node, "iphone_struct.caption.text"))


def _author(node: dict) -> str | None:
    return text_of(first(node, "owner.username", "iphone_struct.user.username", "user.username"))


def _urls(node: dict) -> list[str]:
    """The images' URLs in the post's order: each carousel item's display_url (a video
    item's is its cover), else the post's display_url (a video's cover)."""
    children = values_at(node, "edge_sidecar_to_children.edges[*].node.display_url")
    if children:
        return unique(children)
    # A node of the iPhone API alone (structures.py from_iphone_struct keeps it whole).
    carousel = values_at(node, "iphone_struct.carousel_media[*].image_versions2.candidates[0].url")
    if carousel:
        return unique(carousel)
    return unique([first(node, "display_url", "display_src",
                         "iphone_struct.image_versions2.candidates[0].url")])


def _post(node: dict) -> Post:
    code = text_of(first(node, "shortcode", "code"))
    if code is None:
        raise RowError("an Instaloader Post without its shortcode")
    text = _caption(node)
    return Post(
        post_id=code,
        urls=_urls(node),
        platform="instagram",
        permalink=f"https://www.instagram.com/p/{code}/",
        author=_author(node),
        created=iso_utc(first(node, "taken_at_timestamp", "date")),
        text=text,
        hashtags=tags_in(text, longest=150)  # structures.py _hashtag_regex: #(\w{1,150}),
    )


def _story(node: dict) -> Post:
    mid = id_of(node.get("id"))
    if mid is None:
        raise RowError("an Instaloader StoryItem without its id")
    user = _author(node)
    text = _caption(node)
    resources = node.get("display_resources")
    src = resources[-1].get("src") if isinstance(resources, list) and resources and isinstance(resources[-1], dict) else None
    return Post(
        post_id=mid,
        urls=unique([src or node.get("display_url")]),
        platform="instagram",
        permalink=f"https://www.instagram.com/stories/{user}/{mid}/" if user else None,
        author=user,
        created=iso_utc(node.get("taken_at_timestamp")),
        text=text,
        hashtags=tags_in(text, longest=150)  # structures.py _hashtag_regex: #(\w{1,150}),
    )


def post(record: dict) -> Post:
    """One Instaloader sidecar as a :class:`Post` (a Post, or a StoryItem)."""
    found = _envelope(record)
    if found is None:
        raise RowError("not an Instaloader JSON (no 'node' and 'instaloader.node_type')")
    node, kind = found
    if kind == "Post":
        return _post(node)
    if kind == "StoryItem":
        return _story(node)
    raise RowError(f"an Instaloader {kind}: {_NOT_POSTS.get(kind, 'not a post')}, not a post")


FORMATS: list[Format] = [
    Format(
        name="instaloader",
        title="Instaloader metadata sidecars",
        kinds=("sidecar",),
        detect=detect,
        post=post,
        fields=(
            ("post_id", "node.shortcode (a StoryItem: node.id)"),
            ("urls", "edge_sidecar_to_children.edges[*].node.display_url, else display_url"),
            ("platform", "'instagram'"),
            ("permalink", "https://www.instagram.com/p/<shortcode>/"),
            ("author", "owner.username (or iphone_struct.user.username)"),
            ("created", "taken_at_timestamp (or date)"),
            ("text", "edge_media_to_caption.edges[0].node.text (or caption)"),
            ("hashtags", "#tags of the caption"),
        ),
        source="instaloader/instaloader: instaloader/structures.py, instaloader/instaloader.py",
        note="Profile, Hashtag and resume-state sidecars are not posts (reported, skipped)",
    ),
]
