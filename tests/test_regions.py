"""Regions and depth end to end (issue 13): the phrasings people use, the contract fields, the plans
the geometry makes of them, and the conflicts they can cause; then the false conflicts and
misreadings the rules parser used to produce, each as a case.

Expected placements are written by name: ``{"kite": ("top_left", None)}`` is (region, depth).
"""

from __future__ import annotations

import json

import pytest

from plan_and_render.errors import ConflictError
from plan_and_render.geometry import check_plan
from plan_and_render.geometry.check import FRONT_LINE, DepthPrior, region_holds
from plan_and_render.planner.backends.rules import RulesPlanner, parse, readings
from plan_and_render.planner.graph import check_graph, find_conflicts
from plan_and_render.planner.normalize import normalize_graph
from plan_and_render.planner.plan import make_plan
from plan_and_render.scene import GraphObject, PlanObject, SceneGraph, ScenePlan
from plan_and_render.vocab import canonical_depth, canonical_region, stated_depth, stated_region


def placements(prompt: str) -> dict:
    return {o.name: (o.region, o.depth) for o in parse(prompt).objects}


def relations(graph: SceneGraph) -> set[str]:
    names = {o.id: o.name for o in graph.objects}
    return {f"{names[r.subject]} {r.predicate} {names[r.object]}" for r in graph.relations}


# --------------------------------------------------------------------------
# the parser: a table of phrasings
# --------------------------------------------------------------------------

PHRASINGS = [
    ("a kite in the top left corner and a boat at the bottom right",
     {"kite": ("top_left", None), "boat": ("bottom_right", None)}),
    ("a cat in the upper left", {"cat": ("top_left", None)}),
    ("a cat in the upper-left corner of the image", {"cat": ("top_left", None)}),
    ("a sun in the top-right corner", {"sun": ("top_right", None)}),
    ("a cat in the bottom right hand corner", {"cat": ("bottom_right", None)}),
    ("in the top right corner, a clock", {"clock": ("top_right", None)}),
    ("a lamp toward the left edge", {"lamp": ("left", None)}),
    ("a cat on the left side of the picture", {"cat": ("left", None)}),
    ("a tree on the far right", {"tree": ("right", None)}),
    ("a fence along the bottom", {"fence": ("bottom", None)}),
    ("a chair at the bottom of the picture", {"chair": ("bottom", None)}),
    ("a rug in the lower half of the image", {"rug": ("bottom", None)}),
    ("a bird at the very top", {"bird": ("top", None)}),
    ("a balloon high up in the middle", {"balloon": ("top", None)}),
    ("a moon high in the sky", {"moon": ("top", None)}),
    ("a moon in the upper right of the sky", {"moon": ("top_right", None)}),
    ("a vase dead center", {"vase": ("center", None)}),
    ("a vase right in the middle", {"vase": ("center", None)}),
    ("a red car in the center of the frame", {"car": ("center", None)}),
    ("a balloon in the middle of the picture", {"balloon": ("center", None)}),
    ("two birds in the top left corner", {"bird": ("top_left", None)}),
    ("a castle in the distance", {"castle": (None, "background")}),
    ("a boat far away", {"boat": (None, "background")}),
    ("mountains far in the background", {"mountain": (None, "background")}),
    ("a dog up close in the foreground", {"dog": (None, "foreground")}),
    ("a bench in the foreground and a lighthouse on the horizon",
     {"bench": (None, "foreground"), "lighthouse": (None, "background")}),
    ("a dog in the front and a barn in the back", {"dog": (None, "foreground"), "barn": (None, "background")}),
    ("There is a zebra in the foreground and two giraffes in the background.",
     {"zebra": (None, "foreground"), "giraffe": (None, "background")}),
    ("a dog laying on a bed with a tv in the background", {"dog": (None, None), "bed": (None, None),
                                                           "tv": (None, "background")}),
    ("a kite in the top left corner, a dog up close in the foreground and a castle in the distance",
     {"kite": ("top_left", None), "dog": (None, "foreground"), "castle": (None, "background")}),
    ("a cat on a mat on the left", {"cat": ("left", None), "mat": (None, None)}),
    ("a cat on the left next to a dog on the right", {"cat": ("left", None), "dog": ("right", None)}),
    ("a balloon in the middle of the picture", {"balloon": ("center", None)}),
    # not regions: "in the middle of" a thing, a close-up photo
    ("a cat in the middle of the room", {"cat": (None, None)}),
    ("a close up of a cat", {"cat": (None, None)}),
]


@pytest.mark.parametrize("prompt, expected", PHRASINGS, ids=[p[:60] for p, _ in PHRASINGS])
def test_regions_and_depths_from_phrasings(prompt, expected):
    assert placements(prompt) == expected


def test_absolute_phrases_are_not_relations():
    g = parse("a kite in the top left corner and a boat at the bottom right")
    assert g.relations == []
    plan = make_plan("a kite in the top left corner and a boat at the bottom right", planner="rules")
    kite, boat = plan.object_by_id("kite-1"), plan.object_by_id("boat-1")
    assert (kite.region, boat.region) == ("top_left", "bottom_right")
    assert region_holds("top_left", kite.box) and region_holds("bottom_right", boat.box)
    assert check_plan(plan) == []


def test_a_group_shares_its_region_and_the_boxes_keep_it():
    plan = make_plan("two birds in the top left corner and a house in the distance", planner="rules")
    birds = [o for o in plan.objects if o.name == "bird"]
    assert len(birds) == 2 and all(o.region == "top_left" and region_holds("top_left", o.box) for o in birds)
    house = plan.object_by_id("house-1")
    assert house.depth == "background" and check_plan(plan) == []


@pytest.mark.parametrize("width, height", [(512, 512), (1024, 384), (384, 1024), (2048, 256)])
def test_depth_rules_hold_at_any_aspect_ratio(width, height):
    from plan_and_render.scene import Canvas

    plan = make_plan("a dog up close in the foreground and a castle far in the distance", planner="rules",
                     canvas=Canvas(width=width, height=height))
    dog, castle = plan.object_by_id("dog-1"), plan.object_by_id("castle-1")
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    dog_prior, castle_prior = DepthPrior.of(dog, plan.canvas), DepthPrior.of(castle, plan.canvas)
    assert dog.box[3] > FRONT_LINE and area(dog.box) > dog_prior.prior[0] * dog_prior.prior[1]
    assert area(castle.box) < castle_prior.prior[0] * castle_prior.prior[1] and castle.box[3] < dog.box[3]
    assert check_plan(plan) == []


# --------------------------------------------------------------------------
# contradictions between regions, depths and relations
# --------------------------------------------------------------------------


def conflict_message(prompt: str) -> str:
    """The one-line ConflictError the rules planner raises for ``prompt`` (the test fails if it plans)."""
    with pytest.raises(ConflictError) as err:
        make_plan(prompt, planner="rules")
    return str(err.value)


@pytest.mark.parametrize("prompt, message", [
    ("a cat on the right and a dog on the left, the cat is to the left of the dog",
     "conflicting relations: cat-1 region right, cat-1 left_of dog-1, dog-1 region left"),
    ("a dog in the foreground behind a house in the background",
     "conflicting relations: dog-1 depth foreground, dog-1 behind house-1, house-1 depth background"),
    ("a bird at the top and a cat at the bottom, the cat above the bird",
     "conflicting relations: cat-1 region bottom, cat-1 above bird-1, bird-1 region top"),
])
def test_contradicting_regions_and_relations_are_conflicts_naming_them(prompt, message):
    assert conflict_message(prompt) == message


def test_a_region_the_geometry_cannot_keep_with_a_depth_is_named_by_the_solver():
    """top_left puts the centre in the top third; the foreground puts the bottom edge in the lowest:
    no box inside the canvas does both, and the solver says which two."""
    g = SceneGraph(objects=[GraphObject(id="kite", name="kite", region="top_left", depth="foreground")])
    from plan_and_render.planner.plan import plan_from_graph

    with pytest.raises(ConflictError, match="kite-1 region top_left, kite-1 depth foreground"):
        plan_from_graph("a kite", g)


def test_graph_check_orders_regions_with_relations_and_names_group_ids():
    g = SceneGraph(objects=[GraphObject(id="cat", name="cat", count=2, region="right"),
                            GraphObject(id="dog", name="dog", region="left")],
                   relations=[{"subject": "cat", "predicate": "left_of", "object": "dog"}])
    with pytest.raises(ConflictError, match="cat-1..cat-2 region right, cat-1..cat-2 left_of dog-1, dog-1 region left"):
        check_graph(g)
    fine = g.model_copy(update={"relations": []})
    assert find_conflicts(fine) == []


# --------------------------------------------------------------------------
# the contract: fields, JSON, the phrasings a model may write
# --------------------------------------------------------------------------


def test_region_and_depth_survive_normalisation_expansion_and_json():
    g = SceneGraph(objects=[GraphObject(id="cats", name="Cats", count=2, region="top_left", depth="background")])
    normal, _ = normalize_graph(g, "two cats in the distance, top left")
    assert (normal.objects[0].name, normal.objects[0].region, normal.objects[0].depth) == \
        ("cat", "top_left", "background")
    plan = make_plan("two cats far in the distance in the upper left corner", planner="rules")
    back = ScenePlan.model_validate_json(plan.to_json())
    assert [(o.region, o.depth) for o in back.objects] == [("top_left", "background")] * 2
    assert json.loads(plan.to_json())["objects"][0]["region"] == "top_left"


@pytest.mark.parametrize("written, region", [("upper left", "top_left"), ("Top-Right corner", "top_right"),
                                             ("middle", "center"), ("left side of the image", "left"),
                                             ("bottom", "bottom"), ("center", "center")])
def test_a_model_may_write_a_region_in_words(written, region):
    assert canonical_region(written) == region
    assert GraphObject(id="x", name="x", region=written).region == region


@pytest.mark.parametrize("written, depth", [("in the far background", "background"), ("up close", "foreground"),
                                            ("distance", "background"), ("Foreground", "foreground")])
def test_a_model_may_write_a_depth_in_words(written, depth):
    assert canonical_depth(written) == depth
    assert GraphObject(id="x", name="x", depth=written).depth == depth


def test_a_plan_file_keeps_to_the_exact_words():
    """Plan files are the public contract: only the listed values, no guessing."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        PlanObject(id="c", name="cat", phrase="a cat", region="upper left")


def test_stated_regions_and_depths_need_their_words():
    assert stated_region("top_left", "a kite in the upper-left corner")
    assert not stated_region("top_left", "a kite on the left")
    assert stated_region("top", "a balloon high up in the middle")
    assert stated_depth("background", "mountains in the distance")
    assert not stated_depth("background", "a dog in front of a tree")


# --------------------------------------------------------------------------
# no false conflicts: other readings are tried first
# --------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, expected", [
    # "its" across a list: the chair alone is left of the table (not the cup that is on it)
    ("a table with a cup on it and a chair to its left", {"cup on table", "chair left_of table"}),
    # absolute phrases used to be relations: left_of and above between one pair
    ("a kite in the top left corner and a boat at the bottom right", set()),
    # "them": both nouns of the clause
    ("a dog sitting next to a cat, with a ball in front of them",
     {"dog next_to cat", "ball in_front_of dog", "ball in_front_of cat"}),
    # "it" after "with" following a comma: the clause's subject
    ("a cat sitting on a chair next to a window, with a lamp on the table behind it",
     {"cat on chair", "cat next_to window", "lamp on table", "lamp behind cat"}),
    # "in it": a container; "her": a person
    ("a vase on a table with flowers in it", {"vase on table", "flower inside vase"}),
    ("a box with a ball inside and a cat on top of it", {"ball inside box", "cat on box"}),
    ("a car with a dog on its roof and a tree to its left", {"dog on car", "tree left_of car"}),
    ("a girl holding a balloon with a dog to her right", {"dog right_of girl"}),
])
def test_pronouns_and_attachments_read_without_false_conflicts(prompt, expected):
    g = parse(prompt)
    assert relations(g) == expected
    assert find_conflicts(g) == []
    assert check_plan(make_plan(prompt, planner="rules")) == []


def test_when_the_preferred_reading_contradicts_itself_another_is_taken():
    """"it" first means the vase (the clause's subject); the ball is in front of the vase, so it is
    behind the cat instead."""
    prompt = "a vase next to a cat, with a ball behind it, the ball in front of the vase"
    first, *others = readings(prompt)
    assert relations(first) >= {"ball behind vase", "ball in_front_of vase"} and find_conflicts(first)
    assert relations(parse(prompt)) == {"vase next_to cat", "ball behind cat", "ball in_front_of vase"}
    ordered = list(RulesPlanner().readings(prompt))
    assert ordered[0] == parse(prompt) and ordered[-1] == first  # the consistent readings first
    assert check_plan(make_plan(prompt, planner="rules")) == []


def test_make_plan_tries_a_backends_readings_before_reporting_a_conflict():
    from plan_and_render.planner.backends.base import Planner

    bad = SceneGraph(objects=[GraphObject(id="a", name="cat"), GraphObject(id="b", name="dog")],
                     relations=[{"subject": "a", "predicate": "left_of", "object": "b"},
                                {"subject": "b", "predicate": "left_of", "object": "a"}])
    good = bad.model_copy(update={"relations": bad.relations[:1]})

    class TwoReadings(Planner):
        def graph(self, prompt):
            return bad

        def readings(self, prompt):
            yield bad
            yield good

    plan = make_plan("a cat and a dog", planner=TwoReadings())
    assert [str(r) for r in plan.relations] == ["cat-1 left_of dog-1"]

    class OneReading(TwoReadings):
        def readings(self, prompt):
            yield bad

    with pytest.raises(ConflictError, match="cat-1 left_of dog-1, dog-1 left_of cat-1"):
        make_plan("a cat and a dog", planner=OneReading())


@pytest.mark.parametrize("prompt, message", [
    ("a cup left of a plate that is left of a fork that is left of the cup",
     "conflicting relations: cup-1 left_of plate-1, plate-1 left_of fork-1, fork-1 left_of cup-1"),
    ("a cat left of a dog and the dog left of the cat", "conflicting relations: cat-1 left_of dog-1, dog-1 left_of cat-1"),
    ("a box inside a bag which is inside a crate that is inside the box",
     "conflicting relations: box-1 inside bag-1, bag-1 inside crate-1, crate-1 inside box-1"),
])
def test_real_contradictions_are_still_reported(prompt, message):
    assert conflict_message(prompt) == message


# --------------------------------------------------------------------------
# misreadings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, objects, rels, excluded", [
    ("a bench with nobody sitting on it", {"bench": 1}, set(), ["person"]),
    ("a cat on a rug with nothing else around", {"cat": 1, "rug": 1}, {"cat on rug"}, []),
    ("a street without anyone else", {}, set(), ["person"]),
    ("an empty chair with no one on it", {"chair": 1}, set(), ["person"]),
    # a relation after a participial phrase or "on the wall" belongs to the clause's subject
    ("a man holding an umbrella to the left of a car", {"man": 1, "umbrella": 1, "car": 1}, {"man left_of car"}, []),
    ("a woman walking a dog to the right of a bench", {"woman": 1, "dog": 1, "bench": 1},
     {"woman right_of bench"}, []),
    ("a sofa with a painting on the wall behind it", {"sofa": 1, "painting": 1}, {"painting behind sofa"}, []),
    # a count or a repeated mention does not swallow another group of the same noun
    ("a bird on a branch and birds in the sky", {"bird": 3, "branch": 1}, {"bird on branch"}, []),
    ("two cats on a sofa and a cat on the floor", {"cat": 3, "sofa": 1}, {"cat on sofa"}, []),
    ("Two people and a dog. One person is holding the dog.", {"person": 2, "dog": 1}, set(), []),
    ("a red ball and two blue balls, the blue balls are left of the red ball", {"ball": 3},
     {"ball left_of ball"}, []),
    # adjectives alone never make an object: the word after them is the noun, even a part or a verb form
    ("a shed with a green door", {"shed": 1, "door": 1}, set(), []),
    ("an orange peel on a plate", {"orange": 1, "plate": 1}, {"orange on plate"}, []),  # "orange" is a thing too
    ("a dog asleep on a laptop keyboard", {"dog": 1, "laptop": 1}, {"dog on laptop"}, []),  # a part: its whole
    ("two computer keyboards", {"computer keyboard": 2}, set(), []),  # a compound: no part
    ("a kite on the left and another one on the right", {"kite": 2}, set(), []),  # "another one": the same thing
    ("a big horse and two small horses behind it", {"horse": 3}, {"horse behind horse"}, []),  # two sizes: two groups
    # the middle of a surface is on it; a relation's object does not join the next noun of a list
    ("in the middle of the desk stands a lamp", {"desk": 1, "lamp": 1}, {"lamp on desk"}, []),
    ("a boat on a huge wave", {"boat": 1, "wave": 1}, {"boat on wave"}, []),
    ("a kid near a lemonade stand", {"kid": 1, "lemonade stand": 1}, {"kid near lemonade stand"}, []),
    ("a beagle up close in the foreground", {"beagle": 1}, set(), []),  # a depth, not the particle "up"
    # a participle with an object is a verb, not a noun; a bridge is a thing
    ("a bus crossing a bridge", {"bus": 1, "bridge": 1}, set(), []),
    # an arrangement after a verb is no place; a size comparison with a pronoun relates nothing
    ("five cups standing in a row on a shelf", {"cup": 5, "shelf": 1}, {"cup on shelf"}, []),
    ("a tree and a boy who is shorter than it", {"tree": 1, "boy": 1}, set(), []),
    # the viewer and idioms are no objects; "X full of Y": Y inside X
    ("a fox staring at the camera", {"fox": 1}, set(), []),
    ("two girls playing chess at a table", {"girl": 2, "table": 1}, set(), []),  # a game is no object
    # an activity is no object: the place after it is the actors'
    ("two foxes having a nap under a bush", {"fox": 2, "bush": 1}, {"fox under bush"}, []),
    # clothes are worn, not containers; a second person joins the subjects
    ("a boy in a green hoodie and a girl in a yellow coat standing side by side",
     {"boy": 1, "hoodie": 1, "girl": 1, "coat": 1}, {"boy next_to girl"}, []),
    ("drone shot looking down at a red canoe", {"canoe": 1}, set(), []),  # a camera phrase, then the scene
    ("a lighthouse, the sun small in the top left corner", {"lighthouse": 1, "sun": 1}, set(), []),
    ("a hiker up close, his dog blurry in the background", {"hiker": 1, "dog": 1}, set(), []),
    ("a heron standing on one leg", {"heron": 1}, set(), []),
    ("a barn full of hay bales", {"barn": 1, "hay bale": 2}, {"hay bale inside barn"}, []),
    # "them" with one noun in its clause: the two nouns before it; "the others": the rest of a list
    ("a cup is next to a jug and the lid is behind them", {"cup": 1, "jug": 1, "lid": 1},
     {"cup next_to jug", "lid behind cup", "lid behind jug"}, []),
    ("a fork, a knife and a spoon, the knife between the others", {"fork": 1, "knife": 1, "spoon": 1},
     {"knife between fork"}, []),  # (the helper shows the first reference only)
    # ", and" after a placement or a pronoun relation starts a new clause
    ("a tower far in the distance, and a rider on a camel in the foreground", {"tower": 1, "rider": 1, "camel": 1},
     {"rider on camel"}, []),
    ("a kiosk on the left, a bin next to it, and a bench on the right", {"kiosk": 1, "bin": 1, "bench": 1},
     {"bin next_to kiosk"}, []),
    # a fronted relation holds for the whole list it starts, not for a member with its own
    ("On a shelf there are three jars, a clock and a radio", {"shelf": 1, "jar": 3, "clock": 1, "radio": 1},
     {"jar on shelf", "clock on shelf", "radio on shelf"}, []),
])
def test_misreadings(prompt, objects, rels, excluded):
    g = parse(prompt)
    counts: dict[str, int] = {}
    for o in g.objects:
        counts[o.name] = counts.get(o.name, 0) + o.count
    assert counts == objects
    assert relations(g) == rels
    assert g.excluded == excluded


@pytest.mark.parametrize("prompt, regions", [
    ("dead center: a bride and a groom", {"bride": "center", "groom": "center"}),  # a fronted place: the list
    ("on the left a cat, and a dog on the right", {"cat": "left", "dog": "right"}),  # not one with its own
    ("a shelf with a radio, a clock in front of the radio and a plant on the left",
     {"shelf": None, "radio": None, "clock": None, "plant": "left"}),
])
def test_a_fronted_placement_holds_for_its_list(prompt, regions):
    assert {o.name: o.region for o in parse(prompt).objects} == regions


@pytest.mark.parametrize("prompt, depths", [
    # "in the middle distance" places the lake nowhere, and "up close" only the canoe
    ("hills in the background, a pond in the middle distance and a kayak up close",
     {"hill": "background", "pond": None, "kayak": "foreground"}),
    ("far off, a lighthouse; closer, a rowing boat", {"lighthouse": "background", "rowing boat": "foreground"}),
])
def test_depth_phrases_place_only_their_own_nouns(prompt, depths):
    assert {o.name: o.depth for o in parse(prompt).objects} == depths


def test_the_blue_balls_are_the_blue_ones():
    g = parse("a red ball and two blue balls, the blue balls are left of the red ball")
    by = {o.id: o for o in g.objects}
    (r,) = g.relations
    assert by[r.subject].attributes == ["blue"] and by[r.subject].count == 2
    assert by[r.object].attributes == ["red"] and by[r.object].count == 1


# --------------------------------------------------------------------------
# GenEval's layout-level readings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("prompt, name, attributes, count", [
    ("a photo of a black dining table", "dining table", ["black"], 1),
    ("a photo of a purple potted plant", "potted plant", ["purple"], 1),
    ("a photo of a yellow parking meter", "parking meter", ["yellow"], 1),
    ("a photo of a white wine glass", "wine glass", ["white"], 1),
    ("a photo of a brown bear", "bear", ["brown"], 1),
    ("a photo of four broccolis", "broccoli", [], 4),
    ("a photo of a red panda", "red panda", [], 1),
])
def test_colour_before_a_multi_word_noun_stays_an_attribute(prompt, name, attributes, count):
    (o,) = parse(prompt).objects
    assert (o.name, o.attributes, o.count) == (name, attributes, count)


@pytest.mark.parametrize("prompt, expected", [
    # terse: side words with no preposition, after a noun or as a label before a colon
    ("sun top right, clouds top left, green hills along the bottom",
     {"sun": ("top_right", None), "cloud": ("top_left", None), "hill": ("bottom", None)}),
    ("top left: sun. bottom: a row of houses", {"sun": ("top_left", None), "house": ("bottom", None)}),
    # a comma list's last item alone takes a placement said after it ("and" still joins)
    ("a big wave, three small boats, a volcano in the background",
     {"wave": (None, None), "boat": (None, None), "volcano": (None, "background")}),
    ("a cat and a dog in the background", {"cat": (None, "background"), "dog": (None, "background")}),
    # a side of a backdrop (wall, sky, canvas) is the canvas's; "from the" is a region's preposition
    ("a clock toward the top of the wall", {"clock": ("top", None)}),
    ("tulips along the bottom of the canvas", {"tulip": ("bottom", None)}),
    ("a kite high up and a boy flying it from the bottom left", {"kite": ("top", None), "boy": ("bottom_left", None)}),
    # "flying low over" says how, not where
    ("an owl flying low over a pond", {"owl": (None, None)}),
    # a placement after ", and" belongs to the noun after it
    ("in the distance a castle, in front of it a moat, and up close a helmet",
     {"castle": (None, "background"), "moat": (None, None), "helmet": (None, "foreground")}),
])
def test_terse_and_list_placements(prompt, expected):
    assert placements(prompt) == expected


def test_a_fronted_relation_to_it_after_a_comma_relates_the_next_noun():
    graph = parse("in the distance a castle, in front of it a moat")
    assert relations(graph) == {"moat in_front_of castle"}


@pytest.mark.parametrize("prompt, expected", [
    # after a bare comma, "it" prefers the previous clause's subject to its last object
    ("a cottage by a stream, a bridge in front of it", {"cottage near stream", "bridge in_front_of cottage"}),
    ("a guitar leaning against an amp, a microphone stand to its left", {"microphone stand left_of guitar"}),
    # "and" keeps the latest noun first
    ("a cat on a mat and a dog next to it", {"cat on mat", "dog next_to mat"}),
])
def test_it_after_a_comma_prefers_the_last_clauses_subject(prompt, expected):
    assert relations(parse(prompt)) == expected
