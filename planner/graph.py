"""A networkx view of the scene graph, and the checks that need one.

A plan whose relations cannot all hold must be an error rather than a bad
picture. Each ordering predicate is an edge in a per-axis order graph
(left/right, above/below, front/back, containment), and so is each pair of
objects whose regions or depths order them (a ``left`` region before a
``right`` one, the background behind the foreground); a cycle in any of them
is a contradiction, reported with the relations and placements that form it:
"cat-1 region right, cat-1 left_of dog-1, dog-1 region left". So is one pair
related both sideways and up/down ("a cup on a table" and "the cup left of the
table"): the sector rule gives each pair one direction. (That ids exist and
are unique is the contract's check: ``SceneGraph`` validates itself, and
``normalize.build_graph`` turns its refusal into the prompt's error.)
"""

from __future__ import annotations

import networkx as nx

from ..errors import ConflictError
from ..geometry.check import Placement, in_reading_order
from ..geometry.orders import placement_edges
from .expand import instance_ids
from ..scene import GraphRelation, SceneGraph
from ..vocab import ORDER_AXES


def to_networkx(graph: SceneGraph) -> nx.MultiDiGraph:
    """Objects as nodes (name, count, attributes), relations as edges keyed by
    predicate. ``between`` gives two edges (role ``object`` and ``object2``)."""
    g = nx.MultiDiGraph()
    for o in graph.objects:
        g.add_node(o.id, name=o.name, count=o.count, attributes=list(o.attributes), size=o.size)
    for i, r in enumerate(graph.relations):
        g.add_edge(r.subject, r.object, key=f"{r.predicate}#{i}", predicate=r.predicate, index=i, role="object")
        if r.object2 is not None:
            g.add_edge(r.subject, r.object2, key=f"{r.predicate}#{i}b", predicate=r.predicate, index=i, role="object2")
    return g


def placements(graph: SceneGraph) -> list[Placement]:
    """The groups' regions and depths as placements (by group id)."""
    out = []
    for o in graph.objects:
        if o.region:
            out.append(Placement(o.id, "region", o.region))
        if o.depth:
            out.append(Placement(o.id, "depth", o.depth))
    return out


def _order_graphs(graph: SceneGraph) -> dict[str, nx.DiGraph]:
    axes: dict[str, nx.DiGraph] = {}

    def edge(axis: str, u: str, v: str, why) -> None:
        g = axes.setdefault(axis, nx.DiGraph())
        if g.has_edge(u, v):
            g[u][v]["relations"].append(why)
        else:
            g.add_edge(u, v, relations=[why])

    for r in graph.relations:
        if r.predicate in ORDER_AXES:
            axis, flip = ORDER_AXES[r.predicate]
            edge(axis, *((r.object, r.subject) if flip else (r.subject, r.object)), r)
    for axis, u, v, why in placement_edges(placements(graph)):
        edge(axis, u, v, why)
    return axes


# One sector each (plan-format.md): a pair cannot be related on both axes
_SIDEWAYS = frozenset({"left_of", "right_of", "next_to"})
_UPDOWN = frozenset({"above", "below", "on", "under"})


def _crossed_pairs(graph: SceneGraph) -> list[list[GraphRelation]]:
    """Pairs of relations that put the same two groups in different sectors."""
    seen: dict[frozenset, GraphRelation] = {}
    out = []
    for r in graph.relations:
        if r.subject == r.object or r.object2 is not None:
            continue
        key = frozenset((r.subject, r.object))
        axis = "x" if r.predicate in _SIDEWAYS else "y" if r.predicate in _UPDOWN else None
        if axis is None:
            continue
        other = seen.get((key, "y" if axis == "x" else "x"))
        if other is not None:
            out.append([other, r])
        seen.setdefault((key, axis), r)
    return out


def find_conflicts(graph: SceneGraph) -> list[list[GraphRelation | Placement]]:
    """Every contradiction found: one list per cycle (first cycle per axis) of the relations and
    placements that form it, in the graph's own order (placements next to the relation naming
    their object) so messages read like the prompt; then pairs related in two sectors."""
    conflicts: list[list[GraphRelation | Placement]] = []
    order = {id(r): i for i, r in enumerate(graph.relations)}
    for axis, g in _order_graphs(graph).items():
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            continue
        reasons = [g[u][v]["relations"][0] for u, v in cycle]
        rels = sorted((r for r in reasons if isinstance(r, GraphRelation)), key=lambda r: order[id(r)])
        places = dict.fromkeys(p for why in reasons if isinstance(why, tuple) for p in why)
        conflicts.append(in_reading_order(rels, places))
    return conflicts + _crossed_pairs(graph)


def instance_label(graph: SceneGraph) -> dict[str, str]:
    """Group id -> how plans name it: ``cat-1``, or ``bird-1..bird-3`` for a group,
    so conflict messages use the ids of plan-format.md."""
    labels = {}
    for gid, ids in instance_ids(graph).items():
        labels[gid] = ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"
    return labels


def conflict_message(graph: SceneGraph, relations: list[GraphRelation | Placement]) -> str:
    label = instance_label(graph)
    parts = []
    for r in relations:
        if isinstance(r, Placement):
            parts.append(f"{label.get(r.subject, r.subject)} {r.kind} {r.value}")
            continue
        tail = f" and {label.get(r.object2, r.object2)}" if r.object2 else ""
        parts.append(f"{label.get(r.subject, r.subject)} {r.predicate} {label.get(r.object, r.object)}{tail}")
    return "conflicting relations: " + ", ".join(parts)


def check_graph(graph: SceneGraph) -> nx.MultiDiGraph:
    """Check that the relations can all hold; return the networkx view.

    Raises ``ConflictError`` naming the relations of a cycle, with the
    instance ids of the plan: "cat-1 left_of dog-1, dog-1 left_of cat-1".
    (Unknown ids and self-relations never get this far: ``SceneGraph`` refuses them.)
    """
    conflicts = find_conflicts(graph)
    if conflicts:
        raise ConflictError(conflict_message(graph, conflicts[0]))
    return to_networkx(graph)
