"""ZestGuide (Couairon et al. 2023): BCE between each object's summed word maps and its box, its
gradient taken through the CFG pass's own conditional half (no extra forward) and applied after the
scheduler step. guidance.md, section 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod


@dataclass(frozen=True)
class ZestConfig:
    """Hyperparameters, published defaults (override with ``method_options={"zest": {...}}``)."""

    tau: float = 0.5  # guide the first half of the steps
    eta: float = 0.3  # x_{t-1} -= eta * sqrt(1 - abar_t) * grad / max|grad|
    gain: float = 10.0  # A = gain * S_hat before the BCE
    resolution: int = 32  # maps are resized to this square grid
    gate: float = 0.01  # pixels where prediction and target are both <= gate are left out (raw maps)
    gate_normalised: float = 0.1  # the same for the max-normalised maps


class Zest(GuidanceMethod):
    name, config_class, order = "zest", ZestConfig, 40

    def __init__(self, config, guider) -> None:
        super().__init__(config, guider)
        self.capture = self._capture()
        self.now = False  # guiding at the current step
        self._grad: torch.Tensor | None = None
        self._loss: torch.Tensor | None = None  # read at the end: no host sync per step

    def _capture(self) -> A.Capture:
        res = self.config.resolution

        def reduce(scores: torch.Tensor, h: int, w: int) -> torch.Tensor:
            """Pre-softmax scores (B, heads, N, T) -> resized to res x res, softmax over tokens, head mean."""
            b, nh, n, t = scores.shape
            s = scores.reshape(b * nh, h, w, t).permute(0, 3, 1, 2)
            s = F.interpolate(s, size=(res, res), mode="bilinear", align_corners=False)
            return s.softmax(1).permute(0, 2, 3, 1).reshape(b, nh, res * res, t).mean(1)

        return A.Capture(set(A.select_layers(self.guider.layers, "cross_zest")), logits=True, reduce=reduce)

    def cfg_captures(self) -> dict:
        return {"zest": self.capture}

    def cfg_pass(self, i, state) -> bool:
        self.now = i < round(self.config.tau * self.guider.steps)
        if self.now:
            state.captures["zest"] = self.capture
        return self.now

    def after_cfg(self, i, x) -> None:
        """The loss's gradient w.r.t. the latent, through the CFG's conditional half."""
        if not self.now or x is None:
            return
        with torch.enable_grad():
            loss, _ = self.loss({"zest": self.capture.value()})
            (self._grad,) = torch.autograd.grad(loss, x)
        self.guider.passes["backward"] += 1  # through the CFG's own conditional pass: no extra forward
        self._loss = loss.detach() / self.guider.batch

    def after_step(self, i, latents):
        """x_{t-1} -= eta * sqrt(1 - abar_t) * grad / max|grad| (per image)."""
        g, self._grad = self._grad, None
        if g is None:
            return latents
        g = g.float()
        g = g / g.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        abar = self.guider.abar(i)
        return (latents.float() - self.config.eta * math.sqrt(1 - abar) * g).to(latents.dtype)

    def loss(self, maps, early=True):
        c, g = self.config, self.guider
        z = maps["zest"]
        targets = g.masks.group_masks(c.resolution, c.resolution, z.device).flatten(1)
        total = sum(L.zest_loss(z[b], g.layout.tokens, targets, c.gain, c.gate, c.gate_normalised)
                    for b in range(z.shape[0]))
        return total, total.detach()

    def report(self) -> dict[str, float]:
        return {} if self._loss is None else {"zest": float(self._loss)}
