"""A minimal PDF writer: pages of one JPEG picture layer plus real text, no dependency.

Text is set in Helvetica, one of the 14 standard fonts every PDF reader has, so nothing
is embedded and the text stays text (searchable, selectable, editable in Illustrator).
Its encoding is WinAnsi (cp1252), which holds Western European scripts; a character
outside it is written as its unaccented base letter when it has one (NFKD), else as
"?", and :attr:`PDF.replaced` counts them (the summary reports it; the SVG and PNG of
the same figure keep every character). The picture layer is a DCT (JPEG) stream.
"""
from __future__ import annotations

import io
import unicodedata
import zlib
from typing import BinaryIO

from .scene import Page, Text, leader_ends

# Helvetica advance widths (1/1000 em) of ASCII 32..126, from the standard AFM metrics.
_HELV = [278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
         556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
         1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
         667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
         333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
         556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584]
JPEG_QUALITY = 90


def helvetica_width(text: str) -> float:
    """Advance width of ``text`` in Helvetica at 1 pt (other characters: their base
    letter's width, else an average one)."""
    total = 0
    for ch in text:
        base = unicodedata.normalize("NFKD", ch)[:1] or ch
        o = ord(base)
        total += _HELV[o - 32] if 32 <= o <= 126 else 556
    return total / 1000.0


class PDF:
    """A PDF written to ``f`` page by page (:meth:`add`), so a document of a thousand
    pages never sits in memory; :meth:`close` writes the page tree and the index."""

    def __init__(self, f: BinaryIO, title: str = "") -> None:
        self.f = f
        self.title = title
        self.replaced = 0  # characters outside WinAnsi, written as a stand-in
        self.offsets: dict[int, int] = {}
        self.kids: list[int] = []
        self.count = 3  # 1 catalog, 2 page tree, 3 font: written by close(), numbered now
        head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
        f.write(head)
        self.pos = len(head)

    def _obj(self, body: bytes, number: int | None = None) -> int:
        if number is None:
            self.count += 1
            number = self.count
        self.offsets[number] = self.pos
        chunk = f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
        self.f.write(chunk)
        self.pos += len(chunk)
        return number

    def _encode(self, text: str) -> bytes:
        out = bytearray()
        for ch in text:
            try:
                out += ch.encode("cp1252")
                continue
            except UnicodeEncodeError:
                pass
            self.replaced += 1
            base = unicodedata.normalize("NFKD", ch)[:1]
            out += base.encode("cp1252") if base and base.isascii() and base.isprintable() else b"?"
        return bytes(out).replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")

    def add(self, page: Page) -> None:
        """A page the size of ``page`` at its DPI: its raster, then its items."""
        w_px, h_px = page.size
        k = 72.0 / page.dpi  # px -> pt
        wpt, hpt = w_px * k, h_px * k
        ops = [f"q {wpt:.3f} 0 0 {hpt:.3f} 0 0 cm /Im0 Do Q".encode()]
        ops += [self._leader(t, k, hpt) for t in page.items if t.leader is not None]  # under the boxes
        ops += [self._item(t, k, hpt) for t in page.items]
        buf = io.BytesIO()
        page.raster.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
        img = self._obj(_stream(f"/Type /XObject /Subtype /Image /Width {w_px} /Height {h_px} /ColorSpace "
                                f"/DeviceRGB /BitsPerComponent 8 /Filter /DCTDecode".encode(), buf.getvalue()))
        del buf
        cont = self._obj(_stream(b"/Filter /FlateDecode", zlib.compress(b"\n".join(ops))))
        self.kids.append(self._obj(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {wpt:.3f} {hpt:.3f}] /Resources << /Font "
            f"<< /F1 3 0 R >> /XObject << /Im0 {img} 0 R >> >> /Contents {cont} 0 R >>".encode()))

    def _leader(self, t: Text, k: float, hpt: float) -> bytes:
        """A thin line from the box's nearest edge point to a dot on the anchor."""
        (ex, ey), (ax, ay) = ((x * k, y * k) for x, y in leader_ends(t))
        r = max(t.size * k * 0.12, 0.6)
        return (f"0.08 0.08 0.08 RG 0.08 0.08 0.08 rg {max(t.size * k * 0.06, 0.3):.2f} w "
                f"{ex:.2f} {hpt - ey:.2f} m {ax:.2f} {hpt - ay:.2f} l S "
                f"{ax - r:.2f} {hpt - ay - r:.2f} {2 * r:.2f} {2 * r:.2f} re f").encode()

    def _item(self, t: Text, k: float, hpt: float) -> bytes:
        x0, y0, x1, y1 = (v * k for v in t.box)
        ops = []
        if t.backed:
            ops.append(f"1 1 1 rg 0.2 0.2 0.2 RG {max(t.size * k * 0.04, 0.25):.2f} w "
                       f"{x0:.2f} {hpt - y1:.2f} {x1 - x0:.2f} {y1 - y0:.2f} re B")
        size = t.size * k
        pad = t.pad * k
        room = (x1 - x0) - 2 * pad
        natural = helvetica_width(t.text) * size
        scale = 100.0 if natural <= 0 else min(100.0, 100.0 * room / natural)  # fit the measured box
        base = hpt - (y0 + pad) - size * 0.84  # baseline: Helvetica centred in the measured line height
        # Helvetica is narrower than the font the box was measured with: centre it in a
        # backed box (a label), start it at the box's left edge otherwise (captions align).
        left = x0 + pad + (max(0.0, room - natural) / 2 if t.backed else 0.0)
        text = (f"0 0 0 rg BT /F1 {size:.2f} Tf {scale:.1f} Tz {left:.2f} {base:.2f} Td (".encode()
                + self._encode(t.text) + b") Tj ET")
        return b"\n".join(o.encode() for o in ops) + (b"\n" if ops else b"") + text

    def close(self) -> None:
        """The page tree, font, catalog, document info and cross-reference table."""
        self._obj(b"<< /Type /Catalog /Pages 2 0 R >>", 1)
        self._obj(f"<< /Type /Pages /Count {len(self.kids)} /Kids [{' '.join(f'{k} 0 R' for k in self.kids)}] >>"
                  .encode(), 2)
        self._obj(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>", 3)
        info = self._obj(b"<< /Producer (datasette-imageclust) /Title (" + self._encode(self.title) + b") >>")
        xref = self.pos
        lines = [f"xref\n0 {self.count + 1}\n0000000000 65535 f \n"]
        lines += [f"{self.offsets[i]:010d} 00000 n \n" for i in range(1, self.count + 1)]
        lines.append(f"trailer\n<< /Size {self.count + 1} /Root 1 0 R /Info {info} 0 R >>\n"
                     f"startxref\n{xref}\n%%EOF\n")
        self.f.write("".join(lines).encode())


def _stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< " + dictionary + f" /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"
