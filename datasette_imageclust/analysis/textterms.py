"""Words of descriptions, for TF-IDF labels: tokenised (any script's letters), lower-cased,
and without the stop-words of the text's language where the package ships a list
(``data/stopwords-<language>.txt``: English, German, French, Spanish, Italian, Portuguese,
Dutch, Swedish; each also lists what every image description says: "image", "shows").

The language of each text is the one whose stop-words it uses most (at least
``MIN_HITS`` of them): function words are the most frequent words of any text, so a few
sentences are enough. A text in a language without a list keeps its words.
"""
from __future__ import annotations

import functools
import re
from importlib import resources

MIN_HITS = 2
MIN_LENGTH = 3  # shorter words are mostly particles and abbreviations
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters, in any script
# Hex-like runs (hashes, ids: the names of a download cache, ``027737ab….jpg``): at least 6
# hex digits with a digit among them, or at least 8 without (``deadbeef``), between
# non-alphanumerics. Their letters are no words: never a term.
_HEX = re.compile(r"(?<![^\W_])(?:(?=[0-9a-f]*[0-9])[0-9a-f]{6,}|[a-f]{8,})(?![^\W_])", re.IGNORECASE)
# URLs and @mentions in a post's text: no words of the post (a mention is a person's name).
_NOISE = re.compile(r"(?:https?://|www\.)\S+|@[\w.]+", re.IGNORECASE)


def drop_hex(text: str) -> str:
    """``text`` without its hex-like runs (see ``_HEX``): the one rule every term source
    (descriptions, posts, file names) applies."""
    return _HEX.sub(" ", text)


@functools.lru_cache(maxsize=1)
def stopwords() -> dict[str, frozenset[str]]:
    """Language code -> its stop-words, from the shipped lists."""
    out = {}
    for f in resources.files("datasette_imageclust").joinpath("data").iterdir():
        m = re.fullmatch(r"stopwords-([a-z]{2,3})\.txt", f.name)
        if m:
            words = " ".join(line.split("#", 1)[0] for line in f.read_text("utf-8").splitlines())
            out[m.group(1)] = frozenset(w.lower() for w in words.split())
    return out


def words(text: str) -> list[str]:
    """The words of ``text``, lower-cased, in order (hex-like runs dropped)."""
    return _WORD.findall(drop_hex(text).lower())


def language(tokens: list[str]) -> str | None:
    """The language whose stop-words ``tokens`` use most (None: too few to tell, or no list)."""
    best, hits = None, MIN_HITS - 1
    for lang, stop in sorted(stopwords().items()):
        n = sum(t in stop for t in tokens)
        if n > hits:
            best, hits = lang, n
    return best


def description_words(text: str) -> set[str]:
    """The content words of a description: its words minus its language's stop-words."""
    tokens = words(text)
    lang = language(tokens)
    stop = stopwords()[lang] if lang else frozenset()
    return {t for t in tokens if len(t) >= MIN_LENGTH and t not in stop}


def post_words(text: str | None, hashtags: list[str]) -> set[str]:
    """The content words of a post: of its text without URLs and @mentions (as
    :func:`description_words`), and its hashtags whole (``climatestrike``), hex-like ones
    dropped."""
    out = description_words(_NOISE.sub(" ", text or ""))
    for tag in hashtags:
        tag = str(tag).lower().lstrip("#").strip()
        if len(tag) >= MIN_LENGTH and not _HEX.fullmatch(tag) and _WORD.search(tag):
            out.add(tag)
    return out
