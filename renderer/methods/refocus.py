"""Attention Refocusing (Phung, Ge, Huang 2023): cross- (CAR) and self-attention (SAR) losses.

Gradient steps on the latent that pull each object's word attention into its boxes and keep the
boxes' pixels attending to themselves. Schedule and formulas: shared/spec/guidance.md, section 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod, events_at


@dataclass(frozen=True)
class RefocusConfig:
    """Hyperparameters, published defaults (override with ``method_options={"refocus": {...}}``)."""

    # The official code runs on GLIGEN with s = 4 (steps 0-4), 3 (5-19), 1 (20+); its authors advise
    # about 10x that on plain SD, whose attention is not pulled to boxes by grounding adapters.
    # ``loss_scale`` is the steps-0-4 value; the later values keep the published ratios (3/4, 1/4).
    loss_scale: float = 40.0
    loss_threshold: float = 0.1  # steps 0-9 iterate while loss (at the published s) > this ...
    min_in_threshold: float = 0.2  # ... and the weakest object's in-box maximum < this
    late_steps: tuple[int, ...] = (10, 15, 20, 25, 30, 35)  # up to 2 more iterations at these steps
    self_attention: bool = True  # add SAR to CAR
    temperature: float = 100.0  # softmax(temperature * A) over content tokens (A&E convention)
    smooth: bool = True  # 3x3 Gaussian, sigma 0.5


class Refocus(GuidanceMethod):
    name, config_class, order = "refocus", RefocusConfig, 10

    def guide_captures(self) -> dict:
        layers = self.guider.layers
        caps = {"cross": A.Capture(set(A.select_layers(layers, "cross_layout")))}
        if self.config.self_attention:
            caps["self"] = A.Capture(set(A.select_layers(layers, "self_layout")))
        return caps

    def before_cfg(self, i, t, latents, cond_unet):
        """Steps 0-9: iterate while loss (at the published s) > 0.1 and the weakest in-box max < 0.2,
        (s, max_iter) = (4, 2) / (4, 6) / (3, 3); then up to 2 iterations at steps 10, 15, ..., 35."""
        c, steps = self.config, self.guider.steps
        i50 = i * 50 / steps  # the schedule is published for 50 steps
        early = i50 < 15  # CAR's weak terms count only in the first 15 steps
        if i50 < 10:
            s, n = (4, 2) if i50 < 2 else (4, 6) if i50 < 5 else (3, 3)

            def keep(v, min_in):
                return v * s > c.loss_threshold and min_in < c.min_in_threshold
        elif events_at(i, steps, c.late_steps):
            s, n = (3 if i50 < 20 else 1), 2

            def keep(v, min_in):
                return min_in < c.min_in_threshold
        else:
            return latents
        return self.guider.descend(self.name, lambda maps: self.loss(maps, early), latents, t, cond_unet,
                                   c.loss_scale * s / 4, 1.0, n, keep)

    def loss(self, maps, early=True):
        """CAR (+ SAR when captured) summed over the images; the statistic is the weakest in-box maximum."""
        g, c = self.guider, self.config
        lay, (h, w) = g.layout, g.grid
        cross = maps["cross"]
        total, min_in = torch.zeros((), device=cross.device), []
        for b in range(cross.shape[0]):
            tm = L.token_maps(cross[b], lay.n_tokens, h, w, c.temperature, c.smooth)
            masks = g.masks.masks(h, w, cross.device)
            car, weakest = L.car_loss(tm, lay.groups, masks, early)
            total = total + car
            if "self" in maps:
                total = total + L.sar_loss(maps["self"][b], masks)
            min_in.append(weakest)
        return total, torch.stack(min_in).amin()
