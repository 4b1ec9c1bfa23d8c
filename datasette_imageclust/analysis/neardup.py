"""Near-duplicates: the same picture re-encoded, resized, slightly cropped or rotated, or
turned grayscale.

No single signal works (measured on tuxpaint-stamps-dupes with the stand-in): a grayscale
or heavily re-compressed copy can be *less* similar as a vector than two different stamps,
while crops and rotations move the pHash by 10-30 bits. So a pair is accepted when either

* ``hash``: pHash Hamming distance <= ``PHASH_MAX`` and cosine >= ``HASH_MIN_SIM`` (the
  copy kept its luminance structure: re-encode, resize, grayscale), or
* ``aligned``: the pair are vector neighbours (rank <= ``RANK_MAX``, cosine >=
  ``ALIGN_MIN_SIM``) *and* their thumbnails still match pixel-wise after the best small
  zoom + shift (normalised cross-correlation >= ``NCC_MIN``): crops and small rotations,
  while rejecting look-alikes (coin faces, traffic-light variants) that CNN vectors confuse.

Accepted pairs are joined into groups (connected components) and stored in
``duplicate_groups`` / ``duplicate_members`` (kind 'near'), with each pair's evidence in
``duplicate_pairs``. Exact duplicates (files sharing one image) are read from ``files``.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sqlite_utils
from PIL import Image

from ..store.collection import ImageCollection
from ..store.schema import migrate
from .clustering import knn, partition

PHASH_MAX = 4
HASH_MIN_SIM = 0.45
RANK_MAX = 3
ALIGN_MIN_SIM = 0.85
NCC_MIN = 0.94
SIDE = 56  # px of the grayscale views compared pixel-wise
ZOOMS = (1.0, 1.04, 1.08, 1.12, 1.17)  # up to ~15% cropped away
ANGLES = (-5.0, -2.5, 0.0, 2.5, 5.0)  # small rotations
EXACT_KNN = 20_000  # above this, vector neighbours are searched within k-means blocks


@dataclass
class Pair:
    a: int  # image ids, a < b
    b: int
    phash: int
    dhash: int
    similarity: float
    rank: int
    rule: str


def _hash_ints(hexes: list[str | None]) -> np.ndarray:
    return np.array([int(h, 16) if h else 0 for h in hexes], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.atleast_1d(np.bitwise_xor(a, b))
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(-1)


def _gray(im: Image.Image, size: int, angle: float = 0.0) -> np.ndarray:
    if angle:
        im = im.rotate(angle, resample=Image.BILINEAR)
    return np.asarray(im.resize((size, size), Image.BILINEAR), np.float32)


def _zn(a: np.ndarray) -> np.ndarray:
    m = SIDE // 10  # compare the centre only: rotation corners and crop edges differ
    a = a[..., m:-m, m:-m]
    a = a - a.mean(axis=(-1, -2), keepdims=True)
    return a / (np.linalg.norm(a, axis=(-1, -2), keepdims=True) + 1e-6)


def aligned_ncc(thumb_a: bytes, thumb_b: bytes) -> float:
    """Best normalised cross-correlation of B (turned by up to +-ANGLE degrees) against
    zoomed-and-shifted windows of A, and vice versa: high for crops, small rotations and
    re-encodes of one picture."""
    from numpy.lib.stride_tricks import sliding_window_view

    ims = [Image.open(io.BytesIO(t)).convert("L") for t in (thumb_a, thumb_b)]
    best = -1.0
    for x, y in ((ims[0], ims[1]), (ims[1], ims[0])):
        refs = np.stack([_zn(_gray(y, SIDE, ang)) for ang in ANGLES])
        for z in ZOOMS:
            big = _gray(x, int(round(SIDE * z)))
            win = _zn(sliding_window_view(big, (SIDE, SIDE)).reshape(-1, SIDE, SIDE))
            scores = np.einsum("wij,rij->wr", win, refs)
            best = max(best, float(scores.max()))
    return best


def phash_pairs(phash: np.ndarray, max_dist: int) -> list[tuple[int, int]]:
    """All (i < j) with Hamming(phash) <= max_dist. Multi-index hashing: split the 64 bits
    into max_dist + 1 bands; two hashes that close agree exactly on at least one band
    (pigeonhole), so only rows sharing a band value are compared."""
    n = len(phash)
    out: set[tuple[int, int]] = set()
    if n < 2:
        return []
    nb = max_dist + 1
    widths = [64 // nb + (1 if b < 64 % nb else 0) for b in range(nb)]
    shift = 0
    for w in widths:
        key = (phash >> np.uint64(shift)) & np.uint64((1 << w) - 1)
        shift += w
        order = np.argsort(key, kind="stable")
        sk = key[order]
        cuts = np.flatnonzero(np.diff(sk)) + 1
        for g in np.split(order, cuts):
            if len(g) < 2:
                continue
            for s in range(0, len(g), 1024):  # a huge bucket (blank images) in chunks
                d = hamming(phash[g[s : s + 1024], None], phash[None, g])
                for a, b in zip(*np.nonzero(d <= max_dist)):
                    i, j = int(g[s + a]), int(g[b])
                    if i < j:
                        out.add((i, j))
    return sorted(out)


def find_pairs(ids: np.ndarray, x: np.ndarray, phash: np.ndarray, dhash: np.ndarray,
               thumbnail: Callable[[int], bytes | None], *, k: int = 5) -> list[Pair]:
    """Candidate pairs from vector k-NN and close pHashes, then the two rules above."""
    n = len(ids)
    if n < 2:
        return []
    cand: dict[tuple[int, int], int] = {}
    # vector neighbours; above EXACT_KNN images, within k-means blocks (never n x n)
    blocks = [np.arange(n)] if n <= EXACT_KNN else partition(x, EXACT_KNN // 2)
    for b in blocks:
        if len(b) < 2:
            continue
        nidx, _ = knn(x[b], min(k + 1, len(b)))
        for r in range(1, nidx.shape[1]):
            for i, j in zip(b.tolist(), b[nidx[:, r]].tolist()):
                if i != j:
                    key = (min(i, j), max(i, j))
                    cand[key] = min(cand.get(key, 99), r)
    for i, j in phash_pairs(phash, PHASH_MAX):
        cand.setdefault((i, j), 99)
    pairs = []
    for (i, j), rank in cand.items():
        sim = float(x[i] @ x[j])
        ph = int(hamming(phash[i], phash[j])[0])
        dh = int(hamming(dhash[i], dhash[j])[0])
        rule = None
        if ph <= PHASH_MAX and sim >= HASH_MIN_SIM:
            rule = "hash"
        elif rank <= RANK_MAX and sim >= ALIGN_MIN_SIM:
            ta, tb = thumbnail(int(ids[i])), thumbnail(int(ids[j]))
            if ta and tb and aligned_ncc(ta, tb) >= NCC_MIN:
                rule = "aligned"
        if rule:
            a, b = sorted((int(ids[i]), int(ids[j])))
            pairs.append(Pair(a, b, ph, dh, round(sim, 5), rank, rule))
    return pairs


def groups(pairs: list[Pair]) -> list[list[int]]:
    """Connected components of accepted pairs, each sorted, largest first."""
    parent: dict[int, int] = {}

    def root(v: int) -> int:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for p in pairs:
        ra, rb = root(p.a), root(p.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comp: dict[int, list[int]] = {}
    for v in parent:
        comp.setdefault(root(v), []).append(v)
    return sorted((sorted(c) for c in comp.values()), key=lambda c: (-len(c), c[0]))


@dataclass
class DuplicatesSummary:
    """What ``compute`` found."""

    images: int
    pairs: int
    groups: int
    by_rule: dict[str, int]  # accepted pairs per rule: "hash", "aligned"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def compute(db: sqlite_utils.Database, on_status: Callable[[str], None] = lambda s: None) -> DuplicatesSummary:
    """Find near-duplicates among the current model's images and replace the stored groups."""
    migrate(db, "clusters")
    ids, x = ImageCollection(db).vectors()
    meta = {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, phash, dhash FROM images")}
    ph = _hash_ints([meta.get(int(i), (None, None))[0] for i in ids])
    dh = _hash_ints([meta.get(int(i), (None, None))[1] for i in ids])

    def thumb(iid: int) -> bytes | None:
        row = db.execute("SELECT data FROM thumbnails WHERE image_id = ?", [iid]).fetchone()
        return row[0] if row else None

    on_status(f"looking for near-duplicates among {len(ids)} images")
    pairs = find_pairs(ids, x, ph, dh, thumb)
    comps = groups(pairs)
    gid_of = {}
    with db.conn:
        db.execute("DELETE FROM duplicate_pairs")
        db.execute("DELETE FROM duplicate_members")
        db.execute("DELETE FROM duplicate_groups")
        for c in comps:
            gid = db["duplicate_groups"].insert({"kind": "near", "size": len(c)}).last_pk
            db.conn.executemany("INSERT INTO duplicate_members (group_id, image_id) VALUES (?, ?)",
                                [(gid, i) for i in c])
            for i in c:
                gid_of[i] = gid
        db.conn.executemany(
            "INSERT INTO duplicate_pairs (group_id, image_a, image_b, phash_distance, dhash_distance, "
            "similarity, rank) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(gid_of[p.a], p.a, p.b, p.phash, p.dhash, p.similarity, None if p.rank == 99 else p.rank)
             for p in pairs])
    return DuplicatesSummary(int(len(ids)), len(pairs), len(comps),
                             {r: sum(p.rule == r for p in pairs) for r in ("hash", "aligned")})


def listing(db: sqlite_utils.Database) -> list[dict]:
    """Exact groups (files sharing an image) then stored near groups, with file paths."""
    paths: dict[int, list[str]] = {}
    for iid, path in db.execute("SELECT image_id, path FROM files ORDER BY path"):
        paths.setdefault(iid, []).append(path)
    out = [{"kind": "exact", "image_ids": [iid], "paths": ps} for iid, ps in paths.items() if len(ps) > 1]
    out.sort(key=lambda g: g["paths"][0])
    if db["duplicate_groups"].exists():
        members: dict[int, list[int]] = {}
        for gid, iid in db.execute("SELECT group_id, image_id FROM duplicate_members ORDER BY group_id, image_id"):
            members.setdefault(gid, []).append(iid)
        for gid, kind in db.execute("SELECT id, kind FROM duplicate_groups ORDER BY size DESC, id"):
            iids = members.get(gid, [])
            out.append({"kind": kind, "id": gid, "image_ids": iids,
                        "paths": [p for i in iids for p in paths.get(i, [])]})
    return out
