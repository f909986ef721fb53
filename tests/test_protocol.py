"""benchmarks.protocol: each benchmark's image rule on hand-made detections (hand-checked), and a whole
LMD run on a four-record set through batch --score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.protocol import (geneval_correct, geneval_relations, lmd_correct, main, t2i_parse, t2i_position,
                                 t2i_score)
from plan_and_render.scoring import Detection

pytestmark = pytest.mark.usefixtures("torch_one_thread")

ROOT = Path(__file__).resolve().parents[1]
LEFT, RIGHT = (0.1, 0.4, 0.3, 0.6), (0.6, 0.4, 0.8, 0.6)


def det(query: int, box, score: float = 0.9) -> Detection:
    return Detection(query, score, tuple(box))


def test_lmd_rules():
    assert lmd_correct({"type": "negation", "count": 0}, [])
    assert not lmd_correct({"type": "negation", "count": 0}, [det(0, LEFT)])
    assert lmd_correct({"type": "numeracy", "count": 2}, [det(0, LEFT), det(0, RIGHT)])
    assert not lmd_correct({"type": "numeracy", "count": 3}, [det(0, LEFT), det(0, RIGHT)])
    attribution = {"type": "attribution", "objects": [["blue", "dog"], ["white", "bowl"]]}
    assert lmd_correct(attribution, [det(1, LEFT), det(0, RIGHT)]) and not lmd_correct(attribution, [det(0, LEFT)])
    spatial = {"type": "spatial", "objects": [["bottle", "left"], ["dog", "right"]]}
    assert lmd_correct(spatial, [det(0, LEFT), det(1, RIGHT)])
    # the best (first) box of each query decides, as in LMD
    assert not lmd_correct(spatial, [det(0, RIGHT, 0.9), det(0, LEFT, 0.5), det(1, LEFT)])
    top = {"type": "spatial", "objects": [["cup", "top"], ["cat", "bottom"]]}
    assert lmd_correct(top, [det(0, (0.4, 0.0, 0.6, 0.2)), det(1, (0.4, 0.7, 0.6, 0.9))])


def test_geneval_relative_position_hand_checked():
    # centre offset 0.5, summed widths 0.4: 0.5 - 0.04 = 0.46 of 0.5 -> 0.92 > 0.5: right of
    assert geneval_relations(RIGHT, LEFT) == {"right of"} and geneval_relations(LEFT, RIGHT) == {"left of"}
    # offset 0.05 shrinks to 0.01 of 0.05 = 0.2: no direction
    assert geneval_relations((0.15, 0.4, 0.35, 0.6), LEFT) == set()
    # diagonal: (0.26, 0.26) / 0.424 = 0.61 on both axes
    assert geneval_relations((0.4, 0.7, 0.6, 0.9), (0.1, 0.4, 0.3, 0.6)) == {"right of", "below"}
    assert geneval_relations(LEFT, LEFT) == set()


def test_geneval_rules():
    position = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
                                               {"class": "dog", "count": 1, "position": ["right of", 0]}]}
    assert geneval_correct(position, [det(0, LEFT), det(1, RIGHT)])
    assert not geneval_correct(position, [det(0, RIGHT), det(1, LEFT)])
    assert not geneval_correct(position, [det(1, RIGHT)])  # no teddy bear: no target
    counting = {"tag": "counting", "include": [{"class": "clock", "count": 2}],
                "exclude": [{"class": "clock", "count": 3}]}
    two, three = [det(0, LEFT), det(0, RIGHT)], [det(0, LEFT), det(0, RIGHT), det(0, (0.4, 0.0, 0.5, 0.1))]
    assert geneval_correct(counting, two) and not geneval_correct(counting, three)
    assert not geneval_correct(counting, two[:1])


def test_t2i_spatial_rules():
    assert t2i_parse("a giraffe next to a lamp") == {"relation": "next to", "objects": ["giraffe", "lamp"]}
    assert t2i_parse("a girl on the top of a frog") == {"relation": "on the top of", "objects": ["girl", "frog"]}
    assert t2i_parse("a dog and a cat")["relation"] is None
    assert t2i_position("on the left of", LEFT, RIGHT) == 1.0 and t2i_position("on the left of", RIGHT, LEFT) == 0.0
    assert t2i_position("on the right of", RIGHT, LEFT) == 1.0
    # overlapping: IoU 0.04 / 0.12 = 1/3 -> 0.1 / (1/3) = 0.3
    assert t2i_position("on the left of", (0.1, 0.4, 0.5, 0.6), (0.3, 0.4, 0.7, 0.6)) == pytest.approx(0.3)
    assert t2i_position("on the top of", (0.4, 0.0, 0.6, 0.2), (0.4, 0.7, 0.6, 0.9)) == 1.0
    assert t2i_position("next to", LEFT, RIGHT) == 1.0  # the same row: |dy| = 0 < 150/512
    meta = {"relation": "on the left of", "objects": ["cat", "dog"]}
    assert t2i_score(meta, [det(0, LEFT, 0.8), det(1, RIGHT, 0.6)]) == pytest.approx(0.85)
    assert t2i_score(meta, [det(0, RIGHT, 0.8), det(1, LEFT, 0.6)]) == 0.0  # 0.35 < 0.5
    assert t2i_score(meta, [det(0, LEFT, 0.8)]) == 0.0


def test_lmd_protocol_end_to_end(tmp_path, monkeypatch):
    """Four LMD records, one of each type, through batch --score with the shapes detector, which finds no
    backpacks, dogs or bowls: negation is right, numeracy, attribution and spatial wrong - 25 %."""
    bench = tmp_path / "bench"
    (bench / "lmd").mkdir(parents=True)
    lmd = [{"type": "negation", "prompt": "A realistic photo of a scene without backpacks", "object": "backpack", "count": 0},
           {"type": "numeracy", "prompt": "A realistic photo of a scene with two cats", "object": "cat", "count": 2},
           {"type": "attribution", "prompt": "A realistic photo of a scene with a blue dog and a white bowl",
            "objects": [["blue", "dog"], ["white", "bowl"]]},
           {"type": "spatial", "prompt": "A realistic photo of a scene with a bottle on the left and a dog on the right",
            "objects": [["bottle", "left"], ["dog", "right"]]}]
    (bench / "lmd" / "lmd_prompts_400.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lmd))
    monkeypatch.setenv("PLAN_AND_RENDER_BENCH", str(bench))
    result = main(["--set", "lmd", "--model", str(ROOT / "models" / "shapes-tiny"), "--detector", "shapes",
                   "--steps", "1", "--out", str(tmp_path / "run"), "--results", str(tmp_path / "r.json")])
    assert result["metrics"]["overall"] == {"accuracy": 25.0, "n": 4}
    assert result["metrics"]["negation"] == {"accuracy": 100.0, "n": 1}
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["config"]["threshold"] == 0.15 and saved["config"]["command"].startswith("python3 -m benchmarks.protocol")
    index = [json.loads(x) for x in (tmp_path / "run" / "index.jsonl").read_text().splitlines()]
    assert [r["meta"]["type"] for r in index] == ["negation", "numeracy", "attribution", "spatial"]
    assert [r["request"]["seed"] for r in index] == [0, 1, 2, 3]
