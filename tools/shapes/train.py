"""Train the shapes text-to-image model: ``python3 -m tools.shapes.train --preset cpu --out DIR``.

Epsilon-prediction diffusion on SD 1.x's noise schedule (min-SNR-5 loss
weights), UNet and CLIP text encoder trained together from scratch, 10 %
caption dropout so classifier-free guidance works, EMA weights saved.

Two additions make the model steerable by attention guidance (the renderer
guides each object's *name* token, "circle" in "a red circle"):

* **Content only through the name tokens.** A causal text encoder lets the end
  token and every padding token summarise the whole caption, so a UNet trained
  on plain captions reads "what to draw" from tokens no guidance method moves.
  Here, for ``isolate`` of the samples, every hidden state except the start
  token and the object name tokens is replaced by the empty prompt's state at
  that position before the UNet sees it, and a "null" loss pulls those states
  towards the empty prompt's anyway (so at sampling time, when the renderer
  feeds the plain encoder output, they carry next to nothing). Under the causal
  mask the name token sees its colour word, so it can carry the colour too.
* **Grounded cross-attention** (as in TokenCompose, Wang et al. 2024): every
  cross-attention layer's map of an object's name token is pulled onto that
  object's mask (share of attention inside the mask, and per-pixel BCE).
  Captions still hold no position words; the masks only say which pixels
  belong to which named object.

Constant learning rate after warm-up, so a run stopped at step N (``--time-budget``)
is repeated exactly by ``--steps N``. Every random draw comes from ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import RECIPE, make_scene, vocabulary
from .model import PRESETS, pixel_vae, save_pipeline, scheduler, stopped_cleanly, text_config, unet_config

CAPTION_DROPOUT = 0.1
WARMUP = 200
MAX_OBJECTS = RECIPE["max_objects"]
WIDE_SEEDS = 5 * 10**6  # wide scenes' seeds start here (after seed * 10**7), far from the square ones


def recipe_of(preset: dict) -> dict:
    """The data recipe a preset trains on: RECIPE with the preset's ``repeat_share`` and ``repeat_row``
    (default: none)."""
    return {**RECIPE, "repeat_share": preset.get("repeat_share", 0.0), "repeat_row": preset.get("repeat_row", 0.0)}


@dataclass
class Examples:
    """Training scenes of one canvas shape, tokenised: uint8 images (N, H, W, 3), caption ids (N, 77), each
    object's name-token position (N, 4; -1 none) and mask shares at half resolution (N, 4, H/2, W/2)."""

    images: torch.Tensor
    ids: torch.Tensor
    names: torch.Tensor
    masks: torch.Tensor


def build_tokenizer(words: list[str], out_dir: str | Path | None = None):
    """The project's offline CLIP tokenizer builder with every word one token.

    Longer words' merges must rank first ("and" would otherwise split "orange").
    """
    from tools.tiny import build_clip_tokenizer

    ordered = sorted(dict.fromkeys(words), key=lambda w: (-len(w), w))
    tok = build_clip_tokenizer(ordered, out_dir)
    split = [w for w in ordered if len(tok(w, add_special_tokens=False).input_ids) != 1]
    if split:
        raise ValueError(f"tokenizer splits {split}")
    return tok


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def make_examples(seeds, size: int = 32, recipe: dict = RECIPE, width: int | None = None):
    """Images, captions, each object's "colour shape", and (N, 4, size/2, width/2) mask shares (2x2 pooled)."""
    width = width or size
    scenes = [make_scene(int(s), size, recipe=recipe, width=width) for s in seeds]
    masks = np.zeros((len(scenes), MAX_OBJECTS, size // 2, width // 2), np.float32)
    for i, s in enumerate(scenes):
        for k, m in enumerate(s.masks):
            masks[i, k] = m.reshape(size // 2, 2, width // 2, 2).mean((1, 3))
    return (np.stack([s.image for s in scenes]), [s.caption for s in scenes],
            [[f"{o.colour} {o.shape}" for o in s.objects] for s in scenes], masks)


def generate(n: int, first_seed: int, size: int = 32, workers: int = 1, recipe: dict = RECIPE,
             width: int | None = None):
    """Scenes ``first_seed + i`` for i < n, in order (identical for any worker count)."""
    seeds = np.arange(n, dtype=np.int64) + first_seed
    chunks = np.array_split(seeds, max(1, min(n, workers * 8)))
    args = ([size] * len(chunks), [recipe] * len(chunks), [width] * len(chunks))
    if workers <= 1:
        parts = list(map(make_examples, chunks, *args))
    else:
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(make_examples, chunks, *args))
    return (np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]],
            [o for p in parts for o in p[2]], np.concatenate([p[3] for p in parts]))


def name_positions(tok, caption: str, objects: list[str], max_length: int = 77) -> list[int]:
    """Token position (start token = 0) of each object's shape word, found through its "colour shape" phrase;
    a phrase named twice maps its k-th object to its k-th mention."""
    enc = tok(caption, return_offsets_mapping=True)
    out, after = [], {}
    for ph in objects:
        at = caption.index(ph, after.get(ph, 0))
        after[ph] = at + len(ph)
        j = at + len(ph.split()[0]) + 1  # the shape word's first character
        pos = next(k for k, (a, b) in enumerate(enc["offset_mapping"]) if a <= j < b)
        out.append(pos if pos < max_length - 1 else -1)
    return out + [-1] * (MAX_OBJECTS - len(out))


def to_latents(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> the pixel VAE's latent (N, 4, 32, 32): RGB in [-1, 1] and a zero channel."""
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return torch.cat([x, torch.zeros_like(x[:, :1])], 1)


def optimise(opt: torch.optim.Optimizer, total: torch.Tensor, ema: Iterable[tuple[torch.nn.Module, torch.nn.Module]],
             decay: float | None, n_step: int) -> None:
    """One optimiser step on ``total`` (gradients clipped to norm 1), then each EMA copy in the
    (model, copy) pairs ``ema`` moves toward its model, with a decay that warms up to ``decay``
    over the first steps (as diffusers' EMAModel does), so early copies are not stuck at the init."""
    opt.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_([q for g in opt.param_groups for q in g["params"]], 1.0)
    opt.step()
    pairs = list(ema)
    if pairs:
        d = min(decay, (1 + n_step) / (10 + n_step))
        with torch.no_grad():
            for src, dst in pairs:
                torch._foreach_lerp_(list(dst.parameters()), list(src.parameters()), 1 - d)


def lr_at(step: int, base: float, warmup: int = WARMUP, decay_to: int | None = None) -> float:
    """Linear warm-up, then constant (so any step count is a prefix of a longer run); with ``decay_to``
    the rate falls linearly to zero at that step instead (the annealing phase of a resumed run)."""
    if decay_to:
        return base * max(0.0, 1.0 - step / decay_to)
    return base * min(1.0, (step + 1) / warmup)


# ---------------------------------------------------------------------------
# attention capture (training only)
# ---------------------------------------------------------------------------

class CaptureCross:
    """Cross-attention processor that also keeps the head-mean probabilities (B, N, T) of the layer."""

    def __init__(self, store: list) -> None:
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        b, n, _ = hidden_states.shape
        q, k, v = attn.to_q(hidden_states), attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        hd = q.shape[-1] // attn.heads
        q, k, v = (t.view(b, -1, attn.heads, hd).transpose(1, 2) for t in (q, k, v))
        probs = ((q @ k.transpose(-1, -2)) * attn.scale).softmax(-1)
        self.store.append(probs.mean(1))
        out = (probs @ v).transpose(1, 2).reshape(b, n, -1)
        return attn.to_out[1](attn.to_out[0](out))


def kept_tokens(names: torch.Tensor, length: int) -> torch.Tensor:
    """(B, length) bool: the start token and every name-token position of ``names`` (B, ...; -1 = none),
    the states token isolation keeps."""
    flat = names.flatten(1)
    keep = torch.zeros(flat.shape[0], length, dtype=torch.bool, device=flat.device)
    keep.scatter_(1, flat.clamp_min(0), flat >= 0)
    keep[:, 0] = True
    return keep


def null_state_loss(states: torch.Tensor, empty: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of ``states`` (B, T, C) from the empty prompt's (not differentiated) over the
    positions ``where`` (B, T) marks: pulls what isolation replaces towards what replaces it."""
    off = where.float()[..., None]
    return ((states - empty.detach()).pow(2) * off).sum() / (off.sum() * states.shape[-1]).clamp_min(1)


def attention_loss(maps: list[torch.Tensor], tokens: torch.Tensor, masks16: torch.Tensor) -> torch.Tensor:
    """Mean over layers and objects of (1 - in-mask share)^2 + per-pixel BCE of the name token's map vs the mask.

    maps: per layer (B, N, T); tokens: (B, K) positions, -1 = no object; masks16: (B, K, H, W) shares at the
    16x16 level's resolution (H x W: 16 x 16, or 16 x 32 on a wide canvas); lower levels pool them.
    """
    valid = (tokens >= 0).float()
    if valid.sum() == 0:
        return maps[0].new_zeros(())
    idx = tokens.clamp_min(0)
    total = 0.0
    for p in maps:
        h, w = masks16.shape[-2:]
        down = int(math.isqrt(h * w // p.shape[1]))  # 1 at the 16x16 level, 2 in the mid block
        m = masks16 if down == 1 else F.adaptive_avg_pool2d(masks16, (h // down, w // down))
        m = m.flatten(2)  # B, K, N
        a = torch.gather(p, 2, idx[:, None, :].expand(-1, p.shape[1], -1)).transpose(1, 2)  # B, K, N
        share = (a * m).sum(-1) / a.sum(-1).clamp_min(1e-8)
        bce = F.binary_cross_entropy(a.clamp(1e-6, 1 - 1e-6), m, reduction="none").mean(-1)
        total = total + (((1 - share) ** 2 + bce) * valid).sum() / valid.sum()
    return total / len(maps)


# ---------------------------------------------------------------------------
# trainer
# ---------------------------------------------------------------------------

class Trainer:
    """Holds models, data and optimiser; ``step()`` is one optimisation step."""

    def __init__(self, preset: dict, seed: int, device: str, workers: int = 1, log=print) -> None:
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        self.p, self.seed, self.device, self.log = preset, seed, torch.device(device), log
        self.tok = build_tokenizer(vocabulary())
        t0 = time.perf_counter()
        self.recipe = recipe_of(preset)
        self.square = self.examples(generate(preset["n_scenes"], seed * 10**7, 32, workers, self.recipe))
        self.wide = self.examples(generate(preset["n_wide"], seed * 10**7 + WIDE_SEEDS, 32, workers, self.recipe,
                                           width=64)) if preset.get("n_wide") else None
        self.data_s = time.perf_counter() - t0
        torch.manual_seed(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.empty = self.tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids.to(self.device)
        self.unet = UNet2DConditionModel(**unet_config(preset)).to(self.device).train()
        self.maps: list[torch.Tensor] = []
        if preset["attn_weight"] > 0:  # a plain recipe keeps diffusers' processors (no maps, no extra cost)
            procs = {}
            for key, proc in self.unet.attn_processors.items():
                procs[key] = CaptureCross(self.maps) if key.endswith("attn2.processor") else proc
            self.unet.set_attn_processor(procs)
        self.text = CLIPTextModel(text_config(len(self.tok), preset)).to(self.device).train()
        self.sched = scheduler()
        self.abar = self.sched.alphas_cumprod.to(self.device)
        params = list(self.unet.parameters()) + list(self.text.parameters())
        self.opt = torch.optim.AdamW(params, lr=preset["lr"], weight_decay=0.01, betas=(0.9, 0.99))
        self.ema = [deepcopy(self.unet).eval().requires_grad_(False), deepcopy(self.text).eval().requires_grad_(False)] \
            if preset["ema"] > 0 else None
        self.n_step = 0

    def examples(self, generated) -> Examples:
        images, captions, objects, masks = generated
        enc = self.tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        names = [name_positions(self.tok, c, o) for c, o in zip(captions, objects)]
        return Examples(torch.from_numpy(images).to(self.device), enc.input_ids.to(self.device),
                        torch.tensor(names, device=self.device), torch.from_numpy(masks).to(self.device))

    def load(self, folder: str | Path) -> None:
        """Start from a saved model (UNet + text encoder weights; the optimiser starts fresh)."""
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        folder = Path(folder)
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
        text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32)
        self.unet.load_state_dict(unet.state_dict())
        self.text.load_state_dict(text.state_dict())
        if self.ema is not None:
            self.ema = [deepcopy(self.unet).eval().requires_grad_(False), deepcopy(self.text).eval().requires_grad_(False)]

    def losses(self, data: Examples, idx, t, noise, drop, iso) -> dict[str, torch.Tensor]:
        """eps (min-SNR weighted), plain eps MSE, attention grounding and null-state losses of one batch."""
        p = self.p
        x0 = to_latents(data.images[idx])
        ids = torch.where(drop[:, None], self.empty.expand(len(idx), -1), data.ids[idx])
        names = torch.where(drop[:, None], torch.full_like(data.names[idx], -1), data.names[idx])
        keep = kept_tokens(names, ids.shape[1])
        ctx = self.text(ids)[0]
        null = self.text(self.empty)[0]
        ctx_in = torch.where(keep[..., None] | ~iso[:, None, None], ctx, null)
        a = self.abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        self.maps.clear()
        eps = self.unet(xt, t, encoder_hidden_states=ctx_in).sample
        per = (eps.float() - noise).pow(2).mean((1, 2, 3))
        snr = (a / (1 - a)).flatten()
        w = snr.clamp_max(p["min_snr"]) / snr if p.get("min_snr") else torch.ones_like(snr)
        out = {"eps": (w * per).mean(), "mse": per.mean(), "null": null_state_loss(ctx, null, ~keep),
               "attn": attention_loss(self.maps, names, data.masks[idx]) if self.maps else per.new_zeros(())}
        self.maps.clear()
        out["total"] = out["eps"] + p["attn_weight"] * out["attn"] + p["null_weight"] * out["null"]
        return out

    def draw(self, b: int) -> tuple:
        """One batch: all square or (a ``wide_share`` of batches) all wide; the first recipe draws no extra number."""
        g, dev = self.gen, self.device
        wide = self.wide is not None and float(torch.rand(1, generator=g, device=dev)) < self.p["wide_share"]
        data = self.wide if wide else self.square
        idx = torch.randint(0, len(data.images), (b,), generator=g, device=dev)
        t = torch.randint(0, self.sched.config.num_train_timesteps, (b,), generator=g, device=dev)
        noise = torch.randn(b, 4, *data.images.shape[1:3], generator=g, device=dev)
        drop = torch.rand(b, generator=g, device=dev) < CAPTION_DROPOUT
        iso = torch.rand(b, generator=g, device=dev) < self.p["isolate"]
        return data, idx, t, noise, drop, iso

    def step(self) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.n_step, self.p["lr"], self.p.get("warmup", WARMUP), self.p.get("decay_to"))
        out = self.losses(*self.draw(self.p["batch"]))
        ema = ((self.unet, self.ema[0]), (self.text, self.ema[1])) if self.ema is not None else ()
        optimise(self.opt, out["total"], ema, self.p.get("ema"), self.n_step)
        self.n_step += 1
        return {k: float(v.detach()) for k, v in out.items()}

    @torch.no_grad()
    def eval_loss(self, n: int = 16, seed: int = 123) -> float:
        """Plain eps MSE on a fixed batch (fixed scenes, timesteps, noise, full captions): comparable across steps."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.randint(0, len(self.square.images), (n,), generator=g)
        t = torch.randint(50, 950, (n,), generator=g)
        noise = torch.randn(n, 4, 32, 32, generator=g)
        off = torch.zeros(n, dtype=torch.bool)
        self.unet.eval(), self.text.eval()
        out = float(self.losses(self.square, idx.to(self.device), t.to(self.device), noise.to(self.device), off.to(self.device),
                                off.to(self.device))["mse"])
        self.unet.train(), self.text.train()
        return out

    def final_models(self):
        """EMA (or live) UNet and text encoder, with diffusers' default attention processors."""
        unet, text = (self.ema[0], self.ema[1]) if self.ema is not None else (self.unet, self.text)
        unet = deepcopy(unet).eval()
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())
        return unet, deepcopy(text).eval()


def _init_record(init: str | Path | None) -> dict | None:
    """Where a continued run started: the folder and its own training record (without the vocabulary)."""
    if init is None:
        return None
    f = Path(init) / "training.json"
    before = json.loads(f.read_text()) if f.exists() else None
    if before:
        before.pop("vocabulary", None)
    return {"folder": str(init), "record": before}


def _record(tr: Trainer, preset_name: str, preset: dict, seed: int, t0: float, t_train: float, curve, first_eval,
            last_eval, init: dict | None = None) -> dict:
    return {"init": init,
        "preset": preset_name, "config": preset, "seed": seed, "steps": tr.n_step, "device": str(tr.device),
        "threads": torch.get_num_threads(),
        "train_s": round(time.perf_counter() - t_train, 1), "total_s": round(time.perf_counter() - t0, 1),
        "eval_loss_start": first_eval, "eval_loss_end": last_eval, "loss_curve": curve,
        "objective": f"epsilon MSE with min-SNR-{preset.get('min_snr')} weights, uniform t in [0, 1000), "
                     "SD 1.x scaled-linear betas, AdamW(0.9, 0.99, wd 0.01), warmup "
                     f"{preset.get('warmup', WARMUP)} then constant lr, grad clip 1.0, caption dropout {CAPTION_DROPOUT}, "
                     f"EMA {preset['ema']}; isolation {preset['isolate']} (non-name hidden states -> empty "
                     f"prompt's), null-state loss x{preset['null_weight']}, attention grounding loss "
                     f"x{preset['attn_weight']} on every cross-attention layer",
        "data": {"generator": "tools.shapes.data.make_scene(seed, size=32[, width=64])",
                 "seeds": f"{seed * 10**7} .. {seed * 10**7 + preset['n_scenes'] - 1}", "recipe": tr.recipe,
                 "wide": ({"seeds": f"{seed * 10**7 + WIDE_SEEDS} .. {seed * 10**7 + WIDE_SEEDS + preset['n_wide'] - 1}",
                           "size": "32x64 (height x width)", "share_of_batches": preset["wide_share"]}
                          if tr.wide is not None else None),
                 "latent": "32x32 (or 32x64) render as RGB in [-1, 1] + a zero channel = the pixel VAE's latent",
                 "masks": "each object's mask, 2x2 average-pooled to the 16x16 level (and again for the mid block)"},
        "vocabulary": vocabulary(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": __import__("diffusers").__version__,
                     "transformers": __import__("transformers").__version__},
        "command": " ".join(["python3 -m tools.shapes.train", *sys.argv[1:]]),
    }


def train(preset_name: str = "cpu", out: str | Path | None = None, seed: int = 0, steps: int | None = None,
          time_budget: float | None = None, device: str | None = None, workers: int | None = None,
          overrides: dict | None = None, save_every: int = 0, init: str | Path | None = None, log=print) -> dict:
    """Train and (if ``out``) save a diffusers folder; returns the run record (also saved as training.json).

    Stops at ``steps`` (default: the preset's) or when ``time_budget`` seconds of training have passed,
    whichever comes first; ``save_every`` also writes the folder every that many steps. ``init`` continues
    from a saved folder (its record is kept under ``init`` in the new one).
    """
    preset = {**PRESETS[preset_name], **(overrides or {})}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    workers = workers if workers is not None else max(1, min(16, (os.cpu_count() or 2)))
    t0 = time.perf_counter()
    tr = Trainer(preset, seed, device, workers, log)
    if init is not None:
        tr.load(init)
    started_from = _init_record(init)  # read once: checkpoints may overwrite that folder's files
    log(f"data: {len(tr.square.images)} square + {len(tr.wide.images) if tr.wide else 0} wide scenes in {tr.data_s:.1f}s; unet {sum(p.numel() for p in tr.unet.parameters())/1e6:.2f}M, "
        f"text {sum(p.numel() for p in tr.text.parameters())/1e6:.2f}M params; device {device}")
    budget = preset["time_budget_s"] if time_budget is None else time_budget
    total = steps if steps is not None else preset["steps"]
    if steps is not None and time_budget is None:
        budget = 0  # an exact step count is not cut short
    first_eval = tr.eval_loss()
    curve, hist = [], []
    t_train = time.perf_counter()

    def save() -> None:
        unet, text = tr.final_models()
        rec = _record(tr, preset_name, preset, seed, t0, t_train, curve, first_eval, None, started_from)
        save_pipeline(out, unet, pixel_vae(), text, tr.tok, tr.sched, rec)

    every = max(1, min(250, total // 10))

    def train_step() -> None:
        hist.append(tr.step())
        if tr.n_step % every == 0 or tr.n_step == total:
            avg = {k: round(float(np.mean([h[k] for h in hist[-every:]])), 5) for k in hist[-1]}
            curve.append({"step": tr.n_step, **avg, "s": round(time.perf_counter() - t_train, 1)})
            log(f"step {tr.n_step}/{total} " + " ".join(f"{k} {v:.4f}" for k, v in avg.items())
                + f" ({time.perf_counter() - t_train:.0f}s)")
        if out is not None and save_every and tr.n_step % save_every == 0:
            save()
            log(f"saved step {tr.n_step} to {out}")

    try:
        while tr.n_step < total and not (budget and time.perf_counter() - t_train > budget):
            train_step()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (main): keep what was trained
        if out is not None:
            log(f"interrupted at step {tr.n_step}")
            save()
            log(f"saved step {tr.n_step} to {out}")
        raise
    last_eval = tr.eval_loss()
    record = _record(tr, preset_name, preset, seed, t0, t_train, curve, first_eval, last_eval, started_from)
    if out is not None:
        unet, text = tr.final_models()
        save_pipeline(out, unet, pixel_vae(), text, tr.tok, tr.sched, record)
        log(f"saved {out}")
    record["first_losses"], record["last_losses"] = hist[:5], hist[-5:]
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", default="models/shapes-tiny-cpu", help="diffusers folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="exact step count (no time budget unless given)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of training; 0 = no limit")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--workers", type=int, default=None, help="processes generating the data")
    ap.add_argument("--save-every", type=int, default=0, help="also write the folder every N steps")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--n-scenes", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--repeat-share", type=float, default=None,
                    help="share of scenes with one colour-shape pair drawn 2-3 times (counts; default 0)")
    ap.add_argument("--repeat-row", type=float, default=None,
                    help="share of those in which the copies stand in a row or column, as the geometry lays out a count")
    ap.add_argument("--n-wide", type=int, default=None, help="also generate this many 32x64 (wide) scenes")
    ap.add_argument("--wide-share", type=float, default=None, help="share of batches drawn from the wide scenes")
    ap.add_argument("--init", default=None, help="continue from this saved model folder (fresh optimiser)")
    ap.add_argument("--decay", action="store_true",
                    help="learning rate falls linearly to zero over --steps (annealing a resumed run)")
    a = ap.parse_args(argv)
    if a.decay and not a.steps:
        ap.error("--decay needs --steps")
    if a.threads:
        torch.set_num_threads(a.threads)
    if bool(a.n_wide) != bool(a.wide_share):
        ap.error("--n-wide and --wide-share go together")
    over = {k: v for k, v in {"batch": a.batch, "n_scenes": a.n_scenes, "lr": a.lr, "repeat_share": a.repeat_share,
                              "repeat_row": a.repeat_row, "n_wide": a.n_wide, "wide_share": a.wide_share,
                              "decay_to": a.steps if a.decay else None}.items() if v is not None}
    with stopped_cleanly("train"):
        rec = train(a.preset, a.out, a.seed, a.steps, a.time_budget, a.device, a.workers, over, a.save_every,
                    init=a.init, log=lambda m: print(m, flush=True))
    print(json.dumps({k: rec[k] for k in ("steps", "train_s", "eval_loss_start", "eval_loss_end")}))


if __name__ == "__main__":
    main()
