"""networkx view and consistency checks: unknown ids, self-relations (the contract), cycles (the planner)."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from plan_and_render.errors import ConflictError, InvalidPromptError
from plan_and_render.planner.graph import check_graph, find_conflicts, to_networkx
from plan_and_render.planner.normalize import normalize_graph
from plan_and_render.scene import GraphObject, GraphRelation, SceneGraph, SceneGraphDraft


def _g(names, relations, counts=None) -> SceneGraph:
    counts = counts or {}
    return SceneGraph(
        objects=[GraphObject(id=n, name=n, count=counts.get(n, 1)) for n in names],
        relations=[
            GraphRelation(subject=s, predicate=p, object=o, object2=(rest[0] if rest else None))
            for s, p, o, *rest in relations
        ],
    )


def test_networkx_view_has_nodes_and_keyed_edges():
    g = _g(["cat", "dog", "bird"], [("cat", "left_of", "dog"), ("bird", "between", "cat", "dog")], {"bird": 2})
    nxg = check_graph(g)
    assert isinstance(nxg, nx.MultiDiGraph)
    assert nxg.nodes["bird"]["count"] == 2
    assert nxg.number_of_edges() == 3  # between gives two edges
    preds = sorted(d["predicate"] for _, _, d in nxg.edges(data=True))
    assert preds == ["between", "between", "left_of"]
    roles = {(u, v): d["role"] for u, v, d in nxg.edges(data=True) if d["predicate"] == "between"}
    assert roles == {("bird", "cat"): "object", ("bird", "dog"): "object2"}
    assert to_networkx(g).number_of_nodes() == 3


@pytest.mark.parametrize(
    "relations, message",
    [
        ([("cat", "left_of", "dog"), ("dog", "left_of", "cat")], "conflicting relations: cat-1 left_of dog-1, dog-1 left_of cat-1"),
        ([("cat", "left_of", "dog"), ("cat", "right_of", "dog")], "cat-1 left_of dog-1, cat-1 right_of dog-1"),
        ([("cat", "above", "dog"), ("cat", "under", "dog")], "cat-1 above dog-1, cat-1 under dog-1"),
        ([("cat", "on", "dog"), ("dog", "on", "cat")], "cat-1 on dog-1, dog-1 on cat-1"),
        ([("cat", "below", "dog"), ("dog", "below", "cat")], "cat-1 below dog-1, dog-1 below cat-1"),
        ([("cat", "inside", "dog"), ("dog", "inside", "cat")], "cat-1 inside dog-1, dog-1 inside cat-1"),
        ([("cat", "in_front_of", "dog"), ("cat", "behind", "dog")], "cat-1 in_front_of dog-1, cat-1 behind dog-1"),
        # one pair in two sectors: the sector rule gives a pair one direction
        ([("cat", "left_of", "dog"), ("cat", "above", "dog")], "cat-1 left_of dog-1, cat-1 above dog-1"),
        ([("cat", "on", "dog"), ("dog", "next_to", "cat")], "cat-1 on dog-1, dog-1 next_to cat-1"),
    ],
)
def test_two_cycles_are_conflicts_naming_the_relations(relations, message):
    with pytest.raises(ConflictError) as err:
        check_graph(_g(["cat", "dog"], relations))
    assert message in str(err.value)
    assert err.value.type == "conflict"
    assert err.value.record("p")["error"]["type"] == "conflict"


def test_three_cycle_names_all_three_relations():
    rels = [("a", "left_of", "b"), ("b", "left_of", "c"), ("c", "left_of", "a"), ("a", "near", "c")]
    with pytest.raises(ConflictError) as err:
        check_graph(_g(["a", "b", "c"], rels))
    msg = str(err.value)
    for text in ("a-1 left_of b-1", "b-1 left_of c-1", "c-1 left_of a-1"):
        assert text in msg
    assert "near" not in msg


def test_cyclic_inside_chain_is_a_conflict():
    rels = [("key", "inside", "box"), ("box", "inside", "bag"), ("bag", "inside", "key")]
    with pytest.raises(ConflictError, match="key-1 inside box-1"):
        check_graph(_g(["key", "box", "bag"], rels))


@pytest.mark.parametrize(
    "relations",
    [
        [("cat", "left_of", "dog"), ("dog", "left_of", "bird"), ("cat", "left_of", "bird")],
        [("cat", "left_of", "dog"), ("cat", "above", "bird")],  # different axes, different pairs
        [("cat", "on", "dog"), ("dog", "above", "bird"), ("bird", "under", "dog")],
        [("cat", "next_to", "dog"), ("dog", "next_to", "cat")],  # symmetric predicates never cycle
        [("cat", "inside", "dog"), ("bird", "inside", "dog")],
        [("cat", "between", "dog", "bird"), ("dog", "left_of", "bird")],
    ],
)
def test_consistent_graphs_pass(relations):
    check_graph(_g(["cat", "dog", "bird"], relations))


@pytest.mark.parametrize(
    "relations, counts, fragment",
    [
        ([("cat", "left_of", "unicorn")], {}, "unknown object 'unicorn'"),
        ([("ghost", "near", "cat")], {}, "unknown object 'ghost'"),
        ([("cat", "between", "dog", "ghost")], {}, "unknown object 'ghost'"),
        ([("cat", "left_of", "cat")], {}, "relates an object to itself"),
        ([("cat", "left_of", "cat")], {"cat": 3}, "relates an object to itself"),
        ([("cat", "next_to", "cat")], {}, "relates an object to itself"),
        ([("cat", "between", "cat", "dog")], {}, "relates an object to itself"),
        ([("cat", "between", "dog", "dog")], {}, "two different references"),
    ],
)
def test_bad_references_are_invalid_prompts(relations, counts, fragment):
    """SceneGraph refuses them itself; a model's draft that has them is the prompt's error."""
    with pytest.raises(ValidationError, match=fragment):
        _g(["cat", "dog"], relations, counts)
    draft = SceneGraphDraft.model_validate(_g(["cat", "dog"], [], counts).model_dump() | {"relations": [
        {"subject": s, "predicate": p, "object": o, "object2": rest[0] if rest else None} for s, p, o, *rest in relations]})
    with pytest.raises(InvalidPromptError) as err:
        normalize_graph(draft, "a cat and a dog")
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_group_conflicts_name_the_instances():
    with pytest.raises(ConflictError, match="bird-1..bird-3 above cat-1, cat-1 above bird-1..bird-3"):
        check_graph(_g(["bird", "cat"], [("bird", "above", "cat"), ("cat", "above", "bird")], {"bird": 3}))


def test_group_relations_allowed():
    # "two cats next to each other", "a dog between two trees"
    check_graph(_g(["cat", "dog"], [("cat", "next_to", "cat"), ("dog", "between", "cat", "cat")], {"cat": 2}))


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), max_size=12))
def test_left_of_conflict_iff_order_has_a_cycle(pairs):
    """Property: left_of edges are accepted exactly when they form a DAG."""
    names = [f"o{i}" for i in range(5)]
    rels = [(names[a], "left_of", names[b]) for a, b in pairs if a != b]
    dag = nx.DiGraph([(s, o) for s, _, o in rels])
    g = _g(names, rels)
    if nx.is_directed_acyclic_graph(dag):
        check_graph(g)
        assert find_conflicts(g) == []
    else:
        with pytest.raises(ConflictError) as err:
            check_graph(g)
        # the named relations really form a cycle
        named = [part.strip().split(" left_of ") for part in str(err.value).split(":", 1)[1].split(",")]
        assert all(a.endswith("-1") and b.endswith("-1") for a, b in named)
        cyc = nx.DiGraph([tuple(p) for p in named])
        assert not nx.is_directed_acyclic_graph(cyc)


@given(st.permutations(["a", "b", "c", "d"]))
def test_any_total_order_is_consistent(order):
    rels = [(x, "left_of", y) for x, y in itertools.pairwise(order)]
    rels += [(y, "right_of", x) for x, y in itertools.pairwise(order)]
    check_graph(_g(["a", "b", "c", "d"], rels))
