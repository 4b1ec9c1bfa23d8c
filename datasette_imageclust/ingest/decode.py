"""Decoding one image file, once, into everything ``load`` stores about it.

One decode (JPEG ``draft()`` to the smallest scale that is still big enough) yields
the metadata, the thumbnail, the perceptual hashes and the model's input crop.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import imagehash
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError, features

from ..models import Preprocessor

try:  # optional extra: HEIC/HEIF (and AVIF where Pillow lacks it)
    import pillow_heif  # type: ignore

    pillow_heif.register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - depends on the environment
    HEIF = False

EXTENSIONS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp",
    ".heic", ".heif", ".avif",
}
HEIF_EXTENSIONS = {".heic", ".heif"}
MAX_SIDE = 65_500  # beyond any real photo; guards against absurd headers
MAX_ASPECT = 100  # a 1x10000 strip is not a picture we can crop meaningfully
T = TypeVar("T")


class ImageError(Exception):
    """This file cannot be loaded; the message is the reason recorded in ``errors``."""


class ImageTooLarge(ImageError):
    """More pixels to decode than the caller's ``max_pixels`` (an upload, say)."""


@dataclass
class Decoded:
    width: int
    height: int
    format: str | None
    mode: str
    frames: int
    phash: str
    dhash: str
    thumbnail: bytes
    thumb_format: str
    thumb_width: int
    thumb_height: int
    crop: np.ndarray  # HWC uint8, the model's input before normalisation
    taken: str | None = None
    camera: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    exif: str | None = None


_EXIF_KEEP = {
    "Make", "Model", "LensModel", "DateTimeOriginal", "DateTime", "ExposureTime", "FNumber",
    "ISOSpeedRatings", "PhotographicSensitivity", "FocalLength", "Software", "Artist",
    "Copyright", "ImageDescription", "Orientation",
}


def _clean(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace").strip("\x00 ")
    if isinstance(v, str):
        return v.strip("\x00 ")
    if isinstance(v, tuple):
        return [_clean(x) for x in v]
    try:
        f = float(v)  # IFDRational and friends
        return int(f) if f.is_integer() else round(f, 6)
    except (TypeError, ValueError, ZeroDivisionError):
        return str(v)


def _gps_degrees(values: Any, ref: Any) -> float | None:
    try:
        d, m, s = (float(x) for x in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    deg = d + m / 60 + s / 3600
    if str(ref).strip("\x00 ").upper() in ("S", "W"):
        deg = -deg
    return round(deg, 7)


def read_exif(im: Image.Image) -> dict[str, Any]:
    """Selected EXIF fields: taken (ISO), camera, latitude/longitude and a JSON blob."""
    try:
        exif = im.getexif()
    except Exception:
        return {}
    if not exif:
        return {}
    tags: dict[str, Any] = {}
    try:
        items = list(exif.items()) + list(exif.get_ifd(ExifTags.IFD.Exif).items())
    except Exception:
        items = list(exif.items())
    for k, v in items:
        name = ExifTags.TAGS.get(k)
        if name in _EXIF_KEEP:
            tags[name] = _clean(v)
    out: dict[str, Any] = {}
    when = tags.get("DateTimeOriginal") or tags.get("DateTime")
    if isinstance(when, str):
        try:
            out["taken"] = _dt.datetime.strptime(when[:19], "%Y:%m:%d %H:%M:%S").isoformat()
        except ValueError:
            pass
    camera = " ".join(str(tags[k]) for k in ("Make", "Model") if tags.get(k))
    if camera:
        out["camera"] = camera
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    except Exception:
        gps = {}
    if gps and 2 in gps and 4 in gps:
        lat, lon = _gps_degrees(gps[2], gps.get(1)), _gps_degrees(gps[4], gps.get(3))
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            out["latitude"], out["longitude"] = lat, lon
    if tags:
        out["exif"] = json.dumps(tags, ensure_ascii=False, sort_keys=True)
    return out


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any mode to RGB: alpha composited on white, 16-bit and float scaled, CMYK converted."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def _encode_thumbnail(t: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "webp":
        # method 2: as small as the default method 4 on photos at half the time
        t.save(buf, "WEBP", quality=80, method=2)
    else:
        t.save(buf, "JPEG", quality=85, optimize=False)
    return buf.getvalue()


def _open(data: bytes, name: str) -> Image.Image:
    """Open image bytes (the header only), or ImageError saying why not."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        ext = name.lower().rsplit(".", 1)[-1] if "." in name else ""
        if f".{ext}" in HEIF_EXTENSIONS and not HEIF:
            raise ImageError(f"unsupported format .{ext}: pip install 'datasette-imageclust[heif]'")
        if ext == "avif" and not features.check("avif"):
            raise ImageError("unsupported format .avif: this Pillow was built without AVIF (use Pillow >= 11.3)")
        raise ImageError("not a recognised image (unknown or corrupt header)")
    except Image.DecompressionBombError as e:
        raise ImageError(f"decompression bomb: {e}")
    except Exception as e:
        raise ImageError(f"cannot open: {type(e).__name__}: {e}")


def _decoding(work: Callable[[], T]) -> T:
    """Run ``work`` (which decodes pixels) with Pillow's failures as ImageError."""
    try:
        return work()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"decompression bomb: {e}")
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as e:
        raise ImageError(f"cannot decode: {type(e).__name__}: {e}")


def decode(data: bytes, pre: Preprocessor, *, thumb_size: int = 256, thumb_format: str = "webp",
           name: str = "", max_pixels: int | None = None) -> Decoded:
    """Decode image bytes once and derive everything stored about the image. With
    ``max_pixels``, refuse (ImageTooLarge) before decoding more pixels than that."""
    im = _open(data, name)
    return _decoding(lambda: _decode_open(im, pre, thumb_size, thumb_format, max_pixels))


def jpeg_at_most(data: bytes, max_side: int, *, name: str = "", quality: int = 90) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height): the image upright (EXIF orientation), as RGB, scaled so
    its long side is at most ``max_side`` (never enlarged): what a vision LLM is sent."""
    im = _open(data, name)

    def work() -> tuple[bytes, int, int]:
        _check_size(*im.size)
        if im.format == "JPEG":
            im.draft("RGB", (max_side, max_side))  # decode at a reduced scale when that is enough
        im.load()
        rgb = _to_rgb(ImageOps.exif_transpose(im) or im)
        rgb.thumbnail((max_side, max_side), Image.BICUBIC, reducing_gap=2.0)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=quality)
        return buf.getvalue(), rgb.width, rgb.height

    return _decoding(work)


def _check_size(w: int, h: int) -> None:
    if w <= 0 or h <= 0 or w > MAX_SIDE or h > MAX_SIDE:
        raise ImageError(f"absurd dimensions {w}x{h}")
    if w * h > (Image.MAX_IMAGE_PIXELS or 1 << 62):
        raise ImageError(f"decompression bomb: {w}x{h} pixels is over Pillow's limit of {Image.MAX_IMAGE_PIXELS}")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise ImageError(f"absurd aspect ratio {w}x{h}")


def _decode_open(im: Image.Image, pre: Preprocessor, thumb_size: int, thumb_format: str,
                 max_pixels: int | None = None) -> Decoded:
    w, h = im.size
    _check_size(w, h)
    fmt, mode = im.format, im.mode
    if fmt == "JPEG":
        # decode at 1/2, 1/4 or 1/8 scale when that still covers the thumbnail and model input
        need = max(thumb_size, pre.min_side)
        im.draft("RGB", (need, need))
    if max_pixels is not None and im.size[0] * im.size[1] > max_pixels:
        # From the header (after any reduced-size draft), before anything is decoded.
        raise ImageTooLarge(f"{w}x{h} pixels is over the limit of {max_pixels / 1e6:g} megapixels"
                            + (" even decoded at reduced size" if fmt == "JPEG" else ""))
    frames = int(getattr(im, "n_frames", 1) or 1)
    meta = read_exif(im)
    orientation = im.getexif().get(274, 1) if fmt in ("JPEG", "TIFF", "WEBP", "PNG", "HEIF") else 1
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    im.load()
    im = ImageOps.exif_transpose(im) or im
    rgb = _to_rgb(im)
    small = rgb.copy()
    small.thumbnail((thumb_size, thumb_size), Image.BICUBIC, reducing_gap=2.0)
    return Decoded(
        width=w, height=h, format=fmt, mode=mode, frames=frames,
        phash=str(imagehash.phash(small)), dhash=str(imagehash.dhash(small)),
        thumbnail=_encode_thumbnail(small, thumb_format), thumb_format=thumb_format,
        thumb_width=small.width, thumb_height=small.height,
        crop=pre.to_uint8(rgb), **meta,
    )
