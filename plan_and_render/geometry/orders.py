"""Relations as orders along axes: the contradiction checks and the hints that
steer choices (which side for `next_to`, which axis for `between`).

An edge u -> v means "u comes first": further left (x), higher up (y), further
back (depth: smaller bottom edge), contained in (containment). A cycle in any
of them can never hold, whatever the boxes.
"""

from __future__ import annotations

from ..scene import PlanRelation
from ..vocab import ORDER_AXES as ORDER



def order_edges(relations: list[PlanRelation]) -> dict[str, dict[str, dict[str, PlanRelation]]]:
    """axis -> u -> v -> the (first) relation that puts u before v."""
    axes: dict[str, dict[str, dict[str, PlanRelation]]] = {}
    for r in relations:
        if r.predicate not in ORDER:
            continue
        axis, flip = ORDER[r.predicate]
        u, v = (r.object, r.subject) if flip else (r.subject, r.object)
        axes.setdefault(axis, {}).setdefault(u, {}).setdefault(v, r)
    return axes


def find_cycle(edges: dict[str, dict[str, PlanRelation]]) -> list[PlanRelation] | None:
    """The relations along one cycle of a small directed graph, or None (iterative DFS)."""
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


def cycles(relations: list[PlanRelation]) -> list[PlanRelation] | None:
    """Relations forming a contradiction on some axis (listed in input order), or None."""
    order = {id(r): i for i, r in enumerate(relations)}
    edges = order_edges(relations)
    for axis in ("x", "y", "depth", "containment"):
        cyc = find_cycle(edges.get(axis, {}))
        if cyc:
            return sorted(cyc, key=lambda r: order[id(r)])
    return None


def reach(edges: dict[str, dict[str, PlanRelation]]) -> dict[str, set[str]]:
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
