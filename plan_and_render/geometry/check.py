"""What "a relation holds" means: plan-format.md's geometry semantics as pure functions.

The solver, the tests, the benchmarks and ``check_plan`` (for plans made
elsewhere: a hand-edited JSON, boxes an LLM proposed) all use these, so
"satisfied" has exactly one definition. Boxes are normalised
``(x0, y0, x1, y1)``, origin top-left, y grows downwards.

Where plan-format.md leaves a number open, this module fixes it:

* ``on``: ``above``, the boxes overlap horizontally, and the subject's bottom
  edge lies between ``TOUCH`` above the object's top edge and the object's
  vertical middle ("touching or overlapping the object's upper part").
* ``near``: the gap between the boxes along each axis is at most the smaller
  of the two boxes' extents on that axis (zero gap when they overlap).
* ``between``: ties (references as far apart in x as in y) count as horizontal,
  like the sector rule.
* Unrelated boxes: their intersection is at most ``OVERLAP_BOUND`` (10 %) of the
  smaller box's area.
* ``region``: the box centre lies strictly inside the thirds the region names
  (``left``: centre x < 1/3; ``center``: 1/3 <= x, y <= 2/3).
* ``depth``: sizes are compared by area with ``sizes.canvas_prior`` (the prior
  fitted to the canvas, never below the attention-grid minimum). A background
  box already at that minimum counts as smaller; backdrop things (mountains,
  sky, a city: ``sizes.is_backdrop``) keep any size. "Higher than a foreground
  object" compares bottom edges, as ``behind`` does.

A region or depth is a ``Placement`` ("cat-1 region left"): an object's own
constraint, checked and reported like a relation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ..scene import Canvas, PlanObject, PlanRelation, ScenePlan
from ..vocab import REGION_THIRDS
from .sizes import canvas_prior, is_backdrop, min_size

Box = Sequence[float]

TOUCH = 0.02  # how far above the object's top edge an `on` subject may end and still "touch" it
OVERLAP_BOUND = 0.10  # unrelated boxes: intersection / smaller area stays at or below this
EPS = 1e-9  # float slack for the non-strict tests (inside, gaps)

# Predicates whose boxes may overlap each other (and, through chains, their
# references' references): a cup on a book on a table may overlap the table.
OVERLAPPING = frozenset({"on", "under", "inside", "in_front_of", "behind"})


def centre(b: Box) -> tuple[float, float]:
    return ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0)


def _d(s: Box, o: Box) -> tuple[float, float]:
    (sx, sy), (ox, oy) = centre(s), centre(o)
    return sx - ox, sy - oy


def gaps(s: Box, o: Box) -> tuple[float, float]:
    """Horizontal and vertical gap between two boxes (0 when they overlap on that axis)."""
    gx = max(0.0, o[0] - s[2], s[0] - o[2])
    gy = max(0.0, o[1] - s[3], s[1] - o[3])
    return gx, gy


def area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def overlap_fraction(a: Box, b: Box) -> float:
    """Intersection area over the smaller box's area (0 = apart, 1 = one covers the other)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(min(area(a), area(b)), 1e-12)


def relation_holds(predicate: str, subject_box: Box, object_box: Box, object2_box: Box | None = None) -> bool:
    """Does ``subject predicate object [object2]`` hold for these boxes? (plan-format.md)"""
    s, o = subject_box, object_box
    dx, dy = _d(s, o)
    if predicate == "left_of":
        return abs(dx) >= abs(dy) and dx < 0
    if predicate == "right_of":
        return abs(dx) >= abs(dy) and dx > 0
    if predicate == "above":
        return abs(dy) > abs(dx) and dy < 0
    if predicate in ("below", "under"):
        return abs(dy) > abs(dx) and dy > 0
    if predicate == "on":
        touches = o[1] - TOUCH <= s[3] <= (o[1] + o[3]) / 2.0
        return relation_holds("above", s, o) and touches and s[0] < o[2] and s[2] > o[0]
    if predicate == "next_to":
        side = relation_holds("left_of", s, o) or relation_holds("right_of", s, o)
        return side and gaps(s, o)[0] <= min(s[2] - s[0], o[2] - o[0]) + EPS
    if predicate == "near":
        gx, gy = gaps(s, o)
        return gx <= min(s[2] - s[0], o[2] - o[0]) + EPS and gy <= min(s[3] - s[1], o[3] - o[1]) + EPS
    if predicate == "in_front_of":
        return s[3] > o[3]
    if predicate == "behind":
        return s[3] < o[3]
    if predicate == "inside":
        return s[0] >= o[0] - EPS and s[1] >= o[1] - EPS and s[2] <= o[2] + EPS and s[3] <= o[3] + EPS
    if predicate == "between":
        if object2_box is None:
            raise ValueError("'between' needs a second reference box")
        (ax, ay), (bx, by), (sx, sy) = centre(o), centre(object2_box), centre(s)
        if abs(ax - bx) >= abs(ay - by):
            return min(ax, bx) < sx < max(ax, bx)
        return min(ay, by) < sy < max(ay, by)
    raise ValueError(f"unknown predicate {predicate!r}")


def why_not(predicate: str, s: Box, o: Box, o2: Box | None = None) -> str:
    """A short human reason for a failed relation (used in Violation.reason)."""
    dx, dy = _d(s, o)
    if predicate in ("left_of", "right_of", "above", "below", "under"):
        return f"subject centre is at dx={dx:+.3f}, dy={dy:+.3f} from the object's centre"
    if predicate == "on":
        if not relation_holds("above", s, o):
            return f"not above: dx={dx:+.3f}, dy={dy:+.3f}"
        return f"bottom edge {s[3]:.3f} does not touch the object's upper part ({o[1]:.3f}..{(o[1] + o[3]) / 2:.3f})"
    if predicate in ("next_to", "near"):
        gx, gy = gaps(s, o)
        return f"gaps x={gx:.3f}, y={gy:.3f} (dx={dx:+.3f}, dy={dy:+.3f})"
    if predicate in ("in_front_of", "behind"):
        return f"bottom edges: subject {s[3]:.3f}, object {o[3]:.3f}"
    if predicate == "inside":
        return f"box {[round(v, 3) for v in s]} is not within {[round(v, 3) for v in o]}"
    return "subject centre is not between the two references' centres"


# --------------------------------------------------------------------------
# region and depth: an object's own place on the canvas
# --------------------------------------------------------------------------

FRONT_LINE = 2 / 3  # a foreground box's bottom edge lies below this (the lowest third)


@dataclass(frozen=True)
class Placement:
    """An object's ``region`` or ``depth`` as a constraint: ``cat-1 region left``."""

    subject: str
    kind: str  # "region" | "depth"
    value: str

    def __str__(self) -> str:
        return f"{self.subject} {self.kind} {self.value}"


def placements(objects: Iterable[PlanObject]) -> list[Placement]:
    """The region and depth constraints of ``objects``, in object order."""
    out = []
    for o in objects:
        if o.region:
            out.append(Placement(o.id, "region", o.region))
        if o.depth:
            out.append(Placement(o.id, "depth", o.depth))
    return out


def third(v: float) -> int:
    """Which third of the canvas a centre coordinate lies in: 0, 1 or 2."""
    return 0 if v < 1 / 3 else 2 if v > 2 / 3 else 1


def region_holds(region: str, box: Box) -> bool:
    """Is ``box``'s centre in the thirds ``region`` names? (plan-format.md: thirds of width and height;
    ``center`` is the middle third both ways, ``top`` the top third at any column; ``vocab.REGION_THIRDS``.)"""
    column, row = REGION_THIRDS[region]
    cx, cy = centre(box)
    return (column is None or third(cx) == column) and (row is None or third(cy) == row)


@dataclass(frozen=True)
class DepthPrior:
    """What ``depth`` compares a box with: the object's prior box and the smallest box allowed."""

    prior: tuple[float, float]
    floor: tuple[float, float]
    backdrop: bool  # mountains, sky...: any size in the background

    @classmethod
    def of(cls, obj: PlanObject, canvas: Canvas) -> "DepthPrior":
        W, H = canvas.width, canvas.height
        return cls(canvas_prior(obj.name, obj.size, W, H), min_size(W, H), is_backdrop(obj.name))

    def larger(self, b: Box) -> bool:
        return area(b) > self.prior[0] * self.prior[1]

    def smaller(self, b: Box) -> bool:
        at_floor = b[2] - b[0] <= self.floor[0] + 2e-3 and b[3] - b[1] <= self.floor[1] + 2e-3
        return self.backdrop or area(b) < self.prior[0] * self.prior[1] or at_floor


def foreground_ids(items: Iterable[Placement]) -> list[str]:
    return [p.subject for p in items if p.kind == "depth" and p.value == "foreground"]


def placement_problem(p: Placement, boxes: dict[str, Box], prior: DepthPrior | None, fronts: Iterable[str]) -> str | None:
    """Why ``p`` does not hold for ``boxes``; None when it does. ``prior`` is the subject's (depth
    only); ``fronts`` the foreground objects a background one must sit higher than."""
    b = boxes[p.subject]
    if p.kind == "region":
        if region_holds(p.value, b):
            return None
        cx, cy = centre(b)
        return f"box centre ({cx:.3f}, {cy:.3f}) is not in the {p.value.replace('_', ' ')} of the canvas"
    assert prior is not None
    if p.value == "foreground":
        if b[3] <= FRONT_LINE:
            return f"bottom edge {b[3]:.3f} is not in the lowest third"
        if not prior.larger(b):
            return f"box area {area(b):.4f} is not larger than the prior {prior.prior[0] * prior.prior[1]:.4f}"
        return None
    if not prior.smaller(b):
        return f"box area {area(b):.4f} is not smaller than the prior {prior.prior[0] * prior.prior[1]:.4f}"
    lower = [f for f in fronts if f != p.subject and f in boxes and boxes[f][3] <= b[3]]
    if lower:
        return f"bottom edge {b[3]:.3f} is not higher than the foreground {', '.join(lower)}"
    return None


def check_placements(boxes: dict[str, Box], objects: Iterable[PlanObject], canvas: Canvas,
                     skip: Iterable[str] = ()) -> list["Violation"]:
    """Violations of the objects' regions and depths by ``boxes`` (objects in ``skip`` are not checked
    themselves, but still count as foreground for the others)."""
    objects = list(objects)
    by_id = {o.id: o for o in objects}
    items = placements(objects)
    fronts, skipped = foreground_ids(items), set(skip)
    out = []
    for p in items:
        if p.subject in skipped or p.subject not in boxes:
            continue
        prior = DepthPrior.of(by_id[p.subject], canvas) if p.kind == "depth" else None
        problem = placement_problem(p, boxes, prior, fronts)
        if problem:
            out.append(Violation(p, problem))
    return out


@dataclass(frozen=True)
class Violation:
    """A relation (or a region / depth ``Placement``) of a plan that its boxes do not satisfy, and why."""

    relation: PlanRelation | Placement
    reason: str

    def __str__(self) -> str:
        return f"{self.relation}: {self.reason}"


def in_reading_order(relations: Iterable[PlanRelation], items: Iterable[Placement]) -> list:
    """Relations in their own order, each with its subject's placements just before it and its
    object's just after ("cat-1 region right, cat-1 left_of dog-1, dog-1 region left"); placements
    of objects no relation names come last. Conflict messages read like the prompt this way."""
    items = list(items)
    out: list = []

    def take(oid: str | None) -> None:
        out.extend(p for p in items if p.subject == oid and p not in out)

    for r in relations:
        take(r.subject)
        out.append(r)
        take(r.object)
        take(r.object2)
    out.extend(p for p in items if p not in out)
    return out


def check_relations(boxes: dict[str, Box], relations: Iterable[PlanRelation]) -> list[Violation]:
    """Violations of ``relations`` by ``boxes`` (id -> box); unknown ids are violations too."""
    out = []
    for r in relations:
        missing = [i for i in (r.subject, r.object, r.object2) if i is not None and i not in boxes]
        if missing:
            out.append(Violation(r, f"unknown object id(s): {', '.join(missing)}"))
            continue
        o2 = boxes[r.object2] if r.object2 else None
        if not relation_holds(r.predicate, boxes[r.subject], boxes[r.object], o2):
            out.append(Violation(r, why_not(r.predicate, boxes[r.subject], boxes[r.object], o2)))
    return out


def check_plan(plan: ScenePlan) -> list[Violation]:
    """Which of the plan's relations, regions and depths its boxes violate (empty list: all hold)."""
    boxes = {o.id: tuple(o.box) for o in plan.objects}
    return check_relations(boxes, plan.relations) + check_placements(boxes, plan.objects, plan.canvas)


def overlap_allowed(relations: Iterable[PlanRelation]) -> set[frozenset[str]]:
    """Pairs of ids whose boxes may overlap: directly related pairs, pairs
    joined by a chain of ``OVERLAPPING`` relations followed subject -> object
    (cup on book on table), and containers of one subject (tulips in a vase in
    a window: vase and window both hold them). Every other pair is "unrelated"."""
    allowed: set[frozenset[str]] = set()
    support: dict[str, set[str]] = {}
    containers: dict[str, list[str]] = {}
    for r in relations:
        for other in (r.object, r.object2):
            if other is not None and other != r.subject:
                allowed.add(frozenset((r.subject, other)))
        if r.predicate in OVERLAPPING:
            support.setdefault(r.subject, set()).add(r.object)
        if r.predicate == "inside":
            containers.setdefault(r.subject, []).append(r.object)
    for held in containers.values():
        allowed.update(frozenset((a, b)) for a in held for b in held if a != b)
    for start in support:  # transitive closure along support edges (tiny graphs)
        stack, seen = list(support[start]), set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node != start:
                allowed.add(frozenset((start, node)))
            stack.extend(support.get(node, ()))
    return allowed


def overlap_violations(
    boxes: dict[str, Box], relations: Iterable[PlanRelation], bound: float = OVERLAP_BOUND
) -> list[tuple[str, str, float]]:
    """Unrelated pairs whose overlap exceeds ``bound``: ``(id_a, id_b, fraction)``."""
    allowed = overlap_allowed(relations)
    ids = list(boxes)
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if frozenset((a, b)) in allowed:
                continue
            f = overlap_fraction(boxes[a], boxes[b])
            if f > bound:
                out.append((a, b, f))
    return out
