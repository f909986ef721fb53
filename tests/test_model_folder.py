"""What a model folder's guidance.json may say about prompting and sizes, and where each takes effect:
``"settings": {"encode": "objects"}`` (the text encoder reads the plan's object phrases) and
``"size_prior": {"side": s, "copy_gap": g}`` (the planner sizes every object as the model draws things, and
stands a count's copies g apart)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plan_and_render.errors import ModelUnavailableError, UsageError
from plan_and_render.geometry import SizePrior, check_relations, solve
from plan_and_render.geometry.sizes import initial_sizes, prior_size
from plan_and_render.geometry.solver import MARGIN
from plan_and_render.renderer.folder import size_prior
from plan_and_render.renderer.guidance import compose_prompt, encoded_plan, object_caption
from plan_and_render.renderer.settings import RenderSettings, check_model_defaults
from plan_and_render.scene import Canvas, PlanObject, PlanRelation, ScenePlan

ROOT = Path(__file__).resolve().parents[1]


def shapes_plan(prompt: str, *objects: tuple[str, str, str], background: str | None = None) -> ScenePlan:
    """(id, group, phrase) triples on a 64x64 canvas, boxes in a row."""
    objs = [PlanObject(id=i, name=g.split()[-1], phrase=p, group=g, box=(0.02 + 0.24 * k, 0.3, 0.22 + 0.24 * k, 0.6))
            for k, (i, g, p) in enumerate(objects)]
    return ScenePlan(prompt=prompt, canvas=Canvas(width=64, height=64), objects=objs, background=background)


# ---------------------------------------------------------------------------
# encode: what the text encoder reads
# ---------------------------------------------------------------------------

def test_objects_encoding_names_every_object_once_each_with_its_own_tokens():
    from transformers import CLIPTokenizerFast

    from plan_and_render.renderer.guidance import build_layout

    plan = shapes_plan("two red circles above a blue square, and a green star on the left",
                       ("circle-1", "circle", "a red circle"), ("circle-2", "circle", "a red circle"),
                       ("square-1", "square", "a blue square"), ("star-1", "star", "a green star"))
    assert object_caption(plan) == "a red circle, a red circle, a blue square and a green star"
    enc = encoded_plan(plan, "objects")
    assert compose_prompt(enc) == ("a red circle, a red circle, a blue square and a green star", "")
    assert [o.group for o in enc.objects] == ["circle-1", "circle-2", "square-1", "star-1"]
    assert [o.box for o in enc.objects] == [o.box for o in plan.objects]
    assert encoded_plan(plan, "prompt") is plan and encoded_plan(plan, None) is plan
    # each circle its own name token: "a red circle , a red circle ..." -> positions 3 and 7 (start token 0)
    tok = CLIPTokenizerFast.from_pretrained(ROOT / "models" / "shapes-tiny" / "tokenizer")
    layout, warnings = build_layout(enc, tok, compose_prompt(enc)[0], tok.model_max_length)
    assert layout.tokens[:2] == [[3], [7]] and not warnings
    shared, _ = build_layout(plan, tok, plan.prompt, tok.model_max_length)
    assert shared.tokens[0] == shared.tokens[1]  # as the prompt says it: instances share "circles"
    two = shapes_plan("a red circle left of a blue square", ("circle-1", "circle", "a red circle"),
                      ("square-1", "square", "a blue square"), background="a grey wall")
    assert compose_prompt(encoded_plan(two, "objects"))[0] == "a red circle and a blue square, a grey wall"
    one = shapes_plan("a lone yellow ring in the top left corner", ("ring-1", "ring", "a yellow ring"))
    assert object_caption(one) == "a yellow ring"


def test_encode_is_a_setting_a_model_folder_may_choose():
    assert RenderSettings(encode=" Objects ").encode == "objects" and RenderSettings().encode is None
    with pytest.raises(UsageError, match="unknown encode 'caption'; choose from prompt, objects"):
        RenderSettings(encode="caption")
    assert check_model_defaults({"encode": "objects", "guidance_scale": 4}) == {"encode": "objects",
                                                                               "guidance_scale": 4.0}


def test_the_render_encodes_what_the_setting_says(tiny_pipe, two_plan):
    default = tiny_pipe(two_plan, method="none", steps=2, progress=False)
    assert default.settings.encode == "prompt" and default.config["prompt"] == two_plan.prompt
    objects = tiny_pipe(two_plan, method="none", steps=2, encode="objects", progress=False)
    assert objects.config["prompt"] == "a red ball and a blue box" and objects.settings.encode == "objects"
    assert not np.array_equal(np.asarray(default.images[0]), np.asarray(objects.images[0]))  # other text, other image
    # the objects' words are found in the new text: guidance still has tokens for each object
    guided = tiny_pipe(two_plan, method="refocus", steps=2, encode="objects", progress=False)
    assert set(guided.scores) == {"ball-1", "box-1"} and not guided.warnings


def test_a_folder_that_says_objects_renders_like_asking_for_it(tiny_pipe, two_plan, tmp_path):
    from plan_and_render.renderer import load_pipeline

    tiny_pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "guidance.json").write_text(json.dumps({"settings": {"encode": "objects"},
                                                              "size_prior": {"side": 0.3}}))
    p = load_pipeline(str(tmp_path / "m"), device="cpu")
    assert p.settings_defaults == {"encode": "objects"} and p.method_defaults == {}
    folder = p(two_plan, method="none", steps=2, progress=False)
    asked = tiny_pipe(two_plan, method="none", steps=2, encode="objects", progress=False)
    assert folder.config["prompt"] == asked.config["prompt"] == "a red ball and a blue box"
    assert np.array_equal(np.asarray(folder.images[0]), np.asarray(asked.images[0]))
    assert p(two_plan, method="none", steps=2, encode="prompt", progress=False).config["prompt"] == two_plan.prompt


def test_box_cells_is_a_setting_a_model_folder_may_choose(tiny_pipe, two_plan, tmp_path):
    from plan_and_render.renderer import load_pipeline

    assert RenderSettings(box_cells=" Nearest ").box_cells == "nearest" and RenderSettings().box_cells is None
    with pytest.raises(UsageError, match="unknown box_cells 'round'; choose from truncate, nearest"):
        RenderSettings(box_cells="round")
    tiny_pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "guidance.json").write_text(json.dumps({"settings": {"box_cells": "nearest"}}))
    p = load_pipeline(str(tmp_path / "m"), device="cpu")
    folder = p(two_plan, method="refocus", steps=2, progress=False)
    asked = p(two_plan, method="refocus", steps=2, box_cells="nearest", progress=False)
    overridden = p(two_plan, method="refocus", steps=2, box_cells="truncate", progress=False)
    assert folder.settings.box_cells == asked.settings.box_cells == "nearest"
    assert overridden.settings.box_cells == overridden.config["box_cells"] == "truncate"
    assert np.array_equal(np.asarray(folder.images[0]), np.asarray(asked.images[0]))
    assert tiny_pipe(two_plan, method="none", steps=1, progress=False).settings.box_cells == "truncate"


# ---------------------------------------------------------------------------
# size_prior: the planner sizes objects as the model draws them
# ---------------------------------------------------------------------------

def row(*names: str) -> tuple[list[PlanObject], list[PlanRelation]]:
    objs = [PlanObject(id=f"{n}-1", name=n, phrase=f"a {n}", group=n) for n in names]
    rels = [PlanRelation(subject=a.id, predicate="left_of", object=b.id) for a, b in zip(objs, objs[1:])]
    return objs, rels


def sides(layout) -> dict[str, tuple[float, float]]:
    return {i: (round(b[2] - b[0], 3), round(b[3] - b[1], 3)) for i, b in layout.boxes.items()}


def test_a_size_prior_gives_every_name_one_size():
    objs, rels = row("ring", "elephant")
    canvas = Canvas(width=64, height=64)
    real = sides(solve(objs, rels, canvas, seed=0))
    assert prior_size("ring")[0] < 0.1 < 0.45 < prior_size("elephant")[0]
    assert real["ring-1"][0] < real["elephant-1"][0] / 3  # the real-world table: a finger ring beside an elephant
    same = solve(objs, rels, canvas, seed=0, size_prior=SizePrior(0.32))
    assert len(set(sides(same).values())) == 1 and not same.warnings  # one size, no box too small to steer
    # two objects crowd less than TARGET_FILL: both grow by sqrt(0.28 / (2 * 0.32^2)) = 1.169 -> 0.374
    assert sides(same)["ring-1"] == pytest.approx((0.374, 0.374), abs=0.002)
    assert check_relations(same.boxes, rels) == []


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["circle", "square", "triangle", "star", "ring"]), min_size=2, max_size=4, unique=True),
       st.floats(min_value=0.1, max_value=0.45), st.integers(0, 10))
def test_size_prior_layouts_keep_every_relation_and_equal_sizes(names, side, seed):
    objs, rels = row(*names)
    layout = solve(objs, rels, Canvas(width=128, height=64), seed=seed, size_prior=SizePrior(side))
    assert check_relations(layout.boxes, rels) == []
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in layout.boxes.values()]
    assert max(areas) - min(areas) < 1e-3  # a wide canvas keeps them equal (and square in pixels, up to rounding)


def copies(n: int, name: str, other: str, predicate: str) -> tuple[list[PlanObject], list[PlanRelation]]:
    """n copies of ``name`` (one group) ``predicate`` one ``other``, as the rule planner writes a count."""
    objs = [PlanObject(id=f"{name}-{k + 1}", name=name, phrase=f"a {name}", group=name) for k in range(n)]
    objs.append(PlanObject(id=f"{other}-1", name=other, phrase=f"a {other}", group=other))
    rels = [PlanRelation(subject=o.id, predicate=predicate, object=objs[-1].id) for o in objs[:-1]]
    return objs, rels


def copy_gaps(layout, n: int, name: str) -> list[float]:
    """Gaps between neighbouring copies along the axis they stand on (a row or a column)."""
    boxes = sorted(layout.boxes[f"{name}-{k + 1}"] for k in range(n))
    row = boxes[-1][0] - boxes[0][0] > boxes[-1][1] - boxes[0][1]
    boxes = sorted(boxes, key=lambda b: b[0] if row else b[1])
    return [b[0] - a[2] if row else b[1] - a[3] for a, b in zip(boxes, boxes[1:])]


def test_copy_gap_stands_the_copies_of_a_count_apart():
    objs, rels = copies(2, "star", "circle", "left_of")  # "two blue stars to the left of a red circle"
    canvas = Canvas(width=64, height=64)
    tight = solve(objs, rels, canvas, seed=0, size_prior=SizePrior(0.32))
    apart = solve(objs, rels, canvas, seed=0, size_prior=SizePrior(0.32, copy_gap=0.1))
    assert copy_gaps(tight, 2, "star") == [pytest.approx(0.03, abs=0.002)]  # the geometry's GAP
    # three things crowd: sides 0.32 * sqrt(0.28 / (3 * 0.32^2)) = 0.3055; the row, 3 sides + 0.1 + 0.03 = 1.0465
    # wide, is fitted into the 0.96 between the margins, which scales everything by 0.9173: the gap to 0.0917
    assert copy_gaps(apart, 2, "star") == [pytest.approx(0.0917, abs=0.0003)]
    assert check_relations(apart.boxes, rels) == []


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 3), st.sampled_from(["left_of", "right_of", "above", "below"]), st.floats(0.04, 0.15),
       st.integers(0, 20), st.sampled_from([(64, 64), (128, 64)]))
def test_copy_gap_holds_for_counts_beside_another_thing(n, predicate, gap, seed, wh):
    objs, rels = copies(n, "circle", "ring", predicate)
    prior = SizePrior(0.32, copy_gap=gap)
    layout = solve(objs, rels, Canvas(width=wh[0], height=wh[1]), seed=seed, size_prior=prior)
    assert check_relations(layout.boxes, rels) == []
    # fitted to the canvas, the gap shrinks with the boxes: gap x (side now / side planned)
    planned, _ = initial_sizes([(o.id, o.name, None, False) for o in objs], wh[0], wh[1], MARGIN, prior)
    box = layout.boxes["circle-1"]
    scale = (box[2] - box[0]) / planned["circle-1"][0]
    assert copy_gaps(layout, n, "circle") == [pytest.approx(gap * scale, abs=0.002)] * (n - 1)


def test_size_prior_values_are_checked():
    assert SizePrior.parse({"side": 0.3}) == SizePrior(0.3)
    assert SizePrior.parse({"side": 0.3, "copy_gap": 0.1}) == SizePrior(0.3, 0.1)
    for bad in ({"side": 0.0}, {"side": 2}, {"side": "big"}, {"side": True}, {"side": 0.3, "aspect": 2}, [0.3], None,
                {"copy_gap": 0.1}, {"side": 0.3, "copy_gap": -0.1}, {"side": 0.3, "copy_gap": 0.5},
                {"side": 0.3, "copy_gap": "wide"}):
        with pytest.raises(UsageError, match="size_prior"):
            SizePrior.parse(bad)


def test_no_model_means_no_size_prior_even_where_the_current_folder_has_one(tmp_path, monkeypatch):
    (tmp_path / "guidance.json").write_text(json.dumps({"size_prior": {"side": 0.32}}))
    monkeypatch.chdir(tmp_path)
    assert size_prior(".") == SizePrior(0.32)  # a folder named explicitly is read
    assert size_prior("") is None and size_prior(None) is None  # "" names no model: ./guidance.json is not it


def test_the_folder_size_prior_is_read_without_torch_and_checked(tmp_path):
    assert size_prior(tmp_path) is None and size_prior("org/hub-model") is None
    (tmp_path / "guidance.json").write_text(json.dumps({"size_prior": {"side": 0.32}}))
    assert size_prior(tmp_path) == SizePrior(0.32)
    (tmp_path / "guidance.json").write_text(json.dumps({"size_prior": {"side": 5}}))
    with pytest.raises(ModelUnavailableError, match="guidance.json is not valid .size_prior side must be"):
        size_prior(tmp_path)
    (tmp_path / "guidance.json").write_text("{not json")
    with pytest.raises(ModelUnavailableError, match="guidance.json is not valid"):
        size_prior(tmp_path)


def test_planning_for_a_model_folder_uses_its_size_prior(tmp_path):
    import plan_and_render as par

    prompt = "a red circle to the left of a blue ring"
    plain = par.plan(prompt, planner="rules", width=64, height=64)
    (tmp_path / "guidance.json").write_text(json.dumps({"size_prior": {"side": 0.32}}))
    sized = par.plan(prompt, planner="rules", width=64, height=64, for_model=tmp_path)
    ring = {p: next(o.box for o in pl.objects if o.name == "ring") for p, pl in (("plain", plain), ("sized", sized))}
    assert ring["plain"][2] - ring["plain"][0] < 0.13 and any("ring-1: box enlarged" in w for w in plain.warnings)
    assert ring["sized"][2] - ring["sized"][0] == pytest.approx(0.374, abs=0.002) and not sized.warnings
    assert par.plan(prompt, planner="rules", width=64, height=64, for_model="org/hub-model") == plain


def widths(plan: ScenePlan) -> dict[str, float]:
    return {o.id: round(o.box[2] - o.box[0], 3) for o in plan.objects}


def test_chat_plans_and_edits_with_the_folder_size_prior(tmp_path):
    from plan_and_render.app.session import Session

    (tmp_path / "guidance.json").write_text(json.dumps({"size_prior": {"side": 0.3, "copy_gap": 0.12}}))
    for model, ring, star in ((None, 0.125, 0.273), (tmp_path, 0.374, 0.405)):
        s = Session("a ring to the left of an elephant", planner="rules", model=model, store=None)
        assert widths(s.plan)["ring-1"] == pytest.approx(ring, abs=0.002)  # a finger ring, or one size for all
        assert s.edit("add a star above the ring").ok
        # the new star is placed alone beside two fixed boxes: it grows by MAX_GROW 1.35 -> 0.3 x 1.35 = 0.405
        assert widths(s.plan)["star-1"] == pytest.approx(star, abs=0.002)
    pair = Session("two rings to the left of an elephant", planner="rules", model=tmp_path, store=None).plan
    left, right = sorted(o.box for o in pair.objects if o.name == "ring")
    assert max(right[0] - left[2], right[1] - left[3]) > 0.09  # copy_gap 0.12, fitted; 0.03 without it


def test_a_batch_plans_with_the_folder_size_prior(tmp_path):
    from plan_and_render.app.batch_render import run_batch

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "guidance.json").write_text(json.dumps({"size_prior": {"side": 0.3}}))
    (tmp_path / "p.txt").write_text("a ring to the left of an elephant\n")
    for model, ring in (("", 0.125), (str(tmp_path / "model"), 0.374)):
        out = tmp_path / f"out{len(model)}"
        report = run_batch(tmp_path / "p.txt", out, planner="rules", model=model, width=64, height=64, dry_run=True)
        assert report.planned == 1
        record = json.loads((out / "index.jsonl").read_text().splitlines()[0])
        assert widths(ScenePlan.model_validate(record["plan"]))["ring-1"] == pytest.approx(ring, abs=0.002)


def test_a_batch_whose_model_folder_has_a_bad_size_prior_writes_nothing(tmp_path):
    from plan_and_render.app.batch_render import run_batch

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "guidance.json").write_text(json.dumps({"size_prior": {"side": 0.3, "copy_gap": 0.9}}))
    (tmp_path / "p.txt").write_text("a ring to the left of an elephant\n")
    with pytest.raises(ModelUnavailableError, match="copy_gap"):
        run_batch(tmp_path / "p.txt", tmp_path / "out", planner="rules", model=str(tmp_path / "model"), dry_run=True)
    assert not (tmp_path / "out").exists()  # no empty run folder left behind
