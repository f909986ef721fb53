"""Attention Refocusing (Phung, Ge, Huang 2023): cross- (CAR) and self-attention (SAR) losses.

Gradient steps on the latent that pull each object's word attention into its boxes and keep the
boxes' pixels attending to themselves. Official code: ``ldm/models/diffusion/plms.py``
(``update_loss_self_cross``: schedule and loop) and ``ldm/models/diffusion/loss.py`` (the losses) of
Attention-Refocusing/attention-refocusing; what we do and every named deviation: docs/guidance.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod, events_at


@dataclass(frozen=True)
class RefocusConfig:
    """The official algorithm by default (override with ``method_options={"refocus": {...}}``)."""

    # s at steps 0-4 of the official schedule (4); later steps keep its ratios: 3 at 5-19, 1 from
    # 20. The official code runs on GLIGEN; for plain SD its authors advise 40 (named deviation).
    loss_scale: float = 4.0
    loss_threshold: float = 0.1  # steps 0-9 go on while the scaled loss > this ...
    min_in_threshold: float = 0.2  # ... and the weakest in-box maximum < this
    late_steps: tuple[int, ...] = (10, 15, 20, 25, 30, 35)  # up to 2 more iterations at these steps
    self_attention: bool = True  # add SAR to CAR
    temperature: float = 100.0  # softmax(temperature * A) over the tokens of ``span``
    span: str = "all"  # re-softmax over A[..., 1:-1] (official) or "prompt": the prompt's own tokens
    smooth: bool = True  # the official 3x3 Gaussian, sigma 0.5

    def __post_init__(self) -> None:
        if self.span not in L.SPANS:
            raise ValueError(f"span must be one of {', '.join(L.SPANS)}, not {self.span!r}")


class Refocus(GuidanceMethod):
    name, config_class, order = "refocus", RefocusConfig, 10

    def guide_captures(self) -> dict:
        caps = {"cross": A.Capture(set(self.guider.select("cross_layout")))}
        if self.config.self_attention:
            caps["self"] = A.Capture(set(self.guider.select("self_layout")))
        return caps

    def before_cfg(self, i, t, x, cond_unet):
        """Steps 0-9: (s, max_iter) = (4, 2) / (4, 6) / (3, 3), going on while s * loss > 0.1 and the
        weakest in-box max < 0.2; steps 10, 15, ..., 35: up to 2 while the weakest in-box max < 0.2,
        s = 3 before step 20, then 1. Each iteration steps first and tests after (``descend``)."""
        c, steps = self.config, self.guider.steps
        i50 = i * 50 / steps  # the schedule is published for 50 steps
        early = i50 < 15  # CAR's weak terms count only in the first 15 steps
        if i50 < 10:
            s, n = (4, 2) if i50 < 2 else (4, 6) if i50 < 5 else (3, 3)
            scale = c.loss_scale * s / 4

            def keep(v, min_in):
                return v * scale > c.loss_threshold and min_in < c.min_in_threshold
        elif events_at(i, steps, c.late_steps):
            s, n = (3 if i50 < 20 else 1), 2
            scale = c.loss_scale * s / 4

            def keep(v, min_in):
                return min_in < c.min_in_threshold
        else:
            return x
        return self.guider.descend(self.name, lambda maps: self.loss(maps, early), x, t, cond_unet,
                                   scale, 1.0, n, keep)

    def loss(self, maps, early=True):
        """CAR (+ SAR when captured) summed over the images; the statistic is the weakest in-box maximum."""
        g, c = self.guider, self.config
        lay, (h, w) = g.layout, g.grid
        cross = maps["cross"]
        masks = g.masks.masks(h, w, cross.device)
        n_groups = len(lay.groups)  # SAR divides by objects (phrases), not by boxes
        total, min_in = torch.zeros((), device=cross.device), []
        for b in range(cross.shape[0]):
            tm = L.token_maps(cross[b], lay.n_tokens, h, w, c.temperature, c.smooth, c.span)
            car, weakest = L.car_loss(tm, lay.groups, masks, early)
            total = total + car
            if "self" in maps:
                total = total + L.sar_loss(maps["self"][b], masks, n_groups)
            min_in.append(weakest)
        return total, torch.stack(min_in).amin()
