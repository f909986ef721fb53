"""ZestGuide (Couairon et al. 2023): BCE between each object's summed word maps and its region, its
gradient taken through the CFG pass's own conditional half (no extra forward) and applied after the
scheduler step. Official code: ``src/zestguide_stbl14.py`` (``GradientGuidedSynthesis2.run``,
``AttentionHook2``), ``zestguide_utils.py`` (``bce_loss2``) and ``configs/zestguide_stbldif14.yaml`` of
gcouairon/zestguide; what we do and every named deviation: docs/guidance.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from plan_and_render.vocab import COCO_CATEGORIES

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod

NEGATIVE_MODES = ("none", "concat")


@dataclass(frozen=True)
class ZestConfig:
    """The official algorithm by default (override with ``method_options={"zest": {...}}``)."""

    tau: float = 0.5  # guide steps 0 .. int(n * (1 - tau)) inclusive: 0-25 of 50
    eta: float = 0.3  # x_{t-1} -= eta * sqrt(1 - abar_t) * grad / max|grad|
    gain: float = 10.0  # A = gain * S_hat before the BCE
    resolution: int = 32  # maps and targets are resized to this square grid
    gate: float = 0.01  # pixels where prediction and target are both <= gate are held constant (raw maps)
    gate_normalised: float = 0.1  # the same for the max-normalised maps
    clip: float = 1e-3  # prediction and target clipped to [clip, 1 - clip] in the BCE
    # the official run samples the guided steps with DDIM eta 0.5 (only DDIM's step takes an eta)
    ddim_eta: float = 0.5
    # "concat" (the official SD 1.4 config): class names the plan does not use join the softmax as
    # extra keys, so an object's words compete with them; "none": the prompt's tokens only.
    negative_mode: str = "none"
    negative_names: tuple[str, ...] = ()  # for "concat"; empty: the COCO categories

    def __post_init__(self) -> None:
        if self.negative_mode not in NEGATIVE_MODES:
            raise ValueError(f"negative_mode must be one of {', '.join(NEGATIVE_MODES)}, not {self.negative_mode!r}")


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
            if (h, w) != (res, res):
                s = F.interpolate(s, size=(res, res), mode="bilinear", align_corners=False)
            return s.softmax(1).permute(0, 2, 3, 1).reshape(b, nh, res * res, t).mean(1)

        return A.Capture(set(self.guider.select("cross_zest")), logits=True, reduce=reduce)

    def setup(self, state) -> None:
        """With ``negative_mode="concat"``: the negative classes' states, as extra keys of the capture."""
        c, g = self.config, self.guider
        if c.negative_mode != "concat":
            return
        if g.embed_words is None:  # SD 3 / FLUX: no single-word states to add as keys
            g.warnings.append("zest: negative_mode 'concat' is not available for this model; ran with 'none'")
            return
        used = set(re.findall(r"\w+", g.layout.text.lower()))  # the official code leaves out the image's classes
        names = [n for n in (c.negative_names or COCO_CATEGORIES) if not set(re.findall(r"\w+", n.lower())) & used]
        if names:
            self.capture.extra_keys = g.embed_words(names)

    def cfg_captures(self) -> dict:
        return {"zest": self.capture}

    def _guiding(self, i: int) -> bool:
        return i <= int(self.guider.steps * (1 - self.config.tau))

    def cfg_pass(self, i, state) -> bool:
        self.now = self._guiding(i)
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

    def step_options(self, i) -> dict:
        return {"eta": self.config.ddim_eta} if self.now and self.config.ddim_eta else {}

    def after_step(self, i, x):
        """x_{t-1} -= eta * sqrt(1 - abar_t) * grad / max|grad| (per image)."""
        g, self._grad = self._grad, None
        if g is None:
            return x
        g = g.float()
        g = g / (g.flatten(1).abs().amax(1).view(-1, 1, 1, 1) + 1e-6)
        abar = self.guider.abar(i)
        return (x.float() - self.config.eta * math.sqrt(1 - abar) * g).to(x.dtype)

    def loss(self, maps, early=True):
        """Per group (one label of the segmentation), its region of the label map area-resized."""
        c, g = self.config, self.guider
        z = maps["zest"]
        heads = [members[0] for _, members in g.layout.groups]
        tokens = [tokens for tokens, _ in g.layout.groups]
        regions = g.masks.area_masks(c.resolution, c.resolution, z.device)
        targets = regions.index_select(0, L._ix(heads, regions)).flatten(1)
        total = sum(L.zest_loss(z[b], tokens, targets, c.gain, c.gate, c.gate_normalised, c.clip)
                    for b in range(z.shape[0]))
        return total, total.detach()

    def report(self) -> dict[str, float]:
        return {} if self._loss is None else {"zest": float(self._loss)}
