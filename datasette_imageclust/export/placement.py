"""Greedy label placement: every label near its anchor, no two label boxes overlapping.

Labels are placed one by one, most important first (the caller's order: the largest
clusters). Each tries, in order: its full size centred on its anchor, then positions on
near rings around it (joined to the anchor by a leader line), then the same at smaller
sizes down to a readable minimum; then farther rings, again from the full size down. The first candidate inside the canvas that
overlaps no placed box wins; a label with no such candidate is left out (the caller says
how many), never drawn on top of another. Boxes are kept in numpy arrays, so a
candidate is checked against all placed labels in one vectorised test.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .scene import Text

Measure = Callable[[str, float], tuple[float, float]]

# Radii in label heights: near rings are tried at every size before far ones, so a crowded
# label shrinks beside its cluster rather than travelling across the map.
NEAR = (0.0, 0.7, 1.4, 2.2)
FAR = (3.2, 4.5, 6.5, 9.0, 13.0, 18.0, 25.0)
DIRECTIONS = 16


def _candidates(ax: float, ay: float, w: float, h: float, rings: Sequence[float]) -> list[tuple[float, float]]:
    """Top-left corners of candidate boxes of size w x h around anchor (ax, ay)."""
    out = [(ax - w / 2, ay - h / 2)] if 0.0 in rings else []
    for r in (r for r in rings if r > 0):
        for k in range(DIRECTIONS):
            a = 2 * math.pi * k / DIRECTIONS
            # Horizontal steps scale with the box's width, so a wide label slides sideways
            # out of its neighbour's way instead of jumping far above it.
            dx, dy = math.cos(a) * (r * h + w / 2), math.sin(a) * r * h
            out.append((ax + dx - w / 2, ay + dy - h / 2))
    return out


def place(labels: Sequence[tuple[str, float, float]], *, canvas: tuple[float, float], size: float,
          min_size: float, measure: Measure, pad: float | None = None, gap: float | None = None,
          keep_clear: Sequence[tuple[float, float, float, float]] = ()) -> list[Text | None]:
    """Boxes for ``labels`` ((text, anchor x, anchor y), most important first) on a canvas
    of ``canvas`` (width, height) px: a :class:`Text` per label (with ``leader`` set when
    the box does not contain its anchor), None for a label that found no free place.
    ``keep_clear``: boxes no label may cover (e.g. a title)."""
    cw, ch = canvas
    n = len(labels) + len(keep_clear)
    placed = np.zeros((max(n, 1), 4))
    for i, b in enumerate(keep_clear):
        placed[i] = b
    count = len(keep_clear)
    sizes = _sizes(size, min_size)
    out: list[Text | None] = []
    for text, ax, ay in labels:
        hit = None
        for rings, s in ((rings, s) for rings in (NEAR, FAR) for s in sizes):
            p = pad if pad is not None else s * 0.25
            g = gap if gap is not None else s * 0.15
            tw, th = measure(text, s)
            w, h = tw + 2 * p, th + 2 * p
            for x, y in _candidates(ax, ay, w, h, rings):
                if x < 0 or y < 0 or x + w > cw or y + h > ch:
                    continue
                q = placed[:count]
                if count and np.any((x - g < q[:, 2]) & (q[:, 0] < x + w + g) &
                                    (y - g < q[:, 3]) & (q[:, 1] < y + h + g)):
                    continue
                inside = x <= ax <= x + w and y <= ay <= y + h
                hit = Text(text, (x, y, x + w, y + h), s, p, backed=True,
                           leader=None if inside else (ax, ay), role="label")
                break
            if hit:
                break
        if hit:
            placed[count] = hit.box
            count += 1
        out.append(hit)
    return out


def _sizes(size: float, min_size: float) -> list[float]:
    """Font sizes to try: ``size`` shrinking by 15% steps to ``min_size`` (never below)."""
    out, s = [], float(size)
    while s > min_size:
        out.append(s)
        s *= 0.85
    out.append(float(min_size))
    return out
