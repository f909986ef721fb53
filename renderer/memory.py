"""Will a render fit in memory? Checked before the noise is drawn, so a too-large request is one line.

Most of a guided render's memory beyond the weights is the attention maps the guidance processors
materialise (``attention.LayoutAttnProcessor``): fp32 scores and probabilities of a capturing layer,
queries x keys per head and image, and their averages over heads. Self-attention maps grow with the
square of the layer's pixels - a model trained at 64 px asked for 512 px needs 4096 times the memory per
map - so this counts them and compares with the memory the device has free. A fixed pixel budget
(``settings.MAX_PIXELS``) cannot: it does not know the model.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from plan_and_render.errors import UsageError

from . import attention as A

HEADROOM = 0.8  # the maps may take this share of the free memory; the rest is activations and the weights


def attention_map_bytes(unet, latent_hw: tuple[int, int], images: int, n_ctx: int) -> int:
    """Bytes of attention maps alive at once in one guidance pass. Each capturing layer makes fp32 scores and
    probabilities (images x heads x queries x keys each) and hands on their average over heads; the full
    maps are freed once reduced and recomputed one layer at a time in the backward pass
    (``attention.recomputed``), so one layer's (the largest) plus every layer's average are alive at
    most - without recomputation (``attention.RECOMPUTE`` off), every layer's scores and probabilities."""
    layer_maps, averaged = [], 0
    for layer in A.unet_layers(unet):
        proc = unet.attn_processors.get(f"{layer.name}.processor")
        if not getattr(proc, "capture", False):
            continue
        queries = math.ceil(latent_hw[0] / 2**layer.level) * math.ceil(latent_hw[1] / 2**layer.level)
        maps = images * queries * (n_ctx if layer.cross else queries) * 4
        layer_maps.append(unet.get_submodule(layer.name).heads * maps)
        averaged += maps
    # recomputed: the backward holds one layer's probabilities, their gradient and the scores' gradient
    return 3 * max(layer_maps, default=0) + averaged if A.RECOMPUTE else 2 * sum(layer_maps)


def free_bytes(device: torch.device) -> int | None:
    """Memory free on ``device`` (the CPU: MemAvailable), None where it cannot be read."""
    try:
        if device.type == "cuda":
            return torch.cuda.mem_get_info(device)[0]
        if device.type == "cpu":
            meminfo = Path("/proc/meminfo")
            if meminfo.is_file():
                for line in meminfo.read_text().splitlines():
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, RuntimeError, AttributeError):
        pass
    return None


def check_memory(unet, latent_hw: tuple[int, int], images: int, n_ctx: int, size: tuple[int, int]) -> None:
    """UsageError when the attention maps of ``images`` images of ``size`` (width, height) would not fit."""
    need = attention_map_bytes(unet, latent_hw, images, n_ctx)
    free = free_bytes(unet.device)
    if free is not None and need > HEADROOM * free:
        raise UsageError(f"{images} image(s) of {size[0]}x{size[1]} would need about {need / 1e9:.1f} GB for the "
                         f"guidance's attention maps with this model, more than the {free / 1e9:.1f} GB free on "
                         f"{unet.device}; render smaller images (near the model's own size) or fewer at once")
