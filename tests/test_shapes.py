"""Shapes world: generator, exact detector, pixel VAE, training step, shipped model through the renderer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plan_and_render.scoring.detection import box_iou
from plan_and_render.scoring.shapes import COLOURS, SHAPES, classify, describe, detect, find, mask_iou, shape_mask
from tools.shapes.data import POSITION_WORDS, caption, make_scene
from tools.shapes.detect import relation_holds

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny models: a second thread only spins

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "shapes-tiny"


def test_generator_is_deterministic_per_seed():
    a, b, c = make_scene(7), make_scene(7), make_scene(8)
    assert np.array_equal(a.image, b.image) and a.caption == b.caption and np.array_equal(a.masks, b.masks)
    assert [o.box for o in a.objects] == [o.box for o in b.objects]
    assert not np.array_equal(a.image, c.image)


def test_generator_covers_recipe_and_captions_have_no_position_words():
    shapes, colours, counts = set(), set(), set()
    for seed in range(200):
        s = make_scene(seed)
        words = set(re.findall(r"[a-z]+", s.caption))
        assert not words & POSITION_WORDS, s.caption
        assert words <= {"a", "an", "and", *SHAPES, *COLOURS}, s.caption
        assert len(s.objects) == len(s.masks) == s.caption.count(" and ") + s.caption.count(",") + 1
        for o in s.objects:
            assert f"{o.colour} {o.shape}" in s.caption
        shapes |= {o.shape for o in s.objects}
        colours |= {o.colour for o in s.objects}
        counts.add(len(s.objects))
    assert shapes == set(SHAPES) and colours == set(COLOURS) and counts == {1, 2, 3, 4}
    assert len(SHAPES) >= 5 and len(COLOURS) >= 6


def test_caption_grammar():
    assert caption([("circle", "red")]) == "a red circle"
    assert caption([("circle", "red"), ("star", "orange")]) == "a red circle and an orange star"
    assert caption([("ring", "blue"), ("square", "green"), ("star", "red")]) == "a blue ring, a green square and a red star"


def test_detector_is_exact_on_generated_scenes():
    n = 0
    for seed in range(60):
        s = make_scene(seed, 64)
        dets = detect(s.image)
        for o, m in zip(s.objects, s.masks):
            d = find(dets, o.shape, o.colour)
            assert d is not None, (seed, o)
            assert box_iou(d.box, o.box) == pytest.approx(1.0)
            assert mask_iou(d.mask, m) == pytest.approx(1.0)
            n += 1
    assert n > 100


@pytest.mark.parametrize("shape", SHAPES)
def test_classifier_on_ideal_stretched_shapes(shape):
    for box in [(4, 4, 44, 44), (10, 2, 60, 40), (3, 20, 30, 62)]:
        assert classify(describe(shape_mask(shape, box, 64, 64))) == shape


def test_descriptors_hand_checked():
    sq = np.zeros((10, 10), bool)
    sq[2:8, 2:8] = True
    assert describe(sq) == {"hole": 0.0, "solidity": 1.0, "fill": 1.0}
    ring = sq.copy()
    ring[4:6, 4:6] = False  # 4 of 36 pixels removed
    assert describe(ring)["hole"] == pytest.approx(4 / 36)


def test_iou_and_relations_hand_checked():
    assert box_iou((0, 0, 0.5, 0.5), (0.25, 0.25, 0.75, 0.75)) == pytest.approx(0.0625 / (0.25 + 0.25 - 0.0625))
    left, right = (0.0, 0.4, 0.3, 0.6), (0.6, 0.3, 0.9, 0.7)
    assert relation_holds("left_of", left, right) and relation_holds("right_of", right, left)
    assert not relation_holds("above", left, right)
    top, low = (0.4, 0.0, 0.6, 0.2), (0.45, 0.7, 0.65, 0.9)
    assert relation_holds("above", top, low) and relation_holds("below", low, top)
    assert relation_holds("on", top, low) is None


def test_pixel_vae_is_average_pool_and_nearest_upsample():
    from tools.shapes.model import pixel_vae

    vae = pixel_vae()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        y = vae.decode(post.mean).sample
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    assert torch.allclose(post.mean[:, :3], pooled, atol=1e-4) and post.mean[:, 3].abs().max() < 1e-6
    assert post.std.max() < 1e-4
    assert torch.allclose(y, torch.nn.functional.interpolate(pooled, scale_factor=2), atol=1e-4)


def test_tokenizer_keeps_every_caption_word_whole_and_finds_name_tokens():
    from tools.shapes.data import vocabulary
    from tools.shapes.train import build_tokenizer, name_positions

    tok = build_tokenizer(vocabulary())
    for w in vocabulary():
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    cap = "a red circle, an orange star and a red ring"
    # <start> a red circle , an orange star and a red ring <end>
    #    0    1  2    3    4  5    6     7    8  9 10  11
    assert name_positions(tok, cap, ["red ring", "orange star", "red circle"]) == [11, 7, 3, -1]


def test_attention_loss_hand_checked():
    from tools.shapes.train import attention_loss

    masks = torch.zeros(1, 4, 16, 16)
    masks[0, 0, :8, :8] = 1.0  # a quarter of the image
    tokens = torch.tensor([[2, -1, -1, -1]])
    on = torch.zeros(1, 256, 5)
    on[0, :, 0] = 1.0  # every pixel attends to the start token ...
    inside = masks[0, 0].flatten() > 0
    on[0, inside, 0], on[0, inside, 2] = 0.0, 1.0  # ... except the object's pixels, which attend to its token
    assert attention_loss([on], tokens, masks).item() == pytest.approx(0.0, abs=1e-4)
    uniform = torch.full((1, 256, 5), 0.2)
    # share = 1/4 -> (3/4)^2; BCE: mean of -log 0.2 (inside, 1/4 of pixels) and -log 0.8 (outside)
    want = 0.75**2 + (0.25 * -np.log(0.2) + 0.75 * -np.log(0.8))
    assert attention_loss([uniform], tokens, masks).item() == pytest.approx(want, rel=1e-4)
    # the 8x8 mid-block map is scored against the 2x2-pooled mask
    assert attention_loss([on[:, :64]], tokens, masks).item() > 0.5


def test_repeated_names_map_to_successive_mentions():
    from tools.shapes.data import vocabulary
    from tools.shapes.train import build_tokenizer, name_positions

    tok = build_tokenizer(vocabulary())
    cap = "a blue star, a red circle and a blue star"
    # <start> a blue star , a red circle and a blue star <end>
    #    0    1  2    3   4 5  6    7     8  9  10   11
    assert name_positions(tok, cap, ["blue star", "red circle", "blue star"]) == [3, 7, 11, -1]


def test_attention_loss_on_a_wide_canvas_hand_checked():
    from tools.shapes.train import attention_loss

    masks = torch.zeros(1, 4, 16, 32)
    masks[0, 0, :, :16] = 1.0  # the left half of a 16x32 level
    tokens = torch.tensor([[1, -1, -1, -1]])
    half = torch.full((1, 512, 3), 0.5)
    # share 1/2 -> (1/2)^2; BCE -log 0.5 on every pixel
    assert attention_loss([half], tokens, masks).item() == pytest.approx(0.25 + np.log(2), rel=1e-4)
    # the 8x16 mid block: a map that is 1 on the (pooled) left half and 0 elsewhere scores ~0
    left = torch.zeros(1, 128, 3)
    left[0, torch.arange(128) % 16 < 8, 1] = 1.0
    assert attention_loss([left], tokens, masks).item() == pytest.approx(0.0, abs=1e-4)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), width=st.sampled_from([64, 128]))
def test_repeat_recipe_names_one_pair_several_times_and_wide_scenes_keep_the_shapes_scale(seed, width):
    from tools.shapes.data import RECIPE, make_scene

    recipe = {**RECIPE, "repeat_share": 1.0}
    sc = make_scene(seed, 64, recipe=recipe, width=width)
    names = [o.phrase for o in sc.objects]
    assert sc.image.shape == (64, width, 3) and sc.masks.shape[1:] == (64, width)
    assert len(names) <= RECIPE["max_objects"]
    assert max(names.count(n) for n in names) >= 2 or len(names) < 2  # a shape squeezed out can leave one
    assert sorted(sc.caption.replace(" and ", ", ").split(", ")) == sorted(names)
    longest = RECIPE["max_side"] * RECIPE["max_aspect"] ** 0.5 * 64 + 1  # a side, stretched by the aspect
    for o in sc.objects:  # sides are shares of the height on any canvas (pixel size as on the square one)
        assert (o.box[3] - o.box[1]) * 64 <= longest and (o.box[2] - o.box[0]) * width <= longest
    found = sorted(f"{d.colour} {d.shape}" for d in detect(sc.image) if d.shape)
    assert found == sorted(n.split(" ", 1)[1] for n in names)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), width=st.sampled_from([64, 128]))
def test_repeat_rows_stand_side_by_side_one_size_and_a_gap_apart(seed, width):
    from tools.shapes.data import RECIPE, sample_objects

    recipe = {**RECIPE, "repeat_share": 1.0, "repeat_row": 1.0}
    ratio = width / 64
    objects = sample_objects(np.random.default_rng(seed), recipe=recipe, ratio=ratio)
    first = objects[0][:2]
    boxes = sorted(b for s, c, b in objects if (s, c) == first)
    assert 2 <= len(boxes) <= RECIPE["max_repeat"]
    sizes = {(round(b[2] - b[0], 9), round(b[3] - b[1], 9)) for b in boxes}
    assert len(sizes) == 1  # one size
    row = all(abs(b[1] - boxes[0][1]) < 1e-9 for b in boxes)
    column = all(abs(b[0] - boxes[0][0]) < 1e-9 for b in boxes)
    assert row != column  # a row or a column, not both and not scattered
    ordered = boxes if row else sorted(boxes, key=lambda b: b[1])
    lo, hi = (0, 2) if row else (1, 3)
    gaps = [b[lo] - a[hi] for a, b in zip(ordered, ordered[1:])]
    assert all(abs(g - gaps[0]) < 1e-9 for g in gaps)  # evenly spaced
    assert 0 < gaps[0] <= 2 * RECIPE["min_gap"] + 1e-9
    assert all(0.02 - 1e-9 <= b[0] and b[2] <= 0.98 + 1e-9 and 0.02 - 1e-9 <= b[1] and b[3] <= 0.98 + 1e-9
               for b in boxes)


def test_repeat_row_zero_keeps_the_repeat_recipe_seed_for_seed():
    from tools.shapes.data import RECIPE, make_scene

    old = {k: v for k, v in RECIPE.items() if k != "repeat_row"} | {"repeat_share": 0.5}
    for seed in range(60):
        a, b = make_scene(seed, 64, recipe=old), make_scene(seed, 64, recipe={**old, "repeat_row": 0.0})
        assert a.caption == b.caption and np.array_equal(a.image, b.image)


def test_training_mixes_wide_batches_and_repeated_captions(tmp_path):
    from tools.shapes.train import train

    over = {"repeat_share": 1.0, "n_wide": 8, "wide_share": 0.5}
    rec = train("test", tmp_path / "w", seed=0, steps=6, device="cpu", workers=1, log=lambda m: None, overrides=over)
    assert rec["data"]["recipe"]["repeat_share"] == 1.0
    assert rec["data"]["wide"]["size"] == "32x64 (height x width)"
    assert all(np.isfinite(h["total"]) for h in rec["last_losses"])


def test_layout_maps_are_16x16_and_the_32x32_level_has_no_attention():
    from diffusers import UNet2DConditionModel

    from tools.shapes.model import PRESETS, unet_config
    from plan_and_render.renderer.attention import layout_level, unet_layers

    for name in ("cpu", "test"):
        unet = UNet2DConditionModel(**unet_config(PRESETS[name]))
        layers = unet_layers(unet)
        assert layout_level(layers) == 1  # 32 / 2 = 16x16 maps
        assert {li.level for li in layers if li.cross} == {1, 2}  # 16x16 blocks + the 8x8 mid block
        assert not [li for li in layers if li.level == 0]


def test_isolation_feeds_the_unet_only_name_token_states(monkeypatch):
    from tools.shapes.model import PRESETS
    from tools.shapes.train import Trainer

    tr = Trainer({**PRESETS["test"], "n_scenes": 4}, seed=0, device="cpu", workers=1, log=lambda m: None)
    seen = {}
    forward = tr.unet.forward

    def spy(x, t, encoder_hidden_states=None, **kw):
        seen["ctx"] = encoder_hidden_states.detach()
        return forward(x, t, encoder_hidden_states=encoder_hidden_states, **kw)

    monkeypatch.setattr(tr.unet, "forward", spy)
    idx = torch.arange(4)
    t, noise = torch.full((4,), 500), torch.randn(4, 4, 32, 32)
    no, yes = torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
    with torch.no_grad():
        out = tr.losses(tr.square, idx, t, noise, no, yes)
        full, null = tr.text(tr.square.ids[idx])[0], tr.text(tr.empty)[0]
    names = tr.square.names[idx]
    for b in range(4):
        keep = {0, *[int(p) for p in names[b] if p >= 0]}
        for pos in range(77):
            want = full[b, pos] if pos in keep else null[0, pos]
            assert torch.allclose(seen["ctx"][b, pos], want, atol=1e-5), (b, pos)
    assert (names >= 0).sum() >= 4 and out["null"] > 0  # name tokens kept, the rest replaced (and penalised)
    with torch.no_grad():
        tr.losses(tr.square, idx, t, noise, no, no)  # not isolated: the plain encoder output
    assert torch.allclose(seen["ctx"], full, atol=1e-5)


def test_tiny_training_run_reduces_loss_and_loads_in_the_renderer(tmp_path):
    from plan_and_render import renderer
    from tools.shapes.model import GUIDANCE
    from tools.shapes.train import train

    rec = train("test", tmp_path / "m", seed=0, steps=20, device="cpu", workers=1, log=lambda m: None)
    assert rec["steps"] == 20
    assert rec["eval_loss_end"] < 0.95 * rec["eval_loss_start"]
    assert (tmp_path / "m" / "model_index.json").exists() and (tmp_path / "m" / "training.json").exists()
    assert json.loads((tmp_path / "m" / "guidance.json").read_text()) == GUIDANCE
    pipe = renderer.load_pipeline(str(tmp_path / "m"), device="cpu", dtype="fp32")
    assert pipe.tokenizer("a red circle").input_ids == [0, *pipe.tokenizer("a red circle", add_special_tokens=False).input_ids, 1]

    # continuing from the saved folder starts where the first run ended, not from scratch
    more = train("test", tmp_path / "m2", seed=0, steps=2, device="cpu", workers=1, log=lambda m: None,
                 init=tmp_path / "m", overrides={"decay_to": 2})
    assert more["init"]["record"]["steps"] == 20
    assert abs(more["eval_loss_start"] - rec["eval_loss_end"]) < 0.1 * rec["eval_loss_end"]


def test_a_plainly_trained_folder_gets_no_guidance_json(tmp_path):
    """guidance.json holds options chosen for the grounded recipe; a plain model keeps the official ones."""
    from tools.shapes.train import train

    plain = {"attn_weight": 0.0, "isolate": 0.0, "null_weight": 0.0}
    rec = train("test", tmp_path / "p", seed=0, steps=2, device="cpu", workers=1, log=lambda m: None, overrides=plain)
    assert rec["config"]["attn_weight"] == 0.0 and (tmp_path / "p" / "training.json").exists()
    assert not (tmp_path / "p" / "guidance.json").exists()


def test_learning_rate_schedule_hand_checked():
    from tools.shapes.train import lr_at

    assert lr_at(0, 1e-3, warmup=10) == pytest.approx(1e-4)
    assert lr_at(9, 1e-3, warmup=10) == lr_at(5000, 1e-3, warmup=10) == pytest.approx(1e-3)
    assert [lr_at(s, 1e-3, decay_to=4) for s in range(5)] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4, 0.0])


@pytest.mark.skipif(not (MODEL / "model_index.json").exists(), reason="shipped model not present")
def test_shipped_model_renders_through_the_renderer():
    from plan_and_render import renderer
    from plan_and_render.scene import Canvas, PlanObject, ScenePlan

    pipe = renderer.load_pipeline(str(MODEL), device="cpu", dtype="fp32")
    plan = ScenePlan(prompt="a red circle and a blue square", canvas=Canvas(width=64, height=64), objects=[
        PlanObject(id="circle-1", name="circle", phrase="a red circle", attributes=["red"], box=(0.05, 0.1, 0.45, 0.5)),
        PlanObject(id="square-1", name="square", phrase="a blue square", attributes=["blue"], box=(0.55, 0.5, 0.95, 0.9)),
    ])
    res = pipe(plan, method="none", seed=0, steps=4, progress=False)
    again = pipe(plan, method="none", seed=0, steps=4, progress=False)
    assert res.images[0].size == (64, 64)
    assert np.array_equal(np.asarray(res.images[0]), np.asarray(again.images[0]))
    assert set(res.scores) == {"circle-1", "square-1"}
    assert pipe.method_defaults["refocus"]["temperature"] == 1.0  # the folder's guidance.json
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    assert size <= 20 * 2**20


@pytest.mark.skipif(not (MODEL / "model_index.json").exists(), reason="shipped model not present")
def test_shipped_text_encoder_carries_content_only_in_name_tokens():
    """The property guidance relies on: every state but the shape words' equals the empty prompt's."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(MODEL / "tokenizer"))
    te = CLIPTextModel.from_pretrained(str(MODEL / "text_encoder"), torch_dtype=torch.float32).eval()
    cap = "a red circle, an orange star and a blue ring"
    ids = tok(cap, padding="max_length", max_length=77, return_tensors="pt").input_ids
    empty = tok("", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = te(ids)[0][0], te(empty)[0][0]
    rel = ((a - b).norm(dim=-1) / b.norm(dim=-1)).numpy()
    names = [3, 7, 11]  # <start> a red circle , an orange star and a blue ring <end>
    assert tok.convert_ids_to_tokens([int(ids[0, p]) for p in names]) == ["circle</w>", "star</w>", "ring</w>"]
    others = np.delete(rel, names)
    assert others.max() < 0.05 and rel[names].min() > 0.5, rel[:14]


PLAIN = ROOT / "models" / "shapes-plain"


@pytest.mark.skipif(not (PLAIN / "model_index.json").exists(), reason="plain model not present")
def test_plain_model_renders_with_the_official_settings():
    """The honest stand-in: trained without attention supervision, stopped early, and guided with no tuning."""
    from plan_and_render import renderer
    from plan_and_render.scene import Canvas, PlanObject, ScenePlan

    record = json.loads((PLAIN / "training.json").read_text())
    assert record["preset"] == "cpu-plain" and record["config"]["attn_weight"] == record["config"]["isolate"] == 0
    assert record["steps"] == record["stopped"]["at_step"] == 3500 and record["stopped"]["planned_steps"] == 6635
    assert not (PLAIN / "guidance.json").exists()  # no tuned options: every method runs its official settings
    pipe = renderer.load_pipeline(str(PLAIN), device="cpu", dtype="fp32")
    assert pipe.method_defaults == {}
    plan = ScenePlan(prompt="a red circle and a blue square", canvas=Canvas(width=64, height=64), objects=[
        PlanObject(id="circle-1", name="circle", phrase="a red circle", attributes=["red"], box=(0.05, 0.1, 0.45, 0.5)),
        PlanObject(id="square-1", name="square", phrase="a blue square", attributes=["blue"], box=(0.55, 0.5, 0.95, 0.9)),
    ])
    res = pipe(plan, method="refocus", seed=0, steps=3, progress=False)
    assert res.images[0].size == (64, 64) and set(res.scores) == {"circle-1", "square-1"}
    assert res.passes["backward"] > 0  # guidance ran on this model's attention
    assert sum(f.stat().st_size for f in PLAIN.rglob("*") if f.is_file()) <= 20 * 2**20


@pytest.mark.skipif(not (PLAIN / "model_index.json").exists(), reason="plain model not present")
def test_plain_text_encoder_carries_content_in_every_state():
    """Unlike shapes-tiny's, the plain model's end and padding states differ from the empty prompt's: the
    UNet can read what to draw from tokens no guidance method steers, as in Stable Diffusion."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(PLAIN / "tokenizer"))
    te = CLIPTextModel.from_pretrained(str(PLAIN / "text_encoder"), torch_dtype=torch.float32).eval()
    ids = tok("a red circle, an orange star and a blue ring", padding="max_length", max_length=77,
              return_tensors="pt").input_ids
    empty = tok("", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = te(ids)[0][0], te(empty)[0][0]
    rel = ((a - b).norm(dim=-1) / b.norm(dim=-1)).numpy()
    assert ids[0, 11] != tok.eos_token_id and (ids[0, 12:] == tok.eos_token_id).all()  # 11 words, end, padding
    assert rel[0] < 1e-6  # the start token sees nothing of the caption
    assert rel[1:13].min() > 1.0 and rel[13:].min() > 0.1, rel[:16]  # every word, the end, the padding (shapes-tiny: < 0.01)


def test_benchmark_merge_adds_prompt_ranges_and_compares_methods_on_common_prompts(tmp_path):
    from benchmarks.shapes import merge

    def shard(start, methods, n):
        recs = [{"index": i, "seed": i, "seconds": 1.0, "passes": {}, "relations": [{"holds": i % 2 == 0}],
                 "objects": [{"present": True, "colour_present": True, "box_iou": i / 10, "mask_iou": 0.0,
                              "attn_in_box": 0.5}]} for i in range(start, start + n)]
        return {"config": {"command": f"from prompt {start}", "steps": 25},
                "records": {m: recs for m in methods}, "examples": {}, "targets": [], "captions": []}

    paths = []
    for k, s in enumerate([shard(0, ["none", "refocus"], 3), shard(3, ["refocus"], 2), shard(3, ["none"], 1)]):
        paths.append(tmp_path / f"{k}.json")
        paths[-1].write_text(json.dumps(s))
    out = merge([str(p) for p in paths], tmp_path / "m.json", None, log=lambda s: None)
    assert [r["index"] for r in out["records"]["refocus"]] == [0, 1, 2, 3]  # prompt 4: `none` lacks it
    assert out["config"]["prompts_scored"] == 4
    assert out["summary"]["none"]["box_iou"] == pytest.approx(0.15) and out["summary"]["none"]["relation_acc"] == 0.5


def test_shapesbench_merge_joins_a_methods_prompt_shards_and_compares_common_prompts(tmp_path):
    from benchmarks.shapes import merge

    def rec(i: int, iou: float) -> dict:
        obj = {"present": True, "colour_present": True, "box_iou": iou, "mask_iou": iou, "attn_in_box": 0.5}
        return {"index": i, "seed": i, "objects": [obj], "relations": [{"holds": iou > 0.5}], "seconds": 1.0,
                "passes": {"forward": 0, "backward": 0}}

    def shard(name: str, records: dict, command: str) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"config": {"command": command}, "records": records, "examples": {},
                                    "targets": [], "captions": []}))
        return str(path)

    first = shard("a.json", {"none": [rec(0, 0.2), rec(1, 0.4)], "zest": [rec(0, 0.6), rec(1, 0.8)]}, "--limit 2")
    rest = shard("b.json", {"zest": [rec(2, 1.0)], "none": [rec(2, 0.0)]}, "--limit 3 --skip 2")
    only_two = shard("c.json", {"rca": [rec(0, 0.3), rec(1, 0.3)]}, "--limit 2")
    out = merge([first, rest], tmp_path / "m.json", None, log=lambda s: None)
    assert out["config"]["prompts_scored"] == 3 and out["config"]["commands"] == ["--limit 2", "--limit 3 --skip 2"]
    assert out["summary"]["none"]["box_iou"] == pytest.approx(0.2)
    assert out["summary"]["zest"]["box_iou"] == pytest.approx(0.8)
    out = merge([first, rest, only_two], tmp_path / "m.json", None, log=lambda s: None)
    assert out["config"]["prompts_scored"] == 2 and out["summary"]["zest"]["box_iou"] == pytest.approx(0.7)


# the trainers' shared saving and stopping (tools.shapes.model)
def test_write_folder_replaces_the_folder_whole_and_keeps_hand_written_files(tmp_path):
    from tools.shapes.model import write_folder

    out = tmp_path / "m"
    out.mkdir()
    (out / "weights.bin").write_text("old")
    (out / "guidance.json").write_text("{}")  # written by hand after training: kept

    def write(folder):
        folder.mkdir()
        (folder / "weights.bin").write_text("new")
        (folder / "training.json").write_text("{}")

    write_folder(out, write)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"weights.bin": "new", "training.json": "{}",
                                                             "guidance.json": "{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_save_that_fails_midway_leaves_the_old_folder_as_it_was(tmp_path):
    from tools.shapes.model import write_folder

    out = tmp_path / "m"
    out.mkdir()
    (out / "weights.bin").write_text("old")

    def write_then_stop(folder):
        folder.mkdir()
        (folder / "weights.bin").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_folder(out, write_then_stop)
    assert (out / "weights.bin").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_sigterm_and_ctrl_c_end_a_trainer_in_one_line_with_exit_130(capsys):
    import os
    import signal
    import time

    from tools.shapes.model import stopped_cleanly

    before = signal.getsignal(signal.SIGTERM)
    for stop in (lambda: os.kill(os.getpid(), signal.SIGTERM), lambda: (_ for _ in ()).throw(KeyboardInterrupt)):
        with pytest.raises(SystemExit) as e:
            with stopped_cleanly("train_x"):
                stop()
                time.sleep(1)  # SIGTERM is delivered here at the latest
        assert e.value.code == 130 and capsys.readouterr().err == "train_x: stopped by Ctrl-C or SIGTERM\n"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
