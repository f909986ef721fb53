"""Renderer on tiny random models (CPU, no downloads): capture, guidance effect, determinism, I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from plan_and_render.errors import ModelUnavailableError, UsageError
from plan_and_render.scene import ScenePlan
from plan_and_render.renderer import attention as A
from plan_and_render.renderer import guidance, load_pipeline, pipeline_from_components
from tools.tiny import tiny_sd_components

pytestmark = pytest.mark.usefixtures("torch_one_thread")

# A random tiny UNet's attention hardly depends on the latent, so the effect tests take larger
# steps than the published ones (which are tuned for trained SD); the schedules are unchanged.
BOOST = {"refocus": {"loss_scale": 400}, "excite": {"scale_factor": 2000}, "backward": {"lr_scale": 100},
         "zest": {"eta": 3.0}}
STEPS, PROBE = 10, 4  # renders of 10 steps; losses are measured on the latent after step 4


def _cond_unet(pipe, plan):
    text, neg = guidance.compose_prompt(plan)
    layout, _ = guidance.build_layout(plan, pipe.tokenizer, text, 77)
    cond, _, extra, _ = pipe.encode_text(layout.text, neg)
    kw = pipe.unet_kwargs(extra, 1, (64, 64))

    def run(x, t):
        return pipe.unet(x, t, encoder_hidden_states=cond, added_cond_kwargs=kw or None).sample

    return layout, run


def _guider(pipe, plan, methods, hw=(32, 32), options=None):
    layout, run = _cond_unet(pipe, plan)
    pipe.scheduler.set_timesteps(STEPS)
    return guidance.Guider(methods, pipe.unet, layout, STEPS, hw, 1, options), run


def _render_and_measure(pipe, plan, method: str) -> tuple:
    """Render with ``method``; measure every loss on the latent after step PROBE."""
    kept = {}
    res = pipe(plan, method=method, steps=STEPS, seed=0, progress=False, method_options=BOOST,
               callback=lambda i, t, x: kept.setdefault(i, x.clone()))
    g, run = _guider(pipe, plan, [])
    try:
        return res, g.measure(kept[PROBE], pipe.scheduler.timesteps[PROBE + 1], run)
    finally:
        g.close()


@pytest.fixture(scope="module")
def unguided(tiny_pipe, torch_one_thread):
    plan = ScenePlan(prompt="a red ball to the left of a blue box", canvas={"width": 64, "height": 64},
                     objects=[dict(id="ball-1", name="ball", phrase="a red ball", box=(0.05, 0.3, 0.45, 0.8)),
                              dict(id="box-1", name="box", phrase="a blue box", box=(0.55, 0.2, 0.95, 0.8))])
    return (plan, *_render_and_measure(tiny_pipe, plan, "none"))


# ---------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("xl", [False, True])
def test_capture_shapes_and_processors(tiny_pipe, tiny_xl_pipe, two_plan, xl):
    pipe = tiny_xl_pipe if xl else tiny_pipe
    g, run = _guider(pipe, two_plan, ["refocus", "backward"])
    try:
        x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        maps = g.guide_pass(x, pipe.scheduler.timesteps[0], run)
        assert maps["cross"].shape == (1, 16 * 16, 77) and maps["cross"].dtype == torch.float32
        assert maps["self"].shape == (1, 256, 256)
        assert torch.allclose(maps["cross"].sum(-1), torch.ones(1, 256), atol=1e-4)  # rows are distributions
        # backward keeps per-layer, per-head maps: mid (8x8) + the two 16x16 up layers
        assert sorted((tuple(p.shape), h, w) for p, h, w in maps["bw"]) == \
            [((1, 2, 64, 77), 8, 8)] + [((1, 2, 256, 77), 16, 16)] * 2
        procs = pipe.unet.attn_processors
        custom = [k for k, p in procs.items() if isinstance(p, A.LayoutAttnProcessor)]
        assert len(custom) == g.n_custom < len(procs)
        assert all(isinstance(p, AttnProcessor2_0) for k, p in procs.items() if k not in custom)
    finally:
        g.close()
    assert not any(isinstance(p, A.LayoutAttnProcessor) for p in pipe.unet.attn_processors.values())


def test_layers_by_level(tiny_pipe):
    layers = A.unet_layers(tiny_pipe.unet)
    assert A.layout_level(layers) == 1
    assert A.select_layers(layers, "cross_layout") == ["down_blocks.1.attentions.0.transformer_blocks.0.attn2",
                                                       "up_blocks.1.attentions.0.transformer_blocks.0.attn2",
                                                       "up_blocks.1.attentions.1.transformer_blocks.0.attn2"]


# ---------------------------------------------------------------------------
# each method against `none`, same seed
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["refocus", "zest", "backward"])
def test_box_methods_lower_their_loss_and_raise_in_box_share(tiny_pipe, unguided, method):
    plan, base_res, base = unguided
    res, got = _render_and_measure(tiny_pipe, plan, method)
    assert got[method] < base[method]
    for oid in ("ball-1", "box-1"):  # every object, in an unmasked pass and in the render's own scores
        assert got[f"in_box:{oid}"] > base[f"in_box:{oid}"]
        assert res.scores[oid] > base_res.scores[oid]
    assert method in res.losses and 0 < res.losses[method]


def test_excite_lowers_its_loss_and_excites_every_object(tiny_pipe, unguided):
    # Attend-and-Excite sees no boxes: its target is that every object's strongest pixel is strong
    plan, base_res, base = unguided
    res, got = _render_and_measure(tiny_pipe, plan, "excite")
    assert got["excite"] < base["excite"] - 0.05
    assert res.losses["cn_iou"] < base_res.losses["cn_iou"]


def test_excite_single_step_refinement(tiny_pipe, unguided, monkeypatch):
    plan, base_res, _ = unguided
    passes = []
    real = guidance.Guider.guide_pass
    monkeypatch.setattr(guidance.Guider, "guide_pass", lambda self, *a: passes.append(1) or real(self, *a))
    opts = {"excite": {"refine_step": 10, "per_step": False, "refine_iters": 6, "refine_lr": 0.1}}
    res = tiny_pipe(plan, method="excite", steps=STEPS, seed=0, progress=False, method_options=opts)
    assert len(passes) == 6  # one refinement (Adam, 6 iterations) at step 10/50 -> 2/10, nothing else
    assert res.losses["excite_refine_last"] < res.losses["excite_refine_first"]
    assert res.config["methods"]["excite"]["refine"] is True
    assert res.losses["cn_iou"] < base_res.losses["cn_iou"]


def test_schedules_follow_the_published_ones(tiny_pipe, two_plan, monkeypatch):
    """(scale, step size, max iterations) per step for 50 steps, against guidance.md."""
    calls = []
    monkeypatch.setattr(guidance.Guider, "descend", lambda self, m, loss, lat, t, cu, scale, lr, n, keep, **kw:
                        calls.append((m, self._step, scale, lr, n)) or lat)
    real_before_cfg = guidance.Guider.before_cfg
    monkeypatch.setattr(guidance.Guider, "before_cfg",
                        lambda self, i, *a: setattr(self, "_step", i) or real_before_cfg(self, i, *a))
    tiny_pipe(two_plan, method="refocus+excite+backward", steps=50, progress=False)
    refocus = [(i, s, n) for m, i, s, lr, n in calls if m == "refocus"]
    assert refocus == [(0, 4, 2), (1, 4, 2), (2, 4, 6), (3, 4, 6), (4, 4, 6)] + \
        [(i, 3, 3) for i in range(5, 10)] + [(10, 3, 2), (15, 3, 2)] + [(i, 1, 2) for i in (20, 25, 30, 35)]
    excite = [(i, round(s, 4), n) for m, i, s, lr, n in calls if m == "excite"]
    alpha = [round(20 * (1 - 0.5 * i / 49) ** 0.5, 4) for i in range(25)]
    refinements = {0: 20, 10: 20, 20: 20}  # A&E: iterate (at most 20) at steps 0, 10, 20, then the regular step
    assert excite == [x for i in range(25) for x in ([(i, alpha[i], 20)] if i in refinements else []) + [(i, alpha[i], 1)]]
    backward = [(i, s, n, lr) for m, i, s, lr, n in calls if m == "backward"]
    ref = type(tiny_pipe.scheduler).from_config(tiny_pipe.scheduler.config)  # the render's own copy
    ref.set_timesteps(50)
    assert [(i, s, n) for i, s, n, _ in backward] == [(i, 30, 5) for i in range(10)]
    assert all(abs(lr - (1 - float(ref.alphas_cumprod[int(ref.timesteps[i])]))) < 1e-6 for i, _, _, lr in backward)


def test_rca_masks_object_tokens_outside_their_boxes(tiny_pipe, unguided):
    """The layer output equals attention with the object tokens' probabilities zeroed outside
    their boxes; other tokens are untouched."""
    plan, base_res, _ = unguided
    g, run = _guider(tiny_pipe, plan, ["rca"])
    name = "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
    attn = tiny_pipe.unet.get_submodule(name)
    proc = tiny_pipe.unet.attn_processors[name + ".processor"]
    x = torch.randn(2, 256, attn.to_q.in_features, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(2, 77, attn.to_k.in_features, generator=torch.Generator().manual_seed(1))
    try:
        g.state.rca_on, g.state.cond_rows = True, slice(1, None)  # row 0 = uncond, row 1 = cond
        out = proc(attn, x, ctx)
    finally:
        g.close()
    q, k, v = attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)
    heads = attn.heads
    q, k, v = (t.view(2, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
    s = q @ k.transpose(-1, -2) * attn.scale
    ball, box = g.layout.tokens
    m = g.masks.label_masks(16, 16).flatten(1) > 0.5
    s[1, :, ~m[0], ball[0]] = float("-inf")
    s[1, :, ~m[1], box[0]] = float("-inf")
    p = s.softmax(-1)
    assert float(p[1, :, ~m[0], ball[0]].abs().max()) == 0.0 and float(p[0, :, ~m[0], ball[0]].min()) > 0
    ref = attn.to_out[0]((p @ v).transpose(1, 2).reshape(2, 256, -1))
    assert torch.allclose(out, ref, atol=1e-5)
    res = tiny_pipe(plan, method="rca", steps=STEPS, seed=0, progress=False)
    assert not np.array_equal(np.asarray(res.images[0]), np.asarray(base_res.images[0]))


def test_combined_methods_run_together(tiny_pipe, two_plan):
    res = tiny_pipe(two_plan, method="refocus+rca+zest", steps=4, progress=False)
    assert res.config["method"] == "refocus+rca+zest" and set(res.config["methods"]) == {"refocus", "rca", "zest"}
    assert {"refocus", "zest"} <= set(res.losses) and set(res.scores) == {"ball-1", "box-1"}
    assert all(0.0 <= v <= 1.0 for v in res.scores.values())


# ---------------------------------------------------------------------------
# sampling behaviour
# ---------------------------------------------------------------------------

def test_deterministic_and_seeded(tiny_pipe, two_plan):
    a = tiny_pipe(two_plan, method="refocus+rca", seed=3, steps=4, progress=False)
    b = tiny_pipe(two_plan, method="refocus+rca", seed=3, steps=4, progress=False)
    c = tiny_pipe(two_plan, method="refocus+rca", seed=4, steps=4, progress=False)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    assert a.scores == b.scores and a.losses == b.losses
    assert {"encode_s", "loop_s", "decode_s", "total_s"} <= set(a.timings)


@pytest.mark.parametrize("method,steps,worst", [
    # refocus at 50 steps: 2x2 (steps 0-1) + 3x6 (2-4) + 5x3 (5-9) + 6 events x 2 (10, 15, ..., 35) = 49,
    # the spec's "about 49 forward+backward"; at 10 steps: 2 (step 0) + 3 (step 1, i.e. 5 of 50) + 6 x 2 = 17
    ("refocus", 50, (49, 49)), ("refocus", 10, (17, 17)),
    ("zest", 10, (0, 6)),  # one backward per guided step (0-5 of 10), through the CFG pass: no extra forward
    ("rca", 10, (0, 0)), ("none", 10, (0, 0)),
])
def test_guidance_passes_are_counted(tiny_pipe, two_plan, method, steps, worst):
    r = tiny_pipe(two_plan, method=method, steps=steps, progress=False, early_stop=False)
    assert (r.passes["forward"], r.passes["backward"]) == worst
    assert r.config["guidance_passes"] == r.passes


def test_early_stop_ends_the_loop_after_its_first_step(tiny_pipe, two_plan):
    """The official order: compute, step, then test - a scheduled step whose test fails still takes
    one step (a forward and a backward), and no more."""
    r = tiny_pipe(two_plan, method="refocus", steps=10, progress=False,
                  method_options={"refocus": {"min_in_threshold": 0.0}})  # every in-box max already >= 0
    assert r.passes == {"forward": 8, "backward": 8}  # step 0, step 1 (5 of 50) and each of the 6 late events


@pytest.mark.parametrize("height,width", [(64, 40), (40, 64), (56, 72)])
def test_odd_aspect_ratios_callback_and_batch(tiny_pipe, two_plan, height, width):
    seen = []
    r = tiny_pipe(two_plan, method="refocus+rca+zest", steps=3, height=height, width=width, num_images=2,
                  progress=False, callback=lambda i, t, lat: seen.append((i, tuple(lat.shape))))
    lat = (2, 4, height // 2, width // 2)
    assert [im.size for im in r.images] == [(width, height)] * 2
    assert seen == [(0, lat), (1, lat), (2, lat)]
    assert set(r.scores) == {"ball-1", "box-1"} and all(0.0 <= v <= 1.0 for v in r.scores.values())


def test_progress_bar_is_shown_or_hidden(tiny_pipe, two_plan, capsys):
    tiny_pipe(two_plan, method="none", steps=2, progress=True)
    assert "render" in capsys.readouterr().err
    tiny_pipe(two_plan, method="none", steps=2, progress=False)
    assert "render" not in capsys.readouterr().err


def test_bf16_pipeline_keeps_loss_maths_in_fp32(two_plan):
    pipe = pipeline_from_components(tiny_sd_components(), device="cpu", dtype="bf16")
    assert pipe.unet.dtype == torch.bfloat16
    g, run = _guider(pipe, two_plan, ["refocus"])
    try:
        maps = g.guide_pass(torch.randn(1, 4, 32, 32, dtype=torch.bfloat16), pipe.scheduler.timesteps[0], run)
        assert maps["cross"].dtype == torch.float32 and maps["self"].dtype == torch.float32
        loss, _ = g.by_name["refocus"].loss(maps)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    finally:
        g.close()
    r = pipe(two_plan, method="refocus+zest", steps=3, progress=False)
    assert r.images[0].size == (64, 64) and all(np.isfinite(v) for v in r.scores.values())
    assert np.asarray(r.images[0]).std() > 0


def test_small_box_and_missing_phrase_warnings(tiny_pipe):
    plan = ScenePlan(prompt="a dog on the grass", canvas={"width": 64, "height": 64},
                     objects=[dict(id="dog-1", name="dog", phrase="a dog", box=(0.1, 0.1, 0.5, 0.5)),
                              dict(id="ball-1", name="ball", phrase="a red ball", box=(0.7, 0.7, 0.75, 0.74))])
    r = tiny_pipe(plan, method="refocus", steps=2, progress=False)
    assert r.config["prompt"] == "a dog on the grass, a red ball"
    assert any("'ball-1'" in w and "appended" in w for w in r.warnings)
    assert any("'ball-1'" in w and "enlarged" in w for w in r.warnings)
    assert set(r.scores) == {"dog-1", "ball-1"}


def test_group_instances_share_tokens_in_every_method(tiny_pipe):
    plan = ScenePlan(prompt="three apples on a table", canvas={"width": 64, "height": 64}, objects=[
        dict(id=f"apple-{i}", name="apple", phrase="an apple", group="apple", box=(0.1 + 0.3 * i, 0.2, 0.3 + 0.3 * i, 0.5))
        for i in range(3)] + [dict(id="table-1", name="table", phrase="a table", box=(0.0, 0.5, 1.0, 1.0))])
    r = tiny_pipe(plan, method="refocus+zest+backward+rca", steps=2, progress=False)
    assert set(r.scores) == {"apple-0", "apple-1", "apple-2", "table-1"} and not r.warnings
    assert r.scores["apple-0"] == r.scores["apple-2"]  # one shared word: one share inside the group's boxes


def test_bad_inputs_raise_clear_errors(tiny_pipe, two_plan):
    with pytest.raises(UsageError, match="unknown guidance method"):
        tiny_pipe(two_plan, method="refocus+magic", steps=1, progress=False)
    with pytest.raises(UsageError, match="divisible by 8"):
        tiny_pipe(two_plan, steps=1, height=60, progress=False)
    with pytest.raises(UsageError, match="unknown option"):
        tiny_pipe(two_plan, steps=1, progress=False, method_options={"refocus": {"scale": 3}})
    with pytest.raises(UsageError, match="unknown method"):
        tiny_pipe(two_plan, steps=1, progress=False, method_options={"refocuss": {}})


def test_prompt_gets_background_and_negative():
    plan = ScenePlan(prompt="a cat", background="a sunny beach", negative_prompt="blurry")
    assert guidance.compose_prompt(plan) == ("a cat, a sunny beach", "blurry")
    plan2 = ScenePlan(prompt="a cat on a sunny beach", background="a sunny beach")
    assert guidance.compose_prompt(plan2) == ("a cat on a sunny beach", "")


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------

def test_save_folder_and_single_file_roundtrip(tiny_pipe, two_plan, tmp_path):
    ref = np.asarray(tiny_pipe(two_plan, method="rca", steps=2, progress=False).images[0])
    tiny_pipe.save_pretrained(tmp_path / "folder")
    tiny_pipe.save_single_file(tmp_path / "model.safetensors")
    for src in (tmp_path / "folder", tmp_path / "model.safetensors"):
        p = load_pipeline(str(src), device="cpu")
        assert p.family == "sd"
        out = np.asarray(p(two_plan, method="rca", steps=2, progress=False).images[0])
        assert np.array_equal(out, ref), src


def test_folder_guidance_json_sets_defaults_that_a_render_can_override(tiny_pipe, two_plan, tmp_path):
    import json

    tiny_pipe.save_pretrained(tmp_path / "folder")
    (tmp_path / "folder" / "guidance.json").write_text(json.dumps({"refocus": {"temperature": 1.0, "loss_scale": 7.0}}))
    p = load_pipeline(str(tmp_path / "folder"), device="cpu")
    assert p.method_defaults == {"refocus": {"temperature": 1.0, "loss_scale": 7.0}}
    used = p(two_plan, method="refocus", steps=1, progress=False).config["methods"]["refocus"]
    assert used["temperature"] == 1.0 and used["loss_scale"] == 7.0
    used = p(two_plan, method="refocus", steps=1, progress=False,
             method_options={"refocus": {"loss_scale": 3.0}}).config["methods"]["refocus"]
    assert used["temperature"] == 1.0 and used["loss_scale"] == 3.0  # the render's own option wins, field by field
    (tmp_path / "folder" / "guidance.json").write_text(json.dumps({"_why": "notes", "zest": {"tau": 0.4}}))
    assert load_pipeline(str(tmp_path / "folder"), device="cpu").method_defaults == {"zest": {"tau": 0.4}}
    for bad in ("[1, 2]", '{"refocus": {"scale": 3}}', '{"sparkle": {}}', '{"settings": {"steps": 0}}',
                '{"settings": {"seed": 3}}', '{"settings": [1]}'):
        (tmp_path / "folder" / "guidance.json").write_text(bad)
        with pytest.raises(ModelUnavailableError, match="guidance.json is not valid"):
            load_pipeline(str(tmp_path / "folder"), device="cpu")


def test_folder_guidance_json_sets_render_settings_below_explicit_ones(tiny_pipe, two_plan, tmp_path):
    import json

    tiny_pipe.save_pretrained(tmp_path / "folder")
    (tmp_path / "folder" / "guidance.json").write_text(json.dumps({"settings": {"guidance_scale": 4, "steps": 3}}))
    p = load_pipeline(str(tmp_path / "folder"), device="cpu")
    assert p.settings_defaults == {"guidance_scale": 4.0, "steps": 3} and p.method_defaults == {}
    folder = p(two_plan, method="none", progress=False)
    assert (folder.settings.steps, folder.settings.guidance_scale) == (3, 4.0)  # the folder's, not the family's
    same = tiny_pipe(two_plan, method="none", steps=3, guidance_scale=4.0, progress=False)
    assert np.array_equal(np.asarray(folder.images[0]), np.asarray(same.images[0]))
    mine = p(two_plan, method="none", steps=2, progress=False)
    assert (mine.settings.steps, mine.settings.guidance_scale) == (2, 4.0)  # explicit > folder > family


@pytest.mark.parametrize("xl,scale", [(False, 7.5), (True, 5.0)])
def test_unset_guidance_scale_is_the_familys(tiny_pipe, tiny_xl_pipe, two_plan, xl, scale):
    """SD samples at 7.5 and SDXL at 5.0 unless told otherwise, and the render records it."""
    pipe = tiny_xl_pipe if xl else tiny_pipe
    default = pipe(two_plan, method="none", steps=2, progress=False)
    assert default.settings.guidance_scale == scale == default.config["guidance_scale"]
    assert (default.settings.steps, default.settings.width, default.settings.height) == (2, 64, 64)
    same = pipe(two_plan, method="none", steps=2, guidance_scale=scale, progress=False)
    other = pipe(two_plan, method="none", steps=2, guidance_scale=12.5 - scale, progress=False)
    assert np.array_equal(np.asarray(default.images[0]), np.asarray(same.images[0]))
    assert not np.array_equal(np.asarray(default.images[0]), np.asarray(other.images[0]))


def test_settings_object_and_keywords_are_one_render(tiny_pipe, two_plan):
    from plan_and_render.renderer import RenderSettings

    s = RenderSettings(method="Refocus + RCA", steps=2, seed=3)
    a = tiny_pipe(two_plan, s, progress=False)
    b = tiny_pipe(two_plan, method="rca+refocus+rca", steps=2, seed=3, progress=False)  # order kept as asked
    c = tiny_pipe(two_plan, s, seed=4, progress=False)  # keywords override the object
    assert a.settings.method == "refocus+rca" and b.settings.method == "rca+refocus"
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0])) and a.passes == b.passes
    assert c.settings.seed == 4 and not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    assert a.config["dtype"] == "fp32" and a.config["device"] == "cpu" and a.config["model"] == "custom"
    with pytest.raises(UsageError, match="this pipeline is in fp32, not bf16"):
        tiny_pipe(two_plan, s, dtype="bf16", progress=False)
    assert a.config["scheduler"] == "ddim" and a.config["scheduler_class"] == "DDIMScheduler"  # the model's own
    e = tiny_pipe(two_plan, s, scheduler="Euler", progress=False)
    assert e.settings.scheduler == "euler" and e.config["scheduler_class"] == "EulerDiscreteScheduler"
    with pytest.raises(UsageError, match="settings must be a RenderSettings"):
        tiny_pipe(two_plan, "refocus", progress=False)


def test_missing_weights_is_one_line_model_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "empty").mkdir()
    cases = [("nobody/no-such-model", "not found: .* and no 'nobody/no-such-model' in the local Hugging Face cache"),
             (str(tmp_path / "missing.safetensors"), "model not found"),
             (str(tmp_path / "empty"), "model_index.json")]
    for model, msg in cases:
        with pytest.raises(ModelUnavailableError, match=msg) as e:
            load_pipeline(model, device="cpu")
        assert "\n" not in str(e.value) and "HF_HUB_OFFLINE" in str(e.value)  # says how to provide weights


def test_sdxl_pipeline_renders_and_roundtrips(tiny_xl_pipe, two_plan, tmp_path):
    r = tiny_xl_pipe(two_plan, method="refocus+rca", steps=3, progress=False)
    assert r.images[0].size == (64, 64) and set(r.scores) == {"ball-1", "box-1"} and r.config["family"] == "sdxl"
    a = np.asarray(tiny_xl_pipe(two_plan, method="none", steps=2, progress=False).images[0])
    tiny_xl_pipe.save_single_file(tmp_path / "xl.safetensors")
    tiny_xl_pipe.save_pretrained(tmp_path / "xl")
    for src in (tmp_path / "xl.safetensors", tmp_path / "xl"):
        p = load_pipeline(str(src), device="cpu")
        assert p.family == "sdxl"
        assert np.array_equal(np.asarray(p(two_plan, method="none", steps=2, progress=False).images[0]), a)


def test_refine_step_sweep_reports_each_candidate(tiny_pipe, two_plan):
    from tools.sweep import refine_step_sweep

    seen = []
    res = refine_step_sweep(tiny_pipe, [two_plan], candidates=[0, 24], steps=4, options={"refine_iters": 2},
                            score_fn=lambda img, plan: seen.append(plan.prompt) or {"width": img.size[0]})
    assert set(res["candidates"]) == {0, 24} and res["best"] in (0, 24)
    for row in [res["baseline"], *res["candidates"].values()]:
        assert set(row) == {"cn_iou", "in_box", "seconds", "width"} and row["width"] == 64 and row["cn_iou"] > 0
    assert len(seen) == 3  # none + two candidates, one plan each
