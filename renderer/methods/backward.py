"""Backward guidance (Chen, Laina, Vedaldi 2024), the baseline: (1 - in-box share)^2 of the raw
mid + up cross-attention (no re-softmax), gradient steps in the first 10 steps, off for good once
the loss reaches its threshold. Official code: ``inference.py`` (the loop) and ``utils.py``
(``compute_ca_loss``) of silent-chen/layout-guidance; docs/guidance.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod


@dataclass(frozen=True)
class BackwardConfig:
    """The official algorithm (override with ``method_options={"backward": {...}}``)."""

    loss_scale: float = 30.0
    max_step: int = 10
    max_iter: int = 5
    loss_threshold: float = 0.2  # iterate while the unscaled loss > this; at or below it, stop for good
    # The official step x -= sigma_t^2 * grad on LMS-scaled latents is x -= (1 - abar_t) * grad on
    # DDIM-scaled ones (x_ddim = x_lms / sqrt(sigma^2 + 1)), the space guidance works in.
    lr_scale: float = 1.0


class Backward(GuidanceMethod):
    name, config_class, order = "backward", BackwardConfig, 30

    def __init__(self, config, guider) -> None:
        super().__init__(config, guider)
        self.done = False  # the official loss variable outlives the step: once low enough, no more guidance

    def guide_captures(self) -> dict:
        """Per layer and head, the raw maps with their grid (mid 8x8 and up 16x16 in SD 1.5)."""
        layers = set(self.guider.select("cross_backward"))
        return {"bw": A.Capture(layers, mode="list", reduce=lambda x, h, w: (x, h, w))}

    def before_cfg(self, i, t, x, cond_unet):
        c, g = self.config, self.guider
        if self.done or i * 50 / g.steps >= c.max_step:
            return x

        def keep(v, s):
            self.done = v <= c.loss_threshold
            return not self.done

        return g.descend(self.name, self.loss, x, t, cond_unet, c.loss_scale, c.lr_scale * (1 - g.abar(i)),
                         c.max_iter, keep)

    def loss(self, maps, early=True):
        """Per phrase (group: each counted once, its mask the union of its boxes), summed over the images."""
        g = self.guider
        first = maps["bw"][0][0]
        heads = [members[0] for tokens, members in g.layout.groups]
        tokens = [tokens for tokens, _ in g.layout.groups]
        total = torch.zeros((), device=first.device)
        for b in range(first.shape[0]):
            per_layer = [(p[b], self._masks(h, w, first.device, heads)) for p, h, w in maps["bw"]]
            total = total + L.backward_loss(per_layer, tokens)
        return total, total.detach()

    def _masks(self, h: int, w: int, device, heads: list[int]) -> torch.Tensor:
        """(groups, h * w): each group's union mask (taken from its first instance)."""
        m = self.guider.masks.group_masks(h, w, device)
        return m.index_select(0, L._ix(heads, m)).flatten(1)
