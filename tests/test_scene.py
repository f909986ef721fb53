"""The scene contract checks itself: ScenePlan and SceneGraph refuse what plan-format.md forbids."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from plan_and_render import scene
from plan_and_render.app.api import parse_plan
from plan_and_render.errors import UsageError
from plan_and_render.scene import (
    MAX_PLAN_OBJECTS,
    MAX_PLAN_RELATIONS,
    GraphObject,
    GraphRelation,
    PlanObject,
    PlanRelation,
    SceneGraph,
    SceneGraphDraft,
    ScenePlan,
    first_error,
)
from plan_and_render.vocab import DEPTHS, PREDICATE_NAMES, REGIONS, Depth, Predicate, Region


def obj(oid: str, **kw) -> dict:
    return {"id": oid, "name": oid.split("-")[0], "phrase": f"a {oid.split('-')[0]}", **kw}


def rel(subject: str, predicate: str, object_: str, object2: str | None = None) -> dict:
    return {"subject": subject, "predicate": predicate, "object": object_, "object2": object2}


def plan(objects=(), relations=(), prompt="a cat and a dog", **kw) -> dict:
    return {"prompt": prompt, "objects": list(objects), "relations": list(relations), **kw}


CAT_DOG = [obj("cat-1"), obj("dog-1")]


def refused(model, data) -> str:
    """The one-line message ``model`` refuses ``data`` with."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return first_error(info.value)


# --------------------------------------------------------------------------
# one vocabulary
# --------------------------------------------------------------------------


def test_each_word_set_is_written_once():
    assert PREDICATE_NAMES == get_args(Predicate) and len(PREDICATE_NAMES) == 12
    assert REGIONS == get_args(Region) and DEPTHS == get_args(Depth) == ("foreground", "background")
    for model, field, names in [(PlanRelation, "predicate", PREDICATE_NAMES), (GraphRelation, "predicate",
                                PREDICATE_NAMES), (PlanObject, "region", REGIONS), (GraphObject, "depth", DEPTHS)]:
        prop = model.model_json_schema()["properties"][field]
        enum = prop.get("enum") or next(a["enum"] for a in prop["anyOf"] if "enum" in a)
        assert tuple(enum) == names, (model, field)
    assert not hasattr(scene, "PREDICATES")  # the old copy is gone


# --------------------------------------------------------------------------
# ScenePlan refuses
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (plan([obj("cat-1"), obj("dog-1"), obj("cat-1")]), "duplicate object id 'cat-1' (objects 0 and 2)"),
        (plan(CAT_DOG, [rel("cat-1", "left_of", "cow-1")]),
         "relation 'cat-1 left_of cow-1' refers to unknown object 'cow-1' (known: cat-1, dog-1)"),
        (plan(CAT_DOG, [rel("cow-1", "near", "cat-1")]), "refers to unknown object 'cow-1'"),
        (plan(CAT_DOG, [rel("cat-1", "between", "dog-1", "cow-1")]), "refers to unknown object 'cow-1'"),
        (plan(CAT_DOG, [rel("cat-1", "left_of", "cat-1")]), "relation 'cat-1 left_of cat-1' relates an object to itself"),
        (plan(CAT_DOG, [rel("cat-1", "next_to", "cat-1")]), "relates an object to itself"),  # no groups in a plan
        (plan(CAT_DOG, [rel("cat-1", "between", "cat-1", "dog-1")]), "relates an object to itself"),
        (plan(CAT_DOG, [rel("cat-1", "between", "dog-1", "dog-1")]),
         "relation 'cat-1 between dog-1 and dog-1' needs two different references"),
        (plan(CAT_DOG, prompt="  \n"), "'prompt' is empty"),
        (plan(CAT_DOG, [rel("cat-1", "between", "dog-1")]),
         "relations.0: 'between' needs a second reference in object2"),
        (plan(CAT_DOG, [rel("cat-1", "left_of", "dog-1", "dog-1")]),
         "relations.0: only 'between' takes object2, not 'left_of'"),
        (plan([obj("cat-1", region="upper_left")]), "objects.0.region: Input should be 'left', 'right', 'top'"),
        (plan([obj("cat-1", depth="middle")]), "objects.0.depth: Input should be 'foreground' or 'background'"),
        (plan([obj("cat-1", box=[0.5, 0.0, 0.5, 1.0])]), "objects.0.box: Value error, box [0.5, 0.0, 0.5, 1.0] must"),
        (plan(CAT_DOG, [rel("cat-1", "beside", "dog-1")]), "relations.0.predicate: Input should be 'left_of'"),
    ],
)
def test_plan_refuses(data, message):
    assert message in refused(ScenePlan, data)


def test_messages_are_one_line_and_count_the_rest():
    bad = plan([obj("cat-1", region="up"), obj("dog-1", depth="far")])
    line = refused(ScenePlan, bad)
    assert line.startswith("objects.0.region: ") and line.endswith(" (and 1 more)") and "\n" not in line


def test_a_blank_plan_needs_no_prompt():
    """The blank canvas a chat session starts from (and an edit that removes everything)."""
    assert ScenePlan.model_validate(plan(prompt="")).objects == []


def test_the_known_ids_are_cut_short_in_big_plans():
    objects = [obj(f"cat-{i}") for i in range(40)]
    line = refused(ScenePlan, plan(objects, [rel("cat-0", "near", "dog-1")]))
    assert "known: cat-0, cat-1," in line and "(28 more)" in line and len(line) < 300


# --------------------------------------------------------------------------
# size limit and linear time
# --------------------------------------------------------------------------


def test_plan_size_is_limited_before_anything_is_read():
    assert len(ScenePlan.model_validate(plan([obj(f"cat-{i}") for i in range(MAX_PLAN_OBJECTS)])).objects) == 256
    assert refused(ScenePlan, plan([obj(f"cat-{i}") for i in range(MAX_PLAN_OBJECTS + 1)])) == \
        f"objects: List should have at most {MAX_PLAN_OBJECTS} items after validation, not {MAX_PLAN_OBJECTS + 1}"
    too_many = [rel("cat-1", "near", "dog-1")] * (MAX_PLAN_RELATIONS + 1)
    assert refused(ScenePlan, plan(CAT_DOG, too_many)).startswith("relations: List should have at most")
    # the file of issue 11: 600,000 objects, each of them invalid - refused for its length alone
    text = json.dumps({"prompt": "cats", "objects": [{"id": "c"}] * 600_000})
    with pytest.raises(UsageError, match=r"^big.json is not a valid scene plan: objects: List should have at most"):
        parse_plan(text, source="big.json")


class _CountedId(str):
    """An id that counts how often it is compared or hashed, and stops a quadratic check early."""

    calls = 0
    budget = 0

    def _count(self) -> None:
        _CountedId.calls += 1
        if _CountedId.calls > _CountedId.budget:
            raise AssertionError("the id checks compare ids more than a linear number of times")

    def __eq__(self, other) -> bool:
        self._count()
        return str.__eq__(self, other)

    def __hash__(self) -> int:
        self._count()
        return str.__hash__(self)


def test_duplicate_ids_are_found_in_linear_time():
    n = 50_000
    ids = [_CountedId(f"cat_{i}") for i in range(n)] + [_CountedId("cat_7")]
    objects = [GraphObject.model_construct(id=i, name="cat", count=1, attributes=[], size=None, region=None,
                                           depth=None) for i in ids]  # unvalidated: keeps the counting ids
    relations = [GraphRelation.model_construct(subject=ids[i], predicate="near", object=ids[i + 1], object2=None)
                 for i in range(0, 200, 2)]
    _CountedId.calls, _CountedId.budget = 0, 8 * (n + 1)
    with pytest.raises(ValidationError, match=rf"duplicate object id 'cat_7' \(objects 7 and {n}\)"):
        SceneGraph.model_validate({"objects": objects, "relations": relations})
    assert _CountedId.calls <= 4 * (n + 1)  # a couple of hashes per id; list.count would need ~n*n/2 comparisons


# --------------------------------------------------------------------------
# region and depth round-trip
# --------------------------------------------------------------------------


def test_region_and_depth_are_optional_and_round_trip():
    data = plan([obj("cat-1", region="top_left", depth="foreground"), obj("dog-1")], [rel("cat-1", "left_of", "dog-1")])
    p = ScenePlan.model_validate(data)
    assert (p.objects[0].region, p.objects[0].depth) == ("top_left", "foreground")
    assert (p.objects[1].region, p.objects[1].depth) == (None, None)
    text = p.to_json()
    assert '"region": "top_left"' in text and '"depth": null' in text
    assert ScenePlan.model_validate(json.loads(text)) == p
    assert parse_plan(text) == p


def test_graph_objects_carry_region_and_depth_to_their_instances():
    from plan_and_render.planner.expand import expand

    g = SceneGraph(objects=[GraphObject(id="bird", name="bird", count=2, region="top_right", depth="background")])
    objects, _ = expand(g)
    assert [(o.id, o.region, o.depth) for o in objects] == [("bird-1", "top_right", "background"),
                                                          ("bird-2", "top_right", "background")]
    assert SceneGraph.model_validate_json(g.model_dump_json()) == g


_ids = st.text(st.characters(codec="utf-8"), min_size=1, max_size=8)
_words = st.text(st.characters(codec="utf-8"), max_size=12)


@st.composite
def _box(draw) -> tuple[float, float, float, float]:
    x = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2, unique=True)))
    y = sorted(draw(st.lists(st.floats(0, 1), min_size=2, max_size=2, unique=True)))
    return (x[0], y[0], x[1], y[1])


@st.composite
def valid_plans(draw) -> ScenePlan:
    ids = draw(st.lists(_ids, max_size=6, unique=True))
    objects = [PlanObject(id=i, name=draw(_words), phrase=draw(_words), attributes=draw(st.lists(_words, max_size=2)),
                          box=draw(_box()), size=draw(st.none() | st.sampled_from(["tiny", "large"])),
                          group=draw(st.none() | _ids), region=draw(st.none() | st.sampled_from(REGIONS)),
                          depth=draw(st.none() | st.sampled_from(DEPTHS))) for i in ids]
    relations = []
    if len(ids) >= 2:
        for _ in range(draw(st.integers(0, 4))):
            s, o = draw(st.lists(st.sampled_from(ids), min_size=2, max_size=2, unique=True))
            p = draw(st.sampled_from(PREDICATE_NAMES))
            rest = [i for i in ids if i not in (s, o)]
            if p == "between" and not rest:
                continue
            relations.append(PlanRelation(subject=s, predicate=p, object=o,
                                          object2=draw(st.sampled_from(rest)) if p == "between" else None))
    prompt = draw(_words.filter(str.strip)) if objects else draw(_words)
    return ScenePlan(prompt=prompt, background=draw(st.none() | _words), negative_prompt=draw(st.none() | _words),
                     objects=objects, relations=relations, warnings=draw(st.lists(_words, max_size=2)))


@given(valid_plans())
def test_any_valid_plan_round_trips_through_json(p):
    assert ScenePlan.model_validate(json.loads(p.to_json())) == p
    assert ScenePlan.model_validate_json(p.to_json(indent=None)) == p


# --------------------------------------------------------------------------
# SceneGraph: groups
# --------------------------------------------------------------------------


def graph(relations, counts=None) -> dict:
    counts = counts or {}
    return {"objects": [{"id": n, "name": n, "count": counts.get(n, 1)} for n in ("cat", "tree")],
            "relations": relations}


@pytest.mark.parametrize(
    "relations, counts, message",
    [
        ([rel("cat", "left_of", "dog")], {}, "relation 'cat left_of dog' refers to unknown object 'dog' (known: cat, tree)"),
        ([rel("cat", "next_to", "cat")], {}, "relation 'cat next_to cat' relates an object to itself"),
        ([rel("cat", "left_of", "cat")], {"cat": 2}, "relates an object to itself"),  # not symmetric
        ([rel("cat", "between", "cat", "tree")], {"cat": 3}, "relates an object to itself"),
        ([rel("cat", "between", "tree", "tree")], {}, "needs two different references"),
        ([rel("cat", "between", "tree")], {}, "relations.0: 'between' needs a second reference in object2"),
        ([rel("cat", "near", "tree", "tree")], {}, "relations.0: only 'between' takes object2, not 'near'"),
    ],
)
def test_graph_refuses(relations, counts, message):
    assert message in refused(SceneGraph, graph(relations, counts))


def test_graph_refuses_duplicate_group_ids():
    data = {"objects": [{"id": "cat", "name": "cat"}, {"id": "cat", "name": "dog"}]}
    assert refused(SceneGraph, data) == "duplicate object id 'cat' (objects 0 and 1)"
    assert SceneGraphDraft.model_validate(data).objects[1].name == "dog"  # a draft holds it until it is mended


def test_group_relations_are_allowed():
    """"two cats next to each other", "a cat between two trees"."""
    g = SceneGraph.model_validate(graph([rel("cat", "next_to", "cat"), rel("cat", "between", "tree", "tree")],
                                        {"cat": 2, "tree": 2}))
    assert [r.predicate for r in g.relations] == ["next_to", "between"]
