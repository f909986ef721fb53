"""Vocabulary (predicates, numbers, inflection) and scene-graph normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from plan_and_render.errors import InvalidPromptError
from plan_and_render.planner.normalize import normalize_graph, normalize_name
from plan_and_render.scene import GraphObject, GraphRelation, SceneGraph, SceneGraphDraft
from plan_and_render.vocab import (
    PREDICATE_NAMES,
    PREDICATE_PHRASES,
    canonical_predicate,
    parse_count,
    pluralize,
    singular_word,
    singularize,
)

# --------------------------------------------------------------------------
# predicates
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("left_of", "left_of"),
        ("Left-Of", "left_of"),
        ("LeftOf", "left_of"),
        ("to the left of", "left_of"),
        ("further left than", "left_of"),
        ("farther right than", "right_of"),
        ("on top of", "on"),
        ("atop", "on"),
        ("beneath", "under"),
        ("underneath", "under"),
        ("is above", "above"),
        ("higher than", "above"),
        ("lower than", "below"),
        ("in front of", "in_front_of"),
        ("In_Front_Of", "in_front_of"),
        ("at the back of", "behind"),
        ("beside", "next_to"),
        ("adjacent to", "next_to"),
        ("close to", "near"),
        ("within", "inside"),
        ("in between", "between"),
    ],
)
def test_canonical_predicate_phrasings(text, expected):
    assert canonical_predicate(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "sideways", "eats", "left of of of", 42, None])
def test_canonical_predicate_unknown_is_none(text):
    assert canonical_predicate(text) is None


def test_every_phrase_maps_into_the_vocabulary():
    assert set(PREDICATE_PHRASES.values()) <= set(PREDICATE_NAMES)
    assert set(PREDICATE_NAMES) <= set(PREDICATE_PHRASES.values())  # every predicate has a phrasing


def test_graph_relation_accepts_phrasings_and_rejects_nonsense():
    assert GraphRelation(subject="a", predicate="on top of", object="b").predicate == "on"
    assert GraphRelation(subject="a", predicate="to the left of", object="b").predicate == "left_of"
    with pytest.raises(ValidationError):
        GraphRelation(subject="a", predicate="teleported", object="b")
    # the JSON schema (what constrained decoding sees) keeps the closed vocabulary
    schema = GraphRelation.model_json_schema()
    assert set(schema["properties"]["predicate"]["enum"]) == set(PREDICATE_NAMES)


# --------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, n",
    [
        ("7", 7), ("one", 1), ("three", 3), ("twelve", 12), ("nineteen", 19), ("twenty", 20),
        ("twenty-one", 21), ("thirty two", 32), ("a dozen", 12), ("dozen", 12), ("half a dozen", 6),
        ("two dozen", 24), ("a pair of", 2), ("pair of", 2), ("twin", 2), ("a couple of", 2),
        ("couple of", 2), ("a trio of", 3), ("a single", 1), ("both", 2), ("A Dozen", 12),
    ],
)
def test_parse_count(text, n):
    assert parse_count(text) == n


@pytest.mark.parametrize("text", ["", "several", "many", "cat", "a few", "some", "twenty-zero", None])
def test_parse_count_rejects_non_quantities(text):
    assert parse_count(text) is None


@given(st.integers(min_value=0, max_value=10**6))
def test_parse_count_digits_roundtrip(n):
    assert parse_count(str(n)) == n


# --------------------------------------------------------------------------
# inflection
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "plural, singular",
    [
        ("cats", "cat"), ("benches", "bench"), ("boxes", "box"), ("dishes", "dish"), ("buses", "bus"),
        ("glasses", "glass"), ("strawberries", "strawberry"), ("toys", "toy"), ("knives", "knife"),
        ("leaves", "leaf"), ("wolves", "wolf"), ("gloves", "glove"), ("mice", "mouse"), ("geese", "goose"),
        ("people", "person"), ("children", "child"), ("women", "woman"), ("feet", "foot"),
        ("potatoes", "potato"), ("shoes", "shoe"), ("cookies", "cookie"), ("ties", "tie"),
        ("horses", "horse"), ("vases", "vase"), ("sheep", "sheep"), ("deer", "deer"), ("fish", "fish"),
        ("cacti", "cactus"), ("photos", "photo"), ("bus", "bus"), ("cactus", "cactus"), ("cat", "cat"),
        ("skis", "skis"), ("broccoli", "broccoli"), ("prizes", "prize"), ("suitcases", "suitcase"),
    ],
)
def test_singular_word(plural, singular):
    assert singular_word(plural) == singular


@pytest.mark.parametrize(
    "phrase, singular",
    [
        ("teddy bears", "teddy bear"), ("hot dogs", "hot dog"), ("fire hydrants", "fire hydrant"),
        ("cups of coffee", "cup of coffee"), ("wine glasses", "wine glass"), ("potted plants", "potted plant"),
    ],
)
def test_singularize_inflects_the_head_noun(phrase, singular):
    assert singularize(phrase) == singular


@pytest.mark.parametrize(
    "word", ["cat", "bench", "box", "bus", "strawberry", "mouse", "person", "knife", "potato", "glass", "toy", "sheep"]
)
def test_plural_then_singular_roundtrip(word):
    assert singular_word(pluralize(word)) == word


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, name, count, attributes, size",
    [
        ("Three big red Apples", "apple", 3, ["red"], "large"),
        ("a dozen eggs", "egg", 12, [], None),
        ("a pair of shoes", "shoe", 2, [], None),
        ("twin towers", "tower", 2, [], None),
        ("7 cats", "cat", 7, [], None),
        ("the hot dogs", "hot dog", None, [], None),
        ("a wooden table", "table", None, ["wooden"], None),
        ("Fire_Hydrant", "fire hydrant", None, [], None),
        ("a tiny grey and white kitten", "kitten", None, ["grey", "white"], "tiny"),
        ("orange juice", "orange juice", None, [], None),
        ("red", "red", None, [], None),
    ],
)
def test_normalize_name(raw, name, count, attributes, size):
    parts = normalize_name(raw)
    assert (parts.name, parts.count, parts.attributes, parts.size) == (name, count, attributes, size)


# --------------------------------------------------------------------------
# graph normalisation
# --------------------------------------------------------------------------


def _g(objects, relations=(), **kw) -> SceneGraphDraft:
    """A model's answer: its references are not checked until normalisation has mended them."""
    return SceneGraphDraft(
        objects=[GraphObject(**o) for o in objects],
        relations=[GraphRelation(**r) for r in relations],
        **kw,
    )


def test_names_counts_attributes_are_normalised_with_warnings():
    g = _g([{"id": "apples", "name": "Three Red Apples"}, {"id": "b", "name": "a big Bowl", "attributes": ["Wooden"]}])
    out, warnings = normalize_graph(g, "three red apples in a big wooden bowl")
    apples, bowl = out.objects
    assert (apples.name, apples.count, apples.attributes) == ("apple", 3, ["red"])
    assert (bowl.name, bowl.attributes, bowl.size) == ("bowl", ["wooden"], "large")
    assert any("count 3" in w for w in warnings)
    assert any("'apple'" in w for w in warnings)


def test_explicit_count_wins_over_name_and_is_reported():
    g = _g([{"id": "c", "name": "two cats", "count": 3}])
    out, warnings = normalize_graph(g, "cats")
    assert out.objects[0].count == 3
    assert any("kept count 3" in w for w in warnings)


def test_size_word_attribute_becomes_size_hint():
    out, _ = normalize_graph(_g([{"id": "d", "name": "dog", "attributes": ["huge", "brown"]}]), "a huge brown dog")
    assert out.objects[0].size == "huge"
    assert out.objects[0].attributes == ["brown"]


def test_relations_by_name_are_mapped_to_ids_and_duplicates_dropped():
    g = _g(
        [{"id": "c1", "name": "cat"}, {"id": "d1", "name": "dog"}],
        [
            {"subject": "cat", "predicate": "left_of", "object": "dogs"},
            {"subject": "c1", "predicate": "left_of", "object": "d1"},
            {"subject": "C1", "predicate": "on top of", "object": "dog-1"},
        ],
    )
    out, warnings = normalize_graph(g, "a cat left of a dog")
    assert [(r.subject, r.predicate, r.object) for r in out.relations] == [
        ("c1", "left_of", "d1"),
        ("c1", "on", "d1"),
    ]
    assert any("duplicate relation" in w for w in warnings)
    assert any("by name" in w for w in warnings)


def test_unknown_reference_is_an_invalid_prompt_naming_it():
    g = _g([{"id": "cat", "name": "cat"}], [{"subject": "cat", "predicate": "near", "object": "unicorn"}])
    with pytest.raises(InvalidPromptError, match=r"^relation 'cat near unicorn' refers to unknown object 'unicorn' "
                                                 r"\(known: cat\)$"):
        normalize_graph(g, "a cat near a unicorn")


def test_the_result_is_a_checked_scene_graph():
    out, _ = normalize_graph(_g([{"id": "x", "name": "cat"}, {"id": "x", "name": "dog"}]), "a cat and a dog")
    assert type(out) is SceneGraph


def test_duplicate_ids_are_renamed():
    g = _g([{"id": "x", "name": "cat"}, {"id": "x", "name": "dog"}])
    out, warnings = normalize_graph(g, "a cat and a dog")
    assert [o.id for o in out.objects] == ["x", "x_2"]
    assert any("duplicate id" in w for w in warnings)


def test_between_references_are_ordered_and_deduplicated():
    g = _g(
        [{"id": "a", "name": "cat"}, {"id": "b", "name": "dog"}, {"id": "c", "name": "bird"}],
        [
            {"subject": "a", "predicate": "between", "object": "c", "object2": "b"},
            {"subject": "a", "predicate": "between", "object": "b", "object2": "c"},
        ],
    )
    out, _ = normalize_graph(g, "a cat between a dog and a bird")
    assert [(r.object, r.object2) for r in out.relations] == [("b", "c")]


def test_negated_object_is_removed_with_its_relations():
    g = _g(
        [{"id": "room", "name": "lamp"}, {"id": "bed", "name": "beds"}],
        [{"subject": "room", "predicate": "next_to", "object": "bed"}],
        excluded=["a bed"],
    )
    out, warnings = normalize_graph(g, "a bedroom with a lamp and without a bed")
    assert [o.name for o in out.objects] == ["lamp"]
    assert out.relations == []
    assert out.excluded == ["bed"]
    assert any("excluded" in w for w in warnings)


def test_exclusion_not_in_prompt_is_dropped_instead():
    g = _g([{"id": "bed", "name": "bed"}], excluded=["bed"])
    out, _ = normalize_graph(g, "a cosy bed")
    assert [o.name for o in out.objects] == ["bed"]
    assert out.excluded == []


def test_normalisation_is_idempotent():
    g = _g(
        [{"id": "a", "name": "Three Red Apples"}, {"id": "b", "name": "the big bowls", "count": 2}],
        [{"subject": "apples", "predicate": "inside", "object": "b"}],
        background="  a   kitchen ",
    )
    once, _ = normalize_graph(g, "three red apples in two big bowls in a kitchen")
    twice, warnings = normalize_graph(once, "three red apples in two big bowls in a kitchen")
    assert twice == once
    assert warnings == []
    assert once.background == "a kitchen"


_NOUNS = ["cat", "bench", "box", "strawberry", "mouse", "knife", "teddy bear", "hot dog", "person", "glass"]


@given(
    st.sampled_from(["", "a ", "the ", "two ", "3 ", "a dozen ", "a pair of ", "twenty-one "]),
    st.lists(st.sampled_from(["red", "wooden", "shiny", "blue"]), max_size=2, unique=True),
    st.sampled_from(["", "big ", "tiny "]),
    st.sampled_from(_NOUNS),
)
def test_normalize_name_property(count_word, colours, size_word, noun):
    """Any article/count + size + adjectives + (plural) noun comes apart the same way."""
    expected_count = {"": None, "a ": None, "the ": None, "two ": 2, "3 ": 3, "a dozen ": 12, "a pair of ": 2,
                      "twenty-one ": 21}[count_word]
    plural = expected_count not in (None, 1)
    text = f"{count_word}{size_word}{' '.join(colours)} {pluralize(noun) if plural else noun}"
    parts = normalize_name(text)
    assert parts.name == noun
    assert parts.count == expected_count
    assert parts.attributes == colours
    assert parts.size == {"": None, "big ": "large", "tiny ": "tiny"}[size_word]
