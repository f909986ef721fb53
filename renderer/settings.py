"""Render settings: one validated model for every layer (API, CLI, pipelines) and one table of defaults.

    s = RenderSettings(method="Refocus + RCA", steps=20)      # method -> "refocus+rca"
    s.resolved("sdxl")                                        # guidance_scale -> 5.0 (SDXL's), steps 20

A field left ``None`` means "the model's default": the model folder's ``guidance.json`` (its
``"settings"`` object), else ``FAMILY_DEFAULTS`` for the model's family; ``resolved`` fills them in,
so a render records the concrete values it used. Bad values are one-line ``UsageError``s. This module
does not import torch: the CLI builds its options and checks them from here.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from plan_and_render.errors import UsageError

from .methods import builtin_methods, check_options, parse_method

DEFAULT_METHOD = "refocus"
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "sd": {"steps": 50, "guidance_scale": 7.5},
    "sdxl": {"steps": 50, "guidance_scale": 5.0},
    # SD 3 as its paper and diffusers' pipeline sample it (28 steps, CFG 7.0; SD 3.5's model cards suggest
    # 28 steps at 3.5 for Large, 40 at 4.5 for Medium: set them per render or in the folder's guidance.json)
    "sd3": {"steps": 28, "guidance_scale": 7.0},
    # FLUX.1 [dev]: guidance-distilled, the scale is the transformer's embedded guidance (no CFG pass);
    # diffusers' default 28 steps (Black Forest Labs suggest up to 50). [schnell]: 4 steps, no guidance input.
    "flux": {"steps": 28, "guidance_scale": 3.5},
    "flux-schnell": {"steps": 4, "guidance_scale": 0.0},
}
OFFLOAD_MODES = ("none", "model", "sequential")
MODEL_FIELDS = ("steps", "guidance_scale", "width", "height", "scheduler", "encode", "box_cells")  # a folder may set
ENCODINGS = ("prompt", "objects")
BOX_CELLS = ("truncate", "nearest")  # how a box edge becomes an attention-map cell boundary (masks.box_cells)
MEMORY = ("speed", "low")  # low: a guidance pass recomputes the transformer blocks it need not keep (SD 3 / FLUX)
# the settings that take one name from a fixed list (scheduler's names have spellings of their own)
NAMED_CHOICES = {"encode": ENCODINGS, "box_cells": BOX_CELLS, "memory": MEMORY, "offload": OFFLOAD_MODES}
MAX_STEPS = 1000  # the training noise schedule's length
MAX_SEED = 2**64 - 1  # torch's generators take 64-bit seeds
MIN_SIDE, MAX_SIDE = 16, 4096
MAX_IMAGES = 16  # one batch; more images are better made with more seeds
# What one render may hold, width x height x images: one image of the largest side, or 16 of 1024x1024.
# Memory grows with the pixels (latents, the VAE's full-size activations, attention maps), so a batch of
# 16 images of 4096x4096 must be refused before anything is allocated, not fail tens of GB later.
MAX_PIXELS = MAX_SIDE * MAX_SIDE
SCHEDULERS = ("ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "unipc")
DTYPES = {"fp16": "fp16", "float16": "fp16", "half": "fp16", "bf16": "bf16", "bfloat16": "bf16",
          "fp32": "fp32", "float32": "fp32", "float": "fp32"}
_DEVICE = re.compile(r"[a-z_]+(:\d+)?")
THREADS_ENV = "PLAN_AND_RENDER_THREADS"
MAX_THREADS = 1024


class RenderSettings(BaseModel):
    """What a render may be asked for. ``None`` = the model's default (see ``resolved``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = Field(DEFAULT_METHOD, description=(
        f"Guidance method: {', '.join(builtin_methods())} or none (plain classifier-free guidance); "
        "combine with '+', e.g. refocus+rca."))
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        'Per-method hyperparameters, e.g. {"refocus": {"loss_scale": 20}} (fields: the config classes in '
        "renderer/methods/); applied on top of the model folder's guidance.json."))
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description=(
        "Sampling steps. Default: the model's (50 for SD 1.x/2.x and SDXL, 28 for SD 3 and FLUX.1 [dev], "
        "4 for [schnell])."))
    guidance_scale: float | None = Field(None, ge=0, allow_inf_nan=False, description=(
        "Classifier-free guidance scale (FLUX.1 [dev]: its embedded guidance). Default: the model's (7.5 for "
        "SD 1.x/2.x, 5.0 for SDXL, 7.0 for SD 3, 3.5 for FLUX.1 [dev])."))
    width: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, description=(
        "Image width in pixels, a multiple of 8. Default: the plan's canvas."))
    height: int | None = Field(None, ge=MIN_SIDE, le=MAX_SIDE, description=(
        "Image height in pixels, a multiple of 8. Default: the plan's canvas."))
    num_images: int = Field(1, ge=1, le=MAX_IMAGES, description=(
        f"Images per render (one batch from one seed; at most {MAX_IMAGES})."))
    seed: int = Field(0, ge=0, le=MAX_SEED, description=(
        "Seed of the initial noise (and of a new plan's layout); image k of a batch uses seed + k - 1."))
    scheduler: str | None = Field(None, description=(
        f"Sampler: {', '.join(SCHEDULERS)}. Default: the model's own (its folder's guidance.json may name "
        "another). Guidance takes the same steps under every sampler (docs/guidance.md)."))
    encode: str | None = Field(None, description=(
        "What the text encoder reads: prompt (the plan's prompt as written) or objects (the plan's object "
        "phrases, 'a red circle and a blue square': for models trained on captions without position words). "
        "Default: the model folder's guidance.json, else prompt."))
    box_cells: str | None = Field(None, description=(
        "How a box becomes attention-map cells: truncate (the published methods' rule, int() of each edge: "
        "boxes shift up and left by up to one cell) or nearest (each edge to its nearest cell boundary; for "
        "models whose maps are coarse, such as 8x8). Default: the model folder's guidance.json, else "
        "truncate. docs/guidance.md"))
    memory: str | None = Field(None, description=(
        "speed (keep the activations of every block a guidance gradient passes through) or low (SD 3 / FLUX: "
        "recompute the blocks that carry no layout in the backward pass instead: FLUX.1-dev refocus about 35 "
        "instead of 45 GiB at 1024 px, for one more partial forward per guidance iteration; UNets ignore it). "
        "Default: speed. docs/renderer.md"))
    dtype: str | None = Field(None, description=(
        "Precision: fp16, bf16 or fp32. Default: fp16 on a GPU (bf16 for SD 3 / FLUX), fp32 on the CPU."))
    device: str | None = Field(None, description="Torch device: cpu, cuda, cuda:1, mps... Default: cuda if available.")
    threads: int | None = Field(None, ge=1, le=MAX_THREADS, description=(
        f"CPU threads torch may use during the render (restored after it). Default: ${THREADS_ENV}, else "
        "half the cores this process may run on, at most 4 (a shared machine keeps the rest)."))
    offload: str | None = Field(None, description=(
        "CPU offload of the weights (SD 3 / FLUX): none, model (each part on the GPU only while it runs), "
        "sequential (layer by layer: least memory, slowest). Default: none. docs/renderer.md"))

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise UsageError(_one_line(e)) from None

    # -- validation ----------------------------------------------------------------
    @field_validator("steps", "guidance_scale", "width", "height", "num_images", "seed", "threads", mode="before")
    @classmethod
    def _number(cls, v: Any, info) -> Any:
        """Numbers only: "10" or True is a caller's mistake, not 10 or 1."""
        if isinstance(v, (str, bytes, bool)):
            raise ValueError(f"{info.field_name} must be a number, not {type(v).__name__} {v!r}")
        return v

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"method must be a name like 'refocus' or 'refocus+rca', not {type(v).__name__}")
        try:
            return "+".join(parse_method(v)) or "none"
        except UsageError as e:
            raise ValueError(e.message) from None

    @field_validator("method_options", mode="before")
    @classmethod
    def _options(cls, v: Any) -> dict:
        try:
            return check_options({} if v is None else v)
        except UsageError as e:
            raise ValueError(e.message) from None

    @field_validator("width", "height")
    @classmethod
    def _side(cls, v: int | None, info) -> int | None:
        if v is not None and v % 8:
            lo, hi = v - v % 8, v - v % 8 + 8
            raise ValueError(f"{info.field_name} {v} is not divisible by 8; the model needs multiples of 8 "
                             f"(try {f'{lo} or {hi}' if lo >= MIN_SIDE else hi})")
        return v

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler(cls, v: Any) -> str | None:
        return _choice("scheduler", v, SCHEDULERS, lambda name: name.replace("-", "_").replace("+", "p"))

    @field_validator(*NAMED_CHOICES, mode="before")
    @classmethod
    def _named(cls, v: Any, info: ValidationInfo) -> str | None:
        return _choice(info.field_name, v, NAMED_CHOICES[info.field_name])

    @field_validator("dtype", mode="before")
    @classmethod
    def _dtype(cls, v: Any) -> str | None:
        try:
            return None if v is None else dtype_name(v)
        except UsageError as e:
            raise ValueError(e.message) from None

    @field_validator("device", mode="before")
    @classmethod
    def _device(cls, v: Any) -> str | None:
        if v is None:
            return None
        name = str(v).strip().lower()
        if not _DEVICE.fullmatch(name):
            raise ValueError(f"device {v!r} is not a torch device name (cpu, cuda, cuda:1, mps...)")
        return name

    @model_validator(mode="after")
    def _pixels(self) -> RenderSettings:
        if self.width is not None and self.height is not None:
            try:
                check_pixels(self.width, self.height, self.num_images)
            except UsageError as e:
                raise ValueError(e.message) from None
        return self

    # -- use -------------------------------------------------------------------------
    @property
    def methods(self) -> list[str]:
        """The chosen methods, e.g. ``["refocus", "rca"]``; [] for none (``method`` is normalised)."""
        return [] if self.method == "none" else self.method.split("+")

    @classmethod
    def build(cls, settings: RenderSettings | None = None, **overrides: Any) -> RenderSettings:
        """``settings`` with ``overrides`` (field values) applied, validated once."""
        if settings is not None and not isinstance(settings, RenderSettings):
            raise UsageError(f"settings must be a RenderSettings, not {type(settings).__name__} "
                             f"(give single settings as keywords, e.g. method='refocus')")
        if not overrides and settings is not None:
            return settings
        return cls(**{**(settings.model_dump() if settings else {}), **overrides})

    def resolved(self, family: str, settings_defaults: dict | None = None, method_defaults: dict | None = None,
                 **fallback: Any) -> RenderSettings:
        """The settings a render of a ``family`` ("sd", "sdxl", "sd3", "flux", "flux-schnell") model uses: each field given here, else the
        model folder's (``settings_defaults``), else the family's, else ``fallback`` (what the caller knows:
        the pipeline gives the plan's canvas, its device and dtype). Method options merge field by field
        over the folder's ``method_defaults`` (this render's own win)."""
        values = self.model_dump()
        for defaults in (settings_defaults or {}, FAMILY_DEFAULTS[family], fallback):
            for name, value in defaults.items():
                if values[name] is None:
                    values[name] = value
        folder = method_defaults or {}
        values["method_options"] = {m: {**folder.get(m, {}), **self.method_options.get(m, {})}
                                    for m in dict.fromkeys([*folder, *self.method_options])}
        return RenderSettings(**values)


def check_pixels(width: int, height: int, num_images: int = 1) -> None:
    """UsageError when ``num_images`` images of ``width`` x ``height`` exceed ``MAX_PIXELS``."""
    pixels = width * height * num_images
    if pixels > MAX_PIXELS:
        raise UsageError(f"{num_images} image(s) of {width}x{height} are {pixels / 1e6:.1f} M pixels, more than one "
                         f"render may hold ({MAX_PIXELS / 1e6:.1f} M pixels: one image of {MAX_SIDE}x{MAX_SIDE}, or "
                         f"{MAX_IMAGES} of {MAX_SIDE // 4}x{MAX_SIDE // 4}); ask for fewer or smaller images")


def _choice(field: str, v: Any, names, spelling=lambda name: name) -> str | None:
    """``v`` as one of ``names`` (case and surrounding spaces ignored, then ``spelling``), None kept; a
    ValueError naming the choices otherwise - the one rule of the settings that take a name."""
    if v is None:
        return None
    name = spelling(str(v).strip().lower())
    if name not in names:
        raise ValueError(f"unknown {field} {v!r}; choose from {', '.join(names)}")
    return name


def default_threads() -> int:
    """The CPU threads a render uses when its settings leave ``threads`` unset: ``$PLAN_AND_RENDER_THREADS``,
    else half the cores this process may run on (its CPU affinity), at least 1 and at most 4.

    Why not torch's own default (every physical core): a render's CPU work is small tensors and many
    kernel launches, so threads beyond a few gain little, while a process that takes every core of a
    machine shared with other jobs oversubscribes it - on a 2-core machine shared with other renders,
    two spinning threads per process made renders several times slower than one (docs/development.md).
    Half the cores leaves the other half to everyone else; 4 is where the small models stop gaining."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        if not text.isdigit() or not 1 <= int(text) <= MAX_THREADS:
            raise UsageError(f"{THREADS_ENV}={text!r}: give a whole number of threads from 1 to {MAX_THREADS}")
        return int(text)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores // 2))


def dtype_name(dtype: object) -> str:
    """fp16 / bf16 / fp32 for any of their names, torch's included (``torch.float16`` -> "fp16")."""
    name = str(dtype).strip().lower().removeprefix("torch.")
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use fp16, bf16 or fp32")
    return DTYPES[name]


def check_model_defaults(data: object) -> dict[str, Any]:
    """The ``"settings"`` object of a model folder's guidance.json: fields of ``MODEL_FIELDS``, validated."""
    if not isinstance(data, dict):
        raise UsageError('"settings" must be an object, e.g. {"guidance_scale": 4}')
    other = sorted(set(data) - set(MODEL_FIELDS))
    if other:
        raise UsageError(f"a model folder cannot set {', '.join(other)}; it may set {', '.join(MODEL_FIELDS)}")
    valid = RenderSettings(**data)
    return {k: getattr(valid, k) for k in data}


def _one_line(e: ValidationError) -> str:
    """The first problem of a validation error as one line, naming the setting and the value."""
    err = e.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "settings"
    given = err.get("input")
    if err["type"] == "extra_forbidden":
        msg = f"unknown render setting {name!r}; known: {', '.join(RenderSettings.model_fields)}"
    elif err["type"] == "value_error":
        msg = str(err["ctx"]["error"])
    elif err["type"] in ("greater_than_equal", "less_than_equal") and name in RenderSettings.model_fields:
        lo, hi = _bounds(name)
        msg = f"{name} {given!r} is out of range: " + (f"use {lo} to {hi}" if hi is not None else f"use at least {lo}")
    elif err["type"] == "finite_number":
        msg = f"{name} must be a finite number, not {given!r}"
    else:
        text = err["msg"]
        msg = f"{name} {given!r}: {text[:1].lower()}{text[1:]}"
    more = e.error_count() - 1
    return msg + (f" (and {more} more)" if more else "")


def _bounds(name: str) -> tuple[Any, Any]:
    meta = RenderSettings.model_fields[name].metadata
    lo = next((m.ge for m in meta if getattr(m, "ge", None) is not None), None)
    hi = next((m.le for m in meta if getattr(m, "le", None) is not None), None)
    return lo, hi

