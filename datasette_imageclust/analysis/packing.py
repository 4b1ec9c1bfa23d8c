"""Stage 2 of the map layout: packing 2-D points into non-overlapping thumbnail cells.

Each group (a cluster of the default clustering run; images outside any cluster are
grouped by 2-D k-means among themselves) becomes a disk of unit lattice cells, one cell
per image, members arranged inside it as in the 2-D embedding. The disks are then relaxed
apart (overlap removal, with a pull towards their embedded position) so clusters stay
together and no two thumbnails overlap. ``spatial_order`` orders the cells along a
Z-curve for the atlas sheets.

Coordinates are in *cell units*: one thumbnail is a 1 x 1 square centred on its point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def _slots(m: int) -> np.ndarray:
    """The ``m`` integer lattice points nearest the origin (a filled disk of cells)."""
    r = int(math.ceil(math.sqrt(m / math.pi))) + 2
    g = np.arange(-r, r + 1)
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    order = np.lexsort((np.arctan2(pts[:, 1], pts[:, 0]), (pts ** 2).sum(1)))
    return pts[order[:m]]


def _arrange(local: np.ndarray) -> np.ndarray:
    """Place a group's points (2-D coords around their mean) on a disk of lattice cells,
    keeping who-is-next-to-whom: radii are rank-equalised (so a dense core spreads
    evenly over the disk), then points are matched to cells."""
    m = len(local)
    slots = _slots(m)
    if m == 1:
        return slots
    rad = np.hypot(local[:, 0], local[:, 1])
    ang = np.arctan2(local[:, 1], local[:, 0])
    rmax = max(np.hypot(slots[:, 0], slots[:, 1]).max(), 0.5)
    rank = np.empty(m)
    rank[np.argsort(rad, kind="stable")] = np.arange(m)
    r2 = rmax * np.sqrt((rank + 0.5) / m)
    target = np.stack([r2 * np.cos(ang), r2 * np.sin(ang)], 1)
    out = np.empty_like(slots)
    if m <= 300:
        from scipy.optimize import linear_sum_assignment

        cost = ((target[:, None, :] - slots[None, :, :]) ** 2).sum(2)
        rows, cols = linear_sum_assignment(cost)
        out[rows] = slots[cols]
        return out
    # Large groups: rings of similar radius, matched by angle within each ring.
    by_r = np.argsort(r2, kind="stable")
    block = max(8, int(math.sqrt(m) * 2))
    for s in range(0, m, block):
        pi = by_r[s:s + block]
        si = np.arange(s, min(s + block, m))
        sa = np.arctan2(slots[si, 1], slots[si, 0])
        out[pi[np.argsort(ang[pi], kind="stable")]] = slots[si[np.argsort(sa, kind="stable")]]
    return out


def _overlap_pairs(c: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) of disks that overlap. Disks are bucketed by radius so a few
    huge clusters do not make every small disk a neighbour of every other."""
    from scipy.spatial import cKDTree

    bucket = np.floor(np.log2(r / r.min())).astype(int)
    groups = [np.flatnonzero(bucket == b) for b in np.unique(bucket)]
    trees = [cKDTree(c[g]) for g in groups]
    rmax = [r[g].max() for g in groups]
    I, J = [], []
    for a in range(len(groups)):
        for b in range(a, len(groups)):
            sm = trees[a].sparse_distance_matrix(trees[b], rmax[a] + rmax[b], output_type="ndarray")
            if not len(sm):
                continue
            i, j = groups[a][sm["i"]], groups[b][sm["j"]]
            keep = (i < j) if a == b else (i != j)
            I.append(i[keep])
            J.append(j[keep])
    if not I:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = np.concatenate(I), np.concatenate(J)
    d = np.hypot(*(c[i] - c[j]).T)
    hit = d < r[i] + r[j]
    return i[hit], j[hit]


def _relax(anchor: np.ndarray, r: np.ndarray, *, iterations: int = 400, pull: float = 0.05,
           release: int = 80, seed: int = 0) -> tuple[np.ndarray, int]:
    """Push overlapping disks apart (larger disks move less) while a weak spring keeps
    each near its embedded position; the spring is released towards the end so the
    result is overlap-free. Returns centres and iterations used."""
    rng = np.random.default_rng(seed)
    c = anchor.copy()
    n = len(c)
    if n < 2:
        return c, 0
    area = r ** 2
    for it in range(iterations):
        i, j = _overlap_pairs(c, r)
        spring = pull * max(0.0, 1.0 - it / release)
        if not len(i):
            if spring == 0:
                return c, it
            c += spring * (anchor - c)
            continue
        delta = c[i] - c[j]
        d = np.hypot(delta[:, 0], delta[:, 1])
        zero = d < 1e-9
        if zero.any():
            angle = rng.uniform(0, 2 * np.pi, zero.sum())
            delta[zero] = np.stack([np.cos(angle), np.sin(angle)], 1)
            d[zero] = 1.0
        u = delta / d[:, None]
        # A hair more than the overlap, so touching disks count as separated next round.
        push = (r[i] + r[j] - d) * 1.02 + 1e-3
        wi = area[j] / (area[i] + area[j])
        move = np.zeros_like(c)
        np.add.at(move, i, u * (push * wi)[:, None])
        np.add.at(move, j, -u * (push * (1 - wi))[:, None])
        c += move * 0.8 + spring * (anchor - c)
    return c, iterations


@dataclass
class Packed:
    xy: np.ndarray             # (n, 2) cell units
    group: np.ndarray          # (n,) group index
    iterations: int
    overlaps: int              # pairs of thumbnails still overlapping (should be 0)
    stats: dict = field(default_factory=dict)


def group_points(xy: np.ndarray, cluster: np.ndarray, *, loose_size: int = 16, seed: int = 0) -> np.ndarray:
    """Group index per point: one group per real cluster (``cluster >= 0``); the rest
    (unclustered, or no clustering at all) in small 2-D k-means groups of their own."""
    group = np.full(len(xy), -1, np.int64)
    real = cluster >= 0
    if real.any():
        _, group[real] = np.unique(cluster[real], return_inverse=True)
    rest = np.flatnonzero(~real)
    if len(rest):
        base = group.max() + 1
        k = max(1, int(round(len(rest) / loose_size)))
        if k == 1:
            group[rest] = base
        else:
            from sklearn.cluster import MiniBatchKMeans

            km = MiniBatchKMeans(k, random_state=seed, n_init=1, batch_size=4096, max_iter=30)
            group[rest] = base + km.fit_predict(xy[rest])
            # k-means can leave ids unused; renumber densely.
            _, group = np.unique(group, return_inverse=True)
    return group


def pack(xy: np.ndarray, group: np.ndarray, *, gap: float = 1.0, fill: float = 0.25,
         loose: np.ndarray | None = None, seed: int = 0) -> Packed:
    """Non-overlapping cell coordinates for 2-D points ``xy`` in groups ``group``.

    ``loose`` marks groups that are not real clusters: they get no gap around them."""
    n = len(xy)
    if n == 0:
        return Packed(np.zeros((0, 2)), group, 0, 0)
    xy = np.asarray(xy, np.float64)
    xy = xy - xy.mean(0)
    spread = math.sqrt(float((xy ** 2).sum(1).mean())) or 1.0
    xy = xy / spread
    ng = int(group.max()) + 1
    counts = np.bincount(group, minlength=ng)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    local = np.zeros_like(xy)
    centre = np.zeros((ng, 2))
    radius = np.zeros(ng)
    for g in range(ng):
        members = order[starts[g]:starts[g + 1]]
        if not len(members):
            continue
        mean = xy[members].mean(0)
        centre[g] = mean
        cells = _arrange(xy[members] - mean)
        local[members] = cells
        # Half a cell diagonal beyond the outermost cell centre, plus half the gap.
        pad = 0.1 if loose is not None and loose[g] else gap / 2
        radius[g] = np.hypot(cells[:, 0], cells[:, 1]).max() + math.sqrt(0.5) + pad
    used = counts > 0
    # Scale the embedding so the disks' total area fills ~1/fill of its RMS disk.
    total = float((np.pi * radius[used] ** 2).sum())
    anchor = centre * math.sqrt(total * fill / np.pi)
    c, its = _relax(anchor[used], radius[used], seed=seed)
    centre_final = np.zeros_like(centre)
    centre_final[used] = c
    # Round group centres to the lattice so every thumbnail is on the same cell grid:
    # neighbouring clusters then tile cleanly, and overlap checks are exact.
    centre_final = np.round(centre_final)
    out = _unique_cells(centre_final[group] + local)
    overlaps = count_overlaps(out)
    return Packed(out, group, its, overlaps, {"groups": int(used.sum())})


def _unique_cells(xy: np.ndarray) -> np.ndarray:
    """All points are on the integer lattice, so two thumbnails overlap only if they
    share a cell. Should the relaxation have left any such clash, move the later point
    to the nearest free cell (rare: a handful of points at most)."""
    cells = np.round(xy).astype(np.int64)
    key = cells[:, 0] * (1 << 32) + cells[:, 1]
    _, first = np.unique(key, return_index=True)
    if len(first) == len(xy):
        return cells.astype(np.float64)
    taken = set(key[first].tolist())
    clash = np.setdiff1d(np.arange(len(xy)), first)
    for k in clash:
        x0, y0 = int(cells[k, 0]), int(cells[k, 1])
        found = False
        for ring in range(1, 10_000):
            ring_cells = [(x0 + dx, y0 + dy) for dx in range(-ring, ring + 1) for dy in range(-ring, ring + 1)
                          if max(abs(dx), abs(dy)) == ring]
            ring_cells.sort(key=lambda c: (c[0] - x0) ** 2 + (c[1] - y0) ** 2)
            for cx, cy in ring_cells:
                if cx * (1 << 32) + cy not in taken:
                    taken.add(cx * (1 << 32) + cy)
                    cells[k] = (cx, cy)
                    found = True
                    break
            if found:
                break
    return cells.astype(np.float64)


def count_overlaps(xy: np.ndarray, size: float = 1.0) -> int:
    """Pairs of axis-aligned ``size`` squares centred on ``xy`` that overlap."""
    from scipy.spatial import cKDTree

    if len(xy) < 2:
        return 0
    pairs = cKDTree(xy).query_pairs(size * math.sqrt(2) - 1e-9, p=2, output_type="ndarray")
    if not len(pairs):
        return 0
    d = np.abs(xy[pairs[:, 0]] - xy[pairs[:, 1]]).max(1)
    return int((d < size - 1e-6).sum())


def spatial_order(xy: np.ndarray) -> np.ndarray:
    """Indices ordering points along a Z-order (Morton) curve of their cell, so each
    atlas sheet covers one compact region of the map."""
    if not len(xy):
        return np.zeros(0, np.int64)
    q = np.floor(xy - xy.min(0)).astype(np.uint64)
    q = np.minimum(q, (1 << 20) - 1)

    def spread(v: np.ndarray) -> np.ndarray:
        v = v & np.uint64(0xFFFFF)
        v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
        v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
        return v

    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1))
    return np.argsort(code, kind="stable")
