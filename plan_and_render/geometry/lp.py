"""Relations as linear constraints over box edges, solved with scipy's HiGHS.

Variables are the four edges of every box. Each relation of plan-format.md is
linear once its open choices are fixed (which side for `next_to`, which axis
and order for `between`); the sector rule |dx| >= |dy| is the pair of linear
constraints dx <= -dy, dx <= dy. Unrelated pairs get a separating constraint
along one axis that caps their overlap. Choices left open become binary
variables (big-M "one of" constraints), which turns the LP into a small MILP:
the complete fallback when the constructive layout's choices do not work.
The objective keeps every edge close to a target layout (L1), so a repair moves
as little as it can. Margins make every strict inequality survive rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..scene import PlanRelation
from ..vocab import REGION_THIRDS
from .check import FRONT_LINE, TOUCH, DepthPrior, Placement

EPS = 0.01  # strictness margin for directional relations (normalised units)
EPS_IN = 0.002  # margin for the non-strict ones (inside, gaps, touching)
DEPTH_STEP = 0.1  # depth: each side at least this share larger (foreground) / smaller (background) than the prior
SEPARATION = 0.08  # unrelated pairs: overlap along the separating axis <= this share of the smaller extent
ASPECT_SLACK = 1.25  # a repaired box's w/h stays within this factor of its target's (first try)

X0, Y0, X1, Y1 = range(4)
Expr = dict[int, float]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Choice:
    """How an open relation is fixed: ``side`` -1/+1 (subject left/right) for
    next_to; ``axis`` "x"/"y" and ``sign`` +1 (object first) / -1 for between."""

    side: float = -1.0
    axis: str = "x"
    sign: float = 1.0


BETWEEN_CHOICES = (Choice(axis="x", sign=1.0), Choice(axis="x", sign=-1.0), Choice(axis="y", sign=1.0),
                   Choice(axis="y", sign=-1.0))
NEXT_TO_CHOICES = (Choice(side=-1.0), Choice(side=1.0))


@dataclass(frozen=True)
class Separation:
    """Unrelated pair: ``first`` before ``second`` along ``axis``."""

    first: str
    second: str
    axis: str


class Program:
    """A tiny builder for ``rows z <= rhs`` over the box edges of ``ids`` plus binaries."""

    def __init__(self, ids: list[str]):
        self.col = {i: 4 * k for k, i in enumerate(ids)}
        self.n = 4 * len(ids)
        self.nbin = 0
        self.rows: list[Expr] = []
        self.rhs: list[float] = []
        self._unless: int | None = None  # rows added now are void when this binary is 0
        self.shared: dict[object, list[int]] = {}  # tie key -> binaries shared by tied relations
        self.timed_out = False

    def v(self, i: str, edge: int, c: float = 1.0) -> Expr:
        return {self.col[i] + edge: c}

    def cx(self, i: str, c: float = 1.0) -> Expr:
        return {self.col[i] + X0: c / 2, self.col[i] + X1: c / 2}

    def cy(self, i: str, c: float = 1.0) -> Expr:
        return {self.col[i] + Y0: c / 2, self.col[i] + Y1: c / 2}

    def le(self, rhs: float, *parts: Expr) -> None:
        """sum(parts) <= rhs (relaxed by BIG_M inside an option whose binary is 0)."""
        row: Expr = {}
        for p in parts:
            for k, c in p.items():
                row[k] = row.get(k, 0.0) + c
        if self._unless is not None:  # row <= rhs + M (1 - z), M as small as the unit box allows
            big_m = max(0.0, sum(c for c in row.values() if c > 0) - rhs)
            row[self._unless] = big_m
            rhs += big_m
        self.rows.append(row)
        self.rhs.append(rhs)

    @contextmanager
    def _option(self, col: int) -> Iterator[None]:
        self._unless = col
        try:
            yield
        finally:
            self._unless = None

    def one_of(self, options: list[Callable[[], None]], tie: object = None) -> None:
        """At least one option's constraints hold (one binary per option). Calls
        with the same ``tie`` key share binaries, so they all pick the same option."""
        cols = self.shared.get(tie) if tie is not None else None
        fresh = cols is None
        if fresh:
            cols = list(range(self.n + self.nbin, self.n + self.nbin + len(options)))
            self.nbin += len(options)
            if tie is not None:
                self.shared[tie] = cols
        for add, col in zip(options, cols):
            with self._option(col):
                add()
        if fresh:
            self.le(-1.0, {c: -1.0 for c in cols})

    # --- relations -------------------------------------------------------
    def sector(self, s: str, o: str, axis: str, sign: float, eps: float = EPS) -> None:
        """Centre of s beyond o along ``axis`` (sign -1: left/up, +1: right/down)
        by more than the offset on the other axis: the NSR-1K sector rule."""
        main, other = (self.cx, self.cy) if axis == "x" else (self.cy, self.cx)
        for t in (1.0, -1.0):  # sign * d_main >= |d_other| + eps, i.e. -sign * d_main + t * d_other <= -eps
            self.le(-eps, main(s, -sign), main(o, sign), other(s, t), other(o, -t))

    def width_gap(self, s: str, o: str, axis: str) -> None:
        """Gap between the boxes along ``axis`` at most each box's extent on that axis."""
        lo, hi = (X0, X1) if axis == "x" else (Y0, Y1)
        for a, b in ((s, o), (o, s)):  # gap = lo_b - hi_a, must be <= extent of s and of o
            for who in (s, o):
                self.le(-EPS_IN, self.v(b, lo), self.v(a, hi, -1), self.v(who, hi, -1), self.v(who, lo))

    def relation(self, r: PlanRelation, ch: Choice | None, tie: object = None,
                 options: Sequence[Choice] | None = None) -> None:
        """Constraints of one relation; ``ch=None`` leaves an open choice to the
        MILP among ``options`` (default: all), shared with the other relations
        of the same ``tie`` key."""
        s, o, p = r.subject, r.object, r.predicate
        if ch is None and p in ("next_to", "between"):
            options = options or (NEXT_TO_CHOICES if p == "next_to" else BETWEEN_CHOICES)
            if len(options) == 1:
                self.relation(r, options[0])
            else:
                self.one_of([lambda c=c: self.relation(r, c) for c in options], tie)
        elif p in ("left_of", "right_of"):
            self.sector(s, o, "x", -1.0 if p == "left_of" else 1.0)
        elif p in ("above", "below", "under"):
            self.sector(s, o, "y", -1.0 if p == "above" else 1.0)
        elif p == "on":
            self.sector(s, o, "y", -1.0)
            self.le(TOUCH - EPS_IN, self.v(o, Y0), self.v(s, Y1, -1))  # bottom at most TOUCH above the top
            self.le(-EPS_IN, self.v(s, Y1), self.cy(o, -1))  # ... and not below the middle
            self.le(-EPS, self.v(o, X0), self.v(s, X1, -1))  # overlapping it horizontally
            self.le(-EPS, self.v(s, X0), self.v(o, X1, -1))
        elif p == "next_to":
            self.sector(s, o, "x", ch.side)
            self.width_gap(s, o, "x")
        elif p == "near":
            self.width_gap(s, o, "x")
            self.width_gap(s, o, "y")
        elif p == "in_front_of":
            self.le(-EPS, self.v(o, Y1), self.v(s, Y1, -1))
        elif p == "behind":
            self.le(-EPS, self.v(s, Y1), self.v(o, Y1, -1))
        elif p == "inside":
            for e, sign in ((X0, -1), (Y0, -1), (X1, 1), (Y1, 1)):
                self.le(-EPS_IN, self.v(s, e, sign), self.v(o, e, -sign))
        elif p == "between":
            a, b = (r.object, r.object2) if ch.sign > 0 else (r.object2, r.object)
            self.sector(b, a, ch.axis, 1.0)  # references apart mostly along the axis, a first
            main = self.cx if ch.axis == "x" else self.cy
            self.le(-EPS, main(a), main(s, -1))
            self.le(-EPS, main(s), main(b, -1))

    def placement(self, p: Placement, prior: DepthPrior | None, fronts: Sequence[str] = ()) -> None:
        """Constraints of a region (the centre inside its thirds) or a depth. Areas are not linear, so
        depth asks for each side to be ``DEPTH_STEP`` beyond the prior's, which is enough for the area
        rule of check.py; a background box stays above every foreground box in ``fronts``."""
        s = p.subject
        if p.kind == "region":
            for axis, third in zip("xy", REGION_THIRDS[p.value]):
                if third is None:
                    continue
                c = self.cx if axis == "x" else self.cy
                if third < 2:  # centre before the third's far edge
                    self.le((third + 1) / 3 - EPS, c(s))
                if third > 0:  # ... and after its near edge
                    self.le(-third / 3 - EPS, c(s, -1))
            return
        assert prior is not None
        (pw, ph), (fw, fh) = prior.prior, prior.floor
        w, h = _add(self.v(s, X1), self.v(s, X0, -1)), _add(self.v(s, Y1), self.v(s, Y0, -1))
        if p.value == "foreground":
            self.le(-FRONT_LINE - EPS, self.v(s, Y1, -1))
            self.le(-(1 + DEPTH_STEP) * pw, _scale(w, -1))
            self.le(-(1 + DEPTH_STEP) * ph, _scale(h, -1))
            return
        if not prior.backdrop:
            self.le(max(fw + 1e-3, (1 - DEPTH_STEP) * pw), w)
            self.le(max(fh + 1e-3, (1 - DEPTH_STEP) * ph), h)
        for f in fronts:
            if f != s:
                self.le(-EPS, self.v(s, Y1), self.v(f, Y1, -1))

    def separate(self, sep: Separation) -> None:
        """Overlap of two unrelated boxes along the axis <= SEPARATION x the smaller extent."""
        lo, hi = (X0, X1) if sep.axis == "x" else (Y0, Y1)
        a, b = sep.first, sep.second
        for who in (a, b):  # hi_a - lo_b <= SEPARATION * (hi_who - lo_who)
            self.le(0.0, self.v(a, hi), self.v(b, lo, -1), self.v(who, hi, -SEPARATION), self.v(who, lo, SEPARATION))

    def separate_any(self, a: str, b: str) -> None:
        """Apart along some axis, in some order (the MILP picks)."""
        self.one_of([lambda s=s: self.separate(s) for s in (
            Separation(a, b, "x"), Separation(b, a, "x"), Separation(a, b, "y"), Separation(b, a, "y"))])

    def solve(
        self,
        target: dict[str, Box],
        fixed: dict[str, Box],
        min_wh: dict[str, tuple[float, float]],
        margin: float,
        feasibility_only: bool = False,
        keep_aspect: bool = False,
        time_limit: float = 2.0,
    ) -> dict[str, Box] | None:
        """Minimise the L1 distance to ``target`` (``fixed`` boxes stay put); None if infeasible.
        ``keep_aspect``: every free box keeps its target's aspect ratio within ASPECT_SLACK."""
        for i, (mw, mh) in min_wh.items():
            self.le(-mw, self.v(i, X0), self.v(i, X1, -1))
            self.le(-mh, self.v(i, Y0), self.v(i, Y1, -1))
            if keep_aspect:  # w / h within ASPECT_SLACK of the target's: no squashed boxes
                tw, th = target[i][2] - target[i][0], target[i][3] - target[i][1]
                w, h = _add(self.v(i, X1), self.v(i, X0, -1)), _add(self.v(i, Y1), self.v(i, Y0, -1))
                self.le(0.0, _scale(w, th), _scale(h, -tw * ASPECT_SLACK))
                self.le(0.0, _scale(h, tw), _scale(w, -th * ASPECT_SLACK))
        n, nb, m = self.n, self.nbin, len(self.rows)
        nd = 0 if feasibility_only else n  # one deviation variable per edge
        A = np.zeros((m + 2 * nd, n + nb + nd))
        ub = np.zeros(m + 2 * nd)
        for k, (row, rhs) in enumerate(zip(self.rows, self.rhs)):
            for j, c in row.items():
                A[k, j] += c
            ub[k] = rhs
        if nd:  # |z - t| <= d  as  z - d <= t  and  -z - d <= -t
            t = np.array([target[i][e] for i in self.col for e in range(4)])
            eye = np.eye(n)
            A[m:m + n, :n], A[m:m + n, n + nb:] = eye, -eye
            A[m + n:, :n], A[m + n:, n + nb:] = -eye, -eye
            ub[m:m + n], ub[m + n:] = t, -t
        lo = np.concatenate([np.full(n, margin), np.zeros(nb + nd)])
        hi = np.concatenate([np.full(n, 1.0 - margin), np.ones(nb), np.full(nd, np.inf)])
        for i, box in fixed.items():
            lo[self.col[i]:self.col[i] + 4] = hi[self.col[i]:self.col[i] + 4] = box
        from scipy.optimize import Bounds, LinearConstraint, milp  # on first use: most plans never need it

        c = np.concatenate([np.zeros(n + nb), np.ones(nd)])
        integrality = np.concatenate([np.zeros(n), np.ones(nb), np.zeros(nd)])
        res = milp(c, constraints=LinearConstraint(A, -np.inf, ub), bounds=Bounds(lo, hi),
                   integrality=integrality, options={"time_limit": max(0.05, time_limit), "presolve": False})
        if res.x is None or res.status not in (0, 1):  # 1: time limit with a feasible point
            self.timed_out = res.status == 1
            return None
        z = res.x
        return {i: tuple(float(z[k + e]) for e in range(4)) for i, k in self.col.items()}


def _add(*parts: Expr) -> Expr:
    out: Expr = {}
    for p in parts:
        for k, c in p.items():
            out[k] = out.get(k, 0.0) + c
    return out


def _scale(e: Expr, c: float) -> Expr:
    return {k: c * v for k, v in e.items()}
