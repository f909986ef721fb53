"""Random scenes whose relations are known to be satisfiable, for the property
tests and the benchmark.

A *witness* layout is drawn first (groups of instances in rows, some resting
on, inside or in front of others); then group-level relations that hold for
every instance pair of the witness are sampled and expanded like
planner/expand.py does. The witness proves the set satisfiable under the
solver's own rules (margins, minimum box size, unrelated overlap bound), so a
solver failure on such a scene is a solver bug, not a contradiction.

With ``placements``, one group may get a foreground box first (along the
bottom, larger than its prior), and groups get the regions and depths their
witness boxes satisfy with room to spare (centres clear of the thirds' edges,
sides clear of the prior by the LP's ``DEPTH_STEP``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..scene import Canvas, PlanObject, PlanRelation
from ..vocab import PREDICATE_NAMES, REGION_THIRDS
from .check import FRONT_LINE, DepthPrior, overlap_violations, relation_holds, third
from .lp import DEPTH_STEP
from .sizes import min_size

NAMES = ("cat", "dog", "apple", "table", "person", "car", "bird", "vase", "book", "tree", "bed", "cup", "kite")
CANVASES = ((512, 512), (768, 512), (512, 768), (1024, 512), (512, 1024), (640, 480), (1024, 1024), (384, 896))
WITNESS_MARGIN = 0.025

Box = tuple[float, float, float, float]


@dataclass
class Scene:
    objects: list[PlanObject]
    relations: list[PlanRelation]
    canvas: Canvas
    witness: dict[str, Box]


def _row(region: Box, n: int, mw: float, mh: float) -> list[Box] | None:
    """``n`` equal boxes side by side filling ``region`` (None if they would be too small)."""
    x0, y0, x1, y1 = region
    gap = 0.1 * (x1 - x0) / n if n > 1 else 0.0
    w = ((x1 - x0) - gap * (n - 1)) / n
    if w < mw * 1.05 or (y1 - y0) < mh * 1.05:
        return None
    return [(x0 + k * (w + gap), y0, x0 + k * (w + gap) + w, y1) for k in range(n)]


def _free_region(rng: random.Random, n: int, taken: list[Box], lo: float, hi: float, grow: float = 1.0) -> Box | None:
    """A region for a row of ``n`` that overlaps no region placed so far (``grow``: for references)."""
    for _ in range(40):
        w = min(hi - lo, grow * rng.uniform(0.12, 0.35) * (1 + 0.6 * (n - 1)))
        h = min(hi - lo, grow * rng.uniform(0.12, 0.35))
        x0, y0 = rng.uniform(lo, hi - w), rng.uniform(lo, hi - h)
        box = (x0, y0, x0 + w, y0 + h)
        if all(min(box[2], t[2]) <= max(box[0], t[0]) or min(box[3], t[3]) <= max(box[1], t[1]) for t in taken):
            return box
    return None


def _attached_region(rng: random.Random, kind: str, ref: Box, lo: float, hi: float, least: float) -> Box:
    """A region resting on, inside or in front of ``ref``, at least ``least`` wide."""
    rx0, ry0, rx1, ry1 = ref
    w = max(least, (rx1 - rx0) * rng.uniform(0.3, 0.8))
    x0 = rx0 + 0.02 + rng.uniform(0, max(0.0, (rx1 - rx0) - w - 0.04))
    if kind == "on":
        w = max(least, min(w, 0.25 * (rx1 - rx0) + 0.1))  # narrow enough to stay above the reference's centre
        x0 = (rx0 + rx1) / 2 - w / 2 + rng.uniform(-0.1, 0.1) * (rx1 - rx0)
        h = rng.uniform(0.12, 0.3)
        bottom = ry0 + rng.uniform(0.0, 0.35) * (ry1 - ry0)
        return _clamp((x0, max(lo, bottom - h), x0 + w, bottom), lo, hi)
    if kind == "inside":
        h = (ry1 - ry0) * rng.uniform(0.4, 0.8)
        y0 = ry0 + 0.02 + rng.uniform(0, max(0.0, (ry1 - ry0) - h - 0.04))
        return _clamp((x0, y0, x0 + w, y0 + h), lo, hi)
    y1 = min(hi, ry1 + rng.uniform(0.03, 0.15))
    return _clamp((x0, max(lo, y1 - (ry1 - ry0) * 0.8), x0 + w, y1), lo, hi)


def _clamp(b: Box, lo: float, hi: float) -> Box:
    """Shift a region into [lo, hi] (shrinking it only if it is wider than that)."""
    w, h = min(b[2] - b[0], hi - lo), min(b[3] - b[1], hi - lo)
    x0, y0 = min(max(b[0], lo), hi - w), min(max(b[1], lo), hi - h)
    return (x0, y0, x0 + w, y0 + h)


def _robust(p: str, s: Box, o: Box, o2: Box | None, d: float = 0.012) -> bool:
    if o2 is not None:  # the references must be clearly further apart on one axis
        (ax, ay), (bx, by) = ((o[0] + o[2]) / 2, (o[1] + o[3]) / 2), ((o2[0] + o2[2]) / 2, (o2[1] + o2[3]) / 2)
        if abs(abs(ax - bx) - abs(ay - by)) < d:
            return False
    shifts = ((0, 0), (d, 0), (-d, 0), (0, d), (0, -d))
    return all(relation_holds(p, (s[0] + x, s[1] + y, s[2] + x, s[3] + y), o, o2) for x, y in shifts)


def _front_box(rng: random.Random, name: str, W: int, H: int, lo: float, hi: float) -> Box | None:
    """A foreground witness box for ``name``: larger than its prior on each side, along the bottom."""
    pw, ph = DepthPrior.of(PlanObject(id="x", name=name, phrase=name), Canvas(width=W, height=H)).prior
    k = rng.uniform(1.2, 1.35)
    w, h = k * pw, k * ph
    if w > hi - lo or h > hi - lo - 0.05:
        return None
    x0, y1 = rng.uniform(lo, hi - w), hi - rng.uniform(0.0, 0.03)
    return (x0, y1 - h, x0 + w, y1)


def _robust_region(boxes: list[Box], rng: random.Random, pad: float = 0.03) -> str | None:
    """A region every box's centre lies in with ``pad`` to spare (chosen at random among those), or None."""
    columns, rows = set(), set()
    for b in boxes:
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        columns.add(third(cx) if third(cx - pad) == third(cx + pad) else -1)
        rows.add(third(cy) if third(cy - pad) == third(cy + pad) else -1)
    col = columns.pop() if len(columns) == 1 else -1
    row = rows.pop() if len(rows) == 1 else -1
    options = [name for name, (c, r) in REGION_THIRDS.items()
               if (c is None or c == col) and (r is None or r == row)]
    return rng.choice(options) if options else None


def _robust_depth(obj: PlanObject, boxes: list[Box], fronts: list[Box], canvas: Canvas) -> str | None:
    """``foreground`` / ``background`` when every box keeps the rule with the LP's margins, else None."""
    prior = DepthPrior.of(obj, canvas)
    (pw, ph), (fw, fh) = prior.prior, prior.floor
    big = 1 + DEPTH_STEP + 0.03
    if all(b[3] > FRONT_LINE + 0.03 and b[2] - b[0] > big * pw and b[3] - b[1] > big * ph for b in boxes):
        return "foreground"
    small = 1 - DEPTH_STEP - 0.03
    if all((b[2] - b[0] < max(small * pw, fw) and b[3] - b[1] < max(small * ph, fh) or prior.backdrop)
           and all(b[3] < f[3] - 0.03 for f in fronts) for b in boxes):
        return "background"
    return None


def random_scene(
    rng: random.Random, instances: int = 8, max_relations: int | None = None, canvas: tuple[int, int] | None = None,
    placements: bool = False,
) -> Scene | None:
    """A random satisfiable scene of ``instances`` instances in groups of 1-3, or
    None when this draw's witness breaks a rule (draw again). ``placements``: with
    regions and depths (see the module docstring). The witness (boxes) is drawn first,
    then relations that hold on it are chosen, so the scene is satisfiable by construction."""
    W, H = canvas or rng.choice(CANVASES)
    groups = _draw_groups(rng, instances)
    attached = _draw_attachments(rng, groups)
    regions = _draw_regions(rng, groups, attached, W, H, placements)
    if regions is None:
        return None
    regions, front = regions
    drawn = _instances(groups, regions, front, W, H)
    if drawn is None:
        return None
    objects, ids, witness = drawn
    relations = _true_relations(rng, groups, ids, witness, attached, max_relations)
    if overlap_violations(witness, relations):
        return None
    if placements:
        objects = _placed(objects, ids, witness, Canvas(width=W, height=H), rng)
    return Scene(objects, relations, Canvas(width=W, height=H), witness)


def _draw_groups(rng: random.Random, instances: int) -> list[tuple[str, int]]:
    """(name, count) groups of 1-3 instances, ``instances`` in all."""
    groups: list[tuple[str, int]] = []
    total = 0
    while total < instances:
        n = min(rng.choice((1, 1, 1, 2, 3)), instances - total)
        groups.append((rng.choice(NAMES), n))
        total += n
    return groups


def _draw_attachments(rng: random.Random, groups: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Some groups rest on, sit inside or stand in front of an earlier single-instance group:
    (predicate, group, reference group)."""
    attached: list[tuple[str, int, int]] = []
    for g in range(1, len(groups)):
        ref = rng.randrange(g)
        if groups[ref][1] == 1 and ref not in {a for _, a, _ in attached} and rng.random() < 0.4:
            attached.append((rng.choice(("on", "inside", "in_front_of")), g, ref))
    return attached


def _draw_regions(rng: random.Random, groups: list[tuple[str, int]], attached: list[tuple[str, int, int]],
                  W: int, H: int, placements: bool) -> tuple[dict[int, Box], int | None] | None:
    """Each group's region on the canvas, and the group standing in the foreground (with ``placements``:
    one lone, unattached group, sometimes); None when a region does not fit."""
    mw, _mh = min_size(W, H)
    lo, hi = WITNESS_MARGIN, 1 - WITNESS_MARGIN
    refs = {ref for _, _, ref in attached}
    attached_groups = {a for _, a, _ in attached}
    regions: dict[int, Box] = {}
    front = None
    if placements:
        lone = [g for g, (_, n) in enumerate(groups) if n == 1 and g not in refs and g not in attached_groups]
        if lone and rng.random() < 0.6:
            front = rng.choice(lone)
            box = _front_box(rng, groups[front][0], W, H, lo, hi)
            if box is None:
                return None
            regions[front] = box
    for g, (_, n) in enumerate(groups):
        if g in attached_groups or g in regions:
            continue
        region = _free_region(rng, n, list(regions.values()), lo, hi, grow=2.0 if g in refs else 1.0)
        if region is None:
            return None
        regions[g] = region
    for kind, g, ref in attached:
        n = groups[g][1]
        regions[g] = _attached_region(rng, kind, regions[ref], lo, hi, least=1.25 * mw * n)
    return regions, front


def _instances(groups: list[tuple[str, int]], regions: dict[int, Box], front: int | None, W: int, H: int
               ) -> tuple[list[PlanObject], list[list[str]], dict[str, Box]] | None:
    """The objects, each group's instance ids, and the witness: a group's instances in a row inside its
    region (the foreground group fills its own); None when a row does not fit."""
    mw, mh = min_size(W, H)
    ids: list[list[str]] = []
    objects, witness, counters = [], {}, {}
    for g, (name, n) in enumerate(groups):
        boxes = [regions[g]] if g == front else _row(regions[g], n, mw, mh)
        if boxes is None:
            return None
        members = []
        for b in boxes:
            counters[name] = counters.get(name, 0) + 1
            iid = f"{name}-{counters[name]}"
            members.append(iid)
            witness[iid] = b
            objects.append(PlanObject(id=iid, name=name, phrase=f"a {name}", group=f"g{g}"))
        ids.append(members)
    return objects, ids, witness


def _true_relations(rng: random.Random, groups: list, ids: list[list[str]], witness: dict[str, Box],
                    attached: list[tuple[str, int, int]], max_relations: int | None) -> list[PlanRelation]:
    """Relations between groups that hold for every instance on the witness: the attachments, then a random
    choice of the others (at most ``max_relations``, else 0 to 3 per group)."""
    def holds_for_all(p: str, a: int, b: int, c: int | None = None) -> bool:
        """Holds for every instance triple, even with the subject nudged a little
        (the solver keeps margins, so a barely-true witness would prove nothing)."""
        return all(_robust(p, witness[s], witness[o], witness[o2] if o2 else None)
                   for s in ids[a] for o in ids[b] for o2 in (ids[c] if c is not None else [None]))

    candidates: list[tuple] = []
    for a in range(len(groups)):
        for b in range(len(groups)):
            if a == b:
                continue
            candidates += [(p, a, b) for p in PREDICATE_NAMES if p != "between" and holds_for_all(p, a, b)]
            for c in range(b + 1, len(groups)):
                if c != a and holds_for_all("between", a, b, c):
                    candidates.append(("between", a, b, c))
    rng.shuffle(candidates)
    limit = max_relations if max_relations is not None else rng.randint(0, 3 * len(groups))
    forced = [(p, g, ref) for p, g, ref in attached if holds_for_all(p, g, ref)]  # overlapping by design
    chosen = forced + [c for c in candidates if c not in forced][:max(0, limit - len(forced))]
    relations = []
    for p, a, b, *c in chosen:
        for s in ids[a]:
            for o in ids[b]:
                if c:
                    relations += [PlanRelation(subject=s, predicate=p, object=o, object2=o2) for o2 in ids[c[0]]]
                else:
                    relations.append(PlanRelation(subject=s, predicate=p, object=o))
    return relations


def _placed(objects: list[PlanObject], ids: list[list[str]], witness: dict[str, Box], canvas: Canvas,
            rng: random.Random) -> list[PlanObject]:
    """``objects`` with regions and depths their group's witness boxes keep robustly (some groups only)."""
    by_id = {o.id: o for o in objects}
    depth: dict[str, str | None] = {}
    for members in ids:
        boxes = [witness[i] for i in members]
        depth.update(dict.fromkeys(members, _robust_depth(by_id[members[0]], boxes, [], canvas)
                                   if len(members) == 1 else None))
    fronts = [witness[i] for i, d in depth.items() if d == "foreground"]
    update: dict[str, dict] = {}
    for members in ids:
        boxes = [witness[i] for i in members]
        d = depth[members[0]]
        if d == "background" or d is None:  # background only above every foreground box
            d = _robust_depth(by_id[members[0]], boxes, fronts, canvas)
            d = d if d == "background" and rng.random() < 0.5 else None
        region = _robust_region(boxes, rng) if rng.random() < 0.5 else None
        update.update(dict.fromkeys(members, {"region": region, "depth": d}))
    return [o.model_copy(update=update[o.id]) for o in objects]
