"""Train the shapes text-to-image model: ``python -m plan_and_render.shapes.train --preset cpu --out DIR``.

Epsilon-prediction diffusion on SD 1.x's noise schedule, UNet and CLIP text
encoder trained together from scratch, 10 % caption dropout so classifier-free
guidance works, EMA weights saved. The whole dataset (a fixed number of seeded
scenes) is generated up front and kept on the device, so a GPU step is a few
kernel launches and no data loading.

Reproducible: every random draw comes from ``--seed``; with ``--time-budget``
the step count is fixed after a short speed probe and recorded, and rerunning
with ``--steps N --time-budget 0`` repeats the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import RECIPE, make_batch, vocabulary
from .model import PRESETS, pixel_vae, save_pipeline, scheduler, text_config, unet_config

CAPTION_DROPOUT = 0.1
WARMUP = 200


def build_tokenizer(words: list[str], out_dir: str | Path | None = None):
    """The project's offline CLIP tokenizer builder (renderer.tiny), words kept whole where it can."""
    from renderer.tiny import build_clip_tokenizer

    return build_clip_tokenizer(words, out_dir)


def generate(n: int, seed: int, size: int = 32, workers: int = 1) -> tuple[np.ndarray, list[str]]:
    """Scenes ``seed * 10**7 + i`` for i < n, in order (identical for any worker count)."""
    seeds = np.arange(n, dtype=np.int64) + seed * 10**7
    chunks = np.array_split(seeds, max(1, min(n, workers * 8)))
    if workers <= 1:
        parts = [make_batch(c, size) for c in chunks]
    else:
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(make_batch, chunks, [size] * len(chunks)))
    return np.concatenate([p[0] for p in parts]), [c for p in parts for c in p[1]]


def to_latents(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 32, 32, 3) -> the pixel VAE's latent (N, 4, 32, 32): RGB in [-1, 1] and a zero channel."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return torch.cat([x, torch.zeros_like(x[:, :1])], 1)


def lr_at(step: int, total: int, base: float) -> float:
    warm = min(1.0, (step + 1) / WARMUP)
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total)))))


class Trainer:
    """Holds models, data and optimiser; ``step()`` is one optimisation step."""

    def __init__(self, preset: dict, seed: int, device: str, workers: int = 1, log=print) -> None:
        self.p, self.seed, self.device, self.log = preset, seed, torch.device(device), log
        self.tok = build_tokenizer(vocabulary())
        t0 = time.perf_counter()
        images, captions = generate(preset["n_scenes"], seed, 32, workers)  # before any CUDA call (fork)
        self.data_s = time.perf_counter() - t0
        torch.manual_seed(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.x = to_latents(images).to(self.device)
        ids = self.tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        self.ids = ids.to(self.device)
        self.empty = self.tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids.to(self.device)
        self.captions = captions
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        self.unet = UNet2DConditionModel(**unet_config(preset)).to(self.device).train()
        if self.device.type == "cuda":  # faster cuDNN convolutions in bf16
            self.unet.to(memory_format=torch.channels_last)
        self.text = CLIPTextModel(text_config(len(self.tok), preset)).to(self.device).train()
        self.sched = scheduler()
        self.abar = self.sched.alphas_cumprod.to(self.device)
        params = list(self.unet.parameters()) + list(self.text.parameters())
        self.opt = torch.optim.AdamW(params, lr=preset["lr"], weight_decay=0.01, betas=(0.9, 0.99))
        self.ema = [deepcopy(self.unet).eval().requires_grad_(False), deepcopy(self.text).eval().requires_grad_(False)] \
            if preset["ema"] > 0 else None
        self.amp = self.device.type == "cuda"
        self.n_step = 0

    def loss(self, idx: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        x0 = self.x[idx]
        ids = torch.where(drop[:, None], self.empty.expand(len(idx), -1), self.ids[idx])
        a = self.abar[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            ctx = self.text(ids)[0]
            eps = self.unet(xt, t, encoder_hidden_states=ctx).sample
        return F.mse_loss(eps.float(), noise)

    def draw(self, b: int) -> tuple[torch.Tensor, ...]:
        g, dev = self.gen, self.device
        idx = torch.randint(0, len(self.x), (b,), generator=g, device=dev)
        t = torch.randint(0, self.sched.config.num_train_timesteps, (b,), generator=g, device=dev)
        noise = torch.randn(b, 4, 32, 32, generator=g, device=dev)
        drop = torch.rand(b, generator=g, device=dev) < CAPTION_DROPOUT
        return idx, t, noise, drop

    def step(self, total: int) -> float:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.n_step, total, self.p["lr"])
        loss = self.loss(*self.draw(self.p["batch"]))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([q for g in self.opt.param_groups for q in g["params"]], 1.0)
        self.opt.step()
        if self.ema is not None:
            d = min(self.p["ema"], (1 + self.n_step) / (10 + self.n_step))
            with torch.no_grad():
                for src, dst in ((self.unet, self.ema[0]), (self.text, self.ema[1])):
                    torch._foreach_lerp_(list(dst.parameters()), list(src.parameters()), 1 - d)
        self.n_step += 1
        return loss.detach().item()

    @torch.no_grad()
    def eval_loss(self, n: int = 16, seed: int = 123) -> float:
        """Loss on a fixed batch (fixed scenes, timesteps, noise): comparable across steps."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.randint(0, len(self.x), (n,), generator=g)
        t = torch.randint(50, 950, (n,), generator=g)
        noise = torch.randn(n, 4, 32, 32, generator=g)
        drop = torch.zeros(n, dtype=torch.bool)
        self.unet.eval(), self.text.eval()
        out = float(self.loss(idx.to(self.device), t.to(self.device), noise.to(self.device), drop.to(self.device)))
        self.unet.train(), self.text.train()
        return out

    def final_models(self):
        return (self.ema[0], self.ema[1]) if self.ema is not None else (self.unet.eval(), self.text.eval())


def train(preset_name: str = "cpu", out: str | Path | None = None, seed: int = 0, steps: int | None = None,
          time_budget: float | None = None, device: str | None = None, workers: int | None = None,
          overrides: dict | None = None, log=print) -> dict:
    """Train and (if ``out``) save a diffusers folder; returns the run record (also saved as training.json)."""
    preset = {**PRESETS[preset_name], **(overrides or {})}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    workers = workers if workers is not None else max(1, min(16, (os.cpu_count() or 2) - 1))
    t0 = time.perf_counter()
    tr = Trainer(preset, seed, device, workers, log)
    log(f"data: {len(tr.x)} scenes in {tr.data_s:.1f}s; unet {sum(p.numel() for p in tr.unet.parameters())/1e6:.2f}M, "
        f"text {sum(p.numel() for p in tr.text.parameters())/1e6:.2f}M params; device {device}")
    budget = preset["time_budget_s"] if time_budget is None else time_budget
    total = steps if steps is not None else preset["steps"]
    first_eval = tr.eval_loss()
    curve, losses = [], []
    if budget and steps is None and total > 100:  # probe speed, then fix the step count so the schedule is deterministic
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for _ in range(10):  # warm-up (cuDNN autotuning) is not counted in the rate
            losses.append(tr.step(total))
        sync()
        tp = time.perf_counter()
        for _ in range(30):
            losses.append(tr.step(total))
        sync()
        rate = 30 / (time.perf_counter() - tp)
        total = max(40, min(total, 40 + int(rate * (budget - (time.perf_counter() - t0 - tr.data_s)))))
        log(f"speed {rate:.1f} steps/s -> {total} steps")
    t_train = time.perf_counter()
    while tr.n_step < total:
        losses.append(tr.step(total))
        if tr.n_step % 500 == 0 or tr.n_step == total:
            avg = float(np.mean(losses[-500:]))
            curve.append({"step": tr.n_step, "loss": round(avg, 5), "s": round(time.perf_counter() - t_train, 1)})
            log(f"step {tr.n_step}/{total} loss {avg:.4f} ({time.perf_counter() - t_train:.0f}s)")
    last_eval = tr.eval_loss()
    unet, text = tr.final_models()
    record = {
        "preset": preset_name, "config": preset, "seed": seed, "steps": total, "device": device,
        "train_s": round(time.perf_counter() - t_train, 1), "total_s": round(time.perf_counter() - t0, 1),
        "eval_loss_start": first_eval, "eval_loss_end": last_eval, "loss_curve": curve,
        "objective": "epsilon MSE, uniform t in [0, 1000), SD 1.x scaled-linear betas, AdamW(0.9, 0.99, wd 0.01), "
                     f"warmup {WARMUP} + cosine to 10 %, grad clip 1.0, bf16 autocast on GPU, "
                     f"caption dropout {CAPTION_DROPOUT}, EMA {preset['ema']}",
        "data": {"generator": "plan_and_render.shapes.data.make_scene(seed, size=32)",
                 "seeds": f"{seed * 10**7} .. {seed * 10**7 + preset['n_scenes'] - 1}", "recipe": RECIPE,
                 "latent": "32x32 render as RGB in [-1, 1] + a zero channel = the pixel VAE's latent"},
        "vocabulary": vocabulary(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": __import__("diffusers").__version__,
                     "transformers": __import__("transformers").__version__},
        "command": " ".join(["python -m plan_and_render.shapes.train", *sys.argv[1:]]),
    }
    if out is not None:
        save_pipeline(out, unet, pixel_vae(), text, tr.tok, tr.sched, record)
        log(f"saved {out}")
    record["first_losses"], record["last_losses"] = losses[:5], losses[-5:]
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", default="models/shapes-tiny-cpu", help="diffusers folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="exact step count (skips the speed probe)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of training; 0 = no limit")
    ap.add_argument("--device", default=None)
    ap.add_argument("--workers", type=int, default=None, help="processes generating the data")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--n-scenes", type=int, default=None)
    a = ap.parse_args(argv)
    over = {k: v for k, v in {"batch": a.batch, "n_scenes": a.n_scenes}.items() if v is not None}
    rec = train(a.preset, a.out, a.seed, a.steps, a.time_budget, a.device, a.workers, over,
                log=lambda m: print(m, flush=True))
    print(json.dumps({k: rec[k] for k in ("steps", "train_s", "eval_loss_start", "eval_loss_end")}))


if __name__ == "__main__":
    main()
