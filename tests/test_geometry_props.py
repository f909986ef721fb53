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
from plan_and_render.geometry.check import FRONT_LINE, DepthPrior, check_placements, overlap_allowed, region_holds
from plan_and_render.geometry.scenes import Scene, random_scene
from plan_and_render.geometry.sizes import min_size
from plan_and_render.geometry.solver import MARGIN
from plan_and_render.scene import Canvas, PlanObject, PlanRelation

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


sides = st.integers(4, 32).map(lambda k: 64 * k)  # 256..2048 px, any aspect ratio from 1:8 to 8:1


@st.composite
def scenes(draw, max_instances: int = 8, placements: bool = False) -> Scene:
    """Hypothesis draws the canvas, the instance budget and the generator's seed."""
    canvas = (draw(sides), draw(sides))
    n = draw(st.integers(1, max_instances))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(50):
        scene = random_scene(rng, n, canvas=canvas, placements=placements)
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


# --------------------------------------------------------------------------
# regions and depths, together with the relations, at any aspect ratio
# --------------------------------------------------------------------------


@SETTINGS
@given(scenes(placements=True), st.integers(0, 2**16))
def test_regions_and_depths_hold_with_random_relations(scene, seed):
    """Scenes whose witness keeps some regions and depths (so they are satisfiable): every
    region, depth and relation holds in the solved layout, at every aspect ratio."""
    assert check_placements(scene.witness, scene.objects, scene.canvas) == []
    layout = solve(scene.objects, scene.relations, scene.canvas, seed=seed)
    assert_valid(scene, layout.boxes)
    assert check_placements(layout.boxes, scene.objects, scene.canvas) == [], describe(scene)
    for o in scene.objects:
        if o.region:
            assert region_holds(o.region, layout.boxes[o.id])


@settings(max_examples=60, deadline=None)
@given(scenes(placements=True), st.integers(0, 2**32))
def test_kept_boxes_and_placements_together(scene, pick):
    """Chat edits: re-solve some objects of a placed scene with the others kept."""
    ids, rng = [o.id for o in scene.objects], random.Random(pick)
    kept = {i: scene.witness[i] for i in rng.sample(ids, rng.randint(0, len(ids)))}
    layout = solve(scene.objects, scene.relations, scene.canvas, seed=2, fixed=kept)
    assert_valid(scene, layout.boxes, kept)
    assert check_placements(layout.boxes, scene.objects, scene.canvas) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["cat", "dog", "tree", "house", "cup", "car", "mountain", "bird"]), min_size=1,
                max_size=4), st.lists(st.sampled_from([None, "foreground", "background"]), min_size=4, max_size=4),
       sides, sides, st.integers(0, 2**16))
def test_foreground_is_low_and_large_background_small_and_higher(names, depths, W, H, seed):
    """The depth rules of plan-format.md, checked by hand on the solved boxes: a foreground box's
    bottom edge is in the lowest third and its area beats the prior; a background box is smaller
    (unless a backdrop or at the smallest size) and its bottom edge is above every foreground one."""
    objects = [PlanObject(id=f"{n}-{k}", name=n, phrase=f"a {n}", depth=d)
               for k, (n, d) in enumerate(zip(names, depths))]
    canvas = Canvas(width=W, height=H)
    fronts = [DepthPrior.of(o, canvas).prior for o in objects if o.depth == "foreground"]
    # satisfiable: the foreground boxes, a bit larger than their priors, fit side by side along the bottom
    assume(sum(1.2 * w for w, _ in fronts) <= 0.9 and all(1.2 * h <= 0.6 for _, h in fronts))
    boxes = solve(objects, [], canvas, seed=seed).boxes
    front_bottoms = [boxes[o.id][3] for o in objects if o.depth == "foreground"]
    for o in objects:
        b, prior = boxes[o.id], DepthPrior.of(o, canvas)
        area, prior_area = (b[2] - b[0]) * (b[3] - b[1]), prior.prior[0] * prior.prior[1]
        if o.depth == "foreground":
            assert b[3] > FRONT_LINE and area > prior_area
        elif o.depth == "background":
            assert prior.backdrop or area < prior_area or prior.prior == prior.floor
            assert all(b[3] < f for f in front_bottoms)
