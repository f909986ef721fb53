"""SD 3 and FLUX on tiny random transformers (CPU, no downloads): every method, the joint-attention maps
checked by hand, the CLIP + T5 token axis, RCA on the conditional rows only, the flow latent's step,
loading from a folder and from the project's single file, and the CLI / API with ``--model FOLDER``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from plan_and_render.app import cli
from plan_and_render.renderer import attention as A
from plan_and_render.renderer import guidance, joint_attention as J, load_pipeline, pipeline_from_components
from plan_and_render.renderer import losses as L
from plan_and_render.renderer.loading import detect_family
from plan_and_render.renderer.schedulers import alpha_bars, flow_alpha_bar, flow_scale
from plan_and_render.renderer.settings import RenderSettings
from plan_and_render.renderer.tokens import joint_tokens
from plan_and_render.scene import ScenePlan
from tools.tiny import tiny_flux_components, tiny_sd3_components

pytestmark = pytest.mark.usefixtures("torch_one_thread")

METHODS = ["none", "refocus", "zest", "excite", "rca", "backward", "refocus+rca"]
LAT = (32, 32)  # a 64x64 image through the tiny VAE; 16x16 patches


@pytest.fixture(scope="module")
def sd3(torch_one_thread):
    return pipeline_from_components(tiny_sd3_components(), device="cpu")


@pytest.fixture(scope="module")
def flux(torch_one_thread):
    return pipeline_from_components(tiny_flux_components(), device="cpu")


@pytest.fixture
def pipes(sd3, flux):
    return {"sd3": sd3, "flux": flux}


def _setup(pipe, plan, methods=(), blocks=None, steps=4, batch=1):
    """What the pipeline builds before its loop: token axis, layout, conditioning, scheduler, guider."""
    text, neg = guidance.compose_prompt(plan)
    jt = joint_tokens(plan, text, pipe.text_parts())
    layout, _ = guidance.build_layout(plan, None, jt.text, jt.length, token_map=jt)
    cond, _ = pipe.encode_text(layout.text, neg)
    cond_b = pipe.batched(cond, batch, RenderSettings(guidance_scale=3.5), LAT)
    sched = pipe.make_scheduler(None)
    pipe.set_timesteps(sched, steps, LAT)
    att = J.JointAttention(pipe.transformer, blocks, jt.order, jt.length)
    g = guidance.Guider(list(methods), pipe.transformer, layout, steps, LAT, batch, n_ctx=jt.length, scheduler=sched,
                        attention=att, cfg=pipe.uses_cfg(RenderSettings()))
    return jt, g, cond_b, sched


def _noise(pipe, seed=0, batch=1):
    return torch.randn(batch, pipe.latent_channels(), *LAT, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------
# every method on both families
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd3", "flux"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_renders(pipes, two_plan, family, method):
    pipe = pipes[family]
    res = pipe(two_plan, method=method, steps=2, seed=1, progress=False)
    assert res.images[0].size == (64, 64) and res.config["family"] == family
    assert len(np.unique(np.asarray(res.images[0]).reshape(-1, 3), axis=0)) > 10  # a real decode, not a blank
    assert set(res.scores) == {"ball-1", "box-1"} and all(0 <= v <= 1 for v in res.scores.values())
    assert res.config["layout_blocks"] == J.default_layout_blocks(len(J.joint_modules(pipe.transformer)))
    gradient = {"refocus", "excite", "backward"} & set(method.split("+"))
    assert (res.passes["forward"] > 0) == bool(gradient)  # zest: no extra forward, its gradient rides the CFG pass
    assert (res.passes["backward"] > 0) == bool(gradient or method == "zest")
    if method != "none":
        base = pipe(two_plan, method="none", steps=2, seed=1, progress=False)
        assert not np.array_equal(np.asarray(res.images[0]), np.asarray(base.images[0])), method


def test_zest_negative_classes_are_said_to_be_unavailable(sd3, two_plan):
    res = sd3(two_plan, method="zest", steps=2, progress=False, method_options={"zest": {"negative_mode": "concat"}})
    assert any("negative_mode 'concat' is not available" in w for w in res.warnings) and "zest" in res.losses


def test_excite_single_step_refinement_and_its_sweep_on_sd3(sd3, two_plan):
    """The step-selection paper's refinement (validated on SD 3): one Adam refinement at the chosen step,
    and the validation sweep over candidate steps, on the transformer."""
    from tools.sweep import refine_step_sweep

    res = sd3(two_plan, method="excite", steps=4, progress=False,
              method_options={"excite": {"refine_step": 12, "refine_iters": 3, "per_step": False}})
    assert res.passes == {"forward": 3, "backward": 3}  # step 12 of 50 = step 0 of 4; no per-step guidance
    assert {"excite_refine_first", "excite_refine_last"} <= set(res.losses)
    sweep = refine_step_sweep(sd3, [two_plan], candidates=(0, 24), steps=4, options={"refine_iters": 2})
    assert set(sweep["candidates"]) == {0, 24} and sweep["best"] in (0, 24)
    assert all(row["cn_iou"] == row["cn_iou"] for row in sweep["candidates"].values())  # measured, not NaN


def test_flux_schnell_and_batches_run(two_plan):
    pipe = pipeline_from_components(tiny_flux_components(guidance=False), device="cpu")
    res = pipe(two_plan, method="refocus+rca", steps=2, num_images=2, seed=5, progress=False)
    assert res.config["family"] == "flux-schnell" and res.seeds == [5, 6] and len(res.image_scores) == 2
    # image k starts from seed + k's noise (the gradient steps' stopping tests see the whole batch: RCA here)
    two = pipe(two_plan, method="rca", steps=2, num_images=2, seed=5, progress=False)
    one = pipe(two_plan, method="rca", steps=2, seed=6, progress=False)
    diff = np.abs(np.asarray(one.images[0], dtype=int) - np.asarray(two.images[1], dtype=int))
    assert diff.max() <= 1


# ---------------------------------------------------------------------------
# the maps
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_maps_have_the_right_shape_and_sum(pipes, two_plan, family):
    pipe = pipes[family]
    jt, g, cond_b, sched = _setup(pipe, two_plan, ["refocus"])
    s = float(sched.sigmas[1])
    try:
        maps = g.guide_pass(_noise(pipe) / flow_scale(s), sched.timesteps[1], lambda x, t: pipe.velocity(
            x * flow_scale(s), t, cond_b))
    finally:
        g.close()
    cross, self_ = maps["cross"], maps["self"]
    assert cross.shape == (1, 16 * 16, jt.length) and self_.shape == (1, 256, 256)
    assert cross.dtype == self_.dtype == torch.float32
    assert torch.allclose(cross.sum(-1), torch.ones(1, 256), atol=1e-5)  # re-normalised over the text
    assert torch.allclose(self_.sum(-1), torch.ones(1, 256), atol=1e-5)  # ... over the image
    assert float(cross[0, :, jt.n_tokens:].sum(-1).mean()) > 0  # padding keeps its mass, as in a UNet's maps


def test_sd3_cross_map_is_the_image_query_text_key_softmax(sd3, two_plan):
    """By hand: for each layout block, softmax over the text keys of (normed q_image . normed k_text) / sqrt(d),
    averaged over heads and blocks, on the losses' token axis (``order``)."""
    jt, g, cond_b, sched = _setup(sd3, two_plan, ["refocus"])
    blocks = [li for li in g.layers if li.layout and li.cross]
    seen = {}

    def keep_inputs(name):
        def hook(module, args, kwargs):
            seen[name] = (kwargs["hidden_states"], kwargs["encoder_hidden_states"])
        return hook

    hooks = [sd3.transformer.get_submodule(li.module).register_forward_pre_hook(keep_inputs(li.module),
                                                                              with_kwargs=True) for li in blocks]
    s = float(sched.sigmas[0])
    try:
        maps = g.guide_pass(_noise(sd3) / flow_scale(s), sched.timesteps[0],
                            lambda x, t: sd3.velocity(x * flow_scale(s), t, cond_b))
    finally:
        g.close()
        for h in hooks:
            h.remove()
    want = []
    for li in blocks:
        attn, (img, txt) = sd3.transformer.get_submodule(li.module), seen[li.module]
        q = attn.norm_q(attn.to_q(img).view(1, -1, attn.heads, 8).transpose(1, 2))
        k = attn.norm_added_k(attn.add_k_proj(txt).view(1, -1, attn.heads, 8).transpose(1, 2))
        want.append((q @ k.transpose(-1, -2) / 8 ** 0.5).softmax(-1).mean(1)[..., jt.order])
    assert torch.allclose(maps["cross"], torch.stack(want).mean(0), atol=1e-5)


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_processors_compute_what_diffusers_does(pipes, two_plan, family):
    """While capturing on every block (and masking with no box forbidding anything), the transformer's
    output is diffusers' own: the processors only read the attention."""
    pipe = pipes[family]
    jt, g, cond_b, sched = _setup(pipe, two_plan)
    x, t = _noise(pipe, 3), sched.timesteps[1]
    with torch.no_grad():
        ref = pipe.velocity(x, t, cond_b)
    every = {"cross": A.Capture(set(g.select("cross_all"))), "self": A.Capture(set(g.select("self_layout")))}
    g.attention.install(g.state, every["cross"].layers | every["self"].layers, set(g.select("cross_all")))
    st = g.state
    st.captures, st.capturing, st.cond_rows = every, True, slice(None)
    st.rca_on, st.rca_masks = True, {(16, 16): torch.zeros(256, jt.length, dtype=torch.bool)}
    try:
        with torch.no_grad():
            out = pipe.velocity(x, t, cond_b)
    finally:
        g.close()
    n_blocks = len(J.joint_modules(pipe.transformer))
    assert every["cross"].count == n_blocks and every["self"].count == len(g.select("self_layout"))
    assert torch.allclose(out, ref, atol=1e-5)


# ---------------------------------------------------------------------------
# the token axis: CLIP and T5 positions
# ---------------------------------------------------------------------------

def _tokens_at(tokenizer, text, positions):
    ids = tokenizer(text)["input_ids"]
    return [tokenizer.convert_ids_to_tokens(ids[p]) for p in positions]


def test_sd3_token_axis_holds_clip_and_t5_positions(sd3, two_plan):
    jt = joint_tokens(two_plan, two_plan.prompt, sd3.text_parts())
    assert jt.length == 77 + 32  # CLIP's 77 then the tiny T5's 32 (SD 3: 77 + 256)
    # "a red ball to the left of a blue box": CLIP has a start token, T5 has none
    assert jt.real == {"ball": [3, 77 + 2], "box": [10, 77 + 9]}
    assert _tokens_at(sd3.tokenizer, jt.text, [3, 10]) == ["ball</w>", "box</w>"]
    assert _tokens_at(sd3.tokenizer_3, jt.text, [2, 9]) == ["\u2581ball", "\u2581box"]
    # the losses' axis: CLIP's start token, the 10 prompt tokens of CLIP, the 10 of T5, CLIP's end token,
    # the rest (special tokens and padding of both parts)
    assert jt.n_tokens == 10 + 10 + 2 and sorted(jt.order) == list(range(jt.length))
    assert jt.order[:22] == [0, *range(1, 11), *range(77, 87), 11]
    assert [jt.order[p] for p in jt.groups["ball"]] == jt.real["ball"]
    assert all(0 < p < jt.n_tokens - 1 for ps in jt.groups.values() for p in ps)
    cond, _ = sd3.encode_text(jt.text, "")
    assert cond["encoder_hidden_states"].shape[1] == jt.length  # the transformer's text sequence


def test_flux_and_t5_less_sd3_token_axes(flux, two_plan):
    jt = joint_tokens(two_plan, two_plan.prompt, flux.text_parts())
    assert jt.length == 32 and jt.real == {"ball": [2], "box": [9]}  # FLUX: the T5 sequence only
    assert jt.order[:12] == [10, *range(10), 11] and jt.n_tokens == 10 + 2  # T5's end token leads the rest
    no_t5 = pipeline_from_components(tiny_sd3_components(t5=False), device="cpu")
    jt = joint_tokens(two_plan, two_plan.prompt, no_t5.text_parts())
    assert jt.real == {"ball": [3], "box": [10]} and jt.length == 77 + 256  # zeros where T5 would be
    res = no_t5(two_plan, method="refocus", steps=2, progress=False)
    assert res.passes["forward"] > 0


def test_a_phrase_cut_by_clip_moves_to_the_front_of_both_parts(sd3):
    """A phrase past CLIP's 77 tokens is moved to the front (CLIP decides the text) and then
    found in both parts."""
    filler = " ".join(["red"] * 80)
    plan = ScenePlan(prompt=f"{filler} and a ball", canvas={"width": 64, "height": 64},
                     objects=[dict(id="ball-1", name="ball", phrase="a ball", box=(0.1, 0.1, 0.5, 0.5))])
    jt = joint_tokens(plan, plan.prompt, sd3.text_parts())
    assert jt.text.startswith("ball, ") and jt.real["ball"] == [1, 77]
    assert any("moved to the front" in w for w in jt.warnings)


# ---------------------------------------------------------------------------
# RCA: the conditional rows only
# ---------------------------------------------------------------------------

def test_rca_bias_masks_object_words_outside_their_boxes_in_the_conditional_rows(sd3, two_plan):
    jt, g, _, _ = _setup(sd3, two_plan, ["rca"])
    st = g.state
    st.cond_rows = slice(1, None)  # [uncond, cond]
    n, t = 256, jt.length
    bias = st.joint_bias(n, t, True, 2, torch.float32, "cpu")
    g.close()
    m = g.masks.label_masks(16, 16).flatten(1) > 0.5  # (objects, patches)
    want = torch.zeros(2, 1, n + t, n + t, dtype=torch.bool)
    for k, group in enumerate(("ball", "box")):
        for p in jt.real[group]:  # its CLIP and its T5 position
            want[1, 0, :n, n + p] = ~m[k]
    assert torch.equal(torch.isinf(bias), want)
    assert int(want[1].sum()) == 2 * int((~m[0]).sum() + (~m[1]).sum())


def test_rca_processor_changes_only_the_conditional_row(sd3, two_plan):
    jt, g, _, _ = _setup(sd3, two_plan, ["rca"])
    name = g.select("cross_all")[1].rsplit(":", 1)[0]
    attn, proc = sd3.transformer.get_submodule(name), sd3.transformer.attn_processors[name + ".processor"]
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(2, 256, attn.to_q.in_features, generator=gen)
    txt = torch.randn(2, jt.length, attn.add_q_proj.in_features, generator=gen)
    try:
        g.state.rca_on, g.state.cond_rows = True, slice(1, None)
        out_img, out_txt = proc(attn, img, txt)
        ref_img, ref_txt = proc.default(attn, img, txt)
    finally:
        g.close()
    assert torch.allclose(out_img[0], ref_img[0], atol=1e-5) and torch.allclose(out_txt, ref_txt, atol=1e-5)
    assert not torch.allclose(out_img[1], ref_img[1], atol=1e-3)


def test_conditional_rows_are_the_whole_batch_without_cfg(sd3, flux, two_plan):
    for pipe, rows in ((sd3, slice(2, None)), (flux, slice(None))):
        _, g, _, _ = _setup(pipe, two_plan, ["rca"], batch=2)
        try:
            with g.cfg_pass(0, _noise(pipe, batch=2)):
                assert g.state.cond_rows == rows and g.state.rca_on
        finally:
            g.close()


# ---------------------------------------------------------------------------
# the flow latent and the steps taken on it
# ---------------------------------------------------------------------------

def test_flow_latent_is_r_times_the_ddim_latent_of_equal_snr():
    x0, eps = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).unbind(0)
    for s in (0.05, 0.3, 0.5, 0.8, 0.99):
        abar = flow_alpha_bar(s)
        z = (1 - s) * x0 + s * eps
        x = abar ** 0.5 * x0 + (1 - abar) ** 0.5 * eps
        assert torch.allclose(z, flow_scale(s) * x, atol=1e-6)
    assert flow_alpha_bar(0.5) == pytest.approx(0.5) and flow_scale(0.5) == pytest.approx(0.5 ** 0.5)
    sched = tiny_sd3_components()["scheduler"]
    sched.set_timesteps(4)
    assert alpha_bars(sched) == pytest.approx([flow_alpha_bar(float(s)) for s in sched.sigmas[:4]])


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_a_gradient_step_lowers_the_out_of_box_attention(pipes, two_plan, family):
    """Hand-made loss: the share of the ball's attention outside its box. One ``descend`` step on the
    DDIM-scaled latent x = z / r lowers it, and moves the model's own latent by lr r^2 grad_z."""
    pipe = pipes[family]
    jt, g, cond_b, sched = _setup(pipe, two_plan, ["refocus"])
    s = float(sched.sigmas[1])
    r = flow_scale(s)
    t = sched.timesteps[1]
    mask = g.masks.group_masks(16, 16).flatten(1)

    def model(x, tt):
        return pipe.velocity(x * r, tt, cond_b)

    def outside(maps):
        loss = 1 - L.in_box_share(maps["cross"][0], g.layout.tokens, mask)[0]
        return loss, loss.detach()

    def loss_at(z):
        with torch.enable_grad():
            zg = z.clone().requires_grad_(True)
            loss = outside(g.guide_pass(zg / r, t, model))[0]
            return float(loss.detach()), torch.autograd.grad(loss, zg)[0]

    z = _noise(pipe, 2)
    try:
        before, grad_z = loss_at(z)
        lr = 0.05 / float(grad_z.abs().max()) / r ** 2  # moves no element of z by more than 0.05
        x = g.descend("hand", outside, z / r, t, model, 1.0, lr, 1, lambda v, st: False)
        after, _ = loss_at(x * r)
    finally:
        g.close()
    step = -lr * r ** 2 * grad_z  # at most 0.05; r^2 in place of 1 would be off by > 0.005
    assert torch.allclose(x * r - z, step, atol=1e-4) and float(step.abs().max()) == pytest.approx(0.05)
    assert after < before


def test_zest_correction_on_the_flow_latent(sd3, two_plan):
    """After the Euler step, ZestGuide moves the DDIM-scaled latent of the next step by
    -eta sqrt(1 - abar_i) g / max|g| (abar of the flow's noise level), i.e. the flow latent by r_next times that."""
    _, g, _, sched = _setup(sd3, two_plan, ["zest"])
    g.close()
    zest = g.by_name["zest"]
    grad = torch.zeros(1, 4, *LAT)
    grad[..., :8, :8] = 2.0  # the loss grows with the top-left corner
    zest._grad = grad
    z = _noise(sd3, 4)
    r_next = flow_scale(float(sched.sigmas[2]))
    out = g.after_step(1, z, torch.tensor(1 / r_next))
    s1 = float(sched.sigmas[1])
    step = zest.config.eta * (1 - flow_alpha_bar(s1)) ** 0.5 * r_next
    assert torch.allclose(out[..., :8, :8], z[..., :8, :8] - step, atol=1e-5)  # downhill where the loss grows
    assert torch.allclose(out[..., 8:, :], z[..., 8:, :], atol=1e-6)  # untouched (up to the scaling round trip)


# ---------------------------------------------------------------------------
# loading, CLI and API
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_folder_and_single_file_load_as_their_family(pipes, two_plan, family, tmp_path):
    pipe = pipes[family]
    ref = np.asarray(pipe(two_plan, method="rca", steps=2, progress=False).images[0])
    pipe.save_pretrained(tmp_path / "folder")
    pipe.save_single_file(tmp_path / "model.safetensors")
    assert detect_family(tmp_path / "folder") == family
    for src in (tmp_path / "folder", tmp_path / "model.safetensors"):
        p = load_pipeline(str(src), device="cpu")
        assert p.family == family and type(p) is type(pipe)
        out = np.asarray(p(two_plan, method="rca", steps=2, progress=False).images[0])
        assert np.array_equal(out, ref), src


def test_folder_layout_blocks_and_model_offload(sd3, two_plan, tmp_path):
    sd3.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "guidance.json").write_text(json.dumps({"layout_blocks": [2], "settings": {"steps": 2}}))
    p = load_pipeline(str(tmp_path / "m"), device="cpu", offload="model")
    res = p(two_plan, method="refocus", progress=False)
    assert res.config["layout_blocks"] == [2] and res.config["steps"] == 2 and p.offload == "model"
    ref = sd3(two_plan, method="refocus", steps=2, progress=False, method_options={})
    assert res.config["layout_blocks"] != ref.config["layout_blocks"]
    (tmp_path / "m" / "guidance.json").write_text(json.dumps({"layout_blocks": [9]}))
    with pytest.raises(Exception, match="layout blocks \\[9\\] do not exist"):
        load_pipeline(str(tmp_path / "m"), device="cpu")(two_plan, steps=1, progress=False)


def test_scheduler_and_sizes_the_transformer_cannot_take_are_one_line(sd3, two_plan):
    from plan_and_render.errors import UsageError

    with pytest.raises(UsageError, match="flow-matching Euler"):
        sd3(two_plan, steps=1, scheduler="ddim", progress=False)
    # the tiny SD 3: 32 patches of 2x2 latent pixels, VAE factor 2 -> at most 128 px a side
    with pytest.raises(UsageError, match="at most 128x128 pixels"):
        sd3(two_plan, steps=1, width=136, height=64, progress=False)
    assert sd3(two_plan, steps=1, width=128, height=64, progress=False).images[0].size == (128, 64)


@pytest.fixture(scope="module")
def flux_folder(flux, tmp_path_factory):
    path = tmp_path_factory.mktemp("flux") / "tiny-flux"
    flux.save_pretrained(path)
    return path


def test_cli_and_api_take_the_folder_unchanged(flux_folder, two_plan, tmp_path, capsys):
    import plan_and_render as par

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(two_plan.model_dump_json())
    out_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        cli.main(["--plan", str(plan_file), "--model", str(flux_folder), "--method", "refocus+rca", "--steps", "2",
                  "--out", str(out_dir)])
    _, err = capsys.readouterr()
    assert exc.value.code == 0, err
    meta = json.loads((out_dir / "metadata.json").read_text())
    assert meta["status"] == "ok" and meta["method"] == "refocus+rca" and set(meta["scores"]) == {"ball-1", "box-1"}
    res = par.render(two_plan, model=str(flux_folder), method="refocus+rca", steps=2, progress=False)
    assert res.config["family"] == "flux" and res.images[0].size == (64, 64)


def test_native_size_of_transformer_folders(flux_folder):
    from plan_and_render.app import api

    shipped = Path(__file__).resolve().parents[1] / "models" / "shapes-mmdit"
    assert api.native_size(shipped) == 64  # 32 latent pixels (the transformer's sample_size) x VAE factor 2
    assert api.native_size(flux_folder) is None  # FLUX's config names no size: the CLI's default


LATENT_MODEL = Path(__file__).resolve().parents[1] / "models" / "shapes-mmdit-latent"
needs_latent_model = pytest.mark.skipif(not (LATENT_MODEL / "model_index.json").exists(), reason="shipped model not present")


@pytest.fixture(scope="module")
def latent_pipe(torch_one_thread):
    return load_pipeline(str(LATENT_MODEL), device="cpu", dtype="fp32")


@needs_latent_model
def test_the_shipped_learned_latent_mmdit_is_a_small_sd3_folder_with_its_tuned_options(latent_pipe):
    from plan_and_render.app import api

    pipe = latent_pipe
    assert pipe.family == "sd3" and api.native_size(LATENT_MODEL) == 64  # 8 latent pixels x the VAE's 8
    assert pipe.method_defaults["refocus"] == {"temperature": 1.0, "loss_scale": 40.0, "span": "prompt"}
    assert sum(f.stat().st_size for f in LATENT_MODEL.rglob("*") if f.is_file()) <= 20 * 2**20
    shipped_vae = LATENT_MODEL.parents[0] / "shapes-vae" / "diffusion_pytorch_model.safetensors"
    assert (LATENT_MODEL / "vae" / shipped_vae.name).read_bytes() == shipped_vae.read_bytes()  # one decoder


@needs_latent_model
def test_refocus_puts_the_shipped_latent_mmdits_shapes_in_their_boxes_where_none_does_not(latent_pipe):
    """"a red circle to the left of a blue square", boxes in the left and right halves, the model's 28 steps:
    with `refocus` the red and the blue region sit in their halves for each of four seeds; without guidance
    the model puts them anywhere (they swap or stack in some of the same seeds)."""
    from plan_and_render.scene import Canvas, PlanObject
    from plan_and_render.scoring.shapes import detect

    pipe = latent_pipe
    plan = ScenePlan(prompt="a red circle to the left of a blue square", canvas=Canvas(width=64, height=64), objects=[
        PlanObject(id="circle-1", name="circle", phrase="a red circle", attributes=["red"], box=(0.05, 0.3, 0.45, 0.7)),
        PlanObject(id="square-1", name="square", phrase="a blue square", attributes=["blue"], box=(0.55, 0.3, 0.95, 0.7)),
    ])

    def in_their_halves(method: str, seed: int) -> bool:
        found = {d.colour: d.box for d in reversed(detect(np.asarray(pipe(plan, method=method, seed=seed, progress=False).images[0])))}
        centre = {c: (b[0] + b[2]) / 2 for c, b in found.items()}  # the largest region of each colour
        return "red" in centre and "blue" in centre and centre["red"] < 0.5 < centre["blue"]

    assert all(in_their_halves("refocus", s) for s in range(4))
    assert not all(in_their_halves("none", s) for s in range(4))
