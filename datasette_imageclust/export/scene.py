"""What a print-ready figure is, whatever file it ends up in: a raster picture layer plus
text and lines drawn over it.

A figure, a contact-sheet page: the thumbnails are painted once into one raster (its size
is the output's pixel size, so memory is bounded by the output, never by the number of
images), and everything a reader reads (labels, captions, leader lines) stays a vector
item. The PNG writer draws the items into the raster; the SVG and PDF writers embed the
raster once and write the items as ``<text>`` / PDF text objects.

Text is measured with one font (:func:`font`) in pixels, and every writer fits its text
into the measured box (SVG ``textLength``, PDF horizontal scaling), so the boxes that
label placement kept apart are the boxes every format draws.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from PIL import Image, ImageFont

#: Fonts tried for the PNG (and for measuring): DejaVu covers most scripts when the system
#: has it; otherwise Pillow's built-in font, so rendering never needs a system font.
FONT_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
MAX_LABEL = 40  # characters: a longer label is cut with an ellipsis (a figure is not a table)

# Characters XML 1.0 cannot hold, and any control character (a label is one line).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


@dataclass
class Text:
    """One line of text whose box (x0, y0, x1, y1, in px, y down) the text fills."""
    text: str
    box: tuple[float, float, float, float]
    size: float                          # font size in px
    pad: float = 0.0                     # inner margin between box and text
    backed: bool = False                 # drawn on a white box (labels over thumbnails)
    leader: tuple[float, float] | None = None   # anchor point a leader line runs to
    cluster_id: int | None = None
    role: str = "caption"                # "label" (a cluster's label) or "caption"


@dataclass
class Page:
    """One picture: ``raster`` (RGB, the page's pixel size) and the items over it."""
    raster: Image.Image
    dpi: float
    items: list[Text] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.raster.size

    def labels(self) -> list[Text]:
        return [t for t in self.items if t.role == "label"]


def blank(width: float, height: float) -> Image.Image:
    """A white RGB raster to paint thumbnails on (print: white paper)."""
    return Image.new("RGB", (int(width), int(height)), (255, 255, 255))


def clean(text: object, limit: int = MAX_LABEL) -> str:
    """One printable line: control characters dropped, whitespace collapsed, cut at
    ``limit`` characters with an ellipsis."""
    s = unicodedata.normalize("NFC", _UNPRINTABLE.sub(" ", str(text if text is not None else "")))
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "\u2026"


@lru_cache(maxsize=None)
def _font_file() -> str | None:
    for name in FONT_FILES:
        try:
            ImageFont.truetype(name, 10)
            return name
        except OSError:
            continue
    return None


@lru_cache(maxsize=64)
def font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The font at ``size`` px: DejaVu Sans when present, else Pillow's built-in one."""
    px = max(1, int(round(size)))
    name = _font_file()
    if name is not None:
        return ImageFont.truetype(name, px)
    return ImageFont.load_default(size=px)


def measure(text: str, size: float) -> tuple[float, float]:
    """(width, height) in px of ``text`` set at ``size`` px; the height is the font's line
    height (ascent + descent), the same for every text of that size."""
    f = font(size)
    width = f.getlength(text) if hasattr(f, "getlength") else f.getbbox(text)[2]
    ascent, descent = f.getmetrics() if hasattr(f, "getmetrics") else (size, size * 0.25)
    return float(width), float(ascent + descent)


def fit(text: str, size: float, width: float) -> str:
    """``text`` cut (with an ellipsis) so that it is at most ``width`` px wide at ``size``."""
    if measure(text, size)[0] <= width:
        return text
    while text and measure(text + "\u2026", size)[0] > width:
        text = text[:-1]
    return text.rstrip() + "\u2026" if text else ""


def textbox(text: str, x: float, y: float, size: float, *, pad: float = 0.0, **kw) -> Text:
    """A :class:`Text` whose box's top-left corner is (x, y)."""
    w, h = measure(text, size)
    return Text(text, (x, y, x + w + 2 * pad, y + h + 2 * pad), size, pad, **kw)


def boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two boxes (x0, y0, x1, y1) share any area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def leader_ends(t: Text) -> tuple[tuple[float, float], tuple[float, float]]:
    """The leader line of ``t``: from the point of its box nearest the anchor to the anchor."""
    ax, ay = t.leader if t.leader is not None else ((t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2)
    x0, y0, x1, y1 = t.box
    return (min(max(ax, x0), x1), min(max(ay, y0), y1)), (ax, ay)
