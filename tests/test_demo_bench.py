"""benchmarks.demo: the prompt file is well formed, and its scorer judges drawn scenes as a person would
(scenes drawn by the shapes world's own generator, so what is in them is known exactly)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import demo
from plan_and_render.scoring.shapes import COLOURS, SHAPES
from tools.shapes.data import draw

LEFT, RIGHT = (0.05, 0.35, 0.35, 0.65), (0.6, 0.35, 0.9, 0.65)
TOP_LEFT, BOTTOM_RIGHT = (0.03, 0.03, 0.3, 0.3), (0.68, 0.68, 0.95, 0.95)


def scene(*objects: tuple[str, str, tuple]) -> np.ndarray:
    """(shape, colour, box) drawn at 64 px on a plain background."""
    return draw(list(objects), 64, np.random.default_rng(1)).image


def expect(objects, relations=(), regions=None) -> dict:
    objs = [{"colour": c, "shape": s, "count": n} for n, c, s in objects]
    return {"objects": objs, "relations": [list(r) for r in relations], "regions": regions or {}}


def test_the_prompt_file_has_30_reported_and_10_tuning_prompts_of_the_shapes_world():
    rows = demo.load_prompts("all")
    assert len(demo.load_prompts("report")) == 30 and len(demo.load_prompts("tune")) == 10 == len(rows) - 30
    assert len({r["id"] for r in rows}) == 40 and len({r["prompt"] for r in rows}) == 40
    for r in rows:
        keys = {f"{o['colour']} {o['shape']}" for o in r["objects"]}
        assert all(o["colour"] in COLOURS and o["shape"] in SHAPES and 1 <= o["count"] <= 3 for o in r["objects"])
        assert 2 <= sum(o["count"] for o in r["objects"]) <= 4, r["id"]
        assert all(s in keys and o in keys and p in ("left_of", "right_of", "above", "below")
                   for s, p, o in r["relations"]) and set(r["regions"]) <= keys
        assert r.get("width", 64) % 8 == 0
    report = demo.load_prompts("report")
    assert sum("width" in r for r in report) >= 5 and sum(bool(r["regions"]) for r in report) >= 5
    assert sum(any(o["count"] > 1 for o in r["objects"]) for r in report) >= 5


def test_a_scene_that_shows_the_prompt_follows_it():
    want = expect([(1, "red", "circle"), (1, "blue", "square")], [("red circle", "left_of", "blue square")])
    got = demo.score(scene(("circle", "red", LEFT), ("square", "blue", RIGHT)), want)
    assert got["follows"] and got["problems"] == [] and got["objects_right"] == 2


@pytest.mark.parametrize("objects,problem", [
    ([("square", "blue", LEFT), ("circle", "red", RIGHT)], "relation red circle left_of blue square"),
    ([("circle", "orange", LEFT), ("square", "blue", RIGHT)], "missing red circle (the circle is orange)"),
    ([("star", "red", LEFT), ("square", "blue", RIGHT)], "missing red circle (red drawn as star)"),
    ([("square", "blue", RIGHT)], "missing red circle"),
    ([("circle", "red", LEFT), ("square", "blue", RIGHT), ("circle", "red", (0.05, 0.75, 0.2, 0.9))],
     "count red circle: 2 of 1"),
])
def test_each_way_of_not_following_is_named(objects, problem):
    want = expect([(1, "red", "circle"), (1, "blue", "square")], [("red circle", "left_of", "blue square")])
    got = demo.score(scene(*objects), want)
    assert not got["follows"] and got["problems"][0] == problem


def test_counts_and_regions_hold_for_every_instance():
    want = expect([(2, "green", "triangle"), (1, "yellow", "ring")], [("green triangle", "above", "yellow ring")])
    two_above = scene(("triangle", "green", (0.05, 0.05, 0.35, 0.35)), ("triangle", "green", (0.6, 0.05, 0.9, 0.35)),
                      ("ring", "yellow", (0.35, 0.6, 0.65, 0.9)))
    assert demo.score(two_above, want)["follows"]
    one_beside = scene(("triangle", "green", (0.05, 0.05, 0.35, 0.35)), ("triangle", "green", (0.05, 0.6, 0.3, 0.85)),
                       ("ring", "yellow", (0.6, 0.6, 0.9, 0.9)))
    assert demo.score(one_beside, want)["problems"] == ["relation green triangle above yellow ring"]
    corners = expect([(1, "purple", "star"), (1, "orange", "circle")],
                     regions={"purple star": "top_left", "orange circle": "bottom_right"})
    assert demo.score(scene(("star", "purple", TOP_LEFT), ("circle", "orange", BOTTOM_RIGHT)), corners)["follows"]
    swapped = demo.score(scene(("star", "purple", BOTTOM_RIGHT), ("circle", "orange", TOP_LEFT)), corners)
    assert swapped["problems"] == ["region purple star top_left", "region orange circle bottom_right"]


def test_the_summary_counts_follows_by_canvas_and_failure_kind():
    recs = [{"id": "t01", "follows": True, "kinds": [], "objects_right": 2, "objects": 2, "wide": False, "seconds": 1.0},
            {"id": "t02", "follows": False, "kinds": ["count", "relation"], "objects_right": 1, "objects": 2, "wide": True,
             "seconds": 3.0}]
    s = demo.summarise(recs)
    assert (s["follows"], s["objects_right"], s["square_follows"], s["wide_follows"]) == (0.5, 0.75, 1.0, 0.0)
    assert s["failures_by_kind"] == {"missing": 0, "count": 1, "relation": 1, "region": 0} and s["s_per_render"] == 2.0


@pytest.mark.parametrize("objects,shape_level,colour_level", [
    ([("circle", "red", LEFT), ("square", "blue", RIGHT)], True, True),
    ([("circle", "red", LEFT), ("circle", "blue", RIGHT)], False, True),  # the square drawn as a circle, in place
    ([("triangle", "red", LEFT), ("star", "blue", RIGHT)], False, True),
    ([("square", "blue", LEFT), ("circle", "red", RIGHT)], False, False),  # the layout itself is wrong
    ([("circle", "red", LEFT)], False, False),  # blue nowhere
    # a second blue object: one region too many of the square's colour (the shape level asks for blue squares only)
    ([("circle", "red", LEFT), ("square", "blue", RIGHT), ("circle", "blue", (0.6, 0.75, 0.75, 0.9))], True, False),
])
def test_the_colour_level_reads_the_layout_whatever_shapes_are_drawn(objects, shape_level, colour_level):
    want = expect([(1, "red", "circle"), (1, "blue", "square")], [("red circle", "left_of", "blue square")])
    got = demo.score(scene(*objects), want)
    assert (got["follows"], got["colour_follows"]) == (shape_level, colour_level)


def test_the_colour_level_is_undefined_when_two_objects_share_a_colour():
    want = expect([(1, "red", "circle"), (1, "red", "square")], [("red circle", "below", "red square")])
    got = demo.score(scene(("square", "red", (0.35, 0.05, 0.65, 0.35)), ("circle", "red", (0.35, 0.6, 0.65, 0.9))),
                     want)
    assert got["follows"] and got["colour_follows"] is None


def test_the_summary_reads_the_colour_level_over_the_prompts_that_have_one():
    recs = [{"id": "t01", "follows": False, "colour_follows": True, "kinds": ["missing"], "objects_right": 1, "objects": 2,
             "wide": False, "seconds": 1.0},
            {"id": "t02", "follows": False, "colour_follows": False, "kinds": ["relation"], "objects_right": 2, "objects": 2,
             "wide": False, "seconds": 1.0},
            {"id": "t03", "follows": True, "colour_follows": None, "kinds": [], "objects_right": 2, "objects": 2, "wide": False,
             "seconds": 1.0}]
    s = demo.summarise(recs)
    assert (s["colour_follows"], s["colour_prompts"]) == (0.5, 2)


def test_the_wilson_interval_matches_hand_computed_values():
    # 18 of 30: centre (0.6 + 1.96^2 / 60) / (1 + 1.96^2 / 30) = 0.5887, half-width 0.1655
    low, high = demo.wilson(18, 30)
    assert low == pytest.approx(0.4232, abs=1e-4) and high == pytest.approx(0.7541, abs=1e-4)
    assert demo.wilson(0, 10)[0] == 0.0 and demo.wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert demo.wilson(10, 10)[1] == 1.0 and demo.wilson(0, 0) == [0.0, 1.0]


@given(st.integers(0, 200), st.integers(1, 200))
def test_the_interval_holds_the_share_and_narrows_with_more_renders(k, n):
    k = min(k, n)
    low, high = demo.wilson(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    low4, high4 = demo.wilson(4 * k, 4 * n)
    assert high4 - low4 < high - low


@pytest.mark.parametrize("text,seeds", [("0-5", [0, 1, 2, 3, 4, 5]), ("0,2,7", [0, 2, 7]), ("3", [3]),
                                        ("0-1, 6-7", [0, 1, 6, 7])])
def test_seeds_are_read_as_ranges_and_lists(text, seeds):
    assert demo.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "5-3", "0,0", "-1", "1-2-3"])
def test_bad_seed_lists_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="e.g. 0-5"):
        demo.parse_seeds(text)


def test_a_summary_over_seeds_counts_renders_and_prompts_apart():
    rec = {"kinds": [], "objects_right": 1, "objects": 1, "wide": False, "seconds": 1.0}
    recs = [{**rec, "id": i, "seed": s, "follows": s == 0} for s in (0, 1, 2) for i in ("t01", "t02")]
    s = demo.summarise(recs)
    assert (s["prompts"], s["renders"], s["follows"]) == (2, 6, pytest.approx(1 / 3))
    assert s["follows_interval"] == demo.wilson(2, 6)


@pytest.mark.parametrize("argv,says", [(["--model", "no/such/folder"], "not a model folder: no/such/folder"),
                                       (["--guidance-json", "no/such.json"], "--guidance-json no/such.json")])
def test_a_bad_model_or_variant_stops_before_any_render(argv, says, capsys, monkeypatch):
    monkeypatch.setattr(demo, "render_row", lambda *a: pytest.fail("rendered"))
    with pytest.raises(SystemExit) as e:
        demo.main([*argv, "--sheet", ""])
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and "Traceback" not in err
