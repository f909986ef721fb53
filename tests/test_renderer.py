"""Renderer on tiny random models (CPU, no downloads): capture, guidance effect, determinism, I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor2_0

from planner.errors import ModelUnavailableError, UsageError
from planner.scene import ScenePlan
from renderer import attention as A
from renderer import guidance, load_pipeline

OPTS = {"refocus": {"loss_scale": 400}, "excite": {"scale_factor": 2000}, "backward": {"lr_scale": 100},
        "zest": {"eta": 3.0}}


def _setup(pipe, plan, methods, steps=50):
    text, neg = guidance.compose_prompt(plan)
    cond = pipe.encode_text(text, neg)[0]
    layout, _ = guidance.build_layout(plan, pipe.tokenizer, text, 77)
    g = guidance.Guider(methods, pipe.unet, layout, steps, (32, 32), 1, OPTS)
    pipe.scheduler.set_timesteps(steps)
    t = pipe.scheduler.timesteps[0]
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(1))

    def cond_unet(lat, tt):
        return pipe.unet(lat, tt, encoder_hidden_states=cond).sample

    return g, t, x, cond_unet


def test_capture_shapes_and_processors(tiny_pipe, two_plan):
    g, t, x, cu = _setup(tiny_pipe, two_plan, ["refocus", "backward"])
    try:
        maps = g._guide_pass(x, t, cu)
        assert maps["cross"].shape == (1, 16 * 16, 77)
        assert maps["self"].shape == (1, 256, 256)
        assert torch.allclose(maps["cross"].sum(-1), torch.ones(1, 256), atol=1e-4)  # rows are distributions
        # backward keeps per-layer, per-head maps: mid (8x8) + the two 16x16 up layers
        assert sorted((tuple(p.shape), h, w) for p, h, w in maps["bw"]) == \
            [((1, 2, 64, 77), 8, 8)] + [((1, 2, 256, 77), 16, 16)] * 2
        procs = tiny_pipe.unet.attn_processors
        custom = [k for k, p in procs.items() if isinstance(p, A.LayoutAttnProcessor)]
        assert len(custom) == g.n_custom < len(procs)
        assert all(isinstance(p, AttnProcessor2_0) for k, p in procs.items() if k not in custom)
    finally:
        g.close()


def test_layers_by_level(tiny_pipe):
    layers = A.unet_layers(tiny_pipe.unet)
    assert A.layout_level(layers) == 1
    assert A.select_layers(layers, "cross_layout") == ["down_blocks.1.attentions.0.transformer_blocks.0.attn2",
                                                       "up_blocks.1.attentions.0.transformer_blocks.0.attn2",
                                                       "up_blocks.1.attentions.1.transformer_blocks.0.attn2"]


@pytest.mark.parametrize("method", ["refocus", "excite", "backward"])
def test_gradient_methods_lower_their_loss(tiny_pipe, two_plan, method):
    g, t, x, cu = _setup(tiny_pipe, two_plan, [method])
    try:
        t = tiny_pipe.scheduler.timesteps[1]  # step 1: one plain gradient step for every method
        before = float(g.method_loss(method, g._guide_pass(x, t, cu), 1, 1.0)[0])
        x1 = g.refine(1, t, x, cu, tiny_pipe.scheduler)
        after = float(g.method_loss(method, g._guide_pass(x1, t, cu), 1, 1.0)[0])
    finally:
        g.close()
    assert not torch.equal(x1, x)
    assert after < before


def test_zest_gradient_lowers_its_loss(tiny_pipe, two_plan):
    g, t, x, cu = _setup(tiny_pipe, two_plan, ["zest"])

    def zest_loss(lat):
        with g.cfg_pass(0, lat) as zl:
            cu(zl, t)
            grad = g.zest_grad(0, zl)
        return g.last_loss["zest"], grad

    try:
        before, grad = zest_loss(x)
        after, _ = zest_loss(x - 0.5 * grad / grad.abs().max())
    finally:
        g.close()
    assert after < before


@pytest.mark.parametrize("method", ["refocus", "zest", "backward", "rca"])
def test_box_methods_raise_in_box_share(tiny_pipe, two_plan, method):
    base = tiny_pipe(two_plan, method="none", steps=10, progress=False).scores
    got = tiny_pipe(two_plan, method=method, steps=10, progress=False, method_options=OPTS).scores
    assert set(got) == {"ball-1", "box-1"}
    assert sum(got.values()) > sum(base.values())


def test_deterministic_and_seeded(tiny_pipe, two_plan):
    a = tiny_pipe(two_plan, method="refocus+rca", seed=3, steps=4, progress=False)
    b = tiny_pipe(two_plan, method="refocus+rca", seed=3, steps=4, progress=False)
    c = tiny_pipe(two_plan, method="refocus+rca", seed=4, steps=4, progress=False)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))
    assert a.config["method"] == "refocus+rca" and set(a.config["methods"]) == {"refocus", "rca"}
    assert {"encode_s", "loop_s", "decode_s", "total_s"} <= set(a.timings)


def test_odd_aspect_ratio_and_callback(tiny_pipe, two_plan):
    seen = []
    r = tiny_pipe(two_plan, method="refocus", steps=3, height=64, width=96, num_images=2, progress=False,
                  callback=lambda i, t, lat: seen.append((i, tuple(lat.shape))))
    assert [im.size for im in r.images] == [(96, 64), (96, 64)]
    assert seen == [(0, (2, 4, 32, 48)), (1, (2, 4, 32, 48)), (2, (2, 4, 32, 48))]
    assert all(0.0 <= v <= 1.0 for v in r.scores.values())


def test_bad_inputs_raise_clear_errors(tiny_pipe, two_plan):
    with pytest.raises(UsageError, match="unknown guidance method"):
        tiny_pipe(two_plan, method="refocus+magic", steps=1, progress=False)
    with pytest.raises(UsageError, match="divisible by 8"):
        tiny_pipe(two_plan, steps=1, height=60, progress=False)


def test_prompt_gets_background_and_negative():
    plan = ScenePlan(prompt="a cat", background="a sunny beach", negative_prompt="blurry")
    assert guidance.compose_prompt(plan) == ("a cat, a sunny beach", "blurry")
    plan2 = ScenePlan(prompt="a cat on a sunny beach", background="a sunny beach")
    assert guidance.compose_prompt(plan2) == ("a cat on a sunny beach", "")


def test_save_folder_and_single_file_roundtrip(tiny_pipe, two_plan, tmp_path):
    ref = np.asarray(tiny_pipe(two_plan, method="rca", steps=2, progress=False).images[0])
    tiny_pipe.save_pretrained(tmp_path / "folder")
    tiny_pipe.save_single_file(tmp_path / "model.safetensors")
    for src in (tmp_path / "folder", tmp_path / "model.safetensors"):
        p = load_pipeline(str(src), device="cpu")
        assert p.family == "sd"
        out = np.asarray(p(two_plan, method="rca", steps=2, progress=False).images[0])
        assert np.array_equal(out, ref), src


def test_missing_weights_is_model_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache"):
        load_pipeline("nobody/no-such-model", device="cpu")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing.safetensors"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="model_index.json"):
        load_pipeline(str(tmp_path / "empty"), device="cpu")


def test_sdxl_tiny_pipeline_runs_and_roundtrips(tiny_xl_pipe, two_plan, tmp_path):
    r = tiny_xl_pipe(two_plan, method="refocus", steps=3, progress=False)
    assert r.images[0].size == (64, 64) and set(r.scores) == {"ball-1", "box-1"}
    tiny_xl_pipe.save_single_file(tmp_path / "xl.safetensors")
    p = load_pipeline(str(tmp_path / "xl.safetensors"), device="cpu")
    assert p.family == "sdxl"
    a = np.asarray(tiny_xl_pipe(two_plan, method="none", steps=2, progress=False).images[0])
    assert np.array_equal(np.asarray(p(two_plan, method="none", steps=2, progress=False).images[0]), a)
