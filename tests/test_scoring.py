"""Scoring images against plans: the rules on hand-made shapes images (hand-checked numbers), the region
rule, aggregation, the detector specs, and the open-vocabulary detectors on tiny random models built from
configs (their outputs checked against the model's own forward pass and transformers' post-processing)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from plan_and_render.errors import UsageError
from plan_and_render.geometry import region_holds
from plan_and_render.scene import ScenePlan
from plan_and_render.scoring import Aggregate, Detection, class_aware_nms, get_detector, parse_spec, score_image
from plan_and_render.scoring.shapes import COLOURS, ShapesDetector, parse_query, shape_mask

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SIDE = 64


def draw(shapes: list[tuple[str, str, tuple[int, int, int, int]]], side: int = SIDE) -> Image.Image:
    """Shapes (colour, shape, pixel box x0, y0, x1, y1) on a light grey background."""
    img = np.full((side, side, 3), 200, np.uint8)
    for colour, shape, box in shapes:
        img[shape_mask(shape, box, side, side)] = COLOURS[colour]
    return Image.fromarray(img)


def plan_of(objects: list[tuple], relations: tuple = ()) -> ScenePlan:
    """objects: (id, colour, shape, normalised box[, region])."""
    objs = [dict(id=i, name=s, phrase=f"a {c} {s}", attributes=[c], box=b, region=r[0] if r else None)
            for i, c, s, b, *r in objects]
    rels = [dict(subject=a, predicate=p, object=b) for a, p, b in relations]
    return ScenePlan(prompt="shapes", canvas={"width": SIDE, "height": SIDE}, objects=objs, relations=rels)


# --------------------------------------------------------------------------
# the rules, on images whose answer is known
# --------------------------------------------------------------------------


def test_exact_placement_scores_perfectly():
    image = draw([("blue", "square", (8, 8, 24, 40)), ("red", "square", (40, 8, 56, 40))])
    plan = plan_of([("b", "blue", "square", (0.125, 0.125, 0.375, 0.625), "left"),
                    ("r", "red", "square", (0.625, 0.125, 0.875, 0.625))], [("b", "left_of", "r")])
    rec = score_image(image, plan, ShapesDetector())
    assert [o["box_iou"] for o in rec["objects"]] == [1.0, 1.0]
    assert rec["objects"][0]["box"] == [0.125, 0.125, 0.375, 0.625]
    assert rec["summary"] == {"presence": 1.0, "count_ok": True, "box_iou": 1.0, "relations": 1.0, "regions": 1.0,
                              "all_ok": True}


def test_misplaced_object_hand_checked():
    # planned: blue square left half-top, red square right; drawn: red square BELOW the blue one, shifted
    image = draw([("blue", "square", (8, 8, 24, 24)), ("red", "square", (16, 40, 32, 56))])
    plan = plan_of([("b", "blue", "square", (0.125, 0.125, 0.375, 0.375), "top_left"),
                    ("r", "red", "square", (0.5, 0.125, 0.75, 0.375))], [("b", "left_of", "r")])
    rec = score_image(image, plan, ShapesDetector())
    assert rec["objects"][0]["box_iou"] == 1.0
    # red: detected (0.25, 0.625, 0.5, 0.875) vs planned (0.5, 0.125, 0.75, 0.375): no overlap
    assert rec["objects"][1] == {"id": "r", "query": "a red square", "present": True, "box_iou": 0.0,
                                 "box": [0.25, 0.625, 0.5, 0.875]}
    # centres: blue (0.25, 0.25), red (0.375, 0.75): dx = -0.125, dy = -0.5 -> above, not left_of
    assert rec["relations"] == [{"relation": "b left_of r", "holds": False}]
    assert rec["regions"] == [{"id": "b", "region": "top_left", "holds": True}]
    assert rec["summary"]["box_iou"] == 0.5 and rec["summary"]["all_ok"] is False


def test_counts_matching_and_absence():
    # two red circles where the plan has one; the planned blue star is missing
    image = draw([("red", "circle", (4, 4, 20, 20)), ("red", "circle", (40, 40, 60, 60))])
    plan = plan_of([("c", "red", "circle", (0.6, 0.6, 0.95, 0.95)), ("s", "blue", "star", (0.1, 0.5, 0.4, 0.9))],
                   [("s", "below", "c")])
    rec = score_image(image, plan, ShapesDetector())
    assert rec["counts"] == [{"query": "a red circle", "planned": 1, "detected": 2, "ok": False},
                             {"query": "a blue star", "planned": 1, "detected": 0, "ok": False}]
    c, s = rec["objects"]
    assert c["present"] and c["box"] == [0.625, 0.625, 0.9375, 0.9375]  # matched to the circle that overlaps
    assert c["box_iou"] == pytest.approx(round((0.3125 ** 2) / (0.35 ** 2), 4), abs=1e-4)
    assert s == {"id": "s", "query": "a blue star", "present": False, "box_iou": 0.0, "box": None}
    assert rec["relations"] == [{"relation": "s below c", "holds": False}]  # an absent object fails its relations
    assert rec["summary"]["presence"] == 0.5 and rec["summary"]["count_ok"] is False


def test_matching_is_one_to_one_by_iou():
    """Two planned squares of one colour, drawn swapped in order: each plan box gets the detection on it."""
    image = draw([("green", "square", (40, 8, 56, 24)), ("green", "square", (40, 40, 56, 56))])
    plan = plan_of([("a", "green", "square", (0.625, 0.625, 0.875, 0.875)),
                    ("b", "green", "square", (0.625, 0.125, 0.875, 0.375))], [("a", "below", "b")])
    rec = score_image(image, plan, ShapesDetector())
    assert [o["box_iou"] for o in rec["objects"]] == [1.0, 1.0]
    assert rec["counts"] == [{"query": "a green square", "planned": 2, "detected": 2, "ok": True}]
    assert rec["summary"]["all_ok"]


@pytest.mark.parametrize("region,box,holds", [
    ("left", (0.0, 0.4, 0.3, 0.6), True), ("left", (0.1, 0.4, 0.6, 0.6), False),  # centre x 0.15 / 0.35
    ("top_right", (0.7, 0.0, 0.9, 0.2), True), ("top_right", (0.7, 0.3, 0.9, 0.5), False),
    ("center", (0.4, 0.4, 0.6, 0.6), True), ("center", (0.4, 0.1, 0.6, 0.3), False),
    ("bottom", (0.0, 0.7, 1.0, 1.0), True), ("bottom_left", (0.0, 0.7, 0.3, 1.0), True),
])
def test_region_rule_thirds(region, box, holds):
    assert region_holds(region, box) is holds


def test_aggregate_is_a_micro_average():
    image_a = {"objects": [{"present": True, "box_iou": 0.5}, {"present": False, "box_iou": 0.0}],
               "counts": [{"ok": True}, {"ok": False}], "relations": [{"holds": True}], "regions": [],
               "summary": {"all_ok": False}}
    image_b = {"objects": [{"present": True, "box_iou": 1.0}], "counts": [{"ok": True}],
               "relations": [{"holds": False}, {"holds": False}, {"holds": True}], "regions": [{"holds": True}],
               "summary": {"all_ok": True}}
    agg = Aggregate()
    agg.add_prompt({"images": [image_a, image_b]})
    r = agg.result()
    assert (r["images"], r["prompts"]) == (2, 1)
    assert r["presence"] == round(2 / 3, 4) and r["box_iou"] == 0.5 and r["box_iou_found"] == 0.75
    assert r["count_acc"] == round(2 / 3, 4) and r["relation_acc"] == 0.5 and r["region_acc"] == 1.0
    assert r["all_ok"] == 0.5 and r["n_relation_acc"] == 4


def test_class_aware_nms_hand_checked():
    a = Detection(0, 0.9, (0.0, 0.0, 0.5, 0.5))
    b = Detection(0, 0.8, (0.0, 0.0, 0.5, 0.6))  # IoU with a = 0.25 / 0.30 = 0.833
    c = Detection(1, 0.7, (0.0, 0.0, 0.5, 0.5))  # another query: never suppressed by a
    d = Detection(0, 0.6, (0.45, 0.45, 0.95, 0.95))  # IoU with a = 0.0025 / 0.4975
    assert class_aware_nms([d, c, b, a], 0.15) == [a, c, d]
    assert class_aware_nms([d, c, b, a], 0.9) == [a, b, c, d]
    assert class_aware_nms([d, c, b, a], 1.0) == [a, b, c, d]


def test_shapes_queries_and_specs():
    assert parse_query("two red circles") == ("red", "circle") and parse_query("a cat") is None
    assert parse_spec("shapes") == ("shapes", None) and parse_spec("OWLv2:/m") == ("owlv2", "/m")
    assert parse_spec("grounding_dino:x/y") == ("grounding-dino", "x/y")
    for bad, words in (("yolo", "unknown detector"), ("owlv2", "needs a model"), ("shapes:x", "unknown detector")):
        with pytest.raises(UsageError, match=words):
            parse_spec(bad)
    with pytest.raises(UsageError, match="threshold 1.5 is out of range"):
        get_detector("shapes", threshold=1.5)
    assert get_detector("shapes") is get_detector("shapes")


def test_missing_detector_model_is_one_line(tmp_path):
    from plan_and_render.errors import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match="cannot be loaded"):
        get_detector(f"owlv2:{tmp_path / 'nothing-here'}")


# --------------------------------------------------------------------------
# open-vocabulary detectors: tiny random models built from configs
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def owl_dir(tmp_path_factory):
    from tools.tiny_detectors import tiny_owlv2

    return tiny_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    from tools.tiny_detectors import tiny_grounding_dino

    return tiny_grounding_dino(tmp_path_factory.mktemp("gdino"))


def noise(w: int = 80, h: int = 48) -> Image.Image:
    return Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8))


def test_owlv2_detections_follow_the_model_and_the_thresholds(owl_dir):
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    image, queries = noise(), ["a red circle", "a dog"]
    everything = get_detector(f"owlv2:{owl_dir}", threshold=0.0, nms=1.0).detect(image, queries)
    # the same forward pass through transformers' own post-processing (OWLv2 pads to a square: side 80)
    proc, model = AutoProcessor.from_pretrained(owl_dir), AutoModelForZeroShotObjectDetection.from_pretrained(owl_dir)
    inputs = proc(text=[[f"a photo of {q}" for q in queries]], images=image, return_tensors="pt")
    with torch.no_grad():
        ref = proc.post_process_grounded_object_detection(model(**inputs), threshold=0.0, target_sizes=[(80, 80)])[0]
    assert len(everything) == len(ref["scores"]) > 0
    want = sorted(zip(ref["scores"].tolist(), ref["labels"].tolist(), ref["boxes"].tolist()), key=lambda t: -t[0])
    for d, (score, label, box) in zip(everything, want):
        assert d.query == label and d.score == pytest.approx(score, abs=1e-5)
        expect = np.clip(np.array(box) / [80, 48, 80, 48], 0, 1)
        assert np.allclose(d.box, expect, atol=1e-5)
    assert [d.score for d in everything] == sorted((d.score for d in everything), reverse=True)

    cut = 0.5
    kept = get_detector(f"owlv2:{owl_dir}", threshold=cut, nms=1.0).detect(image, queries)
    assert kept == [d for d in everything if d.score > cut]
    thinned = get_detector(f"owlv2:{owl_dir}", threshold=0.0, nms=0.15).detect(image, queries)
    assert thinned == class_aware_nms(everything, 0.15)
    assert get_detector(f"owlv2:{owl_dir}", threshold=1.0).detect(image, queries) == []


def test_owlv2_scores_a_plan(owl_dir):
    plan = plan_of([("c", "red", "circle", (0.1, 0.1, 0.4, 0.4)), ("d", "blue", "square", (0.5, 0.5, 0.9, 0.9))],
                   [("c", "left_of", "d")])
    detector = get_detector(f"owlv2:{owl_dir}", threshold=0.0, nms=1.0)
    rec = score_image(noise(64, 64), plan, detector)
    detected = {c["query"]: c["detected"] for c in rec["counts"]}
    assert sum(detected.values()) == len(rec["detections"]) == len(detector.detect(noise(64, 64), list(detected)))
    assert all(o["present"] == (detected[o["query"]] > 0) for o in rec["objects"])
    assert all(0 <= v <= 1 for d in rec["detections"] for v in d["box"])
    nothing = score_image(noise(64, 64), plan, get_detector(f"owlv2:{owl_dir}", threshold=1.0))
    assert nothing["summary"] == {"presence": 0.0, "count_ok": False, "box_iou": 0.0, "relations": 0.0,
                                  "regions": None, "all_ok": False}


def test_grounding_dino_scores_each_query_by_its_tokens(dino_dir):
    import torch
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    image, queries = noise(), ["a red circle", "a dog"]
    found = get_detector(f"grounding-dino:{dino_dir}", threshold=0.0, nms=1.0).detect(image, queries)
    proc, model = AutoProcessor.from_pretrained(dino_dir), AutoModelForZeroShotObjectDetection.from_pretrained(dino_dir)
    inputs = proc(images=image, text="a red circle. a dog.", return_tensors="pt")
    dot = proc.tokenizer.convert_tokens_to_ids(".")
    assert [i for i, t in enumerate(inputs["input_ids"][0].tolist()) if t == dot] == [4, 7]  # [CLS] a red circle . a dog .
    with torch.no_grad():
        out = model(**inputs)
    tokens = torch.sigmoid(out.logits[0])
    per_query = torch.stack([tokens[:, 1:4].max(-1).values, tokens[:, 5:7].max(-1).values], -1)  # query spans
    best, label = per_query.max(-1)
    assert len(found) == 10  # every box query of the model
    for d in found:
        k = int(np.argmin([abs(d.score - s) for s in best.tolist()]))
        assert d.query == int(label[k]) and d.score == pytest.approx(float(best[k]), abs=1e-5)
        cx, cy, w, h = out.pred_boxes[0][k].tolist()
        assert np.allclose(d.box, np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 1), atol=1e-5)
    assert get_detector(f"grounding-dino:{dino_dir}").threshold == 0.35
