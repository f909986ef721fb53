"""End to end with the rules backend (prompt -> ScenePlan with boxes), and the
benchmark scoring rules of benchmarks/bench_data.py on hand-made layouts."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_data import (
    Item,
    aggregate_counting,
    bench_dir,
    count_categories,
    geneval_position_holds,
    layout_items,
    load_geneval,
    load_lmd,
    load_nsr_counting,
    load_nsr_spatial,
    names_match,
    reference_layout,
    score_geneval,
    score_lmd,
    score_nsr_counting,
    score_nsr_spatial,
    score_nsr_spatial_graph,
    sector,
    xywh_to_xyxy,
)
from plan_and_render.errors import ConflictError, InvalidPromptError
from plan_and_render.scene import PlanObject, ScenePlan

LEFT, RIGHT = (0.05, 0.4, 0.35, 0.7), (0.6, 0.4, 0.9, 0.7)
TOP, BOTTOM = (0.4, 0.05, 0.6, 0.3), (0.4, 0.6, 0.6, 0.9)

# --------------------------------------------------------------------------
# names and geometry helpers
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "predicted, category, ok",
    [
        ("dog", "dog", True), ("dogs", "dog", True), ("Dogs", "dog", True), ("a brown dog", "dog", True),
        ("teddy bears", "teddy bear", True), ("teddy bear", "bear", False), ("bear", "teddy bear", False),
        ("hot dog", "dog", False), ("dog", "hot dog", False), ("hot dogs", "hot dog", True),
        ("tabby cat", "cat", True), ("sofa", "couch", True), ("television", "tv", True), ("tv monitor", "tv", True),
        ("table", "dining table", True), ("wooden dining table", "dining table", True), ("bike", "bicycle", True),
        ("cup of coffee", "cup", True), ("potted plants", "potted plant", True), ("plant", "potted plant", True),
        ("benchs", "bench", True), ("buss", "bus", True), ("cat", "dog", False), ("hydrant", "fire hydrant", True), ("fire hydrant", "fire truck", False),
        ("wine glasses", "wine glass", True), ("mice", "mouse", True), ("", "dog", False),
    ],
)
def test_names_match(predicted, category, ok):
    assert names_match(predicted, category) is ok


def test_sector_rule_and_ties():
    assert sector(LEFT, RIGHT) == "left" and sector(RIGHT, LEFT) == "right"
    assert sector(TOP, BOTTOM) == "top" and sector(BOTTOM, TOP) == "bottom"
    # |dx| == |dy| goes to left/right (plan-format.md: |dx| >= |dy|)
    assert sector((0.0, 0.0, 0.2, 0.2), (0.2, 0.2, 0.4, 0.4)) == "left"
    assert xywh_to_xyxy([0.1, 0.2, 0.3, 0.4]) == pytest.approx((0.1, 0.2, 0.4, 0.6000000000000001))


def test_layout_items_accepts_plans_tuples_and_items():
    plan = ScenePlan(prompt="p", objects=[PlanObject(id="cat-1", name="cat", phrase="a gray cat", box=LEFT)])
    assert layout_items(plan) == [Item("cat", LEFT, "a gray cat")]
    assert layout_items([("cat", LEFT)]) == [Item("cat", LEFT, "cat")]
    assert layout_items([("cat", LEFT, "a cat")]) == [Item("cat", LEFT, "a cat")]


# --------------------------------------------------------------------------
# NSR-1K spatial
# --------------------------------------------------------------------------

SPATIAL = {"obj1": ["toilet", [0, 0, 0.1, 0.1]], "obj2": ["dog", [0, 0, 0.1, 0.1]], "prompt": "", "relation": "left"}


@pytest.mark.parametrize(
    "layout, relation, ok",
    [
        ([("toilet", LEFT), ("dog", RIGHT)], "left", True),
        ([("toilet", RIGHT), ("dog", LEFT)], "left", False),
        ([("toilet", RIGHT), ("dog", LEFT)], "right", True),
        ([("toilets", TOP), ("a dog", BOTTOM)], "top", True),
        ([("toilet", TOP), ("dog", BOTTOM)], "bottom", False),
        ([("toilet", BOTTOM), ("dog", TOP)], "bottom", True),
        ([("toilet", RIGHT), ("dog", LEFT)], "next to", True),
        ([("toilet", TOP), ("dog", BOTTOM)], "next to", False),
        ([("toilet", LEFT)], "left", False),  # a missing object fails
        ([("toilet", LEFT), ("hot dog", RIGHT)], "left", False),
        ([("toilet", RIGHT), ("dog", LEFT), ("dog", (0.9, 0.4, 1.0, 0.7))], "left", True),  # any instance pair
    ],
)
def test_score_nsr_spatial(layout, relation, ok):
    assert score_nsr_spatial(layout, {**SPATIAL, "relation": relation}) is ok


@pytest.mark.parametrize(
    "relations, relation, ok",
    [
        ([("toilet-1", "left_of", "dog-1")], "left", True),
        ([("dog-1", "right_of", "toilet-1")], "left", True),  # mirrored
        ([("dog-1", "left_of", "toilet-1")], "left", False),
        ([("toilet-1", "on", "dog-1")], "top", True),
        ([("dog-1", "under", "toilet-1")], "top", True),
        ([("toilet-1", "on", "dog-1")], "bottom", False),
        ([("toilet-1", "right_of", "dog-1")], "next to", True),
        ([("toilet-1", "near", "dog-1")], "next to", False),
        ([], "left", False),
        # chains: toilet on mat on dog puts the toilet on top of the dog; mixed directions do not chain
        ([("toilet-1", "on", "mat-1"), ("mat-1", "on", "dog-1")], "top", True),
        ([("toilet-1", "on", "mat-1"), ("dog-1", "under", "mat-1")], "top", True),
        ([("toilet-1", "on", "mat-1"), ("mat-1", "under", "dog-1")], "top", False),
        ([("toilet-1", "left_of", "mat-1"), ("mat-1", "left_of", "dog-1")], "left", True),
        ([("toilet-1", "next_to", "mat-1"), ("mat-1", "next_to", "dog-1")], "next to", False),
    ],
)
def test_score_nsr_spatial_graph(relations, relation, ok):
    from plan_and_render.scene import PlanRelation

    plan = ScenePlan(
        prompt="p",
        objects=[PlanObject(id="toilet-1", name="toilet", phrase="a toilet"), PlanObject(id="dog-1", name="dog", phrase="a dog"),
                 PlanObject(id="mat-1", name="mat", phrase="a mat")],
        relations=[PlanRelation(subject=a, predicate=p, object=b) for a, p, b in relations],
    )
    assert score_nsr_spatial_graph(plan, {**SPATIAL, "relation": relation}) is ok


# --------------------------------------------------------------------------
# NSR-1K counting
# --------------------------------------------------------------------------


def _count_rec(num, subtype="two-categories", prompt=""):
    return {"num_object": num, "sub-type": subtype, "prompt": prompt}


def test_counting_counts_per_category_and_ignores_scenery():
    layout = [("cat", LEFT), ("cats", RIGHT), ("dog", TOP), ("tree", BOTTOM), ("hot dog", BOTTOM)]
    s = score_nsr_counting(layout, _count_rec([["cat", 2], ["dog", 2]]))
    assert s.predicted == {"cat": 2, "dog": 1}
    assert s.matched == 3 and not s.correct
    assert score_nsr_counting(layout, _count_rec([["cat", 2], ["hot dog", 1]])).correct


def test_counting_prefers_exact_category_names():
    # "teddy bear" must count as a teddy bear, not as a bear
    assert count_categories([("teddy bear", LEFT), ("bear", RIGHT)], ["bear", "teddy bear"]) == {
        "bear": 1, "teddy bear": 1}


@pytest.mark.parametrize(
    "counts, prompt, ok",
    [
        ({"cat": 2, "chair": 1}, "two cats with a few chairs, the number of cats is more than that of chairs", True),
        ({"cat": 2, "chair": 2}, "two cats with a few chairs, the number of cats is more than that of chairs", False),
        ({"cat": 2, "chair": 0}, "two cats with a few chairs, the number of cats is more than that of chairs", False),
        ({"cat": 3, "chair": 1}, "two cats with a few chairs, the number of cats is more than that of chairs", False),
        ({"cat": 1, "chair": 3}, "one cat with a few chairs, the number of cat is less than that of chairs", True),
        ({"cat": 1, "chair": 1}, "one cat with a few chairs, the number of cat is less than that of chairs", False),
        ({"cat": 1, "chair": 1}, "a photo of one cat with the same number of chair", True),
        ({"cat": 1, "chair": 2}, "a photo of one cat together with the equal number of chair", False),
    ],
)
def test_counting_comparison_rule(counts, prompt, ok):
    layout = [(name, LEFT) for name, n in counts.items() for _ in range(n)]
    first = 2 if "two cats" in prompt else 1
    rec = _count_rec([["cat", first], ["chair", 1]], "comparison", prompt)
    assert score_nsr_counting(layout, rec).correct is ok


def test_aggregate_counting_hand_checked():
    a = score_nsr_counting([("cat", LEFT)] * 3, _count_rec([["cat", 2]], "single-category"))  # 2 of 3 predicted right
    b = score_nsr_counting([("dog", LEFT)], _count_rec([["dog", 1], ["cat", 1]]))  # 1 of 2 expected found
    c = score_nsr_counting([("bed", LEFT)], _count_rec([["bed", 1]], "real"))  # exact
    d = score_nsr_counting([], _count_rec([["cat", 1], ["dog", 1]], "comparison", "the same number of"))
    agg = aggregate_counting([a, b, c, d])
    assert agg["precision"] == pytest.approx(100 * 4 / 5)  # matched 2+1+1 over predicted 3+1+1
    assert agg["recall"] == pytest.approx(100 * 4 / 5)  # over expected 2+2+1
    assert agg["accuracy"] == pytest.approx(25.0)
    assert agg["accuracy_counted"] == pytest.approx(100 / 3)
    assert agg["accuracy_comparison"] == 0.0


# --------------------------------------------------------------------------
# LMD
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layout, record, ok",
    [
        ([("cat", LEFT)], {"type": "negation", "object": "backpack"}, True),
        ([("backpacks", LEFT)], {"type": "negation", "object": "backpack"}, False),
        ([], {"type": "negation", "object": "backpack"}, True),
        ([("book", LEFT), ("books", RIGHT)], {"type": "numeracy", "object": "book", "count": 2}, True),
        ([("book", LEFT)], {"type": "numeracy", "object": "book", "count": 2}, False),
        (
            [("dog", LEFT, "a blue dog"), ("bowl", RIGHT, "a white bowl")],
            {"type": "attribution", "objects": [["blue", "dog"], ["white", "bowl"]]},
            True,
        ),
        (
            [("dog", LEFT, "a white dog"), ("bowl", RIGHT, "a blue bowl")],
            {"type": "attribution", "objects": [["blue", "dog"], ["white", "bowl"]]},
            False,
        ),
        (
            [("dog", LEFT, "a blue dog")],
            {"type": "attribution", "objects": [["blue", "dog"], ["white", "bowl"]]},
            False,
        ),
        ([("bottle", LEFT), ("dog", RIGHT)], {"type": "spatial", "objects": [["bottle", "left"], ["dog", "right"]]}, True),
        ([("bottle", RIGHT), ("dog", LEFT)], {"type": "spatial", "objects": [["bottle", "left"], ["dog", "right"]]}, False),
        ([("bowl", RIGHT), ("cat", LEFT)], {"type": "spatial", "objects": [["bowl", "right"], ["cat", "left"]]}, True),
        ([("bottle", TOP), ("bowl", BOTTOM)], {"type": "spatial", "objects": [["bottle", "top"], ["bowl", "bottom"]]}, True),
        ([("bottle", BOTTOM), ("bowl", TOP)], {"type": "spatial", "objects": [["bottle", "top"], ["bowl", "bottom"]]}, False),
        ([("bottle", TOP)], {"type": "spatial", "objects": [["bottle", "top"], ["bowl", "bottom"]]}, False),
    ],
)
def test_score_lmd(layout, record, ok):
    assert score_lmd(layout, record) is ok


# --------------------------------------------------------------------------
# the shared benchmark files (skipped on a machine without ../shared/bench)
# --------------------------------------------------------------------------

needs_bench = pytest.mark.skipif(not (bench_dir() / "nsr1k").exists(), reason="shared/bench not present")


@needs_bench
def test_loaders_read_the_documented_sizes():
    assert len(load_nsr_spatial("val")) == 283
    assert len(load_nsr_counting("val")) == 762
    lmd = load_lmd()
    assert len(lmd) == 400 and {r["type"] for r in lmd} == {"negation", "numeracy", "attribution", "spatial"}


@needs_bench
def test_ground_truth_boxes_score_as_the_data_says():
    """The COCO boxes themselves: 269 of 283 spatial prompts obey the sector rule
    (checked by hand-computing the sectors from the raw file)."""
    spatial = load_nsr_spatial("val")
    assert sum(score_nsr_spatial(reference_layout(r), r) for r in spatial) == 269


@pytest.mark.parametrize("relation, subject, reference, ok", [
    # centres 0.4 apart; 0.1 x the widths (0.2 + 0.2) = 0.04: clearly right of
    ("right of", (0.6, 0.4, 0.8, 0.6), (0.2, 0.4, 0.4, 0.6), True),
    ("left of", (0.6, 0.4, 0.8, 0.6), (0.2, 0.4, 0.4, 0.6), False),
    # centres 0.03 apart, less than 0.1 x (0.2 + 0.2): not right of, though the centre is further right
    ("right of", (0.33, 0.4, 0.53, 0.6), (0.3, 0.4, 0.5, 0.6), False),
    ("above", (0.4, 0.1, 0.6, 0.3), (0.4, 0.6, 0.6, 0.8), True),  # y grows downwards
    ("below", (0.4, 0.1, 0.6, 0.3), (0.4, 0.6, 0.6, 0.8), False),
])
def test_geneval_position_rule(relation, subject, reference, ok):
    assert geneval_position_holds(relation, subject, reference) is ok


def test_score_geneval_checks_objects_counts_colours_and_positions():
    colours = {"tag": "color_attr", "prompt": "a photo of a purple wine glass and a black apple",
               "include": [{"class": "wine glass", "count": 1, "color": "purple"},
                           {"class": "apple", "count": 1, "color": "black"}]}
    right = [Item("wine glass", (0.1, 0.1, 0.3, 0.5), "a purple wine glass"), Item("apple", (0.6, 0.3, 0.8, 0.5),
                                                                                 "a black apple")]
    assert score_geneval(right, colours).correct
    swapped = [Item("wine glass", right[0].box, "a black wine glass"), Item("apple", right[1].box, "a purple apple")]
    s = score_geneval(swapped, colours)
    assert (s.objects, s.counts, s.colours, s.correct) == (True, True, False, False)
    counting = {"tag": "counting", "prompt": "a photo of two clocks", "include": [{"class": "clock", "count": 2}],
                "exclude": [{"class": "clock", "count": 3}]}
    two, three = [Item("clock", (0.1, 0.1, 0.3, 0.3))] * 2, [Item("clock", (0.1, 0.1, 0.3, 0.3))] * 3
    assert score_geneval(two, counting).correct and not score_geneval(three, counting).counts
    position = {"tag": "position", "prompt": "a photo of a dog right of a teddy bear",
                "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1,
                                                                  "position": ["right of", 0]}]}
    bear, dog = Item("teddy bear", (0.1, 0.4, 0.3, 0.6)), Item("dog", (0.6, 0.4, 0.8, 0.6))
    assert score_geneval([bear, dog], position).position is True
    assert score_geneval([Item("teddy bear", dog.box), Item("dog", bear.box)], position).position is False
    assert score_geneval([bear], position).objects is False


@needs_bench
def test_geneval_metadata_loads_and_the_rules_planner_reads_every_record():
    from plan_and_render.planner.plan import make_plan

    records = load_geneval()
    assert len(records) == 553 and {r["tag"] for r in records} == {
        "single_object", "two_object", "counting", "colors", "position", "color_attr"}
    wrong = [r["prompt"] for r in records if not score_geneval(make_plan(r["prompt"], planner="rules"), r).correct]
    assert wrong == []


def test_bench_dir_env_override(tmp_path, monkeypatch):
    (tmp_path / "lmd").mkdir()
    (tmp_path / "lmd" / "lmd_prompts_400.jsonl").write_text(json.dumps({"type": "negation", "prompt": "x"}) + "\n")
    monkeypatch.setenv("PLAN_AND_RENDER_BENCH", str(tmp_path))
    assert bench_dir() == tmp_path
    assert load_lmd() == [{"type": "negation", "prompt": "x"}]
    with pytest.raises(FileNotFoundError, match="PLAN_AND_RENDER_BENCH"):
        load_nsr_spatial()


# --------------------------------------------------------------------------
# end to end: make_plan with the rules backend and the geometry stage
# --------------------------------------------------------------------------

geometry = pytest.importorskip("plan_and_render.geometry")
needs_geometry = pytest.mark.skipif(not hasattr(geometry, "solve"), reason="geometry stage not available")


def _centre(box):
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


@needs_geometry
def test_make_plan_rules_end_to_end():
    from plan_and_render.planner.plan import make_plan

    plan = make_plan("a gray cat to the left of a blue vase on a wooden table", planner="rules")
    assert {o.id for o in plan.objects} == {"cat-1", "vase-1", "table-1"}
    cat, vase = plan.object_by_id("cat-1"), plan.object_by_id("vase-1")
    assert cat.phrase == "a gray cat" and vase.attributes == ["blue"]
    assert sector(cat.box, vase.box) == "left"
    assert {str(r) for r in plan.relations} == {"cat-1 left_of vase-1", "cat-1 on table-1"}
    for o in plan.objects:
        x0, y0, x1, y1 = o.box
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert json.loads(plan.to_json())["objects"][0]["box"]


@needs_geometry
def test_make_plan_counts_negation_and_background():
    from plan_and_render.planner.plan import make_plan

    plan = make_plan("three red apples on a plate in a kitchen without knives", planner="rules")
    assert sorted(o.id for o in plan.objects) == ["apple-1", "apple-2", "apple-3", "plate-1"]
    assert all(o.phrase == "a red apple" for o in plan.objects if o.name == "apple")
    assert plan.negative_prompt == "knife"
    assert plan.background == "kitchen"
    plate = plan.object_by_id("plate-1")
    for i in (1, 2, 3):
        apple = plan.object_by_id(f"apple-{i}")
        assert _centre(apple.box)[1] < _centre(plate.box)[1]  # on => above


@needs_geometry
@pytest.mark.parametrize(
    "prompt, first, second, side",
    [
        ("a vase with a cat to its left", "cat-1", "vase-1", "left"),
        ("a bottle on the left and a dog on the right", "bottle-1", "dog-1", "left"),
        ("a lamp above a desk", "lamp-1", "desk-1", "top"),
        ("a ball beneath a chair", "ball-1", "chair-1", "bottom"),
        ("a pen farther right than a pencil", "pen-1", "pencil-1", "right"),
    ],
)
def test_make_plan_boxes_follow_the_phrasing(prompt, first, second, side):
    from plan_and_render.planner.plan import make_plan

    plan = make_plan(prompt, planner="rules")
    assert sector(plan.object_by_id(first).box, plan.object_by_id(second).box) == side


@needs_geometry
def test_make_plan_negation_only_prompt_is_an_empty_plan():
    from plan_and_render.planner.plan import make_plan

    plan = make_plan("a bedroom without a bed", planner="rules")
    assert plan.objects == [] and plan.negative_prompt == "bed" and plan.background == "bedroom"


@needs_geometry
@pytest.mark.parametrize(
    "prompt, error, fragment",
    [
        ("a cat left of a dog and the dog left of the cat", ConflictError, "cat-1 left_of dog-1"),
        ("   ", InvalidPromptError, "empty"),
        ("forty cats", InvalidPromptError, "limit is 30"),
        ("twenty cats and twenty dogs", InvalidPromptError, "limit is 30"),
    ],
)
def test_make_plan_errors(prompt, error, fragment):
    from plan_and_render.planner.plan import make_plan

    with pytest.raises(error) as err:
        make_plan(prompt, planner="rules")
    assert fragment in str(err.value) or fragment.replace("-1", "") in str(err.value)
