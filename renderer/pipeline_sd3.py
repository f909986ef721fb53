"""Layout-guided Stable Diffusion 3 / 3.5: an MMDiT sampled by rectified flow.

``LayoutPipelineSD3.__call__`` reads as the algorithm: encode the text with the three encoders
(CLIP-L, CLIP-G, T5), map each object's phrase to its tokens in the CLIP *and* the T5 part of the
joint sequence, then for every step (1) optionally move the latent by gradient steps on an
attention loss, (2) predict the velocity with classifier-free guidance (RCA masks the
conditional half), (3) take the Euler step (ZestGuide adds its correction), and decode. The
guidance is the UNet pipelines' (``guidance.Guider``, ``methods/``): the transformer's joint
attention is read and masked by ``joint_attention``'s processors, which hand the methods maps of
the UNet's shape.

**One latent space for every model.** The methods' step sizes were published for DDIM-scaled
latents x = sqrt(abar) x0 + sqrt(1 - abar) eps (``schedulers``). The transformer reads the flow
latent z = (1 - s) x0 + s eps at noise level s (sigma). The two carry the same signal-to-noise
ratio when abar = (1 - s)^2 / r^2 with r = sqrt((1 - s)^2 + s^2), and then z = r x. So the
pipeline gives the methods x = z / r, the model input is r x, and every step the methods take
on x is, on the model's own latent, z <- z - lr r^2 grad_z(L) (a gradient step; ``descend``) or
z <- z - eta s g/max|g| (ZestGuide's normalised correction, since r sqrt(1 - abar) = s). The
schedules given in 50-step units map to the model's step count as they do for UNets.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from plan_and_render.errors import UsageError
from plan_and_render.scene import ScenePlan

from . import guidance
from . import joint_attention as J
from .pipeline_sd import LayoutPipeline, RenderResult, image_seeds, render_threads, size_warnings
from .schedulers import flow_scale
from .settings import RenderSettings
from .tokens import joint_tokens


def sd3_text_embeddings(clip_l, clip_g, t5, ids_l: torch.Tensor, ids_g: torch.Tensor,
                        ids_t5: torch.Tensor | None, t5_length: int, joint_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SD 3's conditioning: (sequence (B, L_clip + L_t5, joint_dim), pooled (B, P_l + P_g)).

    Each CLIP's penultimate hidden states, concatenated along channels and zero-padded to the T5
    width, then the T5 states appended along the sequence (zeros of ``t5_length`` tokens when the
    model has no T5); pooled: the two CLIPs' projected end-token embeddings side by side. The
    positions of the sequence are therefore CLIP tokens first (0 .. L_clip-1), then T5 tokens.
    """
    out_l = clip_l(ids_l, output_hidden_states=True)
    out_g = clip_g(ids_g, output_hidden_states=True)
    clip = torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], -1)
    if t5 is not None and ids_t5 is not None:
        seq5 = t5(ids_t5)[0]
    else:
        seq5 = clip.new_zeros(clip.shape[0], t5_length, joint_dim)
    clip = F.pad(clip, (0, seq5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, seq5.to(clip.dtype)], 1), torch.cat([out_l.text_embeds, out_g.text_embeds], -1)


class LayoutPipelineSD3(LayoutPipeline):
    """SD 3 / 3.5 components + layout guidance. Build with ``renderer.load_pipeline``."""

    family = "sd3"
    t5_max = 256  # SD 3's default T5 length (its pipeline's max_sequence_length)

    def __init__(self, transformer, vae, text_encoder, text_encoder_2, text_encoder_3, tokenizer, tokenizer_2,
                 tokenizer_3, scheduler, name: str = "custom") -> None:
        self.transformer, self.vae, self.scheduler, self.name = transformer, vae, scheduler, name
        self.text_encoder, self.text_encoder_2, self.text_encoder_3 = text_encoder, text_encoder_2, text_encoder_3
        self.tokenizer, self.tokenizer_2, self.tokenizer_3 = tokenizer, tokenizer_2, tokenizer_3
        self.settings_defaults: dict = {}
        self.method_defaults: dict[str, dict] = {}
        self.layout_blocks: list[int] | None = None  # blocks guidance reads (the folder's guidance.json, else a rule)
        self.offload = "none"  # "model": each part on the device only while it runs (``offload.py``)
        self.execution_device: torch.device | None = None
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        for m in self.modules().values():
            m.requires_grad_(False)

    # -- plumbing ---------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        mods = {"transformer": self.transformer, "vae": self.vae, "text_encoder": self.text_encoder,
                "text_encoder_2": self.text_encoder_2, "text_encoder_3": self.text_encoder_3}
        return {k: m for k, m in mods.items() if m is not None}

    def components(self) -> dict:
        return {**self.modules(), "tokenizer": self.tokenizer, "tokenizer_2": self.tokenizer_2,
                "tokenizer_3": self.tokenizer_3, "scheduler": self.scheduler}

    @property
    def device(self) -> torch.device:
        return self.execution_device or self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def text_parts(self) -> list[tuple[object, int]]:
        """(tokenizer, length) of each part of the text sequence: CLIP, then T5 (None without its encoder)."""
        t5 = self.tokenizer_3 if self.text_encoder_3 is not None else None
        return [(self.tokenizer, self.tokenizer.model_max_length), (t5, self.t5_length())]

    def t5_length(self) -> int:
        tok = self.tokenizer_3
        m = getattr(tok, "model_max_length", self.t5_max) if tok is not None else self.t5_max
        return min(self.t5_max, m if isinstance(m, int) and m > 0 else self.t5_max)

    def _ids(self, tokenizer, text: str, length: int) -> torch.Tensor:
        return tokenizer(text, padding="max_length", max_length=length, truncation=True,
                         return_tensors="pt").input_ids.to(self.device)

    def encode_text(self, text: str, negative: str) -> tuple[dict, dict]:
        """Transformer inputs (``encoder_hidden_states``, ``pooled_projections``) of the prompt and the negative."""
        def one(t: str) -> dict:
            with self.placed("text_encoder", "text_encoder_2", "text_encoder_3"):
                ids5 = self._ids(self.tokenizer_3, t, self.t5_length()) if self.text_encoder_3 is not None else None
                seq, pooled = sd3_text_embeddings(
                    self.text_encoder, self.text_encoder_2, self.text_encoder_3,
                    self._ids(self.tokenizer, t, self.tokenizer.model_max_length),
                    self._ids(self.tokenizer_2, t, self.tokenizer.model_max_length), ids5, self.t5_length(),
                    self.transformer.config.joint_attention_dim)
            return {"encoder_hidden_states": seq.to(self.dtype), "pooled_projections": pooled.to(self.dtype)}

        return one(text), one(negative)

    def placed(self, *names: str):
        """Context: with model offload, the named parts on the device (the rest on the CPU) while it runs."""
        from .offload import placed

        return placed(self, names)

    @property
    def size_multiple(self) -> int:
        """Sides must be whole patches of the latent: 16 px for SD 3 / FLUX (2x2 patches, VAE factor 8)."""
        return max(8, self.patch_side * self.vae_scale_factor)

    @property
    def patch_side(self) -> int:
        """Latent pixels along one side of a patch: SD 3's ``patch_size``, FLUX's 2x2 packing."""
        return 2 ** J.patch_level(self.transformer)

    def resolve(self, plan: ScenePlan, settings: RenderSettings | None = None, **overrides) -> RenderSettings:
        """``LayoutPipeline.resolve``, plus the sizes a transformer can take: whole patches, and no more
        patches than its position embedding has (SD 3's ``pos_embed_max_size``)."""
        s = super().resolve(plan, settings, **overrides)
        m = self.size_multiple
        if s.height % m or s.width % m:
            raise UsageError(f"{s.width}x{s.height}: this {self.family} model needs sides that are multiples of {m}")
        most = getattr(self.transformer.config, "pos_embed_max_size", None)
        most = most and most * self.patch_side * self.vae_scale_factor
        if most and max(s.height, s.width) > most:
            raise UsageError(f"{s.width}x{s.height}: this model renders at most {most}x{most} pixels "
                             "(its position embedding's size)")
        return s

    # -- the flow-matching parts that differ between SD 3 and FLUX -------------------
    def make_scheduler(self, name: str | None):
        if name is not None:
            raise UsageError(f"scheduler {name!r}: {self.family} models sample with their own flow-matching "
                             "Euler scheduler; leave --scheduler unset")
        return type(self.scheduler).from_config(self.scheduler.config)

    def set_timesteps(self, sched, steps: int, lat_hw: tuple[int, int]) -> None:
        sched.set_timesteps(steps, device=self.device)

    def latent_channels(self) -> int:
        return self.transformer.config.in_channels

    def initial_latent(self, seeds: list[int], lat_hw: tuple[int, int]) -> torch.Tensor:
        """The noise the flow starts from (s = 1: the latent is pure noise), one seed per image."""
        shape = (1, self.latent_channels(), *lat_hw)
        noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(k), dtype=torch.float32)
                 for k in seeds]
        return torch.cat(noise).to(self.device, self.dtype)

    def velocity(self, z: torch.Tensor, t, cond: dict) -> torch.Tensor:
        """The transformer's velocity at flow latent z, timestep t (= 1000 s), for the batched ``cond``."""
        return self.transformer(z, timestep=t.expand(z.shape[0]), **cond).sample

    def uses_cfg(self, s: RenderSettings) -> bool:
        return True

    def to_image_latent(self, z: torch.Tensor, lat_hw: tuple[int, int]) -> torch.Tensor:
        return z

    # -- the algorithm ----------------------------------------------------------
    @render_threads
    @torch.no_grad()
    def __call__(self, plan: ScenePlan, settings: RenderSettings | None = None, *, callback=None,
                 progress: bool = True, early_stop: bool = True, **overrides) -> RenderResult:
        """Render ``plan`` (see ``LayoutPipeline.__call__``: the same settings, result and callback)."""
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        s = self.resolve(plan, settings, **overrides)
        lat_hw = (s.height // self.vae_scale_factor, s.width // self.vae_scale_factor)

        # 1. text: prompt (+ background) and negative prompt; each object's tokens in every text part
        plan = guidance.encoded_plan(plan, s.encode)
        text, negative = guidance.compose_prompt(plan)
        jt = joint_tokens(plan, text, self.text_parts())
        layout, warnings = guidance.build_layout(plan, None, jt.text, jt.length, token_map=jt)
        warnings += size_warnings(plan, s, self.size_multiple)
        cond, uncond = self.encode_text(layout.text, negative)
        timings["encode_s"] = time.perf_counter() - t_start

        # 2. the sampler, processors on the blocks the methods need, a guider that runs the methods
        sched = self.make_scheduler(s.scheduler)
        self.set_timesteps(sched, s.steps, lat_hw)
        timesteps = sched.timesteps
        sigmas = [float(x) for x in sched.sigmas.cpu()]  # one host copy per render
        cfg = self.uses_cfg(s)
        attention = J.JointAttention(self.transformer, self.layout_blocks, jt.order, jt.length)
        guider = guidance.Guider(s.methods, self.transformer, layout, len(timesteps), lat_hw, s.num_images,
                                 s.method_options, n_ctx=jt.length, scheduler=sched, early_stop=early_stop,
                                 image_hw=(s.height, s.width), attention=attention, cfg=cfg, box_cells=s.box_cells)
        warnings += guider.warnings

        # 3. initial noise, one seed per image; the conditioning batched as the passes need it
        seeds = image_seeds(s.seed, s.num_images)
        z = self.initial_latent(seeds, lat_hw)
        n = s.num_images
        cond_b = self.batched(cond, n, s, lat_hw)
        both = self.batched({k: torch.cat([uncond[k], cond[k]]) for k in cond}, n, s, lat_hw, pairs=True) if cfg else None
        uncond_b = self.batched(uncond, n, s, lat_hw) if cfg else None

        now = {"r": 1.0}  # r of the current step (set by the loop; read without a host copy of t)

        def cond_model(x: torch.Tensor, t) -> torch.Tensor:
            """The conditional transformer on x, the DDIM-scaled latent (its input is r x)."""
            return self.velocity(x * now["r"], t, cond_b)

        # 4. sampling loop
        t_loop = time.perf_counter()
        try:
            with self.placed("transformer"), attention.blocks_recomputed(s.memory == "low"):
                for i, t in enumerate(tqdm(timesteps, disable=not progress, desc="render")):
                    r = now["r"] = flow_scale(sigmas[i])
                    # 4a. gradient steps (refocus, excite, backward) on x = z / r
                    x0 = (z.float() / r).to(z.dtype)
                    x = guider.before_cfg(i, t, x0, cond_model)
                    if x is not x0:
                        z = (x.float() * r).to(z.dtype)

                    # 4b. the velocity: CFG [uncond, cond] (RCA masks the cond half) or FLUX's one
                    #     guidance-distilled pass; ZestGuide keeps the graph of the conditional pass
                    with guider.cfg_pass(i, x) as grad_x:
                        x_in = (grad_x.to(x.dtype) if grad_x is not None else x) * r
                        if not cfg:
                            v = v_c = self.velocity(x_in, t, cond_b)
                        elif grad_x is not None:  # two passes: the gradient flows only through the cond one
                            v_c = self.velocity(x_in, t, cond_b)
                            with torch.no_grad(), guider.paused():
                                v_u = self.velocity(x_in.detach(), t, uncond_b)
                        else:
                            v_u, v_c = self.velocity(torch.cat([x_in, x_in]), t, both).chunk(2)
                    if cfg:
                        v = v_u.detach() + s.guidance_scale * (v_c.detach() - v_u.detach())

                    # 4c. Euler step on the flow latent (+ ZestGuide's correction on the next x)
                    z = sched.step(v.detach(), t, z.detach()).prev_sample
                    z = guider.after_step(i, z, torch.tensor(1 / flow_scale(sigmas[i + 1]), device=z.device))
                    if callback is not None:
                        callback(i, t, z)
        finally:
            guider.close()
        timings["loop_s"] = time.perf_counter() - t_loop

        # 5. decode
        return self.finish(self.to_image_latent(z, lat_hw), s, guider, seeds, timings, warnings, t_start,
                           prompt=layout.text, negative_prompt=negative, scheduler_class=type(sched).__name__,
                           layout_blocks=[li.block for li in attention.layers if li.layout and li.cross])

    def batched(self, cond: dict, n: int, s: RenderSettings, lat_hw, pairs: bool = False) -> dict:
        """``cond`` (one row per prompt) repeated for ``n`` images (rows [u, c] -> [u]*n + [c]*n with ``pairs``)."""
        if pairs:
            return {k: torch.cat([v[:1].expand(n, *v.shape[1:]), v[1:].expand(n, *v.shape[1:])]) for k, v in cond.items()}
        return {k: v.expand(n, *v.shape[1:]) for k, v in cond.items()}

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        cfg = self.vae.config
        with self.placed("vae"):
            lat = latents.to(self.vae.dtype) / cfg.scaling_factor + (getattr(cfg, "shift_factor", None) or 0.0)
            img = self.vae.decode(lat.to(self.vae.device)).sample
        img = ((img.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in img]
