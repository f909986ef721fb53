"""Rectified cross-attention (FreestyleNet): in every cross-attention layer of the conditional pass,
an object's tokens get -inf scores outside its region of the layout's label map, nearest-resized to
the layer's grid. No gradients, no extra passes. Official code: ``ldm/modules/attention_FLIS.py``
(``CrossAttention.forward``) of essunny310/FreestyleNet; docs/guidance.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import attention as A
from . import GuidanceMethod


@dataclass(frozen=True)
class RCAConfig:
    """Hyperparameters (override with ``method_options={"rca": {...}}``)."""

    until: float = 1.0  # fraction of the steps during which the masks are on (guidance.md: all or early)


class RCA(GuidanceMethod):
    name, config_class, order = "rca", RCAConfig, 50

    def masked_layers(self) -> set[str]:
        return set(self.guider.select("cross_all"))

    def setup(self, state) -> None:
        state.rca_masks = self.forbidden()

    def cfg_pass(self, i, state) -> bool:
        state.rca_on = i < math.ceil(self.config.until * self.guider.steps)
        return False

    def forbidden(self) -> dict:
        """(h, w) -> (N, T) bool: a token is forbidden outside the label-map regions of the objects it
        names (instances of one group share their tokens, so they share the union of their regions)."""
        g = self.guider
        tokens = g.layout.tokens
        out = {}
        for lvl in {li.level for li in g.layers if li.cross}:
            h, w = A.downsampled(g.latent_hw, lvl)
            m = g.masks.label_masks(h, w).flatten(1) > 0.5  # (K, N)
            forbid = torch.zeros(h * w, g.n_ctx, dtype=torch.bool)
            for t in {t for ts in tokens for t in ts}:
                allowed = torch.zeros(h * w, dtype=torch.bool)
                for k, ts in enumerate(tokens):
                    if t in ts:
                        allowed |= m[k]
                forbid[:, t] = ~allowed
            out[(h, w)] = forbid
        return out
