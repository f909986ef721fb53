"""Latents a shapes MMDiT redraws from noised scenes: decoder training pairs in its own sampling's style.

Why (``train_vae --denoiser``): the learned-latent MMDiT (``models/shapes-mmdit-latent``) puts colours where
a plan asks, but the autoencoder's decoder, trained on the encoder's clean latents only, turns the small
errors of a *sampled* latent into ragged shapes: squares with one-pixel "ears" or bites at the corners,
triangles with notches, which the exact detector then reads as circles and stars (docs/mmdit-shapes.md). Here
each training scene's latent is noised to a flow time t ~ U(``t_range``) and sampled back to t = 0 by the
MMDiT itself (Euler in flow time, classifier-free guidance as the folder renders): a latent with the
sampler's own kind of error whose true image is known - the scene. A decoder trained on such pairs (as
well as on clean latents) learns to draw what the latent was meant to show. Small t keeps the scene's
objects (at t = 0.6 objects start to merge or change), so the pair stays honest.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from plan_and_render.renderer import folder_defaults
from plan_and_render.renderer.settings import RenderSettings


def guidance_scale(folder: str | Path) -> float:
    """The scale a render of the folder uses (its checked guidance.json, else SD 3's default), resolved as the
    renderer resolves it."""
    return float(RenderSettings().resolved("sd3", folder_defaults(folder)[0]).guidance_scale)


def load_denoiser(folder: str | Path):
    """The folder's StableDiffusion3Pipeline, fp32 on the CPU, frozen."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.transformer.eval().requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def same_encoder(a, b) -> bool:
    """Whether two autoencoders encode alike (encoder and quant conv weights equal): the MMDiT's latents
    are then this autoencoder's."""
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(("encoder.", "quant_conv."))]
    return all(k in sb and torch.equal(sa[k], sb[k]) for k in keys)


@torch.no_grad()
def redraw(pipe, z0: torch.Tensor, t: torch.Tensor, captions: list[str], steps: int, scale: float,
           generator: torch.Generator) -> torch.Tensor:
    """Normalised latents ``z0`` noised to flow times ``t`` (one per scene) and sampled back to 0 in ``steps``
    Euler steps of the MMDiT's guided velocity ``v_u + scale (v_c - v_u)``."""
    n = len(captions)
    cond, uncond, pooled, pooled_uncond = pipe.encode_prompt(
        captions, captions, captions, do_classifier_free_guidance=True,
        negative_prompt=[""] * n, negative_prompt_2=[""] * n, negative_prompt_3=[""] * n)
    text, pooled = torch.cat([uncond, cond]), torch.cat([pooled_uncond, pooled])
    t = t.view(-1, 1, 1, 1)
    x = (1 - t) * z0 + t * torch.randn(z0.shape, generator=generator)
    for i in range(steps):
        now, then = t * (1 - i / steps), t * (1 - (i + 1) / steps)
        v = pipe.transformer(hidden_states=torch.cat([x, x]), encoder_hidden_states=text,
                             pooled_projections=pooled, timestep=torch.cat([now, now]).flatten() * 1000).sample
        v_uncond, v_cond = v.chunk(2)
        x = x + (then - now) * (v_uncond + scale * (v_cond - v_uncond))
    return x


def redrawn_latents(folder: str | Path, vae, images: torch.Tensor, captions: list[str],
                    t_range: tuple[float, float], steps: int, seed: int, batch: int = 16, log=print) -> torch.Tensor:
    """For uint8 scenes and their captions: the un-normalised latents (what ``vae.decode`` reads) the
    folder's MMDiT redraws from each, noised to t ~ U(``t_range``). ``vae``'s encoder must be the folder's."""
    from .train_mmdit import encode

    pipe = load_denoiser(folder)
    if not same_encoder(vae, pipe.vae):
        raise ValueError(f"{folder}'s autoencoder encodes differently from this one: its MMDiT's latents are not "
                         "this decoder's to learn")
    scale, cfg = guidance_scale(folder), vae.config
    g = torch.Generator().manual_seed(seed)
    lo, hi = t_range
    out, t0 = [], time.perf_counter()
    for i in range(0, len(images), batch):
        z0 = encode(vae, images[i:i + batch])
        t = lo + (hi - lo) * torch.rand(len(z0), generator=g)
        out.append(redraw(pipe, z0, t, captions[i:i + batch], steps, scale, g) / cfg.scaling_factor + cfg.shift_factor)
        if (i // batch) % 16 == 0:
            log(f"redrawn {i + len(z0)} / {len(images)} scenes ({time.perf_counter() - t0:.0f} s)")
    return torch.cat(out)
