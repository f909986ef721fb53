"""Relations as orders along axes: the contradiction checks and the hints that
steer choices (which side for `next_to`, which axis for `between`).

An edge u -> v means "u comes first": further left (x), higher up (y), further
back (depth: smaller bottom edge), contained in (containment). A cycle in any
of them can never hold, whatever the boxes.
"""

from __future__ import annotations

from typing import Iterable, Union

from ..scene import PlanRelation
from ..vocab import ORDER_AXES as ORDER
from ..vocab import REGION_THIRDS
from .check import Placement, in_reading_order

# Why u comes before v: a relation, or two placements ("a region left, b region right")
Reason = Union[PlanRelation, tuple[Placement, Placement]]


def placement_edges(items: Iterable[Placement]) -> list[tuple[str, str, str, tuple[Placement, Placement]]]:
    """``(axis, u, v, (why u, why v))`` for every pair of objects whose placements order them:
    a lower column (row) of thirds is further left (up) on x (y); a background object is
    further back than a foreground one (its bottom edge is higher, as with ``behind``)."""
    items = list(items)
    out = []
    for a in items:
        for b in items:
            if a.subject == b.subject:
                continue
            if a.kind == b.kind == "region":
                (ca, ra), (cb, rb) = REGION_THIRDS[a.value], REGION_THIRDS[b.value]
                if ca is not None and cb is not None and ca < cb:
                    out.append(("x", a.subject, b.subject, (a, b)))
                if ra is not None and rb is not None and ra < rb:
                    out.append(("y", a.subject, b.subject, (a, b)))
            elif a.kind == b.kind == "depth" and (a.value, b.value) == ("background", "foreground"):
                out.append(("depth", a.subject, b.subject, (a, b)))
    return out


def order_edges(relations: list[PlanRelation], items: Iterable[Placement] = ()
                ) -> dict[str, dict[str, dict[str, Reason]]]:
    """axis -> u -> v -> the (first) relation, or pair of placements, that puts u before v."""
    axes: dict[str, dict[str, dict[str, Reason]]] = {}
    for r in relations:
        if r.predicate not in ORDER:
            continue
        axis, flip = ORDER[r.predicate]
        u, v = (r.object, r.subject) if flip else (r.subject, r.object)
        axes.setdefault(axis, {}).setdefault(u, {}).setdefault(v, r)
    for axis, u, v, why in placement_edges(items):
        axes.setdefault(axis, {}).setdefault(u, {}).setdefault(v, why)
    return axes


def find_cycle(edges: dict[str, dict[str, Reason]]) -> list[Reason] | None:
    """The reasons along one cycle of a small directed graph, or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in list(edges):
        if state.get(root):
            continue
        path: list[str] = [root]
        iters = [iter(edges.get(root, {}))]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            if state.get(nxt) == 1:  # back edge: the cycle is path[i:] + nxt
                cyc = path[path.index(nxt):] + [nxt]
                return [edges[a][b] for a, b in zip(cyc, cyc[1:])]
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(edges.get(nxt, {})))
    return None


def cycles(relations: list[PlanRelation], items: Iterable[Placement] = ()) -> list | None:
    """Relations and placements forming a contradiction on some axis, or None; listed as
    ``check.in_reading_order`` does ("cat-1 region right, cat-1 left_of dog-1, dog-1 region left")."""
    order = {id(r): i for i, r in enumerate(relations)}
    edges = order_edges(relations, items)
    for axis in ("x", "y", "depth", "containment"):
        cyc = find_cycle(edges.get(axis, {}))
        if cyc:
            rels = sorted((r for r in cyc if not isinstance(r, tuple)), key=lambda r: order[id(r)])
            places = [p for why in cyc if isinstance(why, tuple) for p in why]
            return in_reading_order(rels, dict.fromkeys(places))
    return None


def reach(edges: dict[str, dict[str, Reason]]) -> dict[str, set[str]]:
    """node -> every node after it (transitive closure; graphs are tiny)."""
    out: dict[str, set[str]] = {}
    for start in edges:
        seen: set[str] = set()
        stack = list(edges[start])
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(edges.get(n, {}))
        out[start] = seen
    return out


def before(closure: dict[str, set[str]], a: str, b: str) -> bool:
    return b in closure.get(a, ())
