"""Real image files made in tests: photos-like gradients, odd modes, broken files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def photo(w: int = 320, h: int = 240, seed: int = 0) -> Image.Image:
    """A smooth, colourful, photo-like RGB image that differs by seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = rng.uniform(2, 9, 6)
    r = np.sin(x / w * f[0] + y / h * f[1] + seed) * 90 + 128
    g = np.sin(x / w * f[2] - y / h * f[3]) * 90 + 128
    b = np.cos((x + y) / (w + h) * f[4] * f[5]) * 90 + 128
    arr = np.stack([r, g, b], -1) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def save(im: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kw)
    return path


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def photo_folder(folder: Path, n: int, start: int = 0, size=(320, 240)) -> list[Path]:
    return [save(photo(*size, seed=start + i), folder / f"img{start + i:04d}.jpg", quality=90)
            for i in range(n)]
