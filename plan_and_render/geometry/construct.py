"""Constructive placement: a first layout that already satisfies most relation
sets, and the targets the LP repair stays close to when it does not.

1. *Blocks*: instances of one group that take part in the same relations
   ("three birds above a boat") move together, arranged as a row, a grid, a
   staggered cluster, a column (beside something) or a pile (on something).
2. Every relation between blocks asks for a displacement between their centres
   (left_of: one half-width-sum to the left, on: resting on the top edge...).
   Least squares turns these wishes into block positions; for a consistent
   tree or chain of relations the wishes hold exactly.
3. Connected pieces of the relation graph are packed onto the canvas in
   shelves, scaled down together if they do not fit, and spread over the free
   space so unrelated things do not pile up in the centre.

Objects with a region or depth have *anchors*: where on the canvas their centre
should be (the middle of their thirds; near the bottom for the foreground,
higher up for the background). Anchors join the least squares as rows of their
own; a piece holding an anchored object stays where they put it, and the other
pieces are packed into the largest part of the canvas it leaves free.

The seed shuffles the pieces, picks among equally good arrangements and
jitters positions inside the free space.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from ..scene import PlanRelation
from .orders import before, order_edges, reach

GAP = 0.03  # normalised gap between neighbours
ON_SINK = 0.05  # an `on` subject's bottom edge sits this far (share of the object's height) into it
UNDER_RISE = 0.15  # an `under` subject overlaps this share of the object's height
FRONT_DROP = 0.08  # in_front_of: bottom edge this share of the object's height lower
BACK_RISE = 0.12  # behind: bottom edge this share of the object's height higher
PACK_GAP = 0.04
ANCHOR_WEIGHT = 4.0  # an anchor row counts this much against a relation's wished displacement
MIN_FREE_AREA = 0.25  # packing around anchored pieces needs this share of the canvas, else it uses all of it

Box = tuple[float, float, float, float]
Span = tuple[float, float, float]  # (lowest, wished, highest) centre coordinate on one axis
Anchor = tuple[Span | None, Span | None]  # per axis x, y; None: that axis is free


@dataclass
class Block:
    """Instances placed as one unit, row by row from the top; each row centred.
    ``counts`` gives the instances per row; by default ``cols`` per row."""

    ids: list[str]
    w: float
    h: float
    cols: int = 1
    gap: float = GAP
    stagger: float = 0.0  # odd rows shift right by this share of a cell (cluster look)
    counts: list[int] | None = None
    fixed: bool = False
    centre: tuple[float, float] = (0.0, 0.0)
    offsets: list[tuple[float, float]] = field(default_factory=list)

    @property
    def row_counts(self) -> list[int]:
        if self.counts:
            return self.counts
        n, cols = len(self.ids), min(self.cols, len(self.ids))
        return [min(cols, n - k) for k in range(0, n, cols)]

    @property
    def size(self) -> tuple[float, float]:
        counts = self.row_counts
        shift = self.stagger * (self.w + self.gap) if len(counts) > 1 else 0.0
        widest = max(counts)
        return widest * self.w + (widest - 1) * self.gap + shift, len(counts) * self.h + (len(counts) - 1) * self.gap

    def arrange(self) -> None:
        """Instance centre offsets from the block centre."""
        W, H = self.size
        widest = max(self.row_counts)
        self.offsets = []
        for row, count in enumerate(self.row_counts):
            for col in range(count):
                x = -W / 2 + self.w / 2 + (col + (widest - count) / 2) * (self.w + self.gap)
                x += self.stagger * (self.w + self.gap) * (row % 2)
                y = -H / 2 + self.h / 2 + row * (self.h + self.gap)
                self.offsets.append((x, y))


def pile_counts(n: int, per_row: int) -> list[int]:
    """Rows for ``n`` things resting on one support, widest on top: every row's
    bottom must touch the support's upper part and stay above its centre by more
    than the row's half-width (the sector rule), so lower rows are narrower."""
    rows: list[int] = []
    width = per_row
    while sum(rows) < n:
        rows.append(max(1, min(width, n - sum(rows))))
        width -= 2
    return rows


def _signatures(relations: list[PlanRelation], groups: dict[str, str]) -> dict[str, frozenset]:
    """What each instance takes part in, with partners named by their group:
    instances with equal signatures can move as one block."""
    sig: dict[str, set] = {}
    for r in relations:
        parts = [(r.subject, "s"), (r.object, "o")] + ([(r.object2, "o2")] if r.object2 else [])
        for i, role in parts:
            others = tuple((rl, groups.get(j, j)) for j, rl in parts if j != i or rl != role)
            sig.setdefault(i, set()).add((r.predicate, role, others))
    return {i: frozenset(s) for i, s in sig.items()}


def make_blocks(
    ids: list[str],
    groups: dict[str, str],
    sizes: dict[str, tuple[float, float]],
    relations: list[PlanRelation],
    fixed: dict[str, Box],
    aspect: float,
    min_wh: tuple[float, float],
    rng: random.Random,
    anchors: dict[str, Anchor] | None = None,
    copy_gap: float | None = None,
) -> list[Block]:
    """Group instances into blocks and choose each block's arrangement. ``copy_gap``: the gap between
    the copies of a plain count (no relation among them) in place of GAP (``sizes.SizePrior``)."""
    sig = _signatures(relations, groups)
    anchors = anchors or {}
    keyed: dict[tuple, list[str]] = {}
    for i in ids:
        key = ("fixed", i) if i in fixed else (groups.get(i, i), sig.get(i, frozenset()), sizes[i], anchors.get(i))
        keyed.setdefault(key, []).append(i)
    blocks = []
    for members in keyed.values():
        w, h = sizes[members[0]]
        b = Block(members, w, h, fixed=members[0] in fixed)
        n = len(members)
        if n > 1:
            inside = set(members)
            internal = {r.predicate for r in relations if r.subject in inside and r.object in inside}
            rests_on = any(r.predicate == "on" and r.subject in inside and r.object not in inside for r in relations)
            beside = any(r.predicate in ("next_to", "near") and (r.subject in inside) != (r.object in inside)
                         for r in relations)
            if "next_to" in internal:  # a touching row
                b.cols, b.gap = n, 0.0
            elif beside and n <= 3:  # a column, so each one stays close beside the other thing
                b.cols = 1
            elif rests_on:  # a resting row, or a pile (at most 3 rows if shrinking allows) when one row is too wide
                b.cols, b.gap = n, GAP / 2
                per_row = lambda width: max(1, int((0.9 + b.gap) / (width + b.gap)))  # noqa: E731
                k, k_min = 1.0, min(1.0, max(min_wh[0] / w, min_wh[1] / h))
                while k > k_min and sum(pile_counts(n, per_row(k * w))[:3]) < n:
                    k = max(k_min, 0.9 * k)
                b.w, b.h = w * k, h * k
                if n > per_row(b.w):
                    b.counts = pile_counts(n, per_row(b.w))
            elif "near" in internal:
                b.cols, b.gap = max(1, round(math.sqrt(n))), GAP / 3
            else:
                # square-ish grid in pixels; the seed may pick one column more or fewer, or a stagger
                ideal = math.sqrt(n * aspect * h / w) if n > 3 else n
                b.cols = max(1, min(n, round(ideal) + (rng.choice((-1, 0, 0, 1)) if n > 3 else 0)))
                if n > 4 and rng.random() < 0.3:
                    b.stagger = 0.5
                if copy_gap is not None:
                    b.gap = copy_gap
        blocks.append(b)
    return blocks


def _displacement(p: str, S: Block, O: Block, side: float) -> tuple[float, float]:
    """Wished centre(S) - centre(O) for ``S p O``; ``side`` is -1/+1 where a predicate leaves it open."""
    (Ws, Hs), (Wo, Ho) = S.size, O.size
    # the sector rule must hold for every instance pair: the blocks' centres must be
    # further apart than the instances' centres spread, on both axes together
    spread = ((Ws - S.w) + (Wo - O.w) + (Hs - S.h) + (Ho - O.h)) / 2 + 0.03 if len(S.ids) + len(O.ids) > 2 else 0.0
    hx, hy = max((Ws + Wo) / 2 + GAP, spread), max((Hs + Ho) / 2 + GAP, spread)
    if p == "left_of":
        return -hx, 0.0
    if p == "right_of":
        return hx, 0.0
    if p == "above":
        return 0.0, -hy
    if p == "below":
        return 0.0, hy
    if p == "on":  # the top row rests on the top edge; lower rows of a pile sink into the support
        return 0.0, -Ho / 2 + ON_SINK * Ho - S.h + Hs / 2
    if p == "under":
        return 0.0, max((Hs + Ho) / 2 - UNDER_RISE * Ho, spread)
    if p == "next_to":
        return side * ((Ws + Wo) / 2 + GAP / 2), 0.0
    if p == "near":
        return side * hx, 0.0
    if p == "in_front_of":  # S's highest bottom edge below O's lowest one
        return side * 0.3 * (Ws + Wo) / 2, Ho / 2 + FRONT_DROP * O.h - S.h + Hs / 2
    if p == "behind":  # S's lowest bottom edge above O's highest one
        return side * 0.3 * (Ws + Wo) / 2, -Ho / 2 + O.h - BACK_RISE * O.h - Hs / 2
    return 0.0, 0.0  # inside: centred


def _grow_references(of: dict[str, Block], relations: list[PlanRelation], limit: float) -> None:
    """Make single references big enough for what rests on or sits inside them,
    shrinking the contents where the reference cannot grow."""
    for _ in range(2):  # nested references settle in a couple of passes
        for r in relations:
            S, O = of[r.subject], of[r.object]
            if S is O or O.fixed or len(O.ids) > 1:
                continue
            Ws, Hs = S.size
            if r.predicate == "on":
                # row k (from the top) sinks k (h + gap) into the support: its bottom must stay in the
                # upper half, and Ho (0.5 - ON_SINK) - k (h + gap) + h / 2 > the row's half-width + margin
                across, down, rows = S.w + S.gap, S.h + S.gap, S.row_counts
                need = max(((c - 1) / 2 * across + 0.03 + k * down - S.h / 2) / (0.5 - ON_SINK)
                           for k, c in enumerate(rows))
                need = max(need, 2 * (len(rows) - 1) * down / (1 - 2 * ON_SINK) + 0.02)
                # no cap: if the support outgrows the canvas, packing scales the whole piece down
                O.w, O.h = max(O.w, Ws * 1.05), max(O.h, need)
            elif r.predicate == "inside":
                O.w, O.h = min(limit, max(O.w, Ws * 1.3)), min(limit, max(O.h, Hs * 1.3))
                k = min(1.0, 0.8 * O.w / Ws, 0.8 * O.h / Hs)
                if k < 1.0 and not S.fixed:
                    S.w, S.h, S.gap = S.w * k, S.h * k, S.gap * k


def _hints(relations: list[PlanRelation], rng: random.Random):
    """Side for each next_to/near/front/back pair and axis+order for each between,
    taken from the orders the other relations imply, else from the seed."""
    axes = order_edges(relations)
    xr, yr = reach(axes.get("x", {})), reach(axes.get("y", {}))
    sides: dict[frozenset, tuple[str, float]] = {}

    def side(a: str, b: str) -> float:
        """-1 when a goes left of b."""
        key = frozenset((a, b))
        if key not in sides:
            s = -1.0 if before(xr, a, b) else 1.0 if before(xr, b, a) else rng.choice((-1.0, 1.0))
            sides[key] = (a, s)
        first, s = sides[key]
        return s if first == a else -s

    def between(a: str, b: str) -> tuple[str, float]:
        """Axis and sign (+1: object before object2)."""
        if (before(yr, a, b) or before(yr, b, a)) and not (before(xr, a, b) or before(xr, b, a)):
            return "y", (1.0 if not before(yr, b, a) else -1.0)
        return "x", (1.0 if not before(xr, b, a) else -1.0)

    return side, between


def place(
    ids: list[str],
    groups: dict[str, str],
    sizes: dict[str, tuple[float, float]],
    relations: list[PlanRelation],
    fixed: dict[str, Box],
    canvas: tuple[int, int],
    margin: float,
    min_wh: tuple[float, float],
    rng: random.Random,
    anchors: dict[str, Anchor] | None = None,
    copy_gap: float | None = None,
) -> dict[str, Box]:
    """Boxes for every instance (fixed ones unchanged), before any repair (``copy_gap``: ``make_blocks``)."""
    W, H = canvas
    limit = 1.0 - 2 * margin
    anchors = {i: a for i, a in (anchors or {}).items() if i not in fixed}
    fixed_sizes = {i: (b[2] - b[0], b[3] - b[1]) for i, b in fixed.items()}
    blocks = make_blocks(ids, groups, {**sizes, **fixed_sizes}, relations, fixed, W / H, min_wh, rng, anchors,
                         copy_gap)
    of = {i: b for b in blocks for i in b.ids}
    _grow_references(of, relations, limit)
    side, between = _hints(relations, rng)

    # least squares over block centres: rows of (coefficients, wished (dx, dy), weight[, axis])
    index = {id(b): k for k, b in enumerate(blocks)}
    for b in blocks:
        b.arrange()  # instance offsets from each block's centre: the anchor rows and the boxes read them
    rows = _relation_rows(relations, of, index, side, between) + _position_rows(blocks, fixed, anchors, index)
    if rows:
        _least_squares(blocks, rows)

    boxes: dict[str, Box] = {}
    for b in blocks:
        for i, (ox, oy) in zip(b.ids, b.offsets):
            cx, cy = b.centre[0] + ox, b.centre[1] + oy
            boxes[i] = (cx - b.w / 2, cy - b.h / 2, cx + b.w / 2, cy + b.h / 2)
    boxes.update(fixed)
    _pack(boxes, _components(blocks, rows), fixed, margin, rng, anchors, min_wh)
    return boxes


def _relation_rows(relations: list[PlanRelation], of: dict[str, Block], index: dict[int, int], side, between
                   ) -> list[tuple]:
    """One least-squares row per relation between two blocks (two for "between": the subject midway, the
    objects apart by the subject's width and gaps), each relation once."""
    rows: list[tuple] = []
    seen: set[tuple] = set()
    for r in relations:
        S, O = of[r.subject], of[r.object]
        if S is O:
            continue
        if r.predicate == "between":
            B = of[r.object2]
            key = ("between", index[id(S)], index[id(O)], index[id(B)])
            if key in seen or B is O or S is B:
                continue
            seen.add(key)
            axis, sign = between(r.object, r.object2)
            (Wa, Ha), (Wb, Hb), (Ws, Hs) = O.size, B.size, S.size
            sep = (Wa + Wb) / 2 + Ws + 2 * GAP if axis == "x" else (Ha + Hb) / 2 + Hs + 2 * GAP
            d = (sign * sep, 0.0) if axis == "x" else (0.0, sign * sep)
            rows.append(({index[id(S)]: 1.0, index[id(O)]: -0.5, index[id(B)]: -0.5}, (0.0, 0.0), 1.0))
            rows.append(({index[id(B)]: 1.0, index[id(O)]: -1.0}, d, 1.0))
            continue
        key = (r.predicate, index[id(S)], index[id(O)])
        if key in seen:
            continue
        seen.add(key)
        s = side(r.subject, r.object) if r.predicate in ("next_to", "near", "in_front_of", "behind") else 0.0
        rows.append(({index[id(S)]: 1.0, index[id(O)]: -1.0}, _displacement(r.predicate, S, O, s), 1.0))
    return rows


def _position_rows(blocks: list[Block], fixed: dict[str, Box], anchors: dict[str, Anchor], index: dict[int, int]
                   ) -> list[tuple]:
    """Rows that hold a block where it must be: a fixed box's centre (weight 20), and per axis the centre
    that puts an anchored instance (a region) on its anchor (the blocks arranged)."""
    rows: list[tuple] = []
    for b in blocks:
        if b.fixed:
            x0, y0, x1, y1 = fixed[b.ids[0]]
            rows.append(({index[id(b)]: 1.0}, ((x0 + x1) / 2, (y0 + y1) / 2), 20.0))
        for i, offset in zip(b.ids, b.offsets):  # the block centre that puts instance i on its anchor
            for axis, (span, off) in enumerate(zip(anchors.get(i, (None, None)), offset)):
                if span is not None:
                    rows.append(({index[id(b)]: 1.0}, (span[1] - off, span[1] - off), ANCHOR_WEIGHT, axis))
    return rows


def _least_squares(blocks: list[Block], rows: list[tuple]) -> None:
    """Block centres from the rows (in place). Rows with an axis (anchors) bind that axis only, so
    each axis is then solved on its own; without them both axes share one matrix, as they always did."""
    axes = (0, 1) if any(len(row) > 3 for row in rows) else (None,)
    centre = np.zeros((len(blocks), 2))
    for axis in axes:
        mine = [row for row in rows if len(row) == 3 or axis is None or row[3] == axis]
        M = np.zeros((len(mine), len(blocks)))
        R = np.zeros((len(mine), 2))
        for k, (coef, d, wt, *_) in enumerate(mine):
            for j, c in coef.items():
                M[k, j] = c * wt
            R[k] = (d[0] * wt, d[1] * wt)
        P = np.linalg.lstsq(M, R, rcond=None)[0]
        if axis is None:
            centre = P
        else:
            centre[:, axis] = P[:, axis]
    for b, (x, y) in zip(blocks, centre):
        b.centre = (float(x), float(y))


def _components(blocks: list[Block], rows) -> list[list[str]]:
    """Instance ids of each connected piece of the block relation graph."""
    parent = list(range(len(blocks)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for coef, *_ in rows:
        js = list(coef)
        for j in js[1:]:
            parent[find(j)] = find(js[0])
    pieces: dict[int, list[str]] = {}
    for k, b in enumerate(blocks):
        pieces.setdefault(find(k), []).extend(b.ids)
    return list(pieces.values())


def _bbox(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _pack(
    boxes: dict[str, Box], pieces: list[list[str]], fixed: dict[str, Box], margin: float, rng: random.Random,
    anchors: dict[str, Anchor] | None = None,
    min_wh: tuple[float, float] = (0.0, 0.0),
) -> None:
    """Settle the pieces holding anchored instances where their anchors put them; scale all other free
    pieces by one factor and spread them in shelves over the part of the canvas left free (in place)."""
    anchors = anchors or {}
    free = [p for p in pieces if not any(i in fixed for i in p)]
    held = [p for p in free if any(i in anchors for i in p)]
    free = [p for p in free if p not in held]
    lo, hi = margin, 1.0 - margin
    for p in held:
        _settle(boxes, p, anchors, margin, min_wh, rng)
    area = _free_area([_bbox([boxes[i] for i in p]) for p in held], margin) if held else (lo, lo, hi, hi)
    if free:
        _shelves(boxes, free, area, rng)


def _settle(boxes: dict[str, Box], piece: list[str], anchors: dict[str, Anchor], margin: float,
            min_wh: tuple[float, float], rng: random.Random, shrink: float = 0.85, tries: int = 10) -> None:
    """An anchored piece, in place: shifted as little as possible so that it lies inside the margins
    and every anchored instance's centre inside its span; scaled down (about its centre, never
    below the smallest box) while no shift does that. Axes no anchor binds are centred, with a
    little jitter. What still does not fit is left to the LP repair."""
    lo, hi = margin, 1.0 - margin
    x0, y0, x1, y1 = _bbox([boxes[i] for i in piece])
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    smallest = min(min((boxes[i][2] - boxes[i][0]) / max(min_wh[0], 1e-9), (boxes[i][3] - boxes[i][1]) /
                       max(min_wh[1], 1e-9)) for i in piece)
    free_shift = [0.5 + rng.uniform(-0.1, 0.1) * max(0.0, hi - lo - (x1 - x0)) - cx,
                  0.5 + rng.uniform(-0.1, 0.1) * max(0.0, hi - lo - (y1 - y0)) - cy]
    f = min(1.0, (hi - lo) / (x1 - x0), (hi - lo) / (y1 - y0))
    for attempt in range(tries):
        shift = []
        for axis, (a, b, c) in enumerate(((x0, x1, cx), (y0, y1, cy))):
            low, high = lo - (c + f * (a - c)), hi - (c + f * (b - c))  # keeps the scaled piece inside
            spans = [(anchors[i][axis], (boxes[i][axis] + boxes[i][axis + 2]) / 2) for i in piece
                     if i in anchors and anchors[i][axis] is not None]
            for (s_lo, _, s_hi), centre in spans:
                moved = c + f * (centre - c)
                low, high = max(low, s_lo - moved), min(high, s_hi - moved)
            want = 0.0 if spans else free_shift[axis]
            shift.append((min(max(want, low), high), low <= high))
        fits = all(ok for _, ok in shift)
        if fits or attempt == tries - 1 or f * shrink * smallest < 1.0:
            break
        f *= shrink
    (tx, _), (ty, _) = shift
    for i in piece:
        b = boxes[i]
        boxes[i] = (cx + f * (b[0] - cx) + tx, cy + f * (b[1] - cy) + ty,
                    cx + f * (b[2] - cx) + tx, cy + f * (b[3] - cy) + ty)


def _free_area(obstacles: list[Box], margin: float, max_obstacles: int = 6) -> Box:
    """The largest rectangle inside the margins that no obstacle (padded by half a ``PACK_GAP``)
    touches; the whole canvas when that is under ``MIN_FREE_AREA`` of it or there are many obstacles."""
    lo, hi = margin, 1.0 - margin
    whole = (lo, lo, hi, hi)
    if not obstacles or len(obstacles) > max_obstacles:
        return whole
    pad = PACK_GAP / 2
    grown = [(b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad) for b in obstacles]
    xs = sorted({lo, hi, *(min(max(v, lo), hi) for b in grown for v in (b[0], b[2]))})
    ys = sorted({lo, hi, *(min(max(v, lo), hi) for b in grown for v in (b[1], b[3]))})
    best, best_area = whole, 0.0
    for a, x0 in enumerate(xs):
        for x1 in xs[a + 1:]:
            for c, y0 in enumerate(ys):
                for y1 in ys[c + 1:]:
                    if (x1 - x0) * (y1 - y0) <= best_area:
                        continue
                    if all(min(x1, b[2]) <= max(x0, b[0]) or min(y1, b[3]) <= max(y0, b[1]) for b in grown):
                        best, best_area = (x0, y0, x1, y1), (x1 - x0) * (y1 - y0)
    return best if best_area >= MIN_FREE_AREA * (hi - lo) ** 2 else whole


def _shelves(boxes: dict[str, Box], free: list[list[str]], area: Box, rng: random.Random) -> None:
    """Scale ``free`` pieces by one factor and spread them in shelves over ``area`` (in place)."""
    rng.shuffle(free)
    bbs = [_bbox([boxes[i] for i in p]) for p in free]
    dims = [(b[2] - b[0], b[3] - b[1]) for b in bbs]
    ax0, ay0, ax1, ay1 = area
    avail_w, avail_h = ax1 - ax0, ay1 - ay0
    k = len(free)
    best = None
    for nrows in range(1, k + 1):
        per = math.ceil(k / nrows)
        shelves = [list(range(s, min(k, s + per))) for s in range(0, k, per)]
        if len(shelves) != nrows:
            continue
        f = min(
            1.0,
            min((avail_w - (len(s) - 1) * PACK_GAP) / sum(dims[j][0] for j in s) for s in shelves),
            (avail_h - (nrows - 1) * PACK_GAP) / sum(max(dims[j][1] for j in s) for s in shelves),
        )
        used_w = max(sum(dims[j][0] for j in s) for s in shelves)
        used_h = sum(max(dims[j][1] for j in s) for s in shelves)
        mismatch = abs(math.log(used_w / used_h * (avail_h / avail_w))) + rng.uniform(0, 0.3)
        score = (round(f, 2), -mismatch)
        if best is None or score > best[0]:
            best = (score, f, shelves)
    _, f, shelves = best
    heights = [f * max(dims[j][1] for j in s) for s in shelves]
    vgap = (avail_h - sum(heights)) / (len(shelves) + 1)
    y = ay0 + vgap
    for s, sh in zip(shelves, heights):
        widths = [f * dims[j][0] for j in s]
        hgap = (avail_w - sum(widths)) / (len(s) + 1)
        x = ax0 + hgap
        for j, wj in zip(s, widths):
            hj = f * dims[j][1]
            # jitter stays within 45 % of the free space around the piece, so pieces never collide
            jx = rng.uniform(-0.45, 0.45) * hgap
            jy = rng.uniform(-0.45, 0.45) * vgap + rng.uniform(-0.5, 0.5) * (sh - hj)
            cx, cy = x + wj / 2 + jx, y + sh / 2 + jy
            bx, by = (bbs[j][0] + bbs[j][2]) / 2, (bbs[j][1] + bbs[j][3]) / 2
            for i in free[j]:
                b = boxes[i]
                boxes[i] = (cx + f * (b[0] - bx), cy + f * (b[1] - by), cx + f * (b[2] - bx), cy + f * (b[3] - by))
            x += wj + hgap
        y += sh + vgap
