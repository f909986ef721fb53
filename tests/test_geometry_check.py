"""plan-format.md's geometry semantics (relation_holds, check_plan), overlap
measures, masks and the preview, on hand-checked boxes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from plan_and_render.geometry import box_mask, check_plan, overlap_fraction, relation_holds, save_preview
from plan_and_render.geometry.check import check_relations, overlap_allowed, overlap_violations
from plan_and_render.scene import PlanObject, PlanRelation, ScenePlan

LEFT, RIGHT = (0.05, 0.4, 0.35, 0.7), (0.6, 0.4, 0.9, 0.7)
TOP, BOTTOM = (0.4, 0.05, 0.6, 0.3), (0.4, 0.6, 0.6, 0.9)


def rel(s: str, p: str, o: str, o2: str | None = None) -> PlanRelation:
    return PlanRelation(subject=s, predicate=p, object=o, object2=o2)


# --------------------------------------------------------------------------
# relation_holds, one predicate at a time
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "predicate, s, o, ok",
    [
        ("left_of", LEFT, RIGHT, True), ("left_of", RIGHT, LEFT, False), ("right_of", RIGHT, LEFT, True),
        ("left_of", TOP, BOTTOM, False),  # straight above is not left
        # the diagonal tie |dx| == |dy| belongs to left/right (sector rule), not above/below
        ("left_of", (0.0, 0.0, 0.2, 0.2), (0.2, 0.2, 0.4, 0.4), True),
        ("above", (0.0, 0.0, 0.2, 0.2), (0.2, 0.2, 0.4, 0.4), False),
        ("above", TOP, BOTTOM, True), ("below", BOTTOM, TOP, True), ("above", BOTTOM, TOP, False),
        ("under", BOTTOM, TOP, True), ("under", TOP, BOTTOM, False), ("below", LEFT, RIGHT, False),
        # on: above + bottom edge in [top - 0.02, middle] + horizontal overlap
        ("on", (0.4, 0.2, 0.6, 0.52), (0.2, 0.5, 0.8, 0.9), True),   # bottom 0.52 sinks into the top part
        ("on", (0.4, 0.2, 0.6, 0.49), (0.2, 0.5, 0.8, 0.9), True),   # 0.01 above the top edge: touching
        ("on", (0.4, 0.1, 0.6, 0.4), (0.2, 0.5, 0.8, 0.9), False),   # floats 0.1 above: only `above`
        ("on", (0.4, 0.4, 0.6, 0.75), (0.2, 0.5, 0.8, 0.9), False),  # bottom below the middle (0.7)
        ("on", (0.0, 0.1, 0.1, 0.5), (0.15, 0.5, 0.35, 0.9), False),  # no horizontal overlap
        # next_to: left/right with a gap no wider than the smaller box
        ("next_to", (0.1, 0.4, 0.3, 0.6), (0.45, 0.4, 0.65, 0.6), True),   # gap 0.15 <= 0.2
        ("next_to", (0.1, 0.4, 0.3, 0.6), (0.55, 0.4, 0.75, 0.6), False),  # gap 0.25 > 0.2
        ("next_to", (0.7, 0.4, 0.9, 0.6), (0.45, 0.4, 0.65, 0.6), True),   # right side
        ("next_to", TOP, BOTTOM, False),  # vertical neighbours are not next to
        # near: per-axis gaps no larger than the smaller extents
        ("near", (0.1, 0.1, 0.3, 0.3), (0.35, 0.35, 0.55, 0.55), True),
        ("near", (0.1, 0.1, 0.3, 0.3), (0.55, 0.1, 0.75, 0.3), False),  # x gap 0.25 > 0.2
        ("near", (0.1, 0.1, 0.3, 0.3), (0.2, 0.2, 0.5, 0.5), True),  # overlapping
        # depth: only bottom edges matter, overlap allowed
        ("in_front_of", (0.3, 0.4, 0.6, 0.95), (0.2, 0.2, 0.8, 0.9), True),
        ("in_front_of", (0.3, 0.4, 0.6, 0.85), (0.2, 0.2, 0.8, 0.9), False),
        ("behind", (0.3, 0.1, 0.6, 0.85), (0.2, 0.2, 0.8, 0.9), True),
        ("behind", (0.3, 0.1, 0.6, 0.9), (0.2, 0.2, 0.8, 0.9), False),  # equal bottoms: neither
        # inside: within, edges may touch
        ("inside", (0.3, 0.3, 0.5, 0.5), (0.2, 0.2, 0.8, 0.9), True),
        ("inside", (0.2, 0.2, 0.8, 0.9), (0.2, 0.2, 0.8, 0.9), True),
        ("inside", (0.1, 0.3, 0.5, 0.5), (0.2, 0.2, 0.8, 0.9), False),
    ],
)
def test_relation_holds(predicate, s, o, ok):
    assert relation_holds(predicate, s, o) is ok


@pytest.mark.parametrize(
    "s, a, b, ok",
    [
        ((0.4, 0.4, 0.6, 0.6), LEFT, RIGHT, True),  # references apart in x: compare x
        ((0.0, 0.4, 0.1, 0.6), LEFT, RIGHT, False),
        ((0.4, 0.4, 0.6, 0.6), TOP, BOTTOM, True),  # references apart in y: compare y
        ((0.8, 0.4, 0.9, 0.6), TOP, BOTTOM, True),  # y between even though x is off
        ((0.4, 0.0, 0.6, 0.05), TOP, BOTTOM, False),
        # references as far apart in x as in y: x decides (tie like the sector rule)
        ((0.45, 0.0, 0.55, 0.05), (0.0, 0.0, 0.2, 0.2), (0.6, 0.6, 0.8, 0.8), True),
        ((0.0, 0.4, 0.05, 0.5), (0.0, 0.0, 0.2, 0.2), (0.6, 0.6, 0.8, 0.8), False),
    ],
)
def test_between(s, a, b, ok):
    assert relation_holds("between", s, a, b) is ok
    assert relation_holds("between", s, b, a) is ok  # the order of the references does not matter


def test_between_without_second_reference_and_unknown_predicate_raise():
    with pytest.raises(ValueError):
        relation_holds("between", LEFT, RIGHT)
    with pytest.raises(ValueError):
        relation_holds("beside", LEFT, RIGHT)


boxes = st.tuples(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0.02, 0.5), st.floats(0.02, 0.5)).map(
    lambda t: (t[0], t[1], min(1.0, t[0] + t[2]), min(1.0, t[1] + t[3])))


@given(boxes, boxes)
def test_sector_predicates_mirror_and_partition(a, b):
    """left_of(a, b) <=> right_of(b, a) and so on; distinct centres fall in exactly one sector."""
    assert relation_holds("left_of", a, b) == relation_holds("right_of", b, a)
    assert relation_holds("above", a, b) == relation_holds("below", b, a)
    assert relation_holds("under", a, b) == relation_holds("below", a, b)
    sectors = [relation_holds(p, a, b) for p in ("left_of", "right_of", "above", "below")]
    same_centre = math.isclose(a[0] + a[2], b[0] + b[2]) and math.isclose(a[1] + a[3], b[1] + b[3])
    assert sum(sectors) <= 1 and (same_centre or sum(sectors) == 1)
    if relation_holds("on", a, b):
        assert relation_holds("above", a, b)
    if relation_holds("next_to", a, b):
        assert relation_holds("left_of", a, b) or relation_holds("right_of", a, b)
    assert relation_holds("near", a, b) == relation_holds("near", b, a)


# --------------------------------------------------------------------------
# check_plan and overlaps
# --------------------------------------------------------------------------


def _plan(objects, relations) -> ScenePlan:
    return ScenePlan(prompt="p", objects=[PlanObject(id=i, name=i.split("-")[0], phrase=i, box=b) for i, b in objects],
                     relations=relations)


def test_check_plan_lists_exactly_the_violated_relations():
    plan = _plan([("cat-1", LEFT), ("dog-1", RIGHT), ("bird-1", TOP)],
                 [rel("cat-1", "left_of", "dog-1"), rel("dog-1", "left_of", "cat-1"), rel("bird-1", "above", "cat-1"),
                  rel("bird-1", "inside", "dog-1")])
    bad = check_plan(plan)
    assert [str(v.relation) for v in bad] == ["dog-1 left_of cat-1", "bird-1 inside dog-1"]
    assert "dx=+0.550" in bad[0].reason  # dog centre 0.75 - cat centre 0.2
    assert check_plan(_plan([("cat-1", LEFT), ("dog-1", RIGHT)], [rel("cat-1", "left_of", "dog-1")])) == []


def test_check_relations_reports_unknown_ids():
    """A ScenePlan cannot name an unknown id any more (the contract refuses it); bare boxes can."""
    bad = check_relations({"cat-1": LEFT}, [rel("cat-1", "left_of", "dog-7")])
    assert len(bad) == 1 and "dog-7" in bad[0].reason
    with pytest.raises(ValidationError, match="unknown object 'dog-7'"):
        _plan([("cat-1", LEFT)], [rel("cat-1", "left_of", "dog-7")])


def test_overlap_fraction_hand_checked():
    assert overlap_fraction((0, 0, 0.4, 0.4), (0.2, 0.2, 0.6, 0.6)) == pytest.approx(0.04 / 0.16)
    assert overlap_fraction((0, 0, 0.2, 0.2), (0.2, 0, 0.4, 0.2)) == 0.0  # touching edges
    assert overlap_fraction((0.1, 0.1, 0.2, 0.2), (0, 0, 1, 1)) == pytest.approx(1.0)  # contained


def test_overlap_allowed_follows_support_chains_only():
    rels = [rel("cup-1", "on", "book-1"), rel("book-1", "on", "table-1"), rel("cat-1", "in_front_of", "sofa-1"),
            rel("dog-1", "in_front_of", "sofa-1"), rel("lamp-1", "left_of", "cup-1")]
    allowed = overlap_allowed(rels)
    assert frozenset(("cup-1", "table-1")) in allowed  # cup on book on table
    assert frozenset(("lamp-1", "cup-1")) in allowed  # directly related
    assert frozenset(("cat-1", "dog-1")) not in allowed  # both in front of the sofa, not of each other
    assert frozenset(("lamp-1", "book-1")) not in allowed
    boxes = {"cat-1": (0.1, 0.5, 0.4, 0.9), "dog-1": (0.3, 0.5, 0.6, 0.9), "sofa-1": (0.0, 0.3, 1.0, 0.8)}
    (a, b, f), = overlap_violations(boxes, rels[2:4])
    assert {a, b} == {"cat-1", "dog-1"} and f == pytest.approx(1 / 3)


# --------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------


def test_rect_mask_follows_the_floor_ceil_rule():
    m = box_mask((0.1, 0.25, 0.52, 0.5), 16, 16)
    assert m.dtype == np.float32 and m.shape == (16, 16)
    rows, cols = np.nonzero(m)
    # floor(0.25*16)=4 .. ceil(0.5*16)=8 rows; floor(0.1*16)=1 .. ceil(0.52*16)=9 columns
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 7, 1, 8)
    assert m.sum() == 4 * 8


def test_rect_mask_any_resolution_and_never_empty():
    m = box_mask((0.0, 0.0, 1.0, 0.5), 3, 7)
    assert m.shape == (3, 7) and m[:2].all() and not m[2].any()  # ceil(0.5*3) = 2 rows
    assert box_mask((0.5, 0.5, 0.501, 0.501), 8, 8).sum() == 1


def test_ellipse_mask_is_inside_the_rect_and_round():
    rect = box_mask((0.2, 0.2, 0.8, 0.8), 64, 64)
    ell = box_mask((0.2, 0.2, 0.8, 0.8), 64, 64, shape="ellipse")
    assert (ell <= rect).all()
    assert ell.sum() == pytest.approx(math.pi * 19.2 ** 2, rel=0.03)  # semi-axes 0.3 * 64 px
    assert ell[32, 32] == 1 and ell[13, 13] == 0  # centre in, corner out
    assert box_mask((0.5, 0.5, 0.51, 0.51), 8, 8, shape="ellipse").sum() >= 1


@pytest.mark.parametrize("shape", ["rect", "ellipse"])
def test_soft_mask_falls_off_smoothly(shape):
    m = box_mask((0.25, 0.25, 0.75, 0.75), 64, 64, shape=shape, soft=True)
    assert m.dtype == np.float32 and 0.0 <= m.min() and m.max() <= 1.0
    assert m[32, 32] == pytest.approx(1.0) and m[0, 0] == 0.0
    row = m[32]
    assert row[16] == pytest.approx(0.5, abs=0.1)  # the edge (x = 16 px) is half way
    assert (np.diff(row[:33]) >= -1e-6).all()  # rises monotonically towards the centre
    assert 0.0 < row[13] < row[19] < 1.0  # a ramp, not a step


def test_mask_rejects_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        box_mask(LEFT, 8, 8, shape="star")


# --------------------------------------------------------------------------
# preview
# --------------------------------------------------------------------------


def test_preview_draws_labelled_boxes_at_the_canvas_aspect(tmp_path):
    plan = _plan([("cat-1", (0.05, 0.3, 0.45, 0.9)), ("vase-1", (0.55, 0.2, 0.95, 0.9))], [])
    plan.canvas.width, plan.canvas.height = 1024, 512
    plan.background = "a sunny room"
    path = save_preview(plan, tmp_path / "sub" / "layout.png")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert img.shape == (256, 512, 3)  # long side 512, aspect 2:1
    backdrop = img[5, 250]  # top centre: no box there
    inside_cat, inside_vase = img[200, 100], img[200, 400]  # box interiors carry a tint
    assert (np.abs(inside_cat - backdrop).sum() > 20) and (np.abs(inside_vase - backdrop).sum() > 20)
    assert np.abs(inside_cat - inside_vase).sum() > 20  # distinct colours
    # background text is written along the bottom left (dark pixels there)
    assert (img[236:256, 0:150].sum(axis=2) < 450).any()


def test_preview_of_a_plan_without_objects(tmp_path):
    plan = ScenePlan(prompt="a bedroom without a bed", background="bedroom", canvas={"width": 512, "height": 1024})
    img = Image.open(save_preview(plan, tmp_path / "empty.png"))
    assert img.size == (256, 512)
