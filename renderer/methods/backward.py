"""Backward guidance (Chen, Laina, Vedaldi 2024), the baseline: (1 - in-box share)^2 of the raw
mid + up cross-attention (no re-softmax), gradient steps in the first 10 steps. guidance.md, section 5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod


@dataclass(frozen=True)
class BackwardConfig:
    """Hyperparameters (override with ``method_options={"backward": {...}}``)."""

    loss_scale: float = 30.0
    max_step: int = 10
    max_iter: int = 5
    loss_threshold: float = 0.2  # iterate while the unscaled loss > this
    # Chen et al. step x -= sigma_t^2 * grad on LMS-scaled latents equals x -= (1 - abar_t) * grad
    # on DDIM-scaled latents (x_ddim = sqrt(abar) x_lms), which is what the pipelines sample.
    lr_scale: float = 1.0


class Backward(GuidanceMethod):
    name, config_class, order = "backward", BackwardConfig, 30

    def guide_captures(self) -> dict:
        """Per layer and head, the raw maps with their grid (mid 8x8 and up 16x16 in SD 1.5)."""
        layers = set(A.select_layers(self.guider.layers, "cross_backward"))
        return {"bw": A.Capture(layers, mode="list", reduce=lambda x, h, w: (x, h, w))}

    def before_cfg(self, i, t, latents, cond_unet):
        c, g = self.config, self.guider
        if i * 50 / g.steps >= c.max_step:
            return latents
        return g.descend(self.name, self.loss, latents, t, cond_unet, c.loss_scale, c.lr_scale * (1 - g.abar(i)),
                         c.max_iter, lambda v, s: v > c.loss_threshold)

    def loss(self, maps, early=True):
        g = self.guider
        first = maps["bw"][0][0]
        total = torch.zeros((), device=first.device)
        for b in range(first.shape[0]):
            per_layer = [(p[b], g.masks.group_masks(h, w, first.device).flatten(1)) for p, h, w in maps["bw"]]
            total = total + L.backward_loss(per_layer, g.layout.tokens)
        return total, total.detach()
