"""``solve``: instances + relations -> boxes that satisfy every relation.

    check ids and order cycles -> sizes (prior table, crowding, attention-grid minimum, depth)
      -> constructive placement (construct.py, anchored by regions and depths) -> round, check
      -> if anything fails, repair (lp.py): an LP with the layout's own choices,
         then choices a small MILP finds, then a MILP for the spacing too
      -> if no layout exists: find a smallest set of relations (and regions,
         depths) that cannot hold together and raise ConflictError naming them.

An object's ``region`` and ``depth`` (plan-format.md) are constraints like the
relations: ``check.Placement``s, checked by check.py, ordered by orders.py,
linear constraints of lp.py, and named in conflicts ("cat-1 region right").

Most plans never reach the LP: trees and chains of relations, groups and piles
are satisfied by construction. The checker of check.py decides, so "satisfied"
means exactly what plan-format.md says.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from ..errors import ConflictError, InvalidPromptError
from ..scene import Canvas, PlanObject, PlanRelation, relation_text
from ..vocab import REGION_THIRDS
from .check import (FRONT_LINE, OVERLAP_BOUND, DepthPrior, Placement, check_placements, check_relations, foreground_ids,
                    in_reading_order, overlap_allowed, overlap_fraction, overlap_violations, placements)
from .construct import Anchor, place
from .lp import BETWEEN_CHOICES, SEPARATION, Choice, Program, Separation
from .orders import before, cycles, order_edges, reach
from .sizes import MARGIN, SizePrior, enlarged_warning, initial_sizes, is_backdrop, is_scene_sized, min_size

FRONT_GROW = 1.3  # a foreground box starts this much larger than its prior (each side)
BACK_SHRINK = 0.7  # a background box starts this much smaller
BACK_LINE = 0.55  # where a background box's bottom edge is anchored when no region says otherwise
REPAIR_BUDGET_S = 3.0  # all LPs and MILPs of one solve together (wall clock); then the best found is kept
DIGITS = 4  # boxes are rounded to this many decimals (the solver's margins survive it)

Box = tuple[float, float, float, float]


@dataclass
class Layout:
    """The solver's answer: a box per instance id, and notes for the plan's warnings."""

    boxes: dict[str, Box]
    warnings: list[str] = field(default_factory=list)
    repaired: bool = False  # True when the LP repair step was needed


def conflict_message(items: list, note: str = "") -> str:
    """``conflicting relations: cat-1 region right, cat-1 left_of dog-1, ...`` (relations and placements)."""
    rels = [x for x in items if isinstance(x, PlanRelation)]
    text = "conflicting relations: " + ", ".join(map(str, in_reading_order(rels, [x for x in items if x not in rels])))
    return f"{text} ({note})" if note else text


def _validate(ids: list[str], relations: list[PlanRelation], fixed: dict[str, Box]) -> None:
    known = set(ids)
    if len(known) != len(ids):
        raise InvalidPromptError("object ids must be unique")
    for r in relations:
        refs = [r.subject, r.object] + ([r.object2] if r.object2 else [])
        unknown = [x for x in refs if x not in known]
        if unknown:
            raise InvalidPromptError(f"relation '{relation_text(r)}' refers to unknown object {unknown[0]!r}")
        if len(set(refs)) != len(refs):
            raise InvalidPromptError(f"relation '{relation_text(r)}' relates an object to itself")
        if r.predicate == "between" and not r.object2:
            raise InvalidPromptError(f"relation '{relation_text(r)}' needs a second reference (object2)")
    for i, b in fixed.items():
        if not (0.0 <= b[0] < b[2] <= 1.0 and 0.0 <= b[1] < b[3] <= 1.0):
            raise InvalidPromptError(f"kept box of {i} {list(b)} is not a valid normalised box")


def _spanning(objects: list[PlanObject], relations: list[PlanRelation], fixed: dict[str, Box]) -> set[str]:
    """Scene-sized things (table, bed, road...) that something is on or under, and backdrops
    (mountains, sky...) in the background with no left/right region, that nothing places beside
    something else: they may span the canvas."""
    refs = {r.object for r in relations if r.predicate in ("on", "under")}
    sideways = {x for r in relations if r.predicate in ("left_of", "right_of", "next_to", "between")
                for x in (r.subject, r.object, r.object2)}
    backdrops = {o.id for o in objects if o.depth == "background" and is_backdrop(o.name)
                 and (o.region is None or REGION_THIRDS[o.region][0] is None)}
    return {o.id for o in objects if (o.id in refs and is_scene_sized(o.name) or o.id in backdrops)
            and o.id not in sideways and o.id not in fixed}


def _depth_sizes(sizes: dict[str, tuple[float, float]], objects: list[PlanObject], canvas: Canvas,
                 spans: set[str]) -> None:
    """Start foreground boxes larger and background boxes smaller than their priors (in place)."""
    limit = 1.0 - 2 * MARGIN
    for o in objects:
        if o.id not in sizes or o.depth is None or o.id in spans:
            continue
        prior, (w, h) = DepthPrior.of(o, canvas), sizes[o.id]
        (pw, ph), (fw, fh) = prior.prior, prior.floor
        if o.depth == "foreground":
            k = max(1.0, FRONT_GROW * pw / w, FRONT_GROW * ph / h)
            sizes[o.id] = (min(w * k, limit), min(h * k, limit))
        elif not prior.backdrop:
            k = min(1.0, BACK_SHRINK * pw / w, BACK_SHRINK * ph / h)
            sizes[o.id] = (max(w * k, fw + 1e-3), max(h * k, fh + 1e-3))


def _anchors(objects: list[PlanObject], sizes: dict[str, tuple[float, float]]) -> dict[str, Anchor]:
    """Where regions and depths want each free object's centre, per axis (lowest, wished, highest):
    the middle of its third; the bottom edge near the canvas' bottom for the foreground, in the
    upper half for the background. construct.py pulls the centre there."""
    out: dict[str, Anchor] = {}
    pad = 0.01
    for o in objects:
        if o.id not in sizes or not (o.region or o.depth):
            continue
        column, row = REGION_THIRDS[o.region] if o.region else (None, None)
        ax = None if column is None else (column / 3 + pad, (column + 0.5) / 3, (column + 1) / 3 - pad)
        ay = None if row is None else (row / 3 + pad, (row + 0.5) / 3, (row + 1) / 3 - pad)
        h = sizes[o.id][1]
        if ay is None and o.depth == "foreground":
            want = max(0.5, 1.0 - MARGIN - pad - h / 2)
            ay = (min(want, FRONT_LINE + pad - h / 2), want, 1.0)
        elif ay is None and o.depth == "background":
            want = max(MARGIN + h / 2, BACK_LINE - h / 2)
            ay = (0.0, want, max(want, FRONT_LINE - pad - h / 2))
        out[o.id] = (ax, ay)
    return out


def _merge_warnings(warnings: list[str]) -> list[str]:
    """``bird-1: box enlarged ...`` x 30 -> one line for bird-1..bird-30 (same text after the id)."""
    by_text: dict[str, list[str]] = {}
    for w in warnings:
        oid, _, text = w.partition(": ")
        by_text.setdefault(text, []).append(oid)
    out = []
    for text, ids in by_text.items():
        who = ", ".join(ids) if len(ids) <= 3 else f"{ids[0]}..{ids[-1]} ({len(ids)} boxes)"
        out.append(f"{who}: {text}")
    return out


def _round(boxes: dict[str, Box]) -> dict[str, Box]:
    return {i: tuple(round(v, DIGITS) for v in b) for i, b in boxes.items()}


def _fit(boxes: dict[str, Box], fixed: dict[str, Box], min_wh: tuple[float, float], margin: float,
         W: int, H: int, warned: set[str]) -> list[str]:
    """Enlarge boxes that packing made too small and move boxes into the canvas (in place)."""
    warnings = []
    lo, hi = margin, 1.0 - margin
    for i, (x0, y0, x1, y1) in boxes.items():
        if i in fixed:
            continue
        w, h = x1 - x0, y1 - y0
        nw, nh = min(max(w, min_wh[0]), hi - lo), min(max(h, min_wh[1]), hi - lo)
        if (nw > w + 1e-9 or nh > h + 1e-9) and i not in warned:
            warnings.append(enlarged_warning(i, (w, h), (nw, nh), W, H))
            warned.add(i)
        cx = min(max((x0 + x1) / 2, lo + nw / 2), hi - nw / 2)
        cy = min(max((y0 + y1) / 2, lo + nh / 2), hi - nh / 2)
        boxes[i] = (cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2)
    return warnings


def _valid(boxes: dict[str, Box], relations: list[PlanRelation], fixed: dict[str, Box],
           min_wh: tuple[float, float], margin: float, objects: list[PlanObject], canvas: Canvas) -> bool:
    """Every relation, region and depth holds, unrelated boxes keep apart, free boxes are inside the
    margin and big enough."""
    lo, hi = margin - 1e-9, 1.0 - margin + 1e-9
    for i, b in boxes.items():
        if i in fixed:
            continue
        if not (lo <= b[0] < b[2] <= hi and lo <= b[1] < b[3] <= hi):
            return False
        if b[2] - b[0] < min_wh[0] - 1e-6 or b[3] - b[1] < min_wh[1] - 1e-6:
            return False
    return (not check_relations(boxes, relations) and not overlap_violations(boxes, relations)
            and not check_placements(boxes, objects, canvas, skip=fixed))


# --------------------------------------------------------------------------
# choices the LP cannot make itself
# --------------------------------------------------------------------------


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _choice(r: PlanRelation, boxes: dict[str, Box]) -> Choice:
    """The side (next_to) or axis and order (between) that ``boxes`` show."""
    if r.predicate == "next_to":
        return Choice(side=-1.0 if _centre(boxes[r.subject])[0] <= _centre(boxes[r.object])[0] else 1.0)
    if r.predicate == "between":
        (ax, ay), (bx, by) = _centre(boxes[r.object]), _centre(boxes[r.object2])
        axis = "x" if abs(ax - bx) >= abs(ay - by) else "y"
        return Choice(axis=axis, sign=1.0 if (ax <= bx if axis == "x" else ay <= by) else -1.0)
    return Choice()


def _hinted_choices(relations: list[PlanRelation], boxes: dict[str, Box], groups: dict[str, str]) -> list[Choice]:
    """Choices from the orders the relations imply (references related left/right
    make a horizontal `between`), else from ``boxes``; the instances of one group
    `between` relation then all take the choice most of them show."""
    axes = order_edges(relations)
    xr, yr = reach(axes.get("x", {})), reach(axes.get("y", {}))
    out = []
    for r in relations:
        ch = _choice(r, boxes)
        if r.predicate == "between":
            a, b = r.object, r.object2
            for axis, closure in (("x", xr), ("y", yr)):
                if before(closure, a, b) or before(closure, b, a):
                    ch = Choice(axis=axis, sign=1.0 if before(closure, a, b) else -1.0)
                    break
        out.append(ch)
    votes: dict[tuple, dict[Choice, int]] = {}
    key = lambda r: (groups.get(r.subject), groups.get(r.object), groups.get(r.object2))  # noqa: E731
    for r, ch in zip(relations, out):
        if r.predicate == "between":
            tally = votes.setdefault(key(r), {})
            tally[ch] = tally.get(ch, 0) + 1
    return [max(votes[key(r)].items(), key=lambda kv: kv[1])[0] if r.predicate == "between" else ch
            for r, ch in zip(relations, out)]


# predicate -> (axis, subject first?) when the relation alone fixes which of two
# boxes is further left (x) or higher up (y), and on which axis they are further apart
_DIRECT = {"left_of": ("x", True), "right_of": ("x", False), "above": ("y", True), "on": ("y", True),
           "below": ("y", False), "under": ("y", False), "next_to": ("x", None)}


def _between_options(r: PlanRelation, direct: dict, xr, yr) -> list[Choice]:
    """The ways a `between` can still go: a direct relation between its references
    fixes the axis (and usually the order); an implied order fixes the order on its axis."""
    a, b = r.object, r.object2
    if (a, b) in direct or (b, a) in direct:
        axis, a_first = direct[(a, b)] if (a, b) in direct else _flip(direct[(b, a)])
        signs = (1.0, -1.0) if a_first is None else ((1.0,) if a_first else (-1.0,))
        return [Choice(axis=axis, sign=s) for s in signs]
    for axis, other, closure in (("x", "y", xr), ("y", "x", yr)):
        if before(closure, a, b) or before(closure, b, a):
            sign = 1.0 if before(closure, a, b) else -1.0
            return [Choice(axis=axis, sign=sign), Choice(axis=other, sign=1.0), Choice(axis=other, sign=-1.0)]
    return list(BETWEEN_CHOICES)


def _flip(d: tuple[str, bool | None]) -> tuple[str, bool | None]:
    return d[0], (None if d[1] is None else not d[1])


def _unrelated(ids: list[str], relations: list[PlanRelation], fixed: dict[str, Box]) -> list[tuple[str, str]]:
    allowed = overlap_allowed(relations)
    return [(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]
            if frozenset((a, b)) not in allowed and not (a in fixed and b in fixed)]


def _separation(a: str, b: str, boxes: dict[str, Box], xr, yr) -> Separation:
    """The separating axis the relations imply (a left of b left of c puts a and
    c apart in x), else the one where less overlap is left to remove."""
    for axis, closure in (("x", xr), ("y", yr)):
        if before(closure, a, b) or before(closure, b, a):
            return Separation(*((a, b) if before(closure, a, b) else (b, a)), axis)
    A, B = boxes[a], boxes[b]
    (ax, ay), (bx, by) = _centre(A), _centre(B)
    px = ((A[2] - A[0] + B[2] - B[0]) / 2 - abs(ax - bx)) / min(A[2] - A[0], B[2] - B[0])
    py = ((A[3] - A[1] + B[3] - B[1]) / 2 - abs(ay - by)) / min(A[3] - A[1], B[3] - B[1])
    if px <= py:
        return Separation(*((a, b) if ax <= bx else (b, a)), "x")
    return Separation(*((a, b) if ay <= by else (b, a)), "y")


def _held_separation(a: str, b: str, boxes: dict[str, Box]) -> Separation:
    """A separation that ``boxes`` satisfy (they come from the MILP, so one does)."""
    options = [Separation(a, b, "x"), Separation(b, a, "x"), Separation(a, b, "y"), Separation(b, a, "y")]

    def slack(s: Separation) -> float:
        lo, hi = (0, 2) if s.axis == "x" else (1, 3)
        A, B = boxes[s.first], boxes[s.second]
        return SEPARATION * min(A[hi] - A[lo], B[hi] - B[lo]) - (A[hi] - B[lo])

    return max(options, key=slack)


# --------------------------------------------------------------------------
# the LP repair, the MILP fallback and the conflict explanation
# --------------------------------------------------------------------------


class _Repair:
    """One family of programs: same ids, kept boxes, targets; varying constraints."""

    def __init__(self, ids, relations, target, fixed, min_wh, margin, groups, places=None):
        self.ids, self.relations, self.target, self.fixed, self.margin = ids, relations, target, fixed, margin
        self.groups = groups
        self.places = places or Places([], {}, [])
        self.min_wh = {i: (min_wh[0] + 1e-3, min_wh[1] + 1e-3) for i in ids if i not in fixed}  # survives rounding
        self.pairs = _unrelated(ids, relations, fixed)
        self.timed_out = False
        self.deadline = time.perf_counter() + REPAIR_BUDGET_S

    def program(self, relations, choices=None, seps=None, open_pairs=False, tied=False, items=None) -> Program:
        """``tied``: relations expanded from one group relation share their open choice; ``items``:
        the placements to keep (default: all of them)."""
        prog = Program(self.ids)
        self.places.add_to(prog, self.places.items if items is None else items)
        options = {}
        if not choices:  # what each open `between` can still choose, given these relations
            direct = {(r.subject, r.object): _DIRECT[r.predicate] for r in relations if r.predicate in _DIRECT}
            axes = order_edges(relations)
            xr, yr = reach(axes.get("x", {})), reach(axes.get("y", {}))
            options = {id(r): _between_options(r, direct, xr, yr) for r in relations if r.predicate == "between"}
        for k, r in enumerate(relations):
            tie = (r.predicate, *(self.groups.get(x) for x in (r.subject, r.object, r.object2))) \
                if tied and r.predicate == "between" else None
            prog.relation(r, choices[k] if choices else None, tie, options.get(id(r)))
        for s in seps or []:
            prog.separate(s)
        if open_pairs:
            for a, b in self.pairs:
                prog.separate_any(a, b)
        return prog

    def solve(self, prog: Program, feasibility_only: bool = False, keep_aspect: bool = False):
        left = self.deadline - time.perf_counter()
        if left <= 0:
            prog.timed_out = self.timed_out = True
            return None
        return prog.solve(self.target, self.fixed, self.min_wh, self.margin, feasibility_only, keep_aspect, left)

    def closures(self):
        axes = order_edges(self.relations)
        return reach(axes.get("x", {})), reach(axes.get("y", {}))

    def quick(self, choices: list[Choice], start: dict[str, Box]):
        """LPs only, with fixed choices: first every pair separated along the axis
        ``start`` suggests; failing that, separating constraints only for pairs that
        overlap, added round by round (cutting planes)."""
        xr, yr = self.closures()
        seps = [_separation(a, b, start, xr, yr) for a, b in self.pairs]
        for keep_aspect in (True, False):  # prefer boxes that keep their shape
            sol = self.solve(self.program(self.relations, choices, seps), keep_aspect=keep_aspect)
            if sol is not None:
                return sol
        active: dict[tuple[str, str], Separation] = {}
        for _ in range(4):
            sol = self.solve(self.program(self.relations, choices, list(active.values())))
            if sol is None:
                return None
            crowded = [(a, b) for a, b in self.pairs if (a, b) not in active
                       and overlap_fraction(sol[a], sol[b]) > OVERLAP_BOUND / 2]
            if not crowded:
                return sol
            for a, b in crowded:
                active[(a, b)] = _separation(a, b, sol, xr, yr)
        return None

    def choices_from_milp(self):
        """Choices for next_to / between from a MILP over the relations alone,
        first with the instances of a group relation choosing alike (few
        binaries), then each on its own; with the layout found. None if the
        relations cannot hold (``timed_out``: or HiGHS ran out of time)."""
        for tied in (True, False):
            prog = self.program(self.relations, tied=tied)
            found = self.solve(prog, feasibility_only=True)
            if found is not None:
                return [_choice(r, found) for r in self.relations], found
            self.timed_out |= prog.timed_out
        return None

    def complete(self, choices: list[Choice] | None = None):
        """MILP: separating axes (and, without ``choices``, the open choices) are
        binaries for HiGHS. Pairs get their "apart along some axis" constraint
        lazily, once a layout shows them crowded, which keeps the MILP small.
        After each MILP an LP keeps its choices and moves back towards the
        targets, so the next round sees only the pairs that really compete."""
        active: list[tuple[str, str]] = []
        layout = self.solve(self.program(self.relations, choices)) if choices else None
        for _ in range(len(self.pairs) + 1):
            crowded = [] if layout is None else [
                (a, b) for a, b in self.pairs
                if (a, b) not in active and overlap_fraction(layout[a], layout[b]) > OVERLAP_BOUND / 2]
            if layout is not None and not crowded:
                return layout
            active += crowded
            prog = self.program(self.relations, choices)
            for a, b in active:
                prog.separate_any(a, b)
            found = self.solve(prog, feasibility_only=True)
            if found is None:
                self.timed_out |= prog.timed_out
                return None
            held = [_choice(r, found) for r in self.relations]
            seps = [_held_separation(a, b, found) for a, b in active]
            layout = self.solve(self.program(self.relations, held, seps)) or found
        return None

    def core(self, relations, open_pairs: bool, budget_s: float = 3.0) -> list:
        """Deletion filter over the relations and placements: drop each one whose removal
        keeps the set infeasible; what is left cannot hold together (minimal unless the time
        budget ran out)."""
        core, t0 = [*relations, *self.places.items], time.perf_counter()
        self.deadline = t0 + budget_s + 1.0
        for r in list(core):
            if time.perf_counter() - t0 > budget_s:
                break
            trial = [x for x in core if x is not r]
            rels = [x for x in trial if not isinstance(x, Placement)]
            prog = self.program(rels, open_pairs=open_pairs, items=[x for x in trial if isinstance(x, Placement)])
            if self.solve(prog, feasibility_only=True) is None and not prog.timed_out:
                core = trial
        return core


@dataclass
class Places:
    """The placements a solve must keep, with what lp.Program needs to state them."""

    items: list[Placement]
    priors: dict[str, DepthPrior]
    fronts: list[str]  # every foreground object (kept ones too): a background box stays above them

    @classmethod
    def of(cls, objects: list[PlanObject], fixed: dict[str, Box], canvas: Canvas) -> "Places":
        every = placements(objects)
        items = [p for p in every if p.subject not in fixed]
        priors = {o.id: DepthPrior.of(o, canvas) for o in objects if o.depth and o.id not in fixed}
        return cls(items, priors, foreground_ids(every))

    def add_to(self, prog: Program, items: list[Placement]) -> None:
        kept = {p.subject for p in items if p.kind == "depth" and p.value == "foreground"}
        fronts = [f for f in self.fronts if f in kept or f not in self.priors]
        for p in items:
            prog.placement(p, self.priors.get(p.subject), fronts)


def _repair(ids, relations, target, fixed, min_wh, margin, groups, places=None) -> tuple[dict[str, Box], list[str]]:
    """LP with the target's choices; then LP with choices a small MILP found;
    then the full MILP. Infeasible: explain with a smallest conflicting set.
    Returns the boxes and notes for the plan's warnings."""
    rep = _Repair(ids, relations, target, fixed, min_wh, margin, groups, places)
    sol = rep.quick(_hinted_choices(relations, target, groups), target)
    if sol is not None:
        return sol, []
    found = rep.choices_from_milp()
    if found is None:  # the relations themselves contradict each other (or the kept boxes)
        note = "no layout found within the solver's time limit" if rep.timed_out else _kept_note(fixed)
        raise ConflictError(conflict_message(rep.core(relations, False), note))
    sol = rep.quick(*found) or rep.complete(found[0]) or rep.complete()
    if sol is not None:
        return sol, []
    if rep.timed_out:  # not proven impossible, only slow: keep the relations, give up some spacing
        rep.deadline = time.perf_counter() + 0.5
        sol = rep.solve(rep.program(relations, found[0])) or found[1]
        crowded = [f"{a}/{b}" for a, b in rep.pairs if overlap_fraction(sol[a], sol[b]) > OVERLAP_BOUND]
        return sol, [f"geometry: could not keep {', '.join(crowded)} apart within the time limit"]
    core = rep.core(relations, True)
    note = (f"too many objects for the canvas: {len(ids)} boxes of at least "
            f"{min_wh[0]:.3f}x{min_wh[1]:.3f} do not fit apart")
    raise ConflictError(conflict_message(core, note) if core else note)


def _kept_note(fixed: dict[str, Box]) -> str:
    return f"with the kept boxes of {', '.join(sorted(fixed))}" if fixed else ""


# --------------------------------------------------------------------------
# the public entry point
# --------------------------------------------------------------------------


def solve(
    objects: list[PlanObject],
    relations: list[PlanRelation],
    canvas: Canvas,
    seed: int = 0,
    fixed: dict[str, Box] | None = None,
    size_prior: SizePrior | None = None,
) -> Layout:
    """Boxes for ``objects`` that satisfy every relation (plan-format.md semantics).

    ``fixed`` boxes are kept exactly (chat edits re-solve only the others). ``size_prior``: the model's
    own (``sizes.SizePrior``) in place of the real-world size table.
    Deterministic for a seed; other seeds give other layouts that satisfy the
    same relations. Raises ``ConflictError`` naming relations that cannot hold
    together, ``InvalidPromptError`` for unknown ids or self-relations.
    """
    ids = [o.id for o in objects]
    fixed = {i: tuple(float(v) for v in b) for i, b in (fixed or {}).items() if i in set(ids)}
    relations = list(relations)
    _validate(ids, relations, fixed)
    places = Places.of(objects, fixed, canvas)
    cyc = cycles(relations, places.items)
    if cyc:
        raise ConflictError(conflict_message(cyc))
    if not ids:
        return Layout({})

    W, H = canvas.width, canvas.height
    rng = random.Random(seed)
    spans = _spanning(objects, relations, fixed)
    free = [o for o in objects if o.id not in fixed]
    sizes, warnings = initial_sizes([(o.id, o.name, o.size, o.id in spans) for o in free], W, H, MARGIN, size_prior)
    _depth_sizes(sizes, free, canvas, spans)
    warned = {w.split(":")[0] for w in warnings}
    groups = {o.id: o.group or o.name for o in objects}
    min_wh = min_size(W, H)

    copy_gap = size_prior.copy_gap if size_prior is not None else None
    boxes = place(ids, groups, sizes, relations, fixed, (W, H), MARGIN, min_wh, rng, _anchors(free, sizes), copy_gap)
    warnings += _fit(boxes, fixed, min_wh, MARGIN, W, H, warned)
    boxes = _round(boxes)
    boxes.update(fixed)
    warnings = _merge_warnings(warnings)
    if _valid(boxes, relations, fixed, min_wh, MARGIN, objects, canvas):
        return Layout(boxes, warnings)

    repaired, notes = _repair(ids, relations, boxes, fixed, min_wh, MARGIN, groups, places)
    repaired = {**_round(repaired), **fixed}
    bad = check_relations(repaired, relations) + check_placements(repaired, objects, canvas, skip=fixed)
    if bad:  # rounding ate a margin: should not happen, but never pass it silently
        notes.append("geometry: " + "; ".join(str(v) for v in bad))
    return Layout(repaired, warnings + notes, repaired=True)
