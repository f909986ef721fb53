"""Layout-guided Stable Diffusion 1.x/2.x: a scene plan in, images and attention scores out.

``LayoutPipeline.__call__`` reads as the algorithm: encode text, map each
object's phrase to its tokens and its box to masks, then for every step
(1) optionally move the latent by gradient steps on an attention loss,
(2) predict noise with classifier-free guidance (RCA masks the conditional
half), (3) take the scheduler step (ZestGuide adds its correction), and
finally decode. Guidance works on the DDIM-scaled latent, the UNet's input,
whatever the sampler (``plan_and_render.renderer.schedulers``). The guidance itself lives in ``plan_and_render.renderer.guidance``
(the Guider) and ``plan_and_render.renderer.methods`` (one class per method) and is
shared with the SDXL pipeline; the settings and their defaults in
``plan_and_render.renderer.settings``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import torch
from PIL import Image
from tqdm.auto import tqdm

from plan_and_render.errors import UsageError
from plan_and_render.scene import ScenePlan

from . import guidance, memory, saving, schedulers
from .settings import RenderSettings, default_threads, dtype_name


@dataclass
class RenderResult:
    """Images plus a cheap self-check: each object's attention-in-box share."""

    images: list[Image.Image]
    scores: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # the settings used, the model, the prompt encoded, each method's config
    losses: dict[str, float] = field(default_factory=dict)  # last loss per method; cn_iou (see Guider.losses)
    passes: dict[str, int] = field(default_factory=dict)  # extra UNet forwards/backwards guidance took
    settings: RenderSettings | None = None  # the concrete settings the render used
    seeds: list[int] = field(default_factory=list)  # each image's own noise seed (``image_seeds``)
    image_scores: list[dict[str, float]] = field(default_factory=list)  # ``scores`` of each image on its own


def image_seeds(seed: int, n: int) -> list[int]:
    """The noise seed of each image of a batch: ``seed``, ``seed + 1``, ... So image k of a batch starts from
    the noise that ``--seed seed+k`` gives a single image, and the first image is the same whatever the batch."""
    return [(seed + k) % 2**64 for k in range(n)]


def canvas_size(plan: ScenePlan, multiple: int = 8) -> tuple[int, int]:
    """(height, width) of the plan's canvas rounded to the nearest multiple of 8."""
    return (max(multiple, round(plan.canvas.height / multiple) * multiple),
            max(multiple, round(plan.canvas.width / multiple) * multiple))


def size_warnings(plan: ScenePlan, s: RenderSettings, multiple: int = 8) -> list[str]:
    """Say so when the plan's canvas is rendered at another size because it is not a multiple of ``multiple``."""
    c = plan.canvas
    if (s.width, s.height) != (c.width, c.height) and (s.height, s.width) == canvas_size(plan, multiple):
        return [f"the plan's canvas {c.width}x{c.height} is rendered at {s.width}x{s.height}: the model needs "
                f"multiples of {multiple}"]
    return []


def render_threads(call):
    """Decorator for a pipeline's ``__call__``: the render runs on its settings' CPU ``threads`` (unset:
    ``default_threads()``) and torch's own setting is restored afterwards, so one render's choice does
    not leak into the rest of the process (a planner, the next render with other settings)."""

    @functools.wraps(call)
    def run(self, plan, settings: RenderSettings | None = None, **kwargs):
        fields = {k: v for k, v in kwargs.items() if k in RenderSettings.model_fields}
        n = RenderSettings.build(settings, **fields).threads or default_threads()
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return call(self, plan, settings, **kwargs)
        finally:
            torch.set_num_threads(before)

    return run


def _same_device(name: str, device: torch.device) -> bool:
    """Whether a device name means ``device`` ("cuda" means "cuda:0" when that is where it is)."""
    try:
        want = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}") from None
    return want.type == device.type and want.index in (None, device.index)


class LayoutPipeline:
    """SD 1.x/2.x components + layout guidance. Build with ``renderer.load_pipeline``."""

    family = "sd"
    size_multiple = 8  # image sides must be multiples of this (the VAE's factor; transformers: x their patch)

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler, name: str = "custom") -> None:
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler, self.name = scheduler, name
        # what the model's folder recommends (``guidance.json``): render settings (steps, guidance_scale...)
        # and per-method hyperparameters; a render's own settings and ``method_options`` win field by field
        self.settings_defaults: dict = {}
        self.method_defaults: dict[str, dict] = {}
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        for m in self.modules().values():
            m.requires_grad_(False)

    # -- plumbing ---------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}

    def components(self) -> dict:
        return {**self.modules(), "tokenizer": self.tokenizer, "scheduler": self.scheduler}

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def to(self, device=None, dtype=None) -> "LayoutPipeline":
        for name, m in self.modules().items():
            # the VAE decodes in fp32 when the rest is fp16 (SD's VAE overflows in fp16)
            want = torch.float32 if name == "vae" and dtype == torch.float16 else dtype
            if device is not None:
                m.to(device)
            if want is not None and want != m.dtype:
                # diffusers' ``to`` warns about fp32-only modules even when a model has none
                keep = getattr(m, "_keep_in_fp32_modules", None)
                (m.to if keep else torch.nn.Module.to.__get__(m))(want)
        return self

    def save_pretrained(self, path) -> None:
        saving.save_folder(self, path)

    def save_single_file(self, path) -> None:
        saving.save_single_file(self, path)

    # -- text --------------------------------------------------------------
    def _tokens(self, tokenizer, text: str) -> torch.Tensor:
        ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        return ids.to(self.device)

    def encode_text(self, text: str, negative: str) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
        """(cond, uncond) hidden states and extra UNet kwargs for each (none for SD 1.x)."""
        cond = self.text_encoder(self._tokens(self.tokenizer, text))[0]
        uncond = self.text_encoder(self._tokens(self.tokenizer, negative))[0]
        return cond.to(self.dtype), uncond.to(self.dtype), {}, {}

    def unet_kwargs(self, extra: dict, batch: int, size: tuple[int, int]) -> dict:
        """Extra UNet inputs for ``batch`` images of ``size`` (height, width); none for SD 1.x/2.x."""
        return {}

    # -- settings ------------------------------------------------------------------
    def resolve(self, plan: ScenePlan, settings: RenderSettings | None = None, **overrides) -> RenderSettings:
        """The concrete settings a render of ``plan`` uses: those given, else the model folder's, else the
        family's (``RenderSettings.resolved``), else the plan's canvas for the size. Device and dtype are
        this pipeline's (asking for others is a UsageError: load another pipeline)."""
        s = RenderSettings.build(settings, **overrides)
        device, dtype = str(self.device), dtype_name(self.dtype)
        if s.device is not None and not _same_device(s.device, self.device):
            raise UsageError(f"this pipeline is on {device}, not {s.device}; load one there (get_pipeline)")
        if s.dtype is not None and s.dtype != dtype:
            raise UsageError(f"this pipeline is in {dtype}, not {s.dtype}; load one in {s.dtype} (get_pipeline)")
        height, width = canvas_size(plan, self.size_multiple)
        return s.resolved(self.family, self.settings_defaults, self.method_defaults, height=height, width=width,
                          device=device, dtype=dtype, scheduler=schedulers.scheduler_name(self.scheduler),
                          threads=torch.get_num_threads(), encode="prompt", box_cells="truncate",
                          memory="speed")

    def make_scheduler(self, name: str | None):
        """A fresh scheduler for one render: the named kind built from the model's own config, or a
        copy of the model's own (None: a kind without a name here)."""
        if name is None:
            return type(self.scheduler).from_config(self.scheduler.config)
        return schedulers.make_scheduler(name, self.scheduler)

    def encode_words(self, words: list[str]) -> torch.Tensor:
        """(1, M, D): the text encoder's state of each word's first token, each word encoded alone."""
        ids = self.tokenizer(list(words), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0][:, 1][None].to(self.dtype)

    # -- the algorithm ----------------------------------------------------------
    @render_threads
    @torch.no_grad()
    def __call__(self, plan: ScenePlan, settings: RenderSettings | None = None, *, callback=None,
                 progress: bool = True, early_stop: bool = True, **overrides) -> RenderResult:
        """Render ``plan`` with ``settings`` and/or single settings as keywords (``method="zest"``, ``steps=10``,
        ``method_options={"refocus": {"loss_scale": 20}}``...); unset ones are the model's defaults.
        ``callback(i, t, latents)`` runs after every step; ``early_stop=False`` runs every scheduled
        guidance iteration (the methods' stopping tests off: the worst case benchmarks time)."""
        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        s = self.resolve(plan, settings, **overrides)
        lat_h, lat_w = s.height // self.vae_scale_factor, s.width // self.vae_scale_factor

        # 1. text: prompt (+ background) and negative prompt; each object's token positions
        #    (the mapping may append a phrase the prompt lacks or move one cut by truncation)
        plan = guidance.encoded_plan(plan, s.encode)
        text, negative = guidance.compose_prompt(plan)
        layout, warnings = guidance.build_layout(plan, self.tokenizer, text, self.tokenizer.model_max_length)
        text = layout.text
        warnings += size_warnings(plan, s)
        cond, uncond, extra_c, extra_u = self.encode_text(text, negative)
        timings["encode_s"] = time.perf_counter() - t_start

        # 2. the sampler, processors on the layers the methods need, a guider that runs the methods
        #    and owns the masks (it counts steps as the loop does: PNDM runs one more)
        sched = self.make_scheduler(s.scheduler)
        sched.set_timesteps(s.steps, device=self.device)
        guider = guidance.Guider(s.methods, self.unet, layout, len(sched.timesteps), (lat_h, lat_w), s.num_images,
                                 s.method_options, n_ctx=cond.shape[1], scheduler=sched, early_stop=early_stop,
                                 image_hw=(s.height, s.width), embed_words=self.encode_words, box_cells=s.box_cells)
        warnings += guider.warnings
        try:  # the maps those processors will make must fit in memory: say so before any is made
            memory.check_memory(self.unet, (lat_h, lat_w), s.num_images, cond.shape[1], (s.width, s.height))
        except UsageError:
            guider.close()
            raise

        # 3. initial noise: one seed per image; each image's generator also draws its ancestral sampler noise
        seeds = image_seeds(s.seed, s.num_images)
        gens = [torch.Generator("cpu").manual_seed(k) for k in seeds]
        shape = (1, self.unet.config.in_channels, lat_h, lat_w)
        latents = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens]).to(self.device, self.dtype)
        latents = latents * sched.init_noise_sigma
        cond_b, uncond_b = cond.expand(s.num_images, -1, -1), uncond.expand(s.num_images, -1, -1)
        kw_c = self.unet_kwargs(extra_c, s.num_images, (s.height, s.width))
        kw_u = self.unet_kwargs(extra_u, s.num_images, (s.height, s.width))

        def cond_unet(x: torch.Tensor, t) -> torch.Tensor:
            """The conditional UNet on x, the DDIM-scaled latent (already the UNet's input)."""
            return self.unet(x, t, encoder_hidden_states=cond_b, added_cond_kwargs=kw_c or None).sample

        # 4. sampling loop
        t_loop = time.perf_counter()
        timesteps = sched.timesteps
        try:
            for i, t in enumerate(tqdm(timesteps, disable=not progress, desc="render")):
                # 4a. gradient steps (refocus, excite, backward) on x = c * latents, the UNet's input
                c = schedulers.input_scale(sched, t, latents)
                x0 = (latents.float() * c).to(latents.dtype)
                x = guider.before_cfg(i, t, x0, cond_unet)
                if x is not x0:
                    latents = (x.float() / c).to(latents.dtype)

                # 4b. classifier-free guidance; RCA masks, ZestGuide keeps the graph of the cond half
                #     (and takes its gradient when the pass ends)
                with guider.cfg_pass(i, x) as grad_x:
                    x_in = grad_x.to(x.dtype) if grad_x is not None else x
                    if grad_x is not None:  # two passes: gradient flows only through the cond one
                        eps_c = self.unet(x_in, t, encoder_hidden_states=cond_b, added_cond_kwargs=kw_c or None).sample
                        with torch.no_grad(), guider.paused():
                            eps_u = self.unet(x_in.detach(), t, encoder_hidden_states=uncond_b,
                                              added_cond_kwargs=kw_u or None).sample
                    else:
                        both = self.unet(torch.cat([x_in, x_in]), t, encoder_hidden_states=torch.cat([uncond_b, cond_b]),
                                         added_cond_kwargs=guidance.cat_kwargs(kw_u, kw_c) or None).sample
                        eps_u, eps_c = both.chunk(2)
                eps = eps_u.detach() + s.guidance_scale * (eps_c.detach() - eps_u.detach())

                # 4c. scheduler step on its own latent (+ ZestGuide's correction, made on the next
                #     step's DDIM-scaled latent)
                kw = schedulers.step_kwargs(sched, generator=gens, **guider.step_options(i))
                latents = sched.step(eps, t, latents.detach(), **kw).prev_sample
                t_next = timesteps[min(i + 1, len(timesteps) - 1)]
                latents = guider.after_step(i, latents, schedulers.input_scale(sched, t_next, latents))
                if callback is not None:
                    callback(i, t, latents)
        finally:
            guider.close()
        timings["loop_s"] = time.perf_counter() - t_loop

        # 5. decode
        return self.finish(latents, s, guider, seeds, timings, warnings, t_start, prompt=text,
                           negative_prompt=negative, scheduler_class=type(sched).__name__)

    def finish(self, latents: torch.Tensor, s: RenderSettings, guider: guidance.Guider, seeds: list[int],
               timings: dict, warnings: list[str], t_start: float, **record) -> RenderResult:
        """Decode the final latents and gather what the render used (the settings, ``record`` - prompt,
        sampler... - and each method's config and extra passes), the same for every family's pipeline."""
        t_dec = time.perf_counter()
        images = self.decode(latents)
        timings["decode_s"] = time.perf_counter() - t_dec
        timings["total_s"] = time.perf_counter() - t_start
        config = {**s.model_dump(), "model": self.name, "family": self.family, **record,
                  "methods": guider.config(), "guidance_passes": dict(guider.passes)}
        return RenderResult(images, guider.scores(), timings, warnings, config, guider.losses(),
                            config["guidance_passes"], s, seeds, guider.image_scores())

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        lat = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        img = self.vae.decode(lat).sample
        img = ((img.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        return [Image.fromarray(a.permute(1, 2, 0).cpu().numpy()) for a in img]
