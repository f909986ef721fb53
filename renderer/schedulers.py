"""Samplers by the names users know, and the one latent space guidance works in.

Every gradient step and correction of the guidance methods was published for DDIM-scaled latents,
x = sqrt(abar) x0 + sqrt(1 - abar) eps, which is also what the UNet reads. Schedulers keep their
own latent z: DDIM, PNDM, DPM-Solver++ and UniPC keep x itself; Euler-type schedulers keep the
sigma-scaled x0 + sigma eps and divide by sqrt(sigma^2 + 1) before the UNet. A step taken on
their z would move the UNet's input by abar times the published amount (0.005 at the first of 50
steps), so the pipelines map z to x = c z with c read from the scheduler's own
``scale_model_input`` (whatever the class, as long as it scales linearly, which every diffusers
noise-prediction scheduler does), let the methods work on x, and map back. The noise level of a
step comes from the scheduler's ``sigmas`` when it has them, else from ``alphas_cumprod``.

Names (``settings.SCHEDULERS``) are built from the model's own scheduler config with
``from_config``, so the noise schedule (betas, offsets, prediction type) stays the model's.
"""

from __future__ import annotations

import inspect
import math

import torch

from plan_and_render.errors import UsageError

from .settings import SCHEDULERS

# name -> (diffusers class, options that make it the sampler of that name)
KINDS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),  # PLMS, as SD pipelines run it
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler",
                 {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
assert tuple(KINDS) == SCHEDULERS, "settings.SCHEDULERS and schedulers.KINDS name the same samplers"


def make_scheduler(name: str, own):
    """A fresh scheduler of kind ``name`` with the noise schedule of ``own`` (the model's scheduler)."""
    import diffusers

    if name not in KINDS:
        raise UsageError(f"unknown scheduler {name!r}; choose from {', '.join(SCHEDULERS)}")
    cls_name, options = KINDS[name]
    return getattr(diffusers, cls_name).from_config(own.config, **options)


def scheduler_name(scheduler) -> str | None:
    """The name of a scheduler object (``euler`` for an EulerDiscreteScheduler...); None for other kinds."""
    cls = type(scheduler).__name__
    karras = bool(getattr(scheduler.config, "use_karras_sigmas", False))
    for name, (kind, options) in KINDS.items():
        if kind == cls and options.get("use_karras_sigmas", karras) == karras:
            return name
    return None


def input_scale(scheduler, t, like: torch.Tensor) -> torch.Tensor:
    """c with UNet input = c * the scheduler's latent at timestep t, as a (1, 1, 1, 1) fp32 tensor on
    ``like``'s device (no host read). Euler-type schedulers read their current step index, so after
    ``step`` this is the scale of the next step."""
    one = torch.ones(1, 1, 1, 1, device=like.device, dtype=torch.float32)
    return scheduler.scale_model_input(one, t).float()


def flow_scale(sigma: float) -> float:
    """r(s) = sqrt((1 - s)^2 + s^2): a flow-matching latent (1 - s) x0 + s eps at noise level s is r times
    the DDIM-scaled latent of the same signal-to-noise ratio (SD 3 / FLUX, ``pipeline_sd3``)."""
    return math.sqrt((1 - sigma) ** 2 + sigma ** 2)


def flow_alpha_bar(sigma: float) -> float:
    """The DDIM abar with the signal-to-noise ratio of flow noise level s: (1 - s)^2 / r(s)^2."""
    return (1 - sigma) ** 2 / flow_scale(sigma) ** 2


def is_flow(scheduler) -> bool:
    """Whether the scheduler samples a flow-matching model (its sigmas are the flow's s, in [0, 1])."""
    return type(scheduler).__name__.startswith("FlowMatch")


def alpha_bars(scheduler) -> list[float]:
    """abar of each timestep the scheduler will run: 1 / (1 + sigma^2) from its ``sigmas`` when it has
    one per timestep (Euler, DPM-Solver, UniPC: exact for Karras spacing too), ``flow_alpha_bar`` for
    flow matching, else ``alphas_cumprod``."""
    ts = scheduler.timesteps.cpu()
    sigmas = getattr(scheduler, "sigmas", None)
    if is_flow(scheduler):
        return [flow_alpha_bar(float(s)) for s in sigmas[:len(ts)].cpu()]
    if sigmas is not None and len(sigmas) == len(ts) + 1:
        return [1.0 / (1.0 + float(s) ** 2) for s in sigmas[:-1].cpu()]
    return [float(scheduler.alphas_cumprod[int(t)]) for t in ts]


def step_kwargs(scheduler, **wanted) -> dict:
    """The keyword arguments of ``wanted`` (generator, eta...) that this scheduler's ``step`` takes."""
    accepted = inspect.signature(scheduler.step).parameters
    return {k: v for k, v in wanted.items() if k in accepted}
