"""benchmarks.shape_words: what a render shows in the asked colour, the confusion table built from it, and
one real run through the CLI on the shipped UNet shapes model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import demo, shape_words
from plan_and_render.scoring.shapes import SHAPES
from tools.shapes.data import draw

BIG, SMALL, OTHER = (0.1, 0.1, 0.6, 0.6), (0.7, 0.7, 0.85, 0.85), (0.65, 0.1, 0.9, 0.35)


def detected(*objects) -> list[str]:
    """The demo scorer's detections ("red star", largest first) of a scene drawn by the shapes world."""
    image = draw(list(objects), 64, np.random.default_rng(2)).image
    return demo.score(image, {"objects": [], "relations": [], "regions": {}})["detected"]


def test_what_was_drawn_is_the_largest_region_of_the_asked_colour():
    seen = detected(("circle", "red", SMALL), ("star", "red", BIG), ("square", "blue", OTHER))
    assert seen[0] == "red star" and "red circle" in seen
    assert shape_words.drawn(seen, "red") == "star"
    assert shape_words.drawn(seen, "blue") == "square"
    assert shape_words.drawn(seen, "green") == shape_words.NOTHING


def test_the_summary_counts_by_hand():
    def rec(shape, drawn, present):
        return {"shape": shape, "colour": "red", "drawn": drawn,
                "detected": [f"red {shape}"] if present else [f"red {drawn}"]}
    records = [rec("circle", "circle", True), rec("circle", "square", False), rec("square", "circle", True),
               rec("square", "circle", False), rec("ring", "nothing", False), rec("star", "star", True)]
    s = shape_words.summarise(records)
    assert s["renders"] == 6 and s["drawn_as_asked"] == pytest.approx(2 / 6) and s["present"] == pytest.approx(3 / 6)
    assert s["per_shape"] == {"circle": 0.5, "square": 0.0, "triangle": 0.0, "star": 1.0, "ring": 0.0}
    assert s["confusion"]["square"] == {"circle": 2, "square": 0, "triangle": 0, "star": 0, "ring": 0, "nothing": 0}
    assert s["confusion"]["ring"]["nothing"] == 1 and sum(sum(r.values()) for r in s["confusion"].values()) == 6


def test_every_shape_colour_and_seed_is_asked_once():
    asked = shape_words.rows(["red", "blue"], 3)
    assert len(asked) == len(SHAPES) * 2 * 3 and len({r["id"] for r, _ in asked}) == len(asked)
    assert {(r["prompt"], s) for r, s in asked} >= {("a blue ring", 2), ("a red circle", 0)}


def test_a_run_on_the_shipped_unet_model_writes_its_table_and_sheet(tmp_path):
    out = tmp_path / "sw.json"
    result = shape_words.main(["--models", "models/shapes-tiny", "--colours", "red", "--seeds", "1",
                               "--out", str(out), "--sheets", str(tmp_path), "--", "--steps", "10"])
    model = json.loads(out.read_text())["models"][0]
    assert result["method"] == "none" and len(model["records"]) == len(SHAPES)
    assert [r["prompt"] for r in model["records"]] == [f"a red {s}" for s in SHAPES]
    assert all(r["drawn"] in (*SHAPES, shape_words.NOTHING) and r["settings"]["steps"] == 10 for r in model["records"])
    assert sum(sum(r.values()) for r in model["summary"]["confusion"].values()) == len(SHAPES)
    assert (tmp_path / "shape_words_shapes-tiny.png").is_file()


@pytest.mark.parametrize("args, says", [(["--models", "."], "not a model folder"),
                                        (["--colours", "red,pink"], "not a palette colour: pink"),
                                        (["--seeds", "0"], "give at least one colour and seed")])
def test_bad_arguments_are_one_usage_line(args, says, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        shape_words.main([*args, "--out", str(tmp_path / "x.json")])
    assert e.value.code == 2 and says in capsys.readouterr().err and not (tmp_path / "x.json").exists()
