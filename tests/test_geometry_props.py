"""Property tests: random satisfiable scenes (1-8 instances, groups with counts,
every predicate, many aspect ratios) must be solved with every relation holding,
boxes valid and inside the canvas margin, and unrelated boxes overlapping at
most OVERLAP_BOUND (10 %) of the smaller box. Satisfiability is proved by a
witness layout drawn first (planner/geometry/scenes.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plan_and_render.errors import ConflictError
from plan_and_render.geometry import OVERLAP_BOUND, check_relations, overlap_fraction, solve
from plan_and_render.geometry.check import overlap_allowed
from plan_and_render.geometry.scenes import Scene, random_scene
from plan_and_render.geometry.sizes import min_size
from plan_and_render.geometry.solver import MARGIN
from plan_and_render.scene import PlanRelation

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


sides = st.integers(4, 32).map(lambda k: 64 * k)  # 256..2048 px, any aspect ratio from 1:8 to 8:1


@st.composite
def scenes(draw, max_instances: int = 8) -> Scene:
    """Hypothesis draws the canvas, the instance budget and the generator's seed."""
    canvas = (draw(sides), draw(sides))
    n = draw(st.integers(1, max_instances))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(50):
        scene = random_scene(rng, n, canvas=canvas)
        if scene is not None:
            return scene
    assume(False)


def describe(scene: Scene) -> str:
    return f"{scene.canvas.width}x{scene.canvas.height}: " + "; ".join(map(str, scene.relations))


def assert_valid(scene: Scene, boxes: dict, fixed: dict | None = None) -> None:
    fixed = fixed or {}
    why = describe(scene)
    assert set(boxes) == {o.id for o in scene.objects}, why
    assert check_relations(boxes, scene.relations) == [], why
    mw, mh = min_size(scene.canvas.width, scene.canvas.height)
    for i, (x0, y0, x1, y1) in boxes.items():
        assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0, why
        if i not in fixed:
            assert MARGIN - 1e-9 <= min(x0, y0) and max(x1, y1) <= 1 - MARGIN + 1e-9, why
            assert x1 - x0 >= mw - 1e-3 and y1 - y0 >= mh - 1e-3, why
    allowed = overlap_allowed(scene.relations)
    ids = sorted(boxes)
    for k, a in enumerate(ids):
        for b in ids[k + 1:]:
            if frozenset((a, b)) not in allowed:
                assert overlap_fraction(boxes[a], boxes[b]) <= OVERLAP_BOUND + 1e-9, (a, b, why)


@SETTINGS
@given(scenes(), st.integers(0, 2**16))
def test_random_satisfiable_scenes_are_solved(scene, seed):
    layout = solve(scene.objects, scene.relations, scene.canvas, seed=seed)
    assert_valid(scene, layout.boxes)


@settings(max_examples=40, deadline=None)
@given(scenes(), st.integers(0, 2**16))
def test_same_seed_same_layout_other_seed_still_valid(scene, seed):
    a = solve(scene.objects, scene.relations, scene.canvas, seed=seed)
    b = solve(scene.objects, scene.relations, scene.canvas, seed=seed)
    assert a.boxes == b.boxes and a.warnings == b.warnings
    c = solve(scene.objects, scene.relations, scene.canvas, seed=seed + 1)
    assert_valid(scene, c.boxes)


@settings(max_examples=60, deadline=None)
@given(scenes(), st.integers(0, 2**32))
def test_kept_boxes_stay_and_the_rest_is_resolved(scene, pick):
    """Chat edits: keep some witness boxes exactly, re-solve the others."""
    ids, rng = [o.id for o in scene.objects], random.Random(pick)
    kept = {i: scene.witness[i] for i in rng.sample(ids, rng.randint(0, len(ids)))}
    layout = solve(scene.objects, scene.relations, scene.canvas, seed=1, fixed=kept)
    assert all(layout.boxes[i] == b for i, b in kept.items())
    assert_valid(scene, layout.boxes, kept)


REVERSE = {"left_of": "right_of", "right_of": "left_of", "above": "below", "below": "above", "on": "below",
           "under": "above", "in_front_of": "behind", "behind": "in_front_of", "inside": "inside"}


@settings(max_examples=60, deadline=None)
@given(scenes(), st.integers(0, 2**32))
def test_contradictions_are_named_and_minimal(scene, pick):
    """Add the mirror of an ordering relation ("b left_of a" next to "a left_of b",
    "b inside a" next to "a inside b"): a conflict whose named relations are
    among the input, contradict each other, and all matter."""
    ordered = [r for r in scene.relations if r.predicate in REVERSE]
    assume(ordered)
    r = random.Random(pick).choice(ordered)
    flipped = r.predicate if r.predicate == "inside" else REVERSE[r.predicate]
    if r.predicate != "inside":  # "a left_of b" + "a right_of b"
        bad = PlanRelation(subject=r.subject, predicate=flipped, object=r.object)
    else:  # "a inside b" + "b inside a"
        bad = PlanRelation(subject=r.object, predicate="inside", object=r.subject)
    relations = [*scene.relations, bad]
    with pytest.raises(ConflictError) as err:
        solve(scene.objects, relations, scene.canvas)
    message = str(err.value)
    assert message.startswith("conflicting relations: ")
    named = [x for x in relations if str(x) in message.split(": ", 1)[1].split(" (")[0].split(", ")]
    assert named and bad in named
    with pytest.raises(ConflictError):
        solve(scene.objects, named, scene.canvas)
    for k in range(len(named)):
        solve(scene.objects, named[:k] + named[k + 1:], scene.canvas)  # drop any one: it holds


def test_twelve_instances_property_spot_check():
    """A fixed sample at the benchmark's size (up to 12 instances) also always works."""
    rng, done = random.Random(12), 0
    while done < 25:
        scene = random_scene(rng, 12)
        if scene is None:
            continue
        done += 1
        assert_valid(scene, solve(scene.objects, scene.relations, scene.canvas, seed=done).boxes)


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_the_generator_witness_is_a_valid_layout(scene):
    """The property tests are only as good as their witnesses: each one must
    itself satisfy every rule the solver is held to."""
    assert_valid(scene, scene.witness, fixed={i: None for i in scene.witness})  # margins differ (0.025 > MARGIN)
    lo, hi = 0.025 - 1e-9, 0.975 + 1e-9
    assert all(lo <= min(b) and max(b) <= hi for b in scene.witness.values())
