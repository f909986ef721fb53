"""Attend-and-Excite (Chefer et al. 2023) and the single-step refinement of Grimal et al. (2025).

No boxes: every subject word must attend strongly somewhere (L_CN), and the refinement also keeps
subjects apart (L_IoU). Official code: ``pipeline_attend_and_excite.py`` of yuval-alaluf/Attend-and-Excite
(``__call__``, ``_perform_iterative_refinement_step``, ``_compute_max_attention_per_index``) and
``src/models/gsn_tools.py`` (``iteref_fc``) + ``src/models/gsn_criterion/iou.py`` of grimalPaul/gsn-factory;
what we do and every named deviation: docs/guidance.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import attention as A
from .. import losses as L
from . import GuidanceMethod, events_at


@dataclass(frozen=True)
class ExciteConfig:
    """The official algorithms by default (override with ``method_options={"excite": {...}}``)."""

    per_step: bool = True  # A&E: one gradient step on L_CN at every step below max_step
    scale_factor: float = 20.0  # alpha_i = scale_factor * sqrt(linspace(1, 0.5, n_steps)[i])
    max_step: int = 25
    thresholds: tuple[tuple[int, float], ...] = ((0, 0.05), (10, 0.5), (20, 0.8))  # A&E refinements
    max_refine: int = 20  # at those steps iterate (at most this often) until L_CN <= 1 - theta
    # Step selection (Grimal et al.): replace the threshold refinements by ONE refinement of
    # (L_CN + L_IoU) / 2 with Adam at a chosen step. ``refine_step`` set -> refine on; None with
    # refine=True -> the paper's step: 8 of 50 alone, 2 of 50 with per-step guidance (then 3-24).
    refine: bool = False
    refine_step: int | None = None
    refine_iters: int = 50
    refine_lr: float = 1e-2
    adam_eps: float = 1e-3  # gsn-factory's Adam (torch's default 1e-8 takes far larger steps)
    # After a refinement the paper's per-step guidance ("Ours+") is SynGen's loss, which is not
    # implemented here: the per-step loss stays A&E's L_CN (a named deviation, docs/guidance.md).
    per_step_loss: str = "excite"
    temperature: float = 100.0
    span: str = "all"  # re-softmax over A[..., 1:-1] (A&E on SD 1.4) or "prompt" (A&E's SD 2.1 branch)
    smooth: bool = True

    def __post_init__(self) -> None:
        if self.refine_step is not None:
            object.__setattr__(self, "refine", True)
        if self.span not in L.SPANS:
            raise ValueError(f"span must be one of {', '.join(L.SPANS)}, not {self.span!r}")
        if self.per_step_loss != "excite":
            raise ValueError(f"per_step_loss {self.per_step_loss!r} is not available; only 'excite' "
                             "(SynGen's loss, the paper's choice after a refinement, is not implemented)")

    @property
    def selected_step(self) -> int | None:
        """The refinement step in 50-step units, or None when refinement is off."""
        if not self.refine:
            return None
        if self.refine_step is not None:
            return int(self.refine_step)
        return 2 if self.per_step else 8


class Excite(GuidanceMethod):
    name, config_class, order = "excite", ExciteConfig, 20

    def guide_captures(self) -> dict:
        return {"cross": A.Capture(set(self.guider.select("cross_layout")))}

    def before_cfg(self, i, t, x, cond_unet):
        c, g = self.config, self.guider
        i50 = i * 50 / g.steps  # the schedule's step numbers are published for 50 steps
        sel = c.selected_step
        if sel is not None and i == min(g.steps - 1, int(sel * g.steps / 50)):
            x = self.refine(t, x, cond_unet)
        if not c.per_step or i50 >= c.max_step or (sel is not None and i50 <= sel):
            return x
        # scale_factor * sqrt(linspace(1, 0.5, n)[i]) over the loop's n steps, as the official code
        alpha = c.scale_factor * math.sqrt(1.0 - 0.5 * i / max(1, g.steps - 1))
        if sel is None:  # A&E's iterative refinements at steps 0, 10, 20: entered while L_CN > 1 - theta
            for step, theta in c.thresholds:
                if events_at(i, g.steps, [step]):
                    x = g.descend(self.name, self.loss, x, t, cond_unet, alpha, 1.0, c.max_refine,
                                  lambda v, s, th=theta: v > 1.0 - th, test_first=True)
        return g.descend(self.name, self.loss, x, t, cond_unet, alpha, 1.0, 1, lambda v, s: True)

    def refine(self, t, x, cond_unet) -> torch.Tensor:
        """Grimal et al.: minimise (L_CN + L_IoU) / 2 over the latent with Adam at one step."""
        g, c = self.guider, self.config
        xg = x.detach().float().clone().requires_grad_(True)
        opt = torch.optim.Adam([xg], lr=c.refine_lr, eps=c.adam_eps)
        first = last = None
        with torch.enable_grad():
            for _ in range(c.refine_iters):
                opt.zero_grad(set_to_none=True)
                loss = self.refine_loss(g.guide_pass(xg.to(x.dtype), t, cond_unet))
                loss.backward()
                g.passes["forward"] += 1
                g.passes["backward"] += 1
                opt.step()
                last = loss.detach()
                first = last if first is None else first
        if first is not None:
            f, lst = torch.stack([first, last]).tolist()
            g.last_loss["excite_refine_first"] = f / g.batch
            g.last_loss["excite_refine_last"] = lst / g.batch
        return xg.detach().to(x.dtype)

    def _token_maps(self, cross: torch.Tensor) -> torch.Tensor:
        (h, w), c = self.guider.grid, self.config
        return L.token_maps(cross, self.guider.layout.n_tokens, h, w, c.temperature, c.smooth, c.span)

    def _subjects(self) -> list[int]:
        return sorted({t for ts in self.guider.layout.tokens for t in ts})

    def loss(self, maps, early=True):
        """L_CN summed over the images (A&E's loss)."""
        cross = maps["cross"]
        total = torch.zeros((), device=cross.device)
        for b in range(cross.shape[0]):
            total = total + L.excite_loss(self._token_maps(cross[b]), self._subjects())
        return total, total.detach()

    def refine_loss(self, maps) -> torch.Tensor:
        """(L_CN + L_IoU) / 2 summed over the images (gsn-factory's ``IOUGSN`` with ``mean=True``; each
        image's latent gets the gradient of its own loss, as the official per-image loop)."""
        cross, groups = maps["cross"], [g for g, _ in self.guider.layout.groups]
        total = torch.zeros((), device=cross.device)
        for b in range(cross.shape[0]):
            tm = self._token_maps(cross[b])
            total = total + (L.excite_loss(tm, self._subjects()) + L.iou_loss(tm, groups)) / 2
        return total
