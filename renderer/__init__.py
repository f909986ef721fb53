"""Renderer: attention-guided Stable Diffusion that puts each plan object in its box.

    from plan_and_render.renderer import render
    result = render(plan, "models/shapes-tiny", method="refocus+rca", seed=0)
    result.images[0].save("out.png"); print(result.scores)

Modules: ``settings`` (``RenderSettings``: the one place for render settings and their defaults),
``pipeline_sd`` / ``pipeline_sdxl`` (the UNet sampling loops), ``pipeline_sd3`` / ``pipeline_flux``
(flow-matching transformers; ``joint_attention`` reads and masks their joint attention, ``offload``), ``guidance`` (the Guider: runs the chosen
methods' hooks, captures, scores), ``methods/`` (one module per guidance method: its config and its
hooks; the registry), ``attention`` (processors that capture or mask), ``losses`` (pure loss
functions), ``tokens`` (phrase -> token positions), ``masks`` (boxes -> masks), ``loading``.
Importing the package does not import torch (settings and method names are known without it);
torch, diffusers and transformers load with the first pipeline.
"""

from __future__ import annotations


if __name__ != "plan_and_render.renderer":  # one copy of each module: the folder installs under the namespace
    raise ImportError(f"import plan_and_render.renderer, not {__name__!r} (this folder is installed as plan_and_render.renderer)")

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .methods import available_methods, check_options, parse_method
from .settings import RenderSettings

if TYPE_CHECKING:
    from .pipeline_sd import LayoutPipeline, RenderResult

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

__all__ = ["DEFAULT_MODEL", "LayoutPipeline", "LayoutPipelineFlux", "LayoutPipelineSD3", "LayoutPipelineXL",
           "RenderResult", "RenderSettings", "available_methods", "check_device", "check_options", "clear_cache",
           "default_device", "detect_family", "folder_defaults", "get_pipeline", "load_pipeline", "parse_method",
           "pipeline_from_components", "render"]

# names that need torch, imported from their module on first use
_LAZY = {"LayoutPipeline": "pipeline_sd", "RenderResult": "pipeline_sd", "LayoutPipelineXL": "pipeline_sdxl",
         "LayoutPipelineSD3": "pipeline_sd3", "LayoutPipelineFlux": "pipeline_flux", "detect_family": "loading",
         "default_device": "loading", "folder_defaults": "loading", "load_pipeline": "loading",
         "pipeline_from_components": "loading"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------
# the pipeline cache: one loaded pipeline per (model, device, dtype) for every caller
# ---------------------------------------------------------------------------

_CACHE: dict[tuple, "LayoutPipeline"] = {}


def model_key(model: str | Path) -> str:
    """A local model as its resolved path (``./m`` and ``m`` are one model); a hub id as given."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.exists() else str(model)


def get_pipeline(model: str | Path = DEFAULT_MODEL, device: str | None = None,
                 dtype: str | None = None, offload: str | None = None) -> "LayoutPipeline":
    """The pipeline for ``model`` on ``device`` in ``dtype`` (None: the family's default), with ``offload``
    (SD 3 / FLUX: "model" or "sequential"), loaded on first use and then reused.

    Raises ``plan_and_render.errors.ModelUnavailableError`` (one line) when the weights cannot be found, and
    ``UsageError`` for a device this machine does not have - both before any weights load.
    """
    from .locate import model_text

    model = model_text(model)  # a wrong argument fails before torch is imported
    from . import loading
    from .settings import dtype_name

    device = loading.check_device(device) if device else loading.default_device()
    # an unset dtype is fp32 off CUDA; on CUDA it is the family's (fp16 or bf16), known once loaded
    want = dtype_name(dtype) if dtype is not None else (None if device.startswith("cuda") else "fp32")
    key = (model_key(model), device, want, offload or "none")
    if key not in _CACHE:
        pipe = loading.load_pipeline(key[0], device, dtype, offload=offload)
        _CACHE[key] = pipe
        _CACHE.setdefault((key[0], device, dtype_name(pipe.dtype), key[3]), pipe)  # asked for by its dtype: the same
    return _CACHE[key]


def clear_cache() -> None:
    """Forget loaded pipelines (their memory is freed once nothing else holds them)."""
    _CACHE.clear()


def render(plan, model: str | Path = DEFAULT_MODEL, settings: RenderSettings | None = None, *, callback=None,
           progress: bool = True, **overrides: Any) -> "RenderResult":
    """Render a plan with ``settings`` and/or single settings as keywords (``method="refocus+rca"``,
    ``steps=20``...), on the cached pipeline of (model, device, dtype)."""
    settings = RenderSettings.build(settings, **overrides)
    pipe = get_pipeline(model, settings.device, settings.dtype, settings.offload)
    return pipe(plan, settings, callback=callback, progress=progress)


def check_device(name: str) -> str:
    """``name`` if this machine has that device, else a UsageError saying why (imports torch, loads nothing)."""
    from .loading import check_device as check

    return check(name)
