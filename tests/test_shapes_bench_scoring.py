"""ShapesBench's scoring (benchmarks/shapes.py) on hand-drawn images: shape-level presence and relations
against the colour-level layout read for models that draw blobs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.shapes import score_image, summarise
from plan_and_render.scene import Canvas, PlanObject, ScenePlan
from plan_and_render.scoring.shapes import COLOURS


def plan_of(*objects, relation=("left_of", 0, 1)) -> ScenePlan:
    objs = [PlanObject(id=f"o{k}", name=shape, phrase=f"a {colour} {shape}", attributes=[colour], box=box)
            for k, (colour, shape, box) in enumerate(objects)]
    pred, s, o = relation
    return ScenePlan.model_validate({
        "prompt": " and ".join(x.phrase for x in objs), "canvas": Canvas(width=64, height=64), "objects": objs,
        "relations": [{"subject": objs[s].id, "predicate": pred, "object": objs[o].id}]})


def canvas_with(*squares) -> np.ndarray:
    """White 64x64 image with filled squares: (colour, x0, y0, x1, y1) in pixels, end exclusive."""
    img = np.full((64, 64, 3), 255, np.uint8)
    for colour, x0, y0, x1, y1 in squares:
        img[y0:y1, x0:x1] = COLOURS[colour]
    return img


def test_a_square_where_a_circle_was_planned_is_absent_but_placed():
    # red square on pixels x 8-23, y 16-31 = box (0.125, 0.25, 0.375, 0.5); blue square x 40-55, same rows
    image = canvas_with(("red", 8, 16, 24, 32), ("blue", 40, 16, 56, 32))
    plan = plan_of(("red", "circle", (0.125, 0.25, 0.375, 0.5)), ("blue", "square", (0.5, 0.25, 0.75, 0.5)))
    rec = score_image(image, plan)
    red, blue = rec["objects"]
    assert not red["present"] and red["colour_present"] and red["colour_box_iou"] == pytest.approx(1.0)
    # blue drawn at x 0.625-0.875 against the planned 0.5-0.75: overlap 0.125 of a 0.375-wide union
    assert blue["present"] and blue["colour_box_iou"] == pytest.approx(1 / 3)
    assert rec["relations"] == [{"relation": str(plan.relations[0]), "holds": False, "colour_holds": True}]
    s = summarise([{**rec, "seconds": 1.0}])
    assert s["presence"] == 0.5 and s["relation_acc"] == 0.0
    assert s["colour_box_iou"] == pytest.approx((1 + 1 / 3) / 2) and s["colour_relation_acc"] == 1.0


def test_colour_level_leaves_out_objects_that_share_a_colour():
    image = canvas_with(("red", 40, 16, 56, 32), ("red", 8, 16, 24, 32), ("green", 8, 40, 24, 56))
    plan = plan_of(("red", "square", (0.1, 0.2, 0.4, 0.5)), ("red", "circle", (0.6, 0.2, 0.9, 0.5)),
                   ("green", "square", (0.1, 0.6, 0.4, 0.9)), relation=("above", 0, 2))
    rec = score_image(image, plan)
    assert [o["colour_box_iou"] is None for o in rec["objects"]] == [True, True, False]
    assert rec["relations"][0]["colour_holds"] is None  # its subject's colour is not unique
    s = summarise([{**rec, "seconds": 1.0}])
    assert s["colour_box_iou"] == pytest.approx(rec["objects"][2]["colour_box_iou"])
    assert math.isnan(s["colour_relation_acc"])
