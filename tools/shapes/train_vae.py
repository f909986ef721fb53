"""Train a small latent autoencoder for the shapes world: ``python3 -m tools.shapes.train_vae --out DIR``.

Why: SD 3 denoises in a learned, compressed latent (its VAE: 8x smaller a side, 16 channels) and leaves the
pixels to the decoder. The MMDiT shapes model first used the UNet model's *pixel* "VAE" (2x2 average
pooling), so its transformer had to draw every shape edge itself - and drew blobs (docs/mmdit-shapes.md). This
is SD 3's arrangement at the shapes world's scale: a diffusers ``AutoencoderKL`` that takes the 64x64 render
(a 32x32 scene, each pixel doubled) to an 8x8 latent of ``channels`` channels, trained with an L1
reconstruction loss and a small KL term (no GAN or perceptual loss: flat-coloured shapes need neither).
Its ``shift_factor`` and ``scaling_factor`` are set afterwards, as SD 3's are, to the latents' mean and
inverse spread, so a diffusion model sees zero-mean unit-variance latents.

``--init FOLDER`` continues a trained autoencoder; with ``--decoder-only`` the encoder stays frozen, so the
latents - and any diffusion model already trained on them - stay valid while the decoder sharpens (how
Stable Diffusion's fine-tuned decoders were made); ``--edge-weight W`` makes the shapes' outline pixels count
1 + W times in the L1, so thin points and corners stay sharp; ``--denoiser MMDIT`` also trains the decoder
on latents that MMDiT redrew from noised scenes (``tools.shapes.redrawn``), paired with those scenes, so
it meets the sampler's kind of error (tried: it did not lift the demo, docs/mmdit-shapes.md).
``benchmarks/shapes_vae.py`` measures what the shapes detector still finds after encode and decode: the
ceiling of any model drawing through this latent.

Made for a CPU: ``--time-budget`` stops training; every random draw comes from ``--seed``. Ctrl-C or SIGTERM
saves the steps taken so far (``"interrupted": true`` in training.json); a folder is always written whole.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import vocabulary
from .model import stopped_cleanly, write_folder
from .train import WIDE_SEEDS, generate, recipe_of

# --denoiser (tools.shapes.redrawn): how many scenes the MMDiT redraws before training, from which flow times, in
# how many Euler steps, and the share of training batches decoded from those redrawn latents
REDRAW = dict(redraw_pool=2048, redraw_t=(0.1, 0.4), redraw_steps=4, redraw_share=0.5)
PRESETS: dict[str, dict] = {
    # the shipped run: 64x64 -> 8x8x8
    "cpu": dict(blocks=(16, 32, 64, 64), channels=8, batch=32, lr=1e-3, warmup=100, steps=3000, kl=1e-5, n_scenes=20000,
                n_wide=2000, time_budget_s=3600, edge_weight=0.0, **REDRAW),
    # the unit test's few steps
    "test": dict(blocks=(8, 8, 8, 8), channels=4, batch=4, lr=3e-3, warmup=2, steps=4, kl=1e-5, n_scenes=16, n_wide=4,
                 time_budget_s=60, edge_weight=0.0, **{**REDRAW, "redraw_pool": 8, "redraw_steps": 2}),
}


def build_vae(p: dict):
    """A diffusers AutoencoderKL halving the side once per block after the first (64 -> 8 with four)."""
    from diffusers import AutoencoderKL

    n = len(p["blocks"])
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=p["channels"],
                         block_out_channels=tuple(p["blocks"]), down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, layers_per_block=1,
                         norm_num_groups=min(8, p["blocks"][0]), sample_size=64, scaling_factor=1.0,
                         shift_factor=0.0)


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 scenes (N, H, W, 3) -> the renderer's canvas (N, 3, 2H, 2W) in [-1, 1], each pixel doubled
    (what the pixel VAE's decoder makes of them, so both shapes models draw on one canvas)."""
    x = images.permute(0, 3, 1, 2).float() / 127.5 - 1
    return F.interpolate(x, scale_factor=2, mode="nearest")


def to_uint8(canvas: torch.Tensor):
    """A canvas (N, 3, H, W) in [-1, 1] -> uint8 images (N, H, W, 3), as the renderer saves them."""
    return ((canvas.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def mean_latents(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 scenes (N, H, W, 3) -> the posterior means (N, C, h, w) of their canvases, un-normalised."""
    return torch.cat([vae.encode(to_pixels(images[i:i + batch])).latent_dist.mean for i in range(0, len(images), batch)])


@torch.no_grad()
def reconstruct(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 scenes -> decode(mean latent), the canvas (N, 3, 2H, 2W) in about [-1, 1]."""
    return torch.cat([vae.decode(z).sample for z in mean_latents(vae, images, batch).split(batch)])


def outline(x: torch.Tensor, step: float = 0.2) -> torch.Tensor:
    """1 where a pixel's 3x3 neighbourhood spans more than ``step`` in some channel (a shape's outline), else 0.

    The backgrounds' noise and stripes move a channel by at most about 0.1, a palette colour against any
    background by far more, so this marks the shapes' edges and corners only."""
    hi, lo = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
    return ((hi - lo).amax(1, keepdim=True) > step).float()


def weighted_l1(rec: torch.Tensor, x: torch.Tensor, edge_weight: float = 0.0) -> torch.Tensor:
    """The mean absolute error with each outline pixel counting ``1 + edge_weight`` (0: plain L1).

    Plain L1 over a 64x64 canvas lets a star's thin points blur for a sliver of the loss, and the detector then
    reads no star (``--edge-weight``: stars found after a round trip 74 % -> 93 %, docs/mmdit-shapes.md)."""
    if not edge_weight:  # plain L1: no outline to find on every step
        return (rec - x).abs().mean()
    weight = 1 + edge_weight * outline(x)
    return ((rec - x).abs() * weight).mean() / weight.mean()


def vae_loss(vae, x: torch.Tensor, kl_weight: float, edge_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The training loss; its "l1" (the loss curve's) is the outline-weighted mean when ``edge_weight`` > 0."""
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.sample()).sample
    out = {"l1": weighted_l1(rec, x, edge_weight), "kl": post.kl().mean() / x[0].numel()}
    out["total"] = out["l1"] + kl_weight * out["kl"]
    return out


def redrawn_loss(vae, z: torch.Tensor, x: torch.Tensor, edge_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The decoder's loss on latents the MMDiT redrew (``z``, un-normalised) against the scenes ``x`` they were
    noised from; no KL term (the encoder is frozen, and did not make ``z``)."""
    l1 = weighted_l1(vae.decode(z).sample, x, edge_weight)
    return {"l1": l1, "kl": torch.zeros(()), "total": l1}


@torch.no_grad()
def set_latent_stats(vae, images: torch.Tensor, batch: int = 256) -> dict[str, float]:
    """SD 3's latent normalisation: shift_factor = the latents' mean, scaling_factor = 1 / their spread."""
    z = mean_latents(vae, images, batch)
    shift, scale = float(z.mean()), float(1 / z.std())
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    return {"shift_factor": shift, "scaling_factor": scale}


def kept_latent_stats(vae) -> dict[str, float]:
    """A decoder-only run keeps its start's normalisation: the models trained on those latents read them so."""
    return {"shift_factor": vae.config.shift_factor, "scaling_factor": vae.config.scaling_factor}


@torch.no_grad()
def reconstruction_error(vae, images: torch.Tensor) -> float:
    """Mean absolute error (in [-1, 1] units) of decode(mean latent) on held-out scenes."""
    return float((reconstruct(vae, images) - to_pixels(images)).abs().mean())


def train(p: dict, out: str | Path, seed: int = 0, log=print, init: str | Path | None = None,
          decoder_only: bool = False, denoiser: str | Path | None = None) -> dict:
    """Train (from ``init``'s weights when given: a continued run) and save the folder; returns the record.

    ``decoder_only`` freezes the encoder (and its quant conv), so the latents - and every diffusion model
    already trained on them - stay valid while the decoder sharpens (as SD's fine-tuned decoders were made).
    ``denoiser`` (an MMDiT folder on this encoder's latents): a ``redraw_share`` of the batches decode latents
    it redrew from noised scenes (``tools.shapes.redrawn``) into those scenes."""
    torch.manual_seed(seed)
    recipe = recipe_of(p)
    square, captions = generate(p["n_scenes"], seed * 10**7, 32, 1, recipe)[:2]
    square = torch.from_numpy(square)
    wide = torch.from_numpy(generate(p["n_wide"], seed * 10**7 + WIDE_SEEDS, 32, 1, recipe, width=64)[0])
    held = torch.from_numpy(generate(64, 10**9 + seed, 32, 1, recipe)[0])
    vae = build_vae(p)
    if init:
        start = type(vae).from_pretrained(init)
        vae.load_state_dict(start.state_dict())
        if decoder_only:  # the encoder stays: so does the normalisation its latents were learned with
            vae.register_to_config(shift_factor=start.config.shift_factor, scaling_factor=start.config.scaling_factor)
    if decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    pool = None
    if denoiser:
        from .redrawn import redrawn_latents

        n = min(p["redraw_pool"], len(square))
        pool = (redrawn_latents(denoiser, vae, square[:n], captions[:n], tuple(p["redraw_t"]), p["redraw_steps"],
                                seed + 2, log=log), square[:n])
    opt = torch.optim.AdamW([q for q in vae.parameters() if q.requires_grad], lr=p["lr"], weight_decay=0.0)
    g = torch.Generator().manual_seed(seed + 1)
    curve, t0, step, every = [], time.perf_counter(), 0, max(1, min(100, p["steps"] // 10))
    interrupted = False
    try:
        while step < p["steps"] and time.perf_counter() - t0 < p["time_budget_s"]:
            data = wide if float(torch.rand(1, generator=g)) < 0.1 else square
            idx = torch.randint(0, len(data), (p["batch"],), generator=g)
            for group in opt.param_groups:
                group["lr"] = p["lr"] * min(1.0, (step + 1) / p["warmup"]) * (0.1 if step >= 0.8 * p["steps"] else 1.0)
            if pool is not None and float(torch.rand(1, generator=g)) < p["redraw_share"]:
                idx = torch.randint(0, len(pool[0]), (p["batch"],), generator=g)
                loss = redrawn_loss(vae, pool[0][idx], to_pixels(pool[1][idx]), p["edge_weight"])
            else:
                loss = vae_loss(vae, to_pixels(data[idx]), p["kl"], p["edge_weight"])
            opt.zero_grad(set_to_none=True)
            loss["total"].backward()
            opt.step()
            step += 1
            if step % every == 0 or step == p["steps"]:
                curve.append({"step": step, "l1": round(loss["l1"].item(), 5), "kl": round(loss["kl"].item(), 4),
                              "s": round(time.perf_counter() - t0, 1)})
                log(json.dumps(curve[-1]))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (main): save the steps taken, marked as such, then stop
        log(f"interrupted at step {step}")
        interrupted = True
    vae.eval()
    before = json.loads((Path(init) / "training.json").read_text()) if init and (Path(init) / "training.json").exists() else None
    record = {"preset": p, "seed": seed, "decoder_only": decoder_only, "denoiser": str(denoiser) if denoiser else None,
              "interrupted": interrupted, "init": {"folder": str(init), "record": before} if init else None, "steps": step, "train_s": round(time.perf_counter() - t0, 1),
              "held_out_l1": reconstruction_error(vae, held), "latent": (kept_latent_stats(vae) if decoder_only else set_latent_stats(vae, square[:2048])),
              "params": sum(q.numel() for q in vae.parameters()), "loss_curve": curve,
              "data": {"recipe": recipe, "vocabulary": vocabulary(), "wide_share": 0.1},
              "threads": torch.get_num_threads(),
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "diffusers": __import__("diffusers").__version__},
              "command": " ".join(["python3 -m tools.shapes.train_vae", *sys.argv[1:]])}
    def write(folder: Path) -> None:
        vae.save_pretrained(folder)
        (folder / "training.json").write_text(json.dumps(record, indent=2))

    write_folder(out, write)
    log(f"held-out L1 {record['held_out_l1']:.4f}; saved {out}" + (f" (interrupted at step {step})" if interrupted else ""))
    if interrupted:
        raise KeyboardInterrupt
    return record


def parse_t_range(text: str, error) -> tuple[float, float]:
    """"0.1,0.4" -> (0.1, 0.4); ``error`` (the parser's) for anything but 0 <= LO <= HI <= 1."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        error(f"--redraw-t takes LO,HI flow times, e.g. 0.1,0.4, not {text!r}")
    if not 0 <= lo <= hi <= 1:
        error(f"--redraw-t needs 0 <= LO <= HI <= 1, not {text!r}")
    return lo, hi


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", required=True, help="folder for the AutoencoderKL (config, weights, training.json)")
    ap.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the preset's)")
    ap.add_argument("--channels", type=int, default=None, help="latent channels (default: the preset's 8)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds; training stops after them")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    ap.add_argument("--init", default=None, help="a trained folder to continue from (same preset)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="train the decoder alone (with --init): the latents stay those the MMDiT learned")
    ap.add_argument("--edge-weight", type=float, default=None,
                    help="extra weight of the shapes' outline pixels in the L1 loss (default 0: plain L1); plain L1 "
                         "lets a star's thin points blur, and the detector then reads no star")
    ap.add_argument("--denoiser", default=None,
                    help=f"an MMDiT folder on this autoencoder's latents (with --decoder-only): a share of "
                         f"{REDRAW['redraw_share']} of the batches decode latents it redrew from noised scenes, so the "
                         "decoder learns its samples' errors")
    ap.add_argument("--redraw-t", default=None, help="flow times the scenes are noised to, LO,HI (default "
                    f"{','.join(map(str, REDRAW['redraw_t']))})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    p = dict(PRESETS[a.preset])
    if a.edge_weight is not None and a.edge_weight < 0:
        ap.error(f"--edge-weight must be 0 or more, not {a.edge_weight}")
    for key, val in (("steps", a.steps), ("channels", a.channels), ("time_budget_s", a.time_budget), ("lr", a.lr),
                     ("edge_weight", a.edge_weight)):
        if val is not None:
            p[key] = val
    if a.init and not (Path(a.init) / "config.json").is_file():
        ap.error(f"--init {a.init!r} is not an AutoencoderKL folder (no config.json in it)")
    if a.decoder_only and not a.init:
        ap.error("--decoder-only continues a trained autoencoder: give --init")
    if a.denoiser and not a.decoder_only:
        ap.error("--denoiser trains the decoder on the MMDiT's latents: give --decoder-only (and --init)")
    if a.denoiser and not (Path(a.denoiser) / "transformer").is_dir():
        ap.error(f"--denoiser {a.denoiser!r} is not an MMDiT folder (no transformer/ in it)")
    if a.denoiser:
        from .redrawn import same_encoder
        from .train_mmdit import load_vae

        if not same_encoder(load_vae(a.init), load_vae(Path(a.denoiser) / "vae")):
            ap.error(f"--denoiser {a.denoiser!r} draws in another autoencoder's latents than --init {a.init!r}")
    if a.redraw_t is not None and not a.denoiser:
        ap.error("--redraw-t sets the flow times of --denoiser's redrawn scenes: give --denoiser")
    if a.redraw_t is not None:
        p["redraw_t"] = parse_t_range(a.redraw_t, ap.error)
    with stopped_cleanly("train_vae"):
        train(p, a.out, a.seed, init=a.init, decoder_only=a.decoder_only, denoiser=a.denoiser)


if __name__ == "__main__":
    main()
