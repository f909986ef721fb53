"""The sampling-time side of layout guidance, shared by the SD and SDXL pipelines.

``Guider`` owns one render's guidance: which attention layers to capture or
mask, when each method acts (its schedule), the gradient updates of the latent,
and the attention-in-box scores. The losses themselves are pure functions in
``renderer.losses``; hyperparameters are the dataclasses of
``renderer.methods_config``; phrase -> token positions is ``renderer.tokens``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from planner.errors import UsageError
from planner.scene import ScenePlan

from . import attention as A

METHODS = ("refocus", "zest", "excite", "rca", "backward", "none")


def parse_method(spec: str) -> list[str]:
    """``"refocus+rca"`` -> ``["refocus", "rca"]``; ``"none"`` -> ``[]``."""
    parts = [p.strip().lower() for p in (spec or "none").split("+") if p.strip()]
    bad = [p for p in parts if p not in METHODS]
    if bad or not parts:
        raise UsageError(f"unknown guidance method {spec!r}; choose from {', '.join(METHODS)} (combine with '+')")
    return [p for p in dict.fromkeys(parts) if p != "none"]


def compose_prompt(plan: ScenePlan) -> tuple[str, str]:
    """The text to encode (prompt, plus the background when the prompt lacks it) and the negative prompt."""
    text = plan.prompt.strip()
    bg = (plan.background or "").strip()
    if bg and bg.lower() not in text.lower():
        text = f"{text}, {bg}"
    return text, (plan.negative_prompt or "").strip()


def cat_kwargs(a: dict, b: dict) -> dict:
    """Batch two sets of extra UNet inputs (SDXL's text_embeds/time_ids) as [a, b]."""
    return {k: torch.cat([a[k], b[k]]) for k in a}


@dataclass
class LayoutObject:
    id: str
    group: str
    tokens: list[int]  # positions in the encoded sequence (start token = 0)
    box: tuple[float, float, float, float]


@dataclass
class Layout:
    objects: list[LayoutObject]
    n_tokens: int  # start + prompt tokens + end, i.e. index of the first padding token


def build_layout(plan: ScenePlan, tokenizer, text: str, max_length: int) -> tuple[Layout, list[str]]:
    """Objects with their token positions (via tokenizer offsets) and boxes."""
    from .maploss import object_token_positions

    positions, warnings = object_token_positions(tokenizer, text, plan.objects, max_length)
    n = min(len(tokenizer(text).input_ids), max_length)
    objs = [LayoutObject(o.id, o.group or o.name, list(p), tuple(o.box)) for o, p in zip(plan.objects, positions)]
    return Layout(objs, n), list(warnings)


def box_mask(box, h: int, w: int, device=None) -> torch.Tensor:
    """Binary (h, w) mask: rows floor(y0*h)..ceil(y1*h), columns likewise (guidance.md)."""
    x0, y0, x1, y1 = box
    m = torch.zeros(h, w, device=device)
    m[math.floor(y0 * h):max(math.ceil(y1 * h), math.floor(y0 * h) + 1),
      math.floor(x0 * w):max(math.ceil(x1 * w), math.floor(x0 * w) + 1)] = 1
    return m


def in_box_share(cross: torch.Tensor, layout: Layout, h: int, w: int) -> dict[str, float]:
    """Per object: share of its tokens' attention mass that falls inside its box.

    ``cross`` is (N, T) head- and layer-averaged cross-attention of one image.
    """
    out = {}
    for o in layout.objects:
        if not o.tokens:
            continue
        m = box_mask(o.box, h, w, cross.device).flatten()
        a = cross[:, o.tokens].float()
        out[o.id] = float(((a * m[:, None]).sum(0) / a.sum(0).clamp_min(1e-12)).mean())
    return out


def lay_tokens(lay: Layout) -> list[list[int]]:
    return [o.tokens for o in lay.objects]


def lay_masks(lay: Layout, h: int, w: int, device=None) -> list[torch.Tensor]:
    return [box_mask(o.box, h, w, device) for o in lay.objects]


@dataclass
class StepPlan:
    """What a gradient method does at one sampling step."""

    max_iter: int
    scale: float  # loss multiplier
    lr: float  # step size on the latent
    loss_above: float = -1.0  # keep iterating while loss > this ...
    min_in_below: float = 2.0  # ... and min in-box max < this

    def keep_going(self, loss: float, stats: dict, it: int) -> bool:
        return loss > self.loss_above and stats.get("min_in", 0.0) < self.min_in_below


def step_plan(m: str, cfg, i50: int, abar: float) -> StepPlan | None:
    """The published schedules (guidance.md), in 50-step units."""
    if m == "refocus":
        s = cfg.loss_scale
        if i50 < 2:
            return StepPlan(2, s * 4 / 4, 1.0, 0.1 * s / 4, 0.2)
        if i50 < 5:
            return StepPlan(6, s, 1.0, 0.1 * s / 4, 0.2)
        if i50 < 10:
            return StepPlan(3, s * 3 / 4, 1.0, 0.1 * s / 4, 0.2)
        if i50 in (10, 15, 20, 25, 30, 35):
            return StepPlan(2, s * (3 if i50 < 20 else 1) / 4, 1.0, -1.0, 0.2)
        return None
    if m == "excite":
        if i50 >= cfg.max_step:
            return None
        alpha = cfg.scale_factor * math.sqrt(1.0 - 0.5 * i50 / 49)
        thresholds = dict(cfg.thresholds)
        if i50 in thresholds:
            return StepPlan(cfg.max_refine, 1.0, alpha, 1.0 - thresholds[i50])
        return StepPlan(1, 1.0, alpha)
    if m == "backward":
        if i50 >= cfg.max_step:
            return None
        return StepPlan(cfg.max_iter, cfg.loss_scale, cfg.lr_scale * (1.0 - abar), cfg.loss_below / 1.0 * cfg.loss_scale)
    return None


class Guider:
    """Schedules and applies the chosen methods for one render."""

    def __init__(self, methods: list[str], unet, layout: Layout, steps: int, latent_hw: tuple[int, int],
                 batch: int, overrides: dict | None = None) -> None:
        from dataclasses import replace

        from .maploss import config_for

        self.methods, self.unet, self.layout, self.steps, self.batch = methods, unet, layout, steps, batch
        self.cfg = {m: replace(config_for(m), **(overrides or {}).get(m, {})) for m in methods}
        self.warnings: list[str] = []
        self.state = A.AttentionState()
        self.state.latent_hw = latent_hw
        layers = A.unet_layers(unet)
        self.layers = layers
        self.lvl = A.layout_level(layers)
        self.grid = self._grid(latent_hw, self.lvl)
        guided = [o for o in layout.objects if o.tokens]
        if methods and not guided:
            self.warnings.append("no object phrase could be located in the prompt; guidance disabled")
        self.active = bool(guided)
        # what each pass captures
        cross_layout = set(A.select_layers(layers, "cross_layout"))
        self.caps_guide: dict[str, A.Capture] = {}
        if "refocus" in methods or "excite" in methods:
            self.caps_guide["cross"] = A.Capture(cross_layout)
        if "refocus" in methods:
            self.caps_guide["self"] = A.Capture(set(A.select_layers(layers, "self_layout")))
        if "backward" in methods:
            self.caps_guide["bw"] = A.Capture(set(A.select_layers(layers, "cross_backward")), mode="list",
                                              reduce=lambda x, h, w: (x, h, w))
        self.zest_cap = None
        if "zest" in methods:
            self.zest_cap = A.Capture(set(A.select_layers(layers, "cross_zest")), logits=True,
                                      reduce=self._zest_reduce)
        self.score_cap = A.Capture(cross_layout)
        capture = set().union(*(c.layers for c in self.caps_guide.values()), cross_layout,
                              self.zest_cap.layers if self.zest_cap else set())
        rca_layers = set(A.select_layers(layers, "cross_all")) if "rca" in methods else set()
        self._saved = unet.attn_processors
        self.n_custom = A.install(unet, self.state, capture, rca_layers)
        if rca_layers:
            self.state.rca_masks = self._rca_masks(layers, latent_hw)
        self.last_loss: dict[str, float] = {}
        self._score_sum: dict[str, float] = {}
        self._score_n = 0
        self.score_steps = self._score_window()

    # -- setup helpers -------------------------------------------------------
    @staticmethod
    def _grid(latent_hw, level) -> tuple[int, int]:
        h, w = latent_hw
        for _ in range(level):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return h, w

    def _rca_masks(self, layers, latent_hw) -> dict:
        """(h, w) -> (N, T) bool: object tokens forbidden outside their object's box."""
        out = {}
        for lvl in {li.level for li in layers if li.cross}:
            h, w = self._grid(latent_hw, lvl)
            forbid = torch.zeros(h * w, self._n_ctx(), dtype=torch.bool)
            for o in self.layout.objects:
                outside = box_mask(o.box, h, w).flatten() < 0.5
                for t in o.tokens:
                    forbid[:, t] |= outside
            # a token shared by several objects (instances of one group) is allowed in all their boxes
            for t in {t for o in self.layout.objects for t in o.tokens}:
                allowed = torch.zeros(h * w, dtype=torch.bool)
                for o in self.layout.objects:
                    if t in o.tokens:
                        allowed |= box_mask(o.box, h, w).flatten() > 0.5
                forbid[:, t] = ~allowed
            out[(h, w)] = forbid
        return out

    def _n_ctx(self) -> int:
        return int(getattr(self.unet.config, "_ctx_len", 0) or 77)

    def _zest_reduce(self, scores: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Pre-softmax scores (B, heads, N, T) -> 32x32-resized, token-softmaxed, head-mean (B, 1024, T)."""
        b, nh, n, t = scores.shape
        s = scores.reshape(b * nh, h, w, t).permute(0, 3, 1, 2)
        s = F.interpolate(s, size=(32, 32), mode="bilinear", align_corners=False)
        p = s.softmax(1).permute(0, 2, 3, 1).reshape(b, nh, 32 * 32, t)
        return p.mean(1)

    def _score_window(self) -> set[int]:
        """Steps over which scores are averaged: the last 5 of the guided first half."""
        end = max(1, math.ceil(self.steps / 2))
        return set(range(max(0, end - 5), end))

    def config(self) -> dict:
        return {m: asdict(c) for m, c in self.cfg.items()}

    def close(self) -> None:
        self.unet.set_attn_processor(self._saved)
        self.state.captures = {}

    # -- step 4a: gradient steps on the latent --------------------------------
    def _guide_pass(self, x: torch.Tensor, t, cond_unet) -> dict:
        """One conditional forward that stops after the last captured layer; returns reductions."""
        st = self.state
        st.captures = self.caps_guide
        st.clear()
        st.capturing, st.cond_rows = True, slice(None)
        n_needed = len(set().union(*(c.layers for c in self.caps_guide.values())))
        st.stop_after = n_needed
        try:
            cond_unet(x, t)
        except A.StopForward:
            pass
        finally:
            st.capturing, st.stop_after = False, None
        return {k: c.value() for k, c in self.caps_guide.items()}

    def refine(self, i: int, t, latents: torch.Tensor, cond_unet, scheduler) -> torch.Tensor:
        """Gradient steps on the latent for refocus / excite / backward at step i (their schedules)."""
        if not self.active or not self.caps_guide:
            return latents
        i50 = int(i * 50 / self.steps)  # schedules are published for 50 steps
        abar = float(scheduler.alphas_cumprod[int(t)])
        for m in ("refocus", "excite", "backward"):
            if m not in self.methods:
                continue
            sched = step_plan(m, self.cfg[m], i50, abar)
            if sched is None:
                continue
            for it in range(sched.max_iter):
                with torch.enable_grad():
                    x = latents.detach().float().requires_grad_(True)
                    maps = self._guide_pass(x.to(latents.dtype), t, cond_unet)
                    loss, stats = self.method_loss(m, maps, i50, sched.scale)
                    self.last_loss[m] = float(loss)
                    if not sched.keep_going(float(loss), stats, it):
                        break
                    (g,) = torch.autograd.grad(loss, x)
                latents = (x - sched.lr * g).detach().to(latents.dtype)
        return latents

    def method_loss(self, m: str, maps: dict, i50: int, scale: float) -> tuple[torch.Tensor, dict]:
        """Loss of method m summed over the images of the batch (images are independent)."""
        from . import maploss as L

        h, w = self.grid
        lay, n_tok = self.layout, self.layout.n_tokens
        total, stats = 0.0, {"min_in": 1.0}
        bsz = maps["bw"][0][0].shape[0] if m == "backward" else maps["cross"].shape[0]
        dev = maps["bw"][0][0].device if m == "backward" else maps["cross"].device
        for b in range(bsz):
            if m == "refocus":
                tm = L.token_maps(maps["cross"][b], n_tok, h, w, self.cfg[m])
                car, min_in = L.car_loss(tm, lay_tokens(lay), lay_masks(lay, h, w, dev), i50, self.cfg[m])
                sar = L.sar_loss(maps["self"][b], lay_masks(lay, h, w, dev))
                total = total + scale * (car + sar)
                stats["min_in"] = min(stats["min_in"], float(min_in))
            elif m == "excite":
                tm = L.token_maps(maps["cross"][b], n_tok, h, w, self.cfg[m])
                total = total + scale * L.excite_loss(tm, lay_tokens(lay))
            elif m == "backward":
                per_layer = [(x[b], hh, ww) for (x, hh, ww) in maps["bw"]]
                total = total + scale * L.backward_loss(per_layer, lay_tokens(lay), [o.box for o in lay.objects])
        return total, stats

    # -- step 4b: the CFG pass --------------------------------------------------
    @contextlib.contextmanager
    def cfg_pass(self, i: int, latents: torch.Tensor):
        st = self.state
        zest_now = self.active and self.zest_cap is not None and i < round(self.cfg["zest"].tau * self.steps)
        score_now = i in self.score_steps
        st.captures = {}
        if score_now:
            st.captures["score"] = self.score_cap
        if zest_now:
            st.captures["zest"] = self.zest_cap
        st.clear()
        st.capturing = bool(st.captures)
        # batched CFG is [uncond, cond]; with ZestGuide the cond pass runs alone
        st.cond_rows = slice(None) if zest_now else slice(self.batch, None)
        st.rca_on = "rca" in self.methods and self.active
        self._zest_x = None
        self._zest_source = latents
        try:
            if zest_now:
                with torch.enable_grad():
                    self._zest_x = self._zest_source.detach().float().requires_grad_(True)
                    yield self._zest_x
            else:
                yield None
        finally:
            st.capturing, st.rca_on = False, False
        if score_now and self.score_cap.value() is not None:
            cross = self.score_cap.value()  # (B_cond, N, T)
            h, w = self.grid
            per = [in_box_share(cross[b], self.layout, h, w) for b in range(cross.shape[0])]
            for k in per[0]:
                self._score_sum[k] = self._score_sum.get(k, 0.0) + sum(p[k] for p in per) / len(per)
            self._score_n += 1

    @contextlib.contextmanager
    def paused(self):
        """No capture or masking (the unconditional pass when it runs alone)."""
        st = self.state
        saved = st.capturing, st.rca_on
        st.capturing, st.rca_on = False, False
        try:
            yield
        finally:
            st.capturing, st.rca_on = saved

    def zest_grad(self, i: int, zest_latent):
        if zest_latent is None:
            return None
        from . import maploss as L

        with torch.enable_grad():
            z = self.zest_cap.value()
            lay = self.layout
            loss = sum(L.zest_loss(z[b], lay_tokens(lay), [o.box for o in lay.objects], self.cfg["zest"].gain)
                       for b in range(z.shape[0]))
            self.last_loss["zest"] = float(loss)
            (g,) = torch.autograd.grad(loss, zest_latent)
        return g

    def after_step(self, i: int, t, latents: torch.Tensor, zest_grad, scheduler) -> torch.Tensor:
        if zest_grad is None:
            return latents
        g = zest_grad.float()
        g = g / g.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        abar = scheduler.alphas_cumprod[int(t)].item()
        return (latents.float() - self.cfg["zest"].eta * math.sqrt(1 - abar) * g).to(latents.dtype)

    def scores(self) -> dict[str, float]:
        return {k: v / max(1, self._score_n) for k, v in self._score_sum.items()}
