"""Samplers by name, and guidance that takes the same step under every one of them.

The methods work on the DDIM-scaled latent, the UNet's input; the pipeline maps each scheduler's own
latent to it and back. So for one latent (as the UNet sees it) and one loss, the change of the
UNet's input a guidance step makes must not depend on the scheduler - while the same gradient step
taken on an Euler scheduler's sigma-scaled latent would be c^2 = abar times smaller.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from plan_and_render.renderer import guidance, load_pipeline, schedulers
from plan_and_render.renderer.settings import SCHEDULERS

pytestmark = pytest.mark.usefixtures("torch_one_thread")
STEPS = 10
SAME_FIRST_STEP = ("ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "unipc")  # all start at t = 901 of 10 steps


@pytest.fixture
def leading(tiny_pipe, monkeypatch):
    """The tiny model's scheduler with its timestep spacing written out: ``from_config`` hands a new
    class only the values a config sets (Euler's own default spacing is "linspace", DDIM's
    "leading"), and the comparison needs every scheduler at the same timesteps."""
    from diffusers import DDIMScheduler

    monkeypatch.setattr(tiny_pipe, "scheduler", DDIMScheduler.from_config(tiny_pipe.scheduler.config,
                                                                          timestep_spacing="leading"))
    return tiny_pipe


def _cond_unet(pipe, plan):
    text, neg = guidance.compose_prompt(plan)
    layout, _ = guidance.build_layout(plan, pipe.tokenizer, text, 77)
    cond = pipe.encode_text(layout.text, neg)[0]

    def run(x, t):
        return pipe.unet(x, t, encoder_hidden_states=cond).sample

    return layout, run


def _first_step_update(pipe, plan, name: str, method: str, options: dict, x: torch.Tensor):
    """(change of the UNet input made by ``method``'s step-0 guidance, c, t) under scheduler ``name``,
    starting from the scheduler latent whose UNet input is ``x``; the pipeline's own mapping."""
    sched = pipe.make_scheduler(name)
    sched.set_timesteps(STEPS)
    t = sched.timesteps[0]
    layout, run = _cond_unet(pipe, plan)
    g = guidance.Guider([method], pipe.unet, layout, len(sched.timesteps), (32, 32), 1, options, scheduler=sched)
    try:
        c = schedulers.input_scale(sched, t, x)
        z = x / c  # the scheduler's own latent
        moved = g.before_cfg(0, t, (z * c), run)
        z1 = moved / c
        return sched.scale_model_input(z1, t) - sched.scale_model_input(z, t), float(c), t
    finally:
        g.close()


@pytest.mark.parametrize("method,options", [
    ("refocus", {"refocus": {"loss_scale": 400.0}}),
    ("backward", {"backward": {"lr_scale": 100.0}}),  # its step size 1 - abar comes from each scheduler
])
def test_a_guidance_step_moves_the_unet_input_alike_under_every_scheduler(leading, two_plan, method, options):
    tiny_pipe = leading
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    ref, c_ref, t_ref = _first_step_update(tiny_pipe, two_plan, "ddim", method, options, x)
    assert c_ref == 1.0 and ref.abs().max() > 1e-3  # DDIM keeps the UNet's latent; the step is real
    for name in SAME_FIRST_STEP[1:]:
        got, c, t = _first_step_update(tiny_pipe, two_plan, name, method, options, x)
        assert int(t) == int(t_ref), name
        assert torch.allclose(got, ref, atol=1e-5 * float(ref.abs().max()) + 1e-7), name
    _, c_euler, _ = _first_step_update(tiny_pipe, two_plan, "euler", method, options, x)
    # what a step on Euler's own latent would have done: grad wrt z is c * grad wrt x, the step on z
    # moves the UNet input by c times that: c^2 = abar (0.014 here) of the intended change
    assert c_euler ** 2 < 0.02


def test_zest_correction_reaches_the_unet_input_alike_under_ddim_and_euler(leading, two_plan):
    """After the scheduler step, ZestGuide's correction is made on the next step's DDIM-scaled latent."""
    tiny_pipe = leading
    grad = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(3))
    x_next = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(4))
    seen = {}
    for name in ("ddim", "euler", "dpmpp_2m"):
        sched = tiny_pipe.make_scheduler(name)
        sched.set_timesteps(STEPS)
        layout, _ = _cond_unet(tiny_pipe, two_plan)
        g = guidance.Guider(["zest"], tiny_pipe.unet, layout, STEPS, (32, 32), 1, scheduler=sched)
        try:
            t0, t1 = sched.timesteps[0], sched.timesteps[1]
            z0 = torch.zeros(1, 4, 32, 32)
            sched.scale_model_input(z0, t0)
            sched.step(torch.zeros_like(z0), t0, z0)  # advance the scheduler to step 1
            c1 = schedulers.input_scale(sched, t1, z0)
            z_next = x_next / c1
            g.by_name["zest"]._grad = grad
            z_after = g.after_step(0, z_next, c1)
            seen[name] = sched.scale_model_input(z_after, t1) - sched.scale_model_input(z_next, t1)
        finally:
            g.close()
    want = -0.3 * (1 - float(tiny_pipe.scheduler.alphas_cumprod[901])) ** 0.5 * grad / (grad.abs().max() + 1e-6)
    for name, got in seen.items():
        assert torch.allclose(got, want, atol=1e-5), name


@pytest.mark.parametrize("method,options", [
    ("refocus", {"refocus": {"loss_scale": 400.0}}),
    ("backward", {"backward": {"lr_scale": 100.0}}),
    ("zest", {"zest": {"eta": 3.0, "ddim_eta": 0.0}}),  # stochastic DDIM would add noise only DDIM draws
])
def test_the_render_loop_guides_alike_under_ddim_and_euler(leading, two_plan, method, options):
    """Through the real sampling loop: both start from the same UNet input, and DDIM's step is
    Euler's in DDIM scaling, so the UNet input of step 1 differs from an unguided render's by the
    same amount under both - only if guidance acts on the DDIM-scaled latent."""
    pipe = leading
    seen = {}
    for name in ("ddim", "euler"):
        ref = pipe.make_scheduler(name)
        ref.set_timesteps(STEPS)
        c1 = 1.0 / (float(ref.sigmas[1]) ** 2 + 1) ** 0.5 if name == "euler" else 1.0  # UNet input scale at step 1
        for m in ("none", method):
            kept = {}
            pipe(two_plan, method=m, steps=STEPS, scheduler=name, progress=False, method_options=options,
                 callback=lambda i, t, z: kept.setdefault(i, z.clone()))
            seen[name, m] = kept[0] * c1
    assert torch.allclose(seen["euler", "none"], seen["ddim", "none"], atol=1e-4)
    d_ddim = seen["ddim", method] - seen["ddim", "none"]
    d_euler = seen["euler", method] - seen["euler", "none"]
    assert d_ddim.abs().max() > 1e-3
    assert torch.allclose(d_euler, d_ddim, atol=1e-3 * float(d_ddim.abs().max()) + 1e-4)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_renders_and_is_recorded(tiny_pipe, two_plan, name):
    r = tiny_pipe(two_plan, method="refocus+zest", steps=4, scheduler=name, progress=False)
    img = np.asarray(r.images[0]).astype(float)
    assert img.std() > 0 and np.isfinite(img).all()
    assert r.settings.scheduler == name == r.config["scheduler"]
    kind = schedulers.KINDS[name][0]
    assert r.config["scheduler_class"] == kind
    assert schedulers.scheduler_name(tiny_pipe.make_scheduler(name)) == name
    assert r.passes["forward"] > 0 and 0 < r.losses["zest"]


def test_ancestral_sampling_is_seeded(tiny_pipe, two_plan):
    a = tiny_pipe(two_plan, method="none", steps=3, scheduler="euler_a", seed=1, progress=False)
    b = tiny_pipe(two_plan, method="none", steps=3, scheduler="euler_a", seed=1, progress=False)
    c = tiny_pipe(two_plan, method="none", steps=3, scheduler="euler", seed=1, progress=False)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
    assert not np.array_equal(np.asarray(a.images[0]), np.asarray(c.images[0]))


def test_scheduler_from_the_folder_guidance_json_and_the_api(tiny_pipe, two_plan, tmp_path):
    import plan_and_render as par

    tiny_pipe.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "guidance.json").write_text(json.dumps({"settings": {"scheduler": "dpm++-2m-karras"}}))
    p = load_pipeline(str(tmp_path / "m"), device="cpu")
    assert p.settings_defaults == {"scheduler": "dpmpp_2m_karras"}
    r = p(two_plan, method="none", steps=2, progress=False)
    assert r.settings.scheduler == "dpmpp_2m_karras" and r.config["scheduler_class"] == "DPMSolverMultistepScheduler"
    assert p(two_plan, method="none", steps=2, scheduler="unipc", progress=False).settings.scheduler == "unipc"
    api = par.render(two_plan, model=tmp_path / "m", method="none", steps=2, scheduler="pndm", progress=False)
    assert api.settings.scheduler == "pndm" and api.config["scheduler_class"] == "PNDMScheduler"


def test_cli_takes_a_scheduler(run_cli, tmp_path):
    from pathlib import Path

    model = str(Path(__file__).resolve().parents[1] / "models" / "shapes-tiny")
    args = ["--planner", "rules", "--model", model, "--width", "64", "--height", "64", "--steps", "2"]
    code, _, err = run_cli("a red circle to the left of a blue square", *args, "--scheduler", "euler_a",
                    "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metadata.json").read_text())["settings"]["scheduler"] == "euler_a"
    code, _, err = run_cli("a red circle", *args, "--scheduler", "ddpm", "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown scheduler 'ddpm'" in err
