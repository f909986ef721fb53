"""Train the flow-matching MMDiT shapes model: ``python3 -m tools.shapes.train_mmdit --preset cpu --out DIR``.

The shapes world's second model, built the way Stable Diffusion 3 is: an
``SD3Transformer2DModel`` (joint attention over image patches and text tokens)
conditioned on two CLIP-style text encoders (penultimate hidden states side
by side, pooled embeddings for the adaptive norms) and a T5-style encoder
(appended along the sequence), trained with the rectified-flow objective:

    x_t = (1 - t) x0 + t eps,   the transformer predicts v = eps - x0,   t ~ logit-normal(0, 1)

(SD 3's "rf/lognorm(0.00, 1.00)"), plain MSE, 10 % of captions dropped to the
empty prompt so classifier-free guidance works, EMA weights saved. Nothing
else by default: no attention supervision, no special treatment of any token -
the captions never name a position ("a red circle and a blue square"), so
*where* can only come from layout guidance.

``--ground`` (a named deviation from SD 3's recipe, off by default) adds the
UNet shapes model's two grounding terms (``tools.shapes.train``), carried over
to the joint sequence: for ``isolate`` of the samples every text state except
CLIP's start token and each object's name token - in the CLIP *and* the T5
part - is replaced by the empty prompt's, and so is the pooled embedding (a
"null" loss pulls the replaced T5 states towards the empty prompt's anyway); and
every joint block's image-to-text attention (re-normalised over the text, as
the renderer reads it) of each name token is pulled onto its object's mask.
The two CLIP encoders stay frozen, as all of SD 3's text encoders are (their
penultimate states, which no norm bounds, blew up under the grounding terms).
Why ground at all: a plainly trained MMDiT on a CPU budget places words at
1.0-1.4x chance (docs/mmdit-shapes.md), so no guidance method has maps to pull on.

``--align WEIGHT`` (another named deviation, off by default) is REPA's representation alignment (Yu et
al., 2024: a diffusion transformer learns much faster when the states of an early block - the 8th of SiT-XL's
28 - are made to predict a pretrained encoder's features of the clean image, through a small MLP head that is
thrown away after training; its weight 0.5). Here the block is the third of six (``align_block``) and the
head's width twice the model's (REPA: 2,048). The shapes world has no pretrained image encoder, but every scene says exactly
what it holds, so the target here is its label map: for each patch, the share covered by each colour-shape
class and by the background, predicted through REPA's three-layer head with a cross-entropy (REPA: negative
cosine similarity to DINOv2 features), on the samples whose caption was kept. Why: untrained, the model's
square and circle come out as one blob (``benchmarks/shape_words.py``); the head makes the middle of the
network say which shape stands where, from the noisy latent and the words.

Data, tokenizer words, the pixel "VAE"
(64x64 RGB <-> 32x32 latent) are the UNet shapes model's (``tools.shapes.train``,
``tools.shapes.model``); 2x2 patches make the transformer see a 16x16 grid,
the layout level of the UNet model. ``--patch 4`` (an 8x8 grid) makes a step
about 2.7 times cheaper on a CPU; ``--init FOLDER`` starts from an earlier
run's text encoders and joint blocks (a warm start across patch sizes);
``--init-weights adaln-zero`` starts a fresh transformer as DiT does (measured no better by step 4,000:
docs/mmdit-shapes.md). ``--vae FOLDER --patch 1`` denoises a learned autoencoder's 8x8 latent instead
(``tools.shapes.train_vae``; SD 3's arrangement: the decoder draws the pixels; not better by 6,700 CPU
steps: docs/mmdit-shapes.md). ``--t-location M`` draws the flow times from logit-normal(M, 1), SD 3's
lognorm(m, s) family (its paper compared m from -0.5 to 1 and chose 0, the default here); below 0 the
low-noise end, where a square's corners are decided (``benchmarks.shape_settling``), is trained more.

Made for one CPU thread: ``--time-budget`` stops training, ``--checkpoint`` keeps
optimiser, EMA and random state every ``--save-every`` steps so a run cut short
resumes (``--resume``) where it stopped (Ctrl-C or SIGTERM saves both at the step
reached; folders are written whole); the learning rate is constant after
warm-up and then falls linearly to zero over the last ``decay`` share of the
steps. Every random draw comes from ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from plan_and_render.renderer.joint_attention import JointState, SD3Processor
from plan_and_render.renderer.pipeline_sd3 import sd3_text_embeddings
from plan_and_render.scoring.shapes import COLOURS, SHAPES

from .data import vocabulary
from .model import pixel_vae, stopped_cleanly, write_folder
from .model import PRESETS as UNET_PRESETS
from .train import (WIDE_SEEDS, _init_record, attention_loss, build_tokenizer, generate, kept_tokens, name_positions,
                    null_state_loss, optimise, recipe_of, to_latents)

CAPTION_DROPOUT = 0.1
# --ground: the UNet shapes model's grounding weights (isolation share, null loss, attention loss), one source
# and SD 3's frozen CLIP encoders (a trained CLIP's penultimate states, which no norm bounds, grew from a
# mean square of 5 to 25,000 within 1,000 grounded steps)
# --teacher: the flow times whose target the teacher gives; outside them the plain target is nearer the truth
# (benchmarks/teacher_span.py, 64 held-out scenes, models/shapes-tiny as teacher: its v is the closer one for
# 0.15 <= t <= 0.8 - at t = 0.4 its mean squared error to eps - x0 is 0.022 against the MMDiT's 0.049 - and the
# further one at t = 0.05 and 0.9, where it reads a barely noisy sample or its noise estimate is divided by 1 - t)
TEACHER_SPAN = (0.15, 0.8)
# --align: the classes a joint block's image states are aligned to (background, then each colour-shape pair)
ALIGN_CLASSES = 1 + len(SHAPES) * len(COLOURS)
GROUNDING = {**{k: UNET_PRESETS["cpu"][k] for k in ("isolate", "null_weight", "attn_weight")}, "freeze_clip": True}

PRESETS: dict[str, dict] = {
    # every shipped run (with --patch / --ground as models/shapes-mmdit/training.json records); one CPU thread
    "cpu": dict(layers=6, heads=4, head_dim=32, clip_hidden=64, clip_layers=2, t5_dim=128, t5_layers=2,
                clip_length=24, t5_length=24, batch=16, lr=5e-4, warmup=200, decay=0.2, steps=4800,
                time_budget_s=10800, n_scenes=20000, ema=0.999, shift=1.0, t_location=0.0),
    # the unit test's few steps
    "test": dict(layers=2, heads=2, head_dim=8, clip_hidden=16, clip_layers=1, t5_dim=32, t5_layers=1,
                 clip_length=24, t5_length=24, batch=4, lr=2e-3, warmup=2, decay=0.2, steps=6,
                 time_budget_s=120, n_scenes=16, ema=0.0, shift=1.0, t_location=0.0),
}


# ---------------------------------------------------------------------------
# the model's parts, from a preset
# ---------------------------------------------------------------------------

def transformer_config(p: dict, latent: tuple[int, int] = (4, 32)) -> dict:
    """An SD 3 MMDiT for a square latent of ``latent`` = (channels, side): the 32x32x4 pixel latent unless
    ``--vae`` gives another; 2x2 patches unless the preset says ``patch``, SD 3.0's plain joint blocks;
    positions for the wide canvas's grid (twice the side)."""
    dim, (channels, side), patch = p["heads"] * p["head_dim"], latent, p.get("patch", 2)
    return dict(sample_size=side, patch_size=patch, in_channels=channels, out_channels=channels,
                num_layers=p["layers"], attention_head_dim=p["head_dim"], num_attention_heads=p["heads"],
                joint_attention_dim=p["t5_dim"], caption_projection_dim=dim, pooled_projection_dim=2 * p["clip_hidden"],
                pos_embed_max_size=2 * side // patch)


def build_parts(p: dict, latent: tuple[int, int] = (4, 32)) -> dict:
    """Random-weight transformer (for a latent of (channels, side)), text encoders and tokenizers (every
    shapes word one token in each)."""
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5EncoderModel

    from tools.tiny import build_t5_tokenizer, tiny_t5_config

    words = vocabulary()
    toks = [build_tokenizer(words), build_tokenizer(words)]
    for t in toks:
        t.model_max_length = p["clip_length"]
    tok5 = build_t5_tokenizer(sorted(words, key=lambda w: (-len(w), w)), model_max_length=p["t5_length"])
    split = [w for w in words if len(tok5(w, add_special_tokens=False).input_ids) != 1]
    if split:
        raise ValueError(f"the T5 tokenizer splits {split}")
    h = p["clip_hidden"]

    def clip() -> CLIPTextModelWithProjection:
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(toks[0]), hidden_size=h, intermediate_size=4 * h, num_attention_heads=4,
            num_hidden_layers=p["clip_layers"] + 1,  # SD 3 reads the penultimate layer
            max_position_embeddings=p["clip_length"], projection_dim=h, bos_token_id=0, eos_token_id=1,
            pad_token_id=1, hidden_act="quick_gelu"))

    return dict(transformer=SD3Transformer2DModel(**transformer_config(p, latent)), text_encoder=clip(), text_encoder_2=clip(),
                text_encoder_3=T5EncoderModel(tiny_t5_config(len(tok5), p["t5_dim"], p["t5_layers"], 4)),
                tokenizer=toks[0], tokenizer_2=toks[1], tokenizer_3=tok5)


def adaln_zero_init(transformer) -> None:
    """DiT's initialisation (facebookresearch/DiT ``initialize_weights``; SD 3's MMDiT builds on DiT), in place.

    Why: diffusers builds the MMDiT with PyTorch's default layer init, so at step 0 every joint block already
    adds a random residual and the output layer a random velocity. DiT's "adaLN-Zero" makes each block start
    as the identity (its modulation, hence its gates, zero) and the output zero, with Xavier-uniform linear
    layers (the patch embedding treated as one), zero biases and N(0, 0.02) time-embedding weights."""
    for module in transformer.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
    patch = transformer.pos_embed.proj
    torch.nn.init.xavier_uniform_(patch.weight.data.view(patch.weight.shape[0], -1))
    torch.nn.init.zeros_(patch.bias)
    stamp = transformer.time_text_embed.timestep_embedder
    for layer in (stamp.linear_1, stamp.linear_2):
        torch.nn.init.normal_(layer.weight, std=0.02)
    zeroed = [b.norm1.linear for b in transformer.transformer_blocks]
    zeroed += [b.norm1_context.linear for b in transformer.transformer_blocks]
    for layer in zeroed + [transformer.norm_out.linear, transformer.proj_out]:
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)


def scheduler(shift: float = 1.0):
    """SD 3's sampler; shift 1 (SD 3 shifts by 3 at 1024 px, where more pixels make each noise level easier)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def load_vae(folder: str | Path):
    """A trained shapes AutoencoderKL (``tools.shapes.train_vae``), frozen, fp32, on the CPU."""
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval().requires_grad_(False)


def latent_shape(vae) -> tuple[int, int]:
    """(channels, side) of a square scene's latent: the pixel VAE's 4 x 32, or the learned VAE's."""
    if vae is None:
        return 4, 32
    return vae.config.latent_channels, 64 // 2 ** (len(vae.config.block_out_channels) - 1)


@torch.no_grad()
def encode(vae, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 scenes (N, H, W, 3) -> SD 3-normalised mean latents ((z - shift_factor) * scaling_factor),
    encoded once before training, as the VAE is frozen (the mean: its KL term leaves the spread tiny)."""
    from .train_vae import mean_latents

    cfg = vae.config
    z = mean_latents(vae, images, batch)
    return (z - (cfg.shift_factor or 0.0)) * cfg.scaling_factor


def scene_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """The clean latents a shapes MMDiT denoises for uint8 scenes (N, 32, W, 3), given its folder's VAE: the
    render itself for the pixel VAE (the one that halves the side once), else the learned VAE's (``encode``)."""
    if len(vae.config.block_out_channels) == 2:
        return to_latents(images)
    return encode(vae, torch.as_tensor(images))


def object_classes(objects: list[list[str]], k: int) -> torch.Tensor:
    """Each scene's objects ("red circle") as ``--align`` classes (N, k): 1 + shape * colours + colour; -1 = none."""
    colours = list(COLOURS)
    rows = [[1 + SHAPES.index(o.split()[1]) * len(colours) + colours.index(o.split()[0]) for o in objs] for objs in objects]
    return torch.tensor([r + [-1] * (k - len(r)) for r in rows], dtype=torch.long)


def label_map(masks: torch.Tensor, classes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """What each patch of a ``grid`` holds, as soft labels (B, gh * gw, ALIGN_CLASSES) in raster order: the share
    of the patch each object covers under its class, the rest background (class 0). ``masks`` (B, K, H, W) are
    the scenes' mask shares, ``classes`` (B, K) from ``object_classes``."""
    cover = F.adaptive_avg_pool2d(masks, grid).flatten(2) * (classes >= 0)[..., None]  # B, K, N
    target = cover.new_zeros(cover.shape[0], cover.shape[2], ALIGN_CLASSES)
    target.scatter_add_(2, classes.clamp_min(0)[:, None, :].expand(-1, cover.shape[2], -1), cover.transpose(1, 2))
    target[..., 0] = (1 - target[..., 1:].sum(-1)).clamp_min(0)
    return target / target.sum(-1, keepdim=True)


def align_block(layers: int) -> int:
    """The joint block whose output ``--align`` aligns (0-based): ``layers // 3``, the third of six, so half
    the depth is done - deeper than REPA's 8 of SiT-XL's 28 blocks (29 %), a choice not measured against it
    (two blocks of 128 channels are little to gather the words in)."""
    return layers // 3


def align_head(dim: int) -> torch.nn.Module:
    """REPA's projector (three linear layers with SiLU between) from a block's image states to class logits;
    trained with the transformer, never saved in the model folder (REPA discards its projector too)."""
    return torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.SiLU(), torch.nn.Linear(2 * dim, 2 * dim),
                               torch.nn.SiLU(), torch.nn.Linear(2 * dim, ALIGN_CLASSES))


class GroundingProcessor(SD3Processor):
    """SD 3's joint attention (the renderer's processor) that also keeps, with gradients, each block's
    image-query x text-key probabilities re-normalised over the text and averaged over heads: (B, N, T)."""

    def __init__(self, store: list) -> None:
        super().__init__(JointState(), "", capture=True, rca=False, default=None)
        self.store = store

    def wanted(self) -> tuple[bool, bool]:
        return True, False

    def attend(self, q, k, v, n_img, n_txt, image_first, masked):
        qi = q[:, :, :n_img].float() * q.shape[-1] ** -0.5
        self.store.append((qi @ k[:, :, n_img:].float().transpose(-1, -2)).softmax(-1).mean(1))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def lr_at(step: int, p: dict) -> float:
    """Warm-up, constant, then linear decay to zero over the last ``decay`` share of ``steps``."""
    total, start = p["steps"], int(p["steps"] * (1 - p["decay"]))
    if step >= start:
        return p["lr"] * max(0.0, (total - step) / max(1, total - start))
    return p["lr"] * min(1.0, (step + 1) / p["warmup"])


FIT_AFTER = 50  # --fit-budget: steps timed before the step count is fitted to the time budget


def steps_within(done: int, timed_steps: int, timed_s: float, budget_s: float, margin: float = 0.9) -> int:
    """The step count a run that has made ``done`` steps reaches inside ``budget_s`` seconds, at the rate of
    ``timed_steps`` steps in its first ``timed_s`` seconds (``margin`` leaves room for evaluations and saves).

    Why: a run stopped by its time budget stops before its learning-rate decay, which gave the 2x2 run its
    largest single drop; fitting the step count first lets the decay end inside the budget."""
    return done + max(1, int((budget_s - timed_s) * margin * timed_steps / timed_s))


class Teacher:
    """A trained shapes UNet (eps prediction on DDPM noise levels) read as a rectified-flow target.

    Why (``--teacher``, a named deviation from SD 3's recipe, off by default): the plain target
    ``eps - x0`` is one noisy draw around the velocity the transformer should learn (the conditional
    mean); a model that already denoises this world gives that mean directly, so each step teaches
    more. A flow sample ``x_t = (1 - t) x0 + t eps`` is the DDPM sample of the same signal-to-noise
    ratio ``((1 - t) / t)^2`` divided by ``r = sqrt((1 - t)^2 + t^2)``; the teacher's noise estimate
    there gives ``v = (eps - x_t) / (1 - t)``. Outside ``TEACHER_SPAN`` (where it measured worse than the
    plain target) and the teacher's noise levels the plain target stays. The captions stay position-free
    and the teacher sees the same caption (or the empty one, when the student's is dropped).
    """

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from transformers import AutoTokenizer, CLIPTextModel

        folder = Path(folder)
        self.unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
        self.text = CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=torch.float32)
        for m in (self.unet, self.text):
            m.to(device).eval().requires_grad_(False)
        self.tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
        self.empty = self.ids([""]).to(device)  # what a dropped caption reads, tokenised once
        abar = DDPMScheduler.from_pretrained(folder / "scheduler").alphas_cumprod.double()
        self.log_snr = (abar / (1 - abar)).log().to(device)  # falls as the timestep grows

    def ids(self, captions: list[str]) -> torch.Tensor:
        return self.tok(captions, padding="max_length", max_length=self.tok.model_max_length, truncation=True,
                        return_tensors="pt").input_ids

    def timestep(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the teacher's fractional timestep of each flow time t, whether t lies within its noise levels)."""
        log_snr = 2 * torch.log((1 - t.double()) / t.double())
        table = self.log_snr.flip(0)  # rising
        inside = (log_snr >= table[0]) & (log_snr <= table[-1])
        log_snr = log_snr.clamp(table[0], table[-1])
        at = torch.searchsorted(table, log_snr).clamp(1, len(table) - 1)
        frac = (log_snr - table[at - 1]) / (table[at] - table[at - 1])
        return (len(table) - at - frac).float(), inside  # rising position at - 1 + frac, counted from the end

    @torch.no_grad()
    def velocity(self, xt: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, target: torch.Tensor,
                 span: tuple[float, float] = TEACHER_SPAN) -> torch.Tensor:
        """The teacher's ``eps - x0`` at the flow sample ``xt``; ``target`` (the plain one) for flow times
        outside ``span`` or the teacher's noise levels."""
        k, inside = self.timestep(t)
        tt = t.view(-1, 1, 1, 1)
        r = ((1 - tt) ** 2 + tt**2).sqrt()
        eps = self.unet(xt / r, k, encoder_hidden_states=self.text(ids)[0]).sample.float()
        inside &= (t >= span[0]) & (t <= span[1])
        return torch.where(inside.view(-1, 1, 1, 1), (eps - xt) / (1 - tt), target)


# ---------------------------------------------------------------------------
# trainer
# ---------------------------------------------------------------------------

@dataclass
class Scenes:
    """Training scenes of one canvas shape: uint8 images (N, H, W, 3), caption ids of each tokenizer,
    name-token positions (N, 2, K; ``Trainer.name_tokens``), mask shares at half resolution (N, K, H/2, W/2)
    and, with a teacher, its tokenizer's caption ids; with ``--vae``, the scenes' latents (N, C, h, w), encoded once;
    with ``--align``, each object's class (N, K; ``object_classes``)."""

    images: torch.Tensor
    ids: list[torch.Tensor]
    names: torch.Tensor
    masks: torch.Tensor
    teacher_ids: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    classes: torch.Tensor | None = None

    def x0(self, idx: torch.Tensor) -> torch.Tensor:
        """The clean latents of rows ``idx``: the learned VAE's, or the pixel VAE's (the render itself)."""
        return self.latents[idx] if self.latents is not None else to_latents(self.images[idx])


class Trainer:
    """Models, data and optimiser; ``step()`` is one optimisation step."""

    def __init__(self, p: dict, seed: int, workers: int = 1, device: str = "cpu") -> None:
        self.p, self.seed, self.device = p, seed, torch.device(device)
        t0 = time.perf_counter()
        recipe = recipe_of(p)
        square = generate(p["n_scenes"], seed * 10**7, 32, workers, recipe)
        wide = generate(p["n_wide"], seed * 10**7 + WIDE_SEEDS, 32, workers, recipe, width=64) if p.get("n_wide") else None
        self.data_s = time.perf_counter() - t0
        self.teacher = Teacher(p["teacher"], self.device) if p.get("teacher") else None
        self.vae = load_vae(p["vae"]) if p.get("vae") else None
        torch.manual_seed(seed)
        self.parts = build_parts(p, latent_shape(self.vae))
        if p.get("init_weights") == "adaln-zero":
            adaln_zero_init(self.parts["transformer"])
        self.head = align_head(p["heads"] * p["head_dim"]).to(self.device) if p.get("align_weight") else None
        self.empty = [self._ids(k, [""]).to(self.device) for k in ("tokenizer", "tokenizer_2", "tokenizer_3")]
        self.square = self.scenes(*square)
        self.wide = self.scenes(*wide) if wide else None
        self.models = [self.parts[k].to(self.device).train()
                       for k in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3")]
        for clip in self.models[1:3] if p.get("freeze_clip") else []:
            clip.requires_grad_(False)
        params = [q for m in self.models + [self.head] if m is not None for q in m.parameters() if q.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=p["lr"], weight_decay=0.01, betas=(0.9, 0.99))
        self.ema = [deepcopy(m).eval().requires_grad_(False) for m in self.models] if p["ema"] > 0 else None
        self.maps: list[torch.Tensor] = []  # the live transformer's maps of the current batch (grounding only)
        if p.get("attn_weight", 0) > 0:
            live = self.models[0]
            live.set_attn_processor({k: GroundingProcessor(self.maps) for k in live.attn_processors})
        self.states: list[torch.Tensor] = []  # the live transformer's align_block image states (--align only)
        if self.head is not None:  # hooked after the EMA copy was made, so only the live model records
            self.models[0].transformer_blocks[align_block(p["layers"])].register_forward_hook(
                lambda module, args, out: self.states.append(out[1]))
        self.gen = torch.Generator().manual_seed(seed + 1)  # on the CPU: every device draws the same batches
        self.n_step = 0

    def _ids(self, name: str, texts: list[str]) -> torch.Tensor:
        tok = self.parts[name]
        return tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids

    def scenes(self, images, captions, objects, masks) -> Scenes:
        dev = self.device
        images = torch.from_numpy(images)
        return Scenes(images.to(dev),
                      [self._ids(k, captions).to(dev) for k in ("tokenizer", "tokenizer_2", "tokenizer_3")],
                      self.name_tokens(captions, objects).to(dev), torch.from_numpy(masks).to(dev),
                      self.teacher.ids(captions).to(dev) if self.teacher else None,
                      encode(self.vae, images).to(dev) if self.vae is not None else None,
                      object_classes(objects, masks.shape[1]).to(dev) if self.head is not None else None)

    def name_tokens(self, captions: list[str], objects: list[list[str]]) -> torch.Tensor:
        """Each object's name-token position in the joint text sequence, (N, 2, K): row 0 in the CLIP part
        (CLIP-L and CLIP-G share a tokenizer), row 1 in the T5 part (after the CLIP tokens); -1 = none."""
        clip, t5, n_clip = self.parts["tokenizer"], self.parts["tokenizer_3"], self.p["clip_length"]
        rows = []
        for c, o in zip(captions, objects):
            at5 = [q + n_clip if q >= 0 else -1 for q in name_positions(t5, c, o, self.p["t5_length"])]
            rows.append([name_positions(clip, c, o, n_clip), at5])
        return torch.tensor(rows, dtype=torch.long)

    def embed(self, models, ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        _, clip_l, clip_g, t5 = models
        return sd3_text_embeddings(clip_l, clip_g, t5, ids[0], ids[1], ids[2], self.p["t5_length"], self.p["t5_dim"])

    def loss(self, models, data: Scenes, idx, t, noise, drop, iso=None, teach: bool = True) -> dict[str, torch.Tensor]:
        """Rectified-flow MSE of one batch (v = eps - x0 at x_t = (1 - t) x0 + t eps; the teacher's v
        when there is one and ``teach``) and, with grounding, the null-state and attention losses;
        "total" is what is minimised."""
        p = self.p
        x0 = data.x0(idx)
        ids = [torch.where(drop[:, None], e.expand(len(idx), -1), a[idx]) for a, e in zip(data.ids, self.empty)]
        seq, pooled = self.embed(models, ids)
        names = torch.where(drop[:, None, None], -1, data.names[idx])  # (B, 2, K)
        out = {}
        if iso is not None:
            seq, pooled, out["null"] = self.isolate(models, seq, pooled, names, iso)
        tt = t.view(-1, 1, 1, 1)
        xt = (1 - tt) * x0 + tt * noise
        self.maps.clear()
        self.states.clear()
        v = models[0](xt, encoder_hidden_states=seq, pooled_projections=pooled, timestep=t * 1000).sample
        target = noise - x0
        if self.teacher is not None and teach:
            ids_t = torch.where(drop[:, None], self.teacher.empty, data.teacher_ids[idx])
            target = self.teacher.velocity(xt, t, ids_t, target)
        out["flow"] = (v.float() - target).pow(2).mean()
        if self.maps:
            m = data.masks[idx]
            out["attn"] = (attention_loss(self.maps, names[:, 0], m) + attention_loss(self.maps, names[:, 1], m)) / 2
        self.maps.clear()
        if self.states:
            out["align"] = self.align_loss(self.states.pop(), data, idx, drop, xt.shape[-2:])
        out["total"] = (out["flow"] + p.get("attn_weight", 0) * out.get("attn", 0.0)
                        + p.get("null_weight", 0) * out.get("null", 0.0) + p.get("align_weight", 0) * out.get("align", 0.0))
        return out

    def align_loss(self, states, data: Scenes, idx, drop, latent_hw) -> torch.Tensor:
        """``--align``: cross-entropy of the head's class logits for each patch against the scene's label map
        (``label_map``), over the samples whose caption was kept (without one, nothing says what is where)."""
        grid = tuple(n // self.models[0].config.patch_size for n in latent_hw)
        target = label_map(data.masks[idx], data.classes[idx], grid)
        ce = -(target * F.log_softmax(self.head(states.float()), -1)).sum(-1).mean(-1)  # B
        keep = (~drop).float()
        return (ce * keep).sum() / keep.sum().clamp_min(1)

    def isolate(self, models, seq, pooled, names, iso):
        """(sequence, pooled, null loss): for the ``iso`` rows, every state but CLIP's start token and the
        name tokens replaced by the empty prompt's (the pooled embedding too); the null loss is the mean
        squared distance of the replaced states (all rows) from the empty prompt's, over what trains
        (the T5 part alone when the CLIPs are frozen)."""
        keep = kept_tokens(names, seq.shape[1])
        null_seq, null_pooled = self.embed(models, self.empty)
        seq_in = torch.where(keep[..., None] | ~iso[:, None, None], seq, null_seq)
        pooled_in = torch.where(iso[:, None], null_pooled, pooled)
        trains = ~keep
        if self.p.get("freeze_clip"):
            trains[:, : self.p["clip_length"]] = False
        null = null_state_loss(seq, null_seq, trains)
        if not self.p.get("freeze_clip"):
            null = null + (pooled - null_pooled.detach()).pow(2).mean()
        return seq_in, pooled_in, null

    def draw(self, b: int) -> tuple:
        """One batch, all square or (a ``wide_share`` of batches) all wide; a run without wide scenes or
        isolation draws no more numbers than the first recipe did (so its checkpoints resume exactly)."""
        g = self.gen
        wide = self.wide is not None and float(torch.rand(1, generator=g)) < self.p["wide_share"]
        data = self.wide if wide else self.square
        idx = torch.randint(0, len(data.images), (b,), generator=g)
        t = torch.sigmoid(self.p["t_location"] + torch.randn(b, generator=g))  # logit-normal(m, 1)
        noise = torch.randn(b, *data.x0(idx[:1]).shape[1:], generator=g)
        drop = torch.rand(b, generator=g) < CAPTION_DROPOUT
        drawn = [idx, t, noise, drop] + ([torch.rand(b, generator=g) < self.p["isolate"]] if self.p.get("isolate") else [])
        return (data, *(x.to(self.device) for x in drawn))

    def step(self) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.n_step, self.p)
        out = self.loss(self.models, *self.draw(self.p["batch"]))
        optimise(self.opt, out["total"], zip(self.models, self.ema) if self.ema is not None else (), self.p.get("ema"),
                 self.n_step)
        self.n_step += 1
        return {k: float(v.detach()) for k, v in out.items()}

    @torch.no_grad()
    def eval_loss(self, n: int = 32, seed: int = 123) -> float:
        """Flow-matching MSE of the EMA (or live) weights on a fixed batch (scenes, times, noise, full captions)."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, len(self.square.images), (n,), generator=g)
        t = torch.linspace(0.05, 0.95, n)
        noise = torch.randn(n, *self.square.x0(idx[:1]).shape[1:], generator=g)
        models = self.ema or self.models
        for m in models:
            m.eval()
        idx, t, noise, keep = (x.to(self.device) for x in (idx, t, noise, torch.zeros(n, dtype=torch.bool)))
        out = float(self.loss(models, self.square, idx, t, noise, keep, teach=False)["flow"])
        if self.ema is None:
            for m in models:
                m.train()
        return out

    # -- checkpoints: everything a resumed run needs ------------------------------
    def state(self) -> dict:
        return {"step": self.n_step, "models": [m.state_dict() for m in self.models], "opt": self.opt.state_dict(),
                "ema": [m.state_dict() for m in self.ema] if self.ema else None, "gen": self.gen.get_state(),
                "torch_rng": torch.get_rng_state(), "head": self.head.state_dict() if self.head is not None else None}

    def restore(self, state: dict) -> None:
        self.n_step = state["step"]
        for m, s in zip(self.models, state["models"]):
            m.load_state_dict(s)
        self.opt.load_state_dict(state["opt"])
        if self.ema and state["ema"]:
            for m, s in zip(self.ema, state["ema"]):
                m.load_state_dict(s)
        if self.head is not None and state.get("head"):
            self.head.load_state_dict(state["head"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])


def save_folder(out: str | Path, tr: Trainer, record: dict) -> None:
    """A diffusers StableDiffusion3Pipeline folder (fp16 weights, fp32 VAE: the pixel one or ``--vae``'s)
    plus ``training.json``, written whole (``write_folder``)."""
    write_folder(out, lambda tmp: _write_folder(tmp, tr, record))


def _write_folder(out: Path, tr: Trainer, record: dict) -> None:
    out.mkdir(parents=True)
    models = tr.ema or tr.models
    names = ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
    index = {"_class_name": "StableDiffusion3Pipeline", "_diffusers_version": __import__("diffusers").__version__}
    for name, m in zip(names, models):
        half = deepcopy(m)
        torch.nn.Module.to(half, torch.float16)  # (diffusers' own ``to`` warns about fp32-only modules it has none of)
        half.save_pretrained(out / name)
        index[name] = ["diffusers" if name == "transformer" else "transformers", type(m).__name__]
    (tr.vae or pixel_vae()).save_pretrained(out / "vae")
    for name in ("tokenizer", "tokenizer_2", "tokenizer_3"):
        tr.parts[name].save_pretrained(str(out / name))
        index[name] = ["transformers", type(tr.parts[name]).__name__]
    sched = scheduler(tr.p["shift"])
    sched.save_pretrained(out / "scheduler")
    index.update(vae=["diffusers", "AutoencoderKL"], scheduler=["diffusers", type(sched).__name__],
                 image_encoder=[None, None], feature_extractor=[None, None])
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    (out / "training.json").write_text(json.dumps(record, indent=2, default=str))


def _record(tr: Trainer, preset_name: str, seed: int, curve: list, train_s: float, evals: dict,
            started_from: dict | None = None) -> dict:
    n = {k: sum(q.numel() for q in m.parameters())
         for k, m in zip(("transformer", "text_encoder", "text_encoder_2", "text_encoder_3"), tr.models)}
    return {
        "preset": preset_name, "config": tr.p, "seed": seed, "steps": tr.n_step, "device": str(tr.device),
        "threads": torch.get_num_threads(), "train_s": round(train_s, 1), "params": n, "eval_loss": evals,
        "loss_curve": curve,
        "objective": "rectified flow (SD 3): x_t = (1 - t) x0 + t eps, predict eps - x0, "
                     f"t ~ logit-normal({tr.p['t_location']}, 1), plain MSE; {CAPTION_DROPOUT:.0%} empty captions; "
                     f"EMA {tr.p['ema']}; " + (
                         f"grounded (--ground): isolation {tr.p['isolate']} (non-name states and pooled -> empty "
                         f"prompt's), null loss x{tr.p['null_weight']}, attention loss x{tr.p['attn_weight']} on every "
                         "joint block's name-token maps (CLIP and T5 positions) vs the object masks"
                         + ("; CLIP encoders frozen" if tr.p.get("freeze_clip") else "")
                         if tr.p.get("attn_weight") else "no attention supervision")
                     + (f"; aligned (--align): joint block {align_block(tr.p['layers'])}'s image states -> a 3-layer head -> "
                        f"cross-entropy x{tr.p['align_weight']} against each patch's share of background and of "
                        "every colour-shape class (captioned samples)" if tr.p.get("align_weight") else ""),
        **({"teacher": f"flow target = the teacher {tr.p['teacher']}'s v = (eps - x_t) / (1 - t) for "
                       f"{TEACHER_SPAN[0]} <= t <= {TEACHER_SPAN[1]} (its eps at the DDPM sample of equal SNR), "
                       "eps - x0 elsewhere"} if tr.p.get("teacher") else {}),
        "data": {"generator": "tools.shapes.data.make_scene(seed, size=32[, width=64])",
                 "seeds": f"{seed * 10**7} .. {seed * 10**7 + tr.p['n_scenes'] - 1}", "recipe": recipe_of(tr.p),
                 "wide": ({"seeds": f"{seed * 10**7 + WIDE_SEEDS} .. {seed * 10**7 + WIDE_SEEDS + tr.p['n_wide'] - 1}",
                           "size": "32x64 (height x width)", "share_of_batches": tr.p["wide_share"]}
                          if tr.wide is not None else None),
                 "latent": (f"the learned VAE {tr.p['vae']}'s mean latent of the 64x64 render, shifted and scaled "
                            "by its shift_factor and scaling_factor" if tr.vae is not None else
                            "32x32 (or 32x64) render as RGB in [-1, 1] + a zero channel = the pixel VAE's latent")},
        "init": started_from,
        "vocabulary": vocabulary(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "diffusers": __import__("diffusers").__version__,
                     "transformers": __import__("transformers").__version__},
        "command": " ".join(["python3 -m tools.shapes.train_mmdit", *sys.argv[1:]]),
    }


def warm_start(tr: Trainer, folder: str | Path) -> list[str]:
    """Copy a trained folder's weights into the live and EMA models wherever the shapes agree.

    Why: a model with another patch size keeps the text encoders and the joint blocks of an earlier run
    and learns only its patch embedding and output layer anew. Returns the names left at their random
    start (the fixed sin-cos position table is always recomputed, never copied)."""
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    kinds = (SD3Transformer2DModel, CLIPTextModelWithProjection, CLIPTextModelWithProjection, T5EncoderModel)
    names = ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
    fresh = []
    for i, (kind, name) in enumerate(zip(kinds, names)):
        src = kind.from_pretrained(Path(folder) / name, torch_dtype=torch.float32).state_dict()
        own = tr.models[i].state_dict()  # the EMA copy has the same names and shapes
        take = {k: v for k, v in src.items()
                if k in own and own[k].shape == v.shape and not k.endswith("pos_embed.pos_embed")}
        for m in [tr.models[i]] + ([tr.ema[i]] if tr.ema else []):
            m.load_state_dict(take, strict=False)
        fresh += [f"{name}.{k}" for k in own if k not in take]
    return fresh


def train(preset_name: str = "cpu", out: str | Path | None = None, seed: int = 0, steps: int | None = None,
          time_budget: float | None = None, workers: int = 1, save_every: int = 0,
          checkpoint: str | Path | None = None, resume: bool = False, log=print,
          overrides: dict | None = None, init: str | Path | None = None, device: str = "cpu",
          fit_budget: bool = False) -> dict:
    """Train and (if ``out``) save the folder; returns the run record (also ``training.json``).

    Stops at ``steps`` (default: the preset's) or after ``time_budget`` seconds of training in this
    process. With ``checkpoint``, the full training state is written there every ``save_every`` steps
    (with the folder) and read back first when ``resume``. ``overrides`` replace preset entries
    (``patch``, ``lr``, ``batch``, ``repeat_share``, ``n_wide`` / ``wide_share``, ``teacher``, ``GROUNDING``'s
    keys); ``init`` warm-starts from a trained folder (``warm_start``); ``device`` runs the models there (the
    batches are drawn on the CPU, so a run draws the same numbers on any device); ``fit_budget`` shortens
    ``steps`` after the first ``FIT_AFTER`` steps to what the budget allows (``steps_within``, recorded).
    """
    p = {**PRESETS[preset_name], **(overrides or {})}
    started_from = _init_record(init)  # read once: the run may write over that folder (--init = --out)
    if steps is not None:
        p["steps"] = steps
    tr = Trainer(p, seed, workers, device)
    curve, spent = [], 0.0
    if init:
        p["init"] = str(init)
        log(f"warm start from {init}; fresh: {', '.join(warm_start(tr, init)) or 'nothing'}")
    if resume and checkpoint and Path(checkpoint).exists():
        state = torch.load(checkpoint, weights_only=False, map_location="cpu")
        tr.restore(state)
        curve, spent = state["curve"], state["train_s"]
        log(f"resumed at step {tr.n_step} ({spent:.0f}s of training so far)")
    log(f"data: {len(tr.square.images)} square + {len(tr.wide.images) if tr.wide else 0} wide scenes in {tr.data_s:.1f}s; params "
        + ", ".join(f"{type(m).__name__} {sum(q.numel() for q in m.parameters()) / 1e6:.2f}M" for m in tr.models))
    budget = p["time_budget_s"] if time_budget is None else time_budget
    evals = {"start": tr.eval_loss()} if tr.n_step == 0 else {}
    every = max(1, min(100, p["steps"] // 20))
    hist: list[dict[str, float]] = []
    first = tr.n_step
    t0 = time.perf_counter()

    def elapsed() -> float:
        return spent + time.perf_counter() - t0

    def save(final: bool = False) -> None:
        rec = _record(tr, preset_name, seed, curve, elapsed(), evals, started_from)
        if out is not None:
            save_folder(out, tr, rec)
        if checkpoint and not final:
            tmp = Path(f"{checkpoint}.tmp")
            torch.save({**tr.state(), "curve": curve, "train_s": elapsed()}, tmp)
            os.replace(tmp, checkpoint)
        log(f"saved step {tr.n_step}")

    def train_step() -> None:
        hist.append(tr.step())
        if fit_budget and budget and tr.n_step - first == FIT_AFTER:
            timed = time.perf_counter() - t0
            fitted = steps_within(tr.n_step, FIT_AFTER, timed, budget)
            if fitted < p["steps"]:
                p["fitted_to_budget"] = {"asked": p["steps"], "timed_steps": FIT_AFTER, "timed_s": round(timed, 1)}
                p["steps"] = fitted
                log(f"{FIT_AFTER} steps took {timed:.1f}s: {fitted} steps fit the {budget:.0f}s budget")
        if tr.n_step % every == 0 or tr.n_step == p["steps"]:
            mean = {k: round(float(np.mean([h[k] for h in hist[-every:]])), 5) for k in hist[-1] if k != "total"}
            curve.append({"step": tr.n_step, "loss": mean.pop("flow"), **mean,
                          "lr": round(lr_at(tr.n_step - 1, p), 7), "s": round(elapsed(), 1)})
            log(f"step {tr.n_step}/{p['steps']} loss {curve[-1]['loss']:.4f}"
                + "".join(f" {k} {v:.4f}" for k, v in mean.items()) + f" lr {curve[-1]['lr']:.2e} "
                f"({elapsed():.0f}s, {every / max(1e-9, curve[-1]['s'] - (curve[-2]['s'] if len(curve) > 1 else spent)):.2f} steps/s)")
        if save_every and tr.n_step % save_every == 0:
            evals[f"step_{tr.n_step}"] = tr.eval_loss()
            log(f"eval loss {evals[f'step_{tr.n_step}']:.4f}")
            save()

    try:
        while tr.n_step < p["steps"] and not (budget and time.perf_counter() - t0 > budget):
            train_step()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (main): keep what was trained, resumable with the checkpoint
        if out is not None or checkpoint:
            log(f"interrupted at step {tr.n_step}")
            save()
        raise
    evals["end"] = tr.eval_loss()
    log(f"eval loss {evals['end']:.4f}")
    save(final=True)
    return _record(tr, preset_name, seed, curve, elapsed(), evals, started_from)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", default="models/shapes-mmdit", help="diffusers folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="step count (default: the preset's)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds of training in this process; 0 = no limit")
    ap.add_argument("--fit-budget", action="store_true",
                    help=f"after {FIT_AFTER} steps, shorten --steps to what --time-budget allows at that rate, "
                         "so the learning-rate decay ends inside the budget (the fitted count is recorded)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="where the models train: cpu (default) or cuda")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's 16; more on a GPU)")
    ap.add_argument("--workers", type=int, default=1, help="processes generating the data")
    ap.add_argument("--save-every", type=int, default=250, help="write the folder (and checkpoint) every N steps")
    ap.add_argument("--checkpoint", default=None, help="training state file (optimiser, EMA, random state)")
    ap.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    ap.add_argument("--patch", type=int, default=None, choices=(1, 2, 4),
                    help="patch size: 2 (the preset's; on the 32x32 pixel latent a 16x16 grid), 4, or 1 (with --vae)")
    ap.add_argument("--vae", default=None,
                    help="a trained shapes AutoencoderKL folder (tools.shapes.train_vae): the transformer denoises "
                         "its latent, as SD 3 does its VAE's, instead of the pixel latent")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the preset's)")
    ap.add_argument("--init", default=None, help="trained folder to warm-start from (weights whose shapes agree)")
    ap.add_argument("--repeat-share", type=float, default=None,
                    help="share of scenes with one colour-shape pair drawn 2-3 times (counts; default 0)")
    ap.add_argument("--n-wide", type=int, default=None, help="also generate this many 32x64 (wide) scenes")
    ap.add_argument("--wide-share", type=float, default=None, help="share of batches drawn from the wide scenes")
    ap.add_argument("--teacher", default=None,
                    help="a trained shapes UNet folder (models/shapes-tiny) whose noise estimate becomes the flow "
                         "target: a deviation from SD 3's plain recipe, see Teacher")
    ap.add_argument("--init-weights", choices=("diffusers", "adaln-zero"), default=None,
                    help="a fresh transformer's start: diffusers' layer defaults (the preset's) or DiT's "
                         "adaLN-Zero initialisation (see adaln_zero_init)")
    ap.add_argument("--align", type=float, default=None, metavar="WEIGHT",
                    help="REPA-style alignment: one joint block's image states must tell, through a small head, "
                         "which colour-shape covers each patch (a deviation from SD 3's plain recipe, see the "
                         "module docstring; REPA's weight is 0.5)")
    ap.add_argument("--t-location", type=float, default=None, metavar="M",
                    help="draw flow times from logit-normal(M, 1) (SD 3's lognorm(m, s); its recipe and the default: "
                         "0). Below 0 trains the low-noise end more, where fine shape (a square's corners) is "
                         "decided; SD 3's paper compared m = -0.5, 0, 0.5, 1")
    ap.add_argument("--ground", action="store_true",
                    help="add the UNet shapes model's grounding (token isolation, null and attention losses): "
                         "a deviation from SD 3's plain recipe, see the module docstring")
    ap.add_argument("--attn-weight", type=float, default=None, metavar="WEIGHT",
                    help=f"with --ground: the attention loss's weight (default {GROUNDING['attn_weight']}, the UNet "
                         "model's); more ties the name tokens' maps to the objects that guidance moves")
    a = ap.parse_args(argv)
    if a.attn_weight is not None and not a.ground:
        ap.error("--attn-weight weighs --ground's attention loss: give --ground")
    if a.attn_weight is not None and a.attn_weight < 0:
        ap.error(f"--attn-weight must be 0 or more, not {a.attn_weight}")
    if a.init and not (Path(a.init) / "transformer").is_dir():
        ap.error(f"--init {a.init!r} is not a trained folder (no transformer/ in it)")
    if a.fit_budget and a.time_budget == 0:
        ap.error("--fit-budget needs a time budget (--time-budget 0 means none)")
    if bool(a.n_wide) != bool(a.wide_share):
        ap.error("--n-wide and --wide-share go together")
    if a.vae and not (Path(a.vae) / "config.json").is_file():
        ap.error(f"--vae {a.vae!r} is not an AutoencoderKL folder (no config.json in it)")
    if a.align is not None and a.align <= 0:
        ap.error(f"--align {a.align}: the weight must be positive (leave --align out to train without it)")
    if a.patch == 1 and not a.vae:
        ap.error("--patch 1 is for a learned latent (--vae FOLDER); the 32x32 pixel latent takes 2 or 4")
    if a.vae and a.teacher:
        ap.error("--teacher gives targets in the pixel latent; it does not go with --vae")
    if a.teacher and not (Path(a.teacher) / "unet").is_dir():
        ap.error(f"--teacher {a.teacher!r} is not a trained shapes UNet folder (no unet/ in it)")
    torch.set_num_threads(a.threads)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {a.device}: no CUDA device here")
    overrides = {k: v for k, v in (("patch", a.patch), ("lr", a.lr), ("batch", a.batch), ("repeat_share", a.repeat_share),
                                   ("n_wide", a.n_wide), ("wide_share", a.wide_share), ("teacher", a.teacher),
                                   ("init_weights", a.init_weights), ("vae", a.vae), ("align_weight", a.align),
                                   ("t_location", a.t_location))
                 if v is not None}
    overrides.update(GROUNDING if a.ground else {})
    if a.attn_weight is not None:
        overrides["attn_weight"] = a.attn_weight
    with stopped_cleanly("train_mmdit"):
        rec = train(a.preset, a.out, a.seed, a.steps, a.time_budget, a.workers, a.save_every, a.checkpoint, a.resume,
                    log=lambda m: print(m, flush=True), overrides=overrides, init=a.init, device=a.device,
                    fit_budget=a.fit_budget)
    print(json.dumps({k: rec[k] for k in ("steps", "train_s", "eval_loss")}))


if __name__ == "__main__":
    main()
