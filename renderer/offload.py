"""CPU offload for large transformer pipelines (SD 3.5, FLUX on a 24 GB card): ``none``, ``model``, ``sequential``.

* ``model``: every part lives on the CPU and moves to the GPU only while it runs (the text encoders
  for the prompt, the transformer for the sampling loop, the VAE to decode), as diffusers'
  ``enable_model_cpu_offload`` does. Peak memory is the largest part plus its activations; a render
  pays two host-device copies of each part.
* ``sequential``: accelerate's ``cpu_offload`` on each part: weights stay on the CPU and each layer's
  weights are copied in for its forward (and kept for the backward of guidance while its graph
  lives). Fits far less memory than ``model`` (FLUX.1-dev's 12B transformer does not fit 24 GB in
  bf16 otherwise), at a large cost in time.

The pipeline's ``device`` is then the execution device, not where the weights are.
"""

from __future__ import annotations

import contextlib

import torch

from plan_and_render.errors import UsageError

from .settings import OFFLOAD_MODES as MODES


def enable(pipe, mode: str, device: str | torch.device) -> None:
    """Set ``pipe`` up for ``mode`` on execution ``device`` (the parts are moved off it as needed)."""
    if mode not in MODES:
        raise UsageError(f"unknown offload mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "none":
        return
    if not hasattr(pipe, "placed"):
        raise UsageError(f"offload is available for SD 3 / FLUX models, not {pipe.family}")
    pipe.offload, pipe.execution_device = mode, torch.device(device)
    if mode == "sequential":
        from accelerate import cpu_offload

        for m in pipe.modules().values():
            m.to("cpu")
            cpu_offload(m, execution_device=pipe.execution_device)
    else:
        for m in pipe.modules().values():
            m.to("cpu")


@contextlib.contextmanager
def placed(pipe, names):
    """With ``model`` offload: the named parts on the execution device while the block runs, then back."""
    if getattr(pipe, "offload", "none") != "model":
        yield
        return
    mods = [m for n, m in pipe.modules().items() if n in names]
    for m in mods:
        m.to(pipe.execution_device)
    try:
        yield
    finally:
        for m in mods:
            m.to("cpu")
        if pipe.execution_device.type == "cuda":
            torch.cuda.empty_cache()
