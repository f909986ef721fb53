"""A networkx view of the scene graph, and the checks that need one.

A plan whose relations cannot all hold must be an error rather than a bad
picture. Each ordering predicate is an edge in a per-axis order graph
(left/right, above/below, front/back, containment); a cycle in any of them is
a contradiction, reported with the relations that form it. (That ids exist and
are unique is the contract's check: ``SceneGraph`` validates itself, and
``normalize.build_graph`` turns its refusal into the prompt's error.)
"""

from __future__ import annotations

import networkx as nx

from ..errors import ConflictError
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


def _order_graphs(graph: SceneGraph) -> dict[str, nx.DiGraph]:
    axes: dict[str, nx.DiGraph] = {}
    for r in graph.relations:
        if r.predicate not in ORDER_AXES:
            continue
        axis, flip = ORDER_AXES[r.predicate]
        u, v = (r.object, r.subject) if flip else (r.subject, r.object)
        g = axes.setdefault(axis, nx.DiGraph())
        if g.has_edge(u, v):
            g[u][v]["relations"].append(r)
        else:
            g.add_edge(u, v, relations=[r])
    return axes


def find_conflicts(graph: SceneGraph) -> list[list[GraphRelation]]:
    """Every contradiction found: one list of relations per cycle (first cycle per
    axis), listed in the graph's own order so messages read like the prompt."""
    conflicts = []
    for axis, g in _order_graphs(graph).items():
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            continue
        rels = [g[u][v]["relations"][0] for u, v in cycle]
        order = {id(r): i for i, r in enumerate(graph.relations)}
        conflicts.append(sorted(rels, key=lambda r: order[id(r)]))  # in the prompt's order
    return conflicts


def instance_label(graph: SceneGraph) -> dict[str, str]:
    """Group id -> how plans name it: ``cat-1``, or ``bird-1..bird-3`` for a group,
    so conflict messages use the ids of plan-format.md."""
    labels = {}
    for gid, ids in instance_ids(graph).items():
        labels[gid] = ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"
    return labels


def conflict_message(graph: SceneGraph, relations: list[GraphRelation]) -> str:
    label = instance_label(graph)
    parts = []
    for r in relations:
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
