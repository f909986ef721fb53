"""Layout-guided FLUX.1 [dev] / [schnell]: the SD 3 pipeline's algorithm with FLUX's conditioning.

What differs from SD 3 (``pipeline_sd3``), and nothing else:

* text: CLIP-L gives only its pooled embedding; the sequence the transformer attends to is T5's
  alone (512 tokens for [dev], 256 for [schnell]), so token positions are T5 positions;
* no classifier-free guidance pass: [dev] is guidance-distilled (the guidance scale, 3.5 by
  default, is an input of the transformer: its ``guidance`` embedding) and [schnell] takes none.
  RCA's conditional branch is therefore the only pass;
* the transformer reads 2x2 patches of the 16-channel latent packed into tokens (with their
  row/column ids for the rotary embedding); the methods keep seeing the latent unpacked
  (B, 16, H, W), packing happens at the transformer's door;
* the noise schedule shifts with the image size (``mu`` from the number of patches).
"""

from __future__ import annotations

import numpy as np
import torch

from .pipeline_sd3 import LayoutPipelineSD3
from .settings import RenderSettings


def pack(z: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, 4C): each 2x2 patch one token (FLUX's order: channel, row, column)."""
    b, c, h, w = z.shape
    return z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The inverse of ``pack`` for an (h, w) latent."""
    b, _, d = tokens.shape
    return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)


def patch_ids(h: int, w: int, device) -> torch.Tensor:
    """(h/2 * w/2, 3) rotary position ids of the packed patches: (0, row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device)


def time_shift_mu(n_patches: int, config) -> float:
    """FLUX's schedule shift for an image of ``n_patches``: linear in the patch count between the
    config's (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift)."""
    lo, hi = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    a, b = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    return a + (b - a) * (n_patches - lo) / (hi - lo)


class LayoutPipelineFlux(LayoutPipelineSD3):
    """FLUX.1 components + layout guidance. Build with ``renderer.load_pipeline``."""

    def __init__(self, transformer, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler,
                 name: str = "custom") -> None:
        super().__init__(transformer, vae, text_encoder, text_encoder_2, None, tokenizer, tokenizer_2, None,
                         scheduler, name)
        self.t5_max = 512 if transformer.config.guidance_embeds else 256

    @property
    def family(self) -> str:
        return "flux" if self.transformer.config.guidance_embeds else "flux-schnell"

    def components(self) -> dict:
        return {"transformer": self.transformer, "vae": self.vae, "text_encoder": self.text_encoder,
                "text_encoder_2": self.text_encoder_2, "tokenizer": self.tokenizer, "tokenizer_2": self.tokenizer_2,
                "scheduler": self.scheduler}

    def t5_length(self) -> int:
        m = getattr(self.tokenizer_2, "model_max_length", self.t5_max)
        return min(self.t5_max, m if isinstance(m, int) and m > 0 else self.t5_max)

    def text_parts(self) -> list[tuple[object, int]]:
        return [(self.tokenizer_2, self.t5_length())]

    def encode_text(self, text: str, negative: str) -> tuple[dict, dict]:
        """The prompt's transformer inputs: T5 sequence, CLIP pooled embedding, zero text position ids.
        (No negative: FLUX samples without a classifier-free guidance pass.)"""
        with self.placed("text_encoder", "text_encoder_2"):
            pooled = self.text_encoder(self._ids(self.tokenizer, text, self.tokenizer.model_max_length)).pooler_output
            seq = self.text_encoder_2(self._ids(self.tokenizer_2, text, self.t5_length()))[0]
        cond = {"encoder_hidden_states": seq.to(self.dtype), "pooled_projections": pooled.to(self.dtype),
                "txt_ids": torch.zeros(seq.shape[1], 3, device=self.device)}
        return cond, cond

    def set_timesteps(self, sched, steps: int, lat_hw: tuple[int, int]) -> None:
        sigmas = np.linspace(1.0, 1 / steps, steps)
        mu = time_shift_mu((lat_hw[0] // 2) * (lat_hw[1] // 2), sched.config)
        sched.set_timesteps(sigmas=sigmas, mu=mu, device=self.device)

    def latent_channels(self) -> int:
        return self.transformer.config.in_channels // 4  # the packed tokens hold 2x2 patches

    def uses_cfg(self, s: RenderSettings) -> bool:
        return False

    def batched(self, cond: dict, n: int, s: RenderSettings, lat_hw, pairs: bool = False) -> dict:
        out = {k: (v if k == "txt_ids" else v.expand(n, *v.shape[1:])) for k, v in cond.items()}
        out["img_ids"] = patch_ids(*lat_hw, self.device)
        if self.transformer.config.guidance_embeds:
            out["guidance"] = torch.full((n,), float(s.guidance_scale), device=self.device, dtype=torch.float32)
        return out

    def velocity(self, z: torch.Tensor, t, cond: dict) -> torch.Tensor:
        h, w = z.shape[-2:]
        out = self.transformer(pack(z), timestep=(t / 1000).expand(z.shape[0]).to(z.dtype), **cond).sample
        return unpack(out, h, w)
