"""Renderer: attention-guided Stable Diffusion that puts each plan object in its box.

    from plan_and_render.renderer import load_pipeline, render
    result = render(plan, method="refocus+rca", seed=0)
    result.images[0].save("out.png"); print(result.scores)

Modules: ``pipeline_sd`` / ``pipeline_sdxl`` (the sampling loops), ``guidance`` (the Guider:
schedules and latent updates), ``attention`` (processors that capture or mask), ``losses``
(pure loss functions), ``config`` (one dataclass per method), ``tokens`` (phrase -> token
positions), ``masks`` (boxes -> masks), ``loading``, ``sweep`` (excite's refinement step), ``tiny``.
Importing the package loads torch only; diffusers and transformers load with the first pipeline.
"""

from __future__ import annotations


if __name__ != "plan_and_render.renderer":  # one copy of each module: the folder installs under the namespace
    raise ImportError(f"import plan_and_render.renderer, not {__name__!r} (this folder is installed as plan_and_render.renderer)")

from pathlib import Path

import torch

from .guidance import METHODS, parse_method
from .pipeline_sd import LayoutPipeline, RenderResult
from .pipeline_sdxl import LayoutPipelineXL

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"

__all__ = ["DEFAULT_MODEL", "METHODS", "LayoutPipeline", "LayoutPipelineXL", "RenderResult", "default_device",
           "load_pipeline", "parse_method", "pipeline_from_components", "render"]


def default_device() -> str:
    """CUDA when available, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def pipeline_from_components(components: dict, name: str = "custom", device: str | None = None,
                             dtype: str | torch.dtype | None = None) -> LayoutPipeline:
    """Wrap already-built components (e.g. ``tools.tiny.tiny_sd_components()``)."""
    from .loading import _dtype

    device = device or default_device()
    cls = LayoutPipelineXL if "text_encoder_2" in components else LayoutPipeline
    pipe = cls(**components, name=name)
    return pipe.to(device, _dtype(dtype, device))


def load_pipeline(model: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None) -> LayoutPipeline:
    """SD 1.x/2.x or SDXL (chosen from the weights) from a hub id, a diffusers folder or one file.

    Raises ``plan_and_render.errors.ModelUnavailableError`` (one line) when the weights cannot be found.
    """
    from .loading import _dtype, load_components

    device = device or default_device()
    dt = _dtype(dtype, device)
    _family, comps = load_components(str(model), device, dt)
    pipe = pipeline_from_components(comps, name=str(model), device=device, dtype=dt)
    pipe.method_defaults = method_defaults(model)
    return pipe


def method_defaults(model: str) -> dict[str, dict]:
    """The per-method hyperparameters a local model folder recommends in ``guidance.json``
    (``{"refocus": {"temperature": 1.0}}``); {} for anything else. A model trained differently from
    SD can need other settings than the published ones, and the folder is where that knowledge travels."""
    import json

    from plan_and_render.errors import ModelUnavailableError, UsageError

    from .config import check_options

    f = Path(model) / "guidance.json"
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if not k.startswith("_")}
        return check_options(data)
    except (ValueError, UsageError) as e:
        raise ModelUnavailableError(f"{f} is not valid ({str(e).splitlines()[0]}); fix or delete it") from None


_CACHE: dict[tuple, LayoutPipeline] = {}


def render(plan, model: str = DEFAULT_MODEL, method: str = "refocus", device: str | None = None,
           dtype: str | None = None, **kw) -> RenderResult:
    """Render a plan, reusing a loaded pipeline per (model, device, dtype)."""
    key = (str(model), device or default_device(), dtype)
    if key not in _CACHE:
        _CACHE[key] = load_pipeline(model, device, dtype)
    return _CACHE[key](plan, method=method, **kw)
