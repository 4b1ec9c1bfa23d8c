"""Preprocessing images as a model's ``preprocessor_config.json`` says (a generic
``CLIPImageProcessor``), and L2 normalisation of its outputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

_RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC,
             4: Image.BOX, 5: Image.HAMMING}


@dataclass
class Preprocessor:
    """A generic ``CLIPImageProcessor``: resize, centre-crop, rescale, normalise."""

    shortest_edge: int | None = 224
    resize_hw: tuple[int, int] | None = None
    crop_hw: tuple[int, int] | None = (224, 224)
    resample: int = 3
    rescale: float = 1 / 255
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    config: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: dict) -> "Preprocessor":
        size = cfg.get("size", 224)
        shortest = resize_hw = None
        if cfg.get("do_resize", True):
            if isinstance(size, int):
                shortest = size
            elif "shortest_edge" in size:
                shortest = int(size["shortest_edge"])
            else:
                resize_hw = (int(size["height"]), int(size["width"]))
        crop = None
        if cfg.get("do_center_crop", False):
            c = cfg.get("crop_size", 224)
            crop = (c, c) if isinstance(c, int) else (int(c["height"]), int(c["width"]))
        norm = cfg.get("do_normalize", True)
        return cls(
            shortest_edge=shortest,
            resize_hw=resize_hw,
            crop_hw=crop,
            resample=int(cfg.get("resample", 3)),
            rescale=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0,
            mean=cfg.get("image_mean", [0.0] * 3) if norm else [0.0] * 3,
            std=cfg.get("image_std", [1.0] * 3) if norm else [1.0] * 3,
            config=cfg,
        )

    @property
    def min_side(self) -> int:
        """The smallest source side that still gives full-quality input (for JPEG draft)."""
        sides = [s for s in (self.shortest_edge, *(self.resize_hw or ()), *(self.crop_hw or ())) if s]
        return max(sides) if sides else 224

    def to_uint8(self, im: Image.Image) -> np.ndarray:
        """Resize and crop an RGB image; returns HWC uint8 (cheap to queue and batch)."""
        w, h = im.size
        if self.resize_hw:
            im = im.resize((self.resize_hw[1], self.resize_hw[0]), _RESAMPLE[self.resample])
        elif self.shortest_edge:
            s = self.shortest_edge
            nw, nh = (s, max(1, round(h * s / w))) if w <= h else (max(1, round(w * s / h)), s)
            if (nw, nh) != (w, h):
                im = im.resize((nw, nh), _RESAMPLE[self.resample])
        if self.crop_hw:
            ch, cw = self.crop_hw
            w, h = im.size
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + cw, top + ch))  # pads with black if too small
        return np.asarray(im, dtype=np.uint8)

    def normalise(self, batch: np.ndarray) -> np.ndarray:
        """NHWC uint8 -> NCHW float32, rescaled and normalised."""
        x = batch.astype(np.float32)
        scale = np.asarray(self.rescale / np.asarray(self.std), dtype=np.float32)
        shift = np.asarray(-np.asarray(self.mean) / np.asarray(self.std), dtype=np.float32)
        x = x * scale + shift
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def l2_normalise(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


