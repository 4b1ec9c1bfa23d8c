"""Cluster colours: the one definition of the map's palette in Python.

The map page (web/static/map.js ``clusterColors``) colours cluster ``k`` (its index
among the run's clusters ordered by id) with hue ``k * golden ratio``, saturation 0.75,
lightness 0.58, and the unclustered group grey; exports (Gephi networks, figures) use
these functions so a network opens in the map's colours. Change both together.
"""
from __future__ import annotations

from typing import Iterable

GOLDEN = 0.618033988749895
SATURATION, LIGHTNESS = 0.75, 0.58
UNCLUSTERED = (150, 150, 150)


def hsl(h: float, s: float, lightness: float) -> tuple[int, int, int]:
    """HSL (all 0..1) -> 8-bit RGB, exactly as map.js computes it."""
    a = s * min(lightness, 1 - lightness)

    def f(n: int) -> int:
        k = (n + h * 12) % 12
        return int((lightness - a * max(-1, min(k - 3, 9 - k, 1))) * 255 + 0.5)  # Math.round: half up

    return f(0), f(8), f(4)


def cluster_colours(clusters: Iterable[tuple[int, str]]) -> dict[int, tuple[int, int, int]]:
    """Cluster id -> RGB for a run's ``(id, kind)`` pairs (every cluster of the run, any order)."""
    out = {}
    for k, (cid, kind) in enumerate(sorted(clusters)):
        out[cid] = hsl((k * GOLDEN) % 1, SATURATION, LIGHTNESS) if kind == "cluster" else UNCLUSTERED
    return out
