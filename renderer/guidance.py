"""The sampling-time side of layout guidance, shared by the SD and SDXL pipelines.

``Guider`` owns one render's guidance: which attention layers to capture or
mask, when each method acts (its schedule, written for 50 steps and rescaled),
the updates of the latent, and the attention-in-box scores. The losses are the
pure functions of ``plan_and_render.renderer.losses``, hyperparameters the dataclasses of
``plan_and_render.renderer.config``, phrase -> token positions ``plan_and_render.renderer.tokens`` and boxes ->
masks ``plan_and_render.renderer.masks``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from plan_and_render.errors import UsageError
from plan_and_render.scene import ScenePlan

from . import attention as A
from . import losses as L
from .config import check_options, config_for
from .masks import MaskSet

METHODS = ("refocus", "zest", "excite", "rca", "backward", "none")
GRADIENT_METHODS = ("refocus", "excite", "backward")  # gradient steps on the latent before the CFG pass
EARLY_STOP = True  # the methods' stopping tests; benchmarks switch them off to time the worst case


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


# ---------------------------------------------------------------------------
# the plan as guidance sees it
# ---------------------------------------------------------------------------

@dataclass
class Layout:
    """Objects of a plan with their token positions (start token = 0) and boxes."""

    text: str  # the text to encode (the token mapping may append or move phrases)
    ids: list[str]
    tokens: list[list[int]]  # per object; instances of one group share theirs
    boxes: list[tuple[float, float, float, float]]
    group_of: list[int]  # per object, index into groups
    groups: list[tuple[list[int], list[int]]] = field(default_factory=list)  # (tokens, object indices)
    n_tokens: int = 77  # start + prompt + end tokens, i.e. the index of the first padding token

    @property
    def guided(self) -> list[int]:
        return [k for k, t in enumerate(self.tokens) if t]


def build_layout(plan: ScenePlan, tokenizer, text: str, max_length: int) -> tuple[Layout, list[str]]:
    """Token positions of every group via tokenizer offsets (``plan_and_render.renderer.tokens``), plus boxes."""
    from .tokens import group_key, plan_groups, plan_tokens

    tm = plan_tokens(tokenizer, plan, text, max_length)
    keys = list(plan_groups(plan.objects))
    group_of = [keys.index(group_key(o)) for o in plan.objects]
    tokens = [list(tm.groups.get(group_key(o), [])) for o in plan.objects]
    groups = [(list(tm.groups.get(g, [])), [k for k, gi in enumerate(group_of) if gi == j]) for j, g in enumerate(keys)]
    lay = Layout(tm.text, [o.id for o in plan.objects], tokens, [tuple(o.box) for o in plan.objects], group_of,
                 groups, tm.n_tokens)
    return lay, list(tm.warnings)


def events_at(i: int, steps: int, events) -> bool:
    """Whether step i of ``steps`` holds one of ``events`` given in 50-step units."""
    return any(int(e * steps / 50) == i for e in events)


# ---------------------------------------------------------------------------
# the guider
# ---------------------------------------------------------------------------

class Guider:
    """Schedules and applies the chosen methods for one render."""

    def __init__(self, methods: list[str], unet, layout: Layout, steps: int, latent_hw: tuple[int, int],
                 batch: int, overrides: dict | None = None, n_ctx: int = 77) -> None:
        overrides = check_options(dict(overrides or {}))
        self.methods, self.unet, self.layout, self.steps, self.batch = methods, unet, layout, steps, batch
        self.cfg = {m: config_for(m, overrides.get(m)) for m in methods}
        self.state = A.AttentionState()
        self.state.latent_hw = latent_hw
        self.layers = A.unet_layers(unet)
        self.grid = self._grid(latent_hw, A.layout_level(self.layers))
        self.masks = MaskSet(layout.boxes, layout.group_of, self.grid, layout.ids)
        self.warnings: list[str] = list(self.masks.warnings)
        self.active = bool(layout.guided)
        if methods and not self.active:
            self.warnings.append("the plan has no objects; guidance disabled" if not layout.ids else
                                 "no object phrase could be located in the prompt; guidance disabled")
        # what each kind of pass captures
        cross_layout = set(A.select_layers(self.layers, "cross_layout"))
        self.caps_guide: dict[str, A.Capture] = {}
        if "refocus" in methods or "excite" in methods:
            self.caps_guide["cross"] = A.Capture(cross_layout)
        if "refocus" in methods and self.cfg["refocus"].self_attention:
            self.caps_guide["self"] = A.Capture(set(A.select_layers(self.layers, "self_layout")))
        if "backward" in methods:
            self.caps_guide["bw"] = self._bw_capture()
        self.zest_cap = self._zest_capture() if "zest" in methods else None
        self.score_cap = A.Capture(cross_layout)
        capture = set().union(cross_layout, *(c.layers for c in self.caps_guide.values()),
                              self.zest_cap.layers if self.zest_cap else set())
        rca_layers = set(A.select_layers(self.layers, "cross_all")) if "rca" in methods else set()
        self._saved = unet.attn_processors
        self.n_custom = A.install(unet, self.state, capture, rca_layers)
        if rca_layers and self.active:
            self.state.rca_masks = self._rca_masks(latent_hw, n_ctx)
        self.last_loss: dict[str, float] = {}
        # extra UNet work beyond plain CFG sampling: conditional forwards (each stops after the last
        # captured layer) and backwards to the latent; the cost model of the spec's table
        self.passes = {"forward": 0, "backward": 0}
        self._abars: list[float] | None = None  # alpha_bar per step, read once (see _abar)
        self._zest_loss: torch.Tensor | None = None
        self._score_sum = torch.zeros(len(layout.ids))
        self._cn_iou_sum, self._score_n = 0.0, 0
        self._early = True
        self.score_steps = self._score_window()

    # -- setup helpers -------------------------------------------------------
    @staticmethod
    def _grid(latent_hw, level) -> tuple[int, int]:
        h, w = latent_hw
        for _ in range(level):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return h, w

    def _bw_capture(self) -> A.Capture:
        return A.Capture(set(A.select_layers(self.layers, "cross_backward")), mode="list",
                         reduce=lambda x, h, w: (x, h, w))

    def _zest_capture(self) -> A.Capture:
        res = self.cfg["zest"].resolution if "zest" in self.cfg else 32

        def reduce(scores: torch.Tensor, h: int, w: int) -> torch.Tensor:
            """Pre-softmax scores (B, heads, N, T) -> resized to res x res, softmax over tokens, head mean."""
            b, nh, n, t = scores.shape
            s = scores.reshape(b * nh, h, w, t).permute(0, 3, 1, 2)
            s = F.interpolate(s, size=(res, res), mode="bilinear", align_corners=False)
            return s.softmax(1).permute(0, 2, 3, 1).reshape(b, nh, res * res, t).mean(1)

        return A.Capture(set(A.select_layers(self.layers, "cross_zest")), logits=True, reduce=reduce)

    def _rca_masks(self, latent_hw, n_ctx: int) -> dict:
        """(h, w) -> (N, T) bool: a token is forbidden outside the boxes of the objects it names
        (instances of one group share their tokens, so they share the union of their boxes)."""
        out = {}
        for lvl in {li.level for li in self.layers if li.cross}:
            h, w = self._grid(latent_hw, lvl)
            m = self.masks.masks(h, w).flatten(1) > 0.5  # (K, N)
            forbid = torch.zeros(h * w, n_ctx, dtype=torch.bool)
            for t in {t for ts in self.layout.tokens for t in ts}:
                allowed = torch.zeros(h * w, dtype=torch.bool)
                for k, ts in enumerate(self.layout.tokens):
                    if t in ts:
                        allowed |= m[k]
                forbid[:, t] = ~allowed
            out[(h, w)] = forbid
        return out

    def _score_window(self) -> set[int]:
        """Steps over which scores are averaged: the last 5 of the guided first half."""
        end = max(1, math.ceil(self.steps / 2))
        return set(range(max(0, end - 5), end))

    def _abar(self, i: int, scheduler) -> float:
        """alpha_bar at step i; the timesteps are read to the host once per render (not once per step)."""
        if self._abars is None:
            ts = scheduler.timesteps.cpu().tolist()
            self._abars = [float(scheduler.alphas_cumprod[int(t)]) for t in ts]
        return self._abars[i]

    def config(self) -> dict:
        return {m: asdict(c) for m, c in self.cfg.items()}

    def close(self) -> None:
        self.unet.set_attn_processor(self._saved)
        self.state.captures = {}

    # -- conditional passes that capture ----------------------------------------
    def _pass(self, caps: dict[str, A.Capture], x: torch.Tensor, t, cond_unet) -> dict:
        """One conditional forward that stops after the last captured layer; returns reductions."""
        st = self.state
        st.captures = caps
        st.clear()
        st.capturing, st.cond_rows, st.rca_on = True, slice(None), False
        st.stop_after = len(set().union(*(c.layers for c in caps.values())))
        try:
            cond_unet(x, t)
        except A.StopForward:
            pass
        finally:
            st.capturing, st.stop_after = False, None
        return {k: c.value() for k, c in caps.items()}

    def _guide_pass(self, x: torch.Tensor, t, cond_unet) -> dict:
        return self._pass(self.caps_guide, x, t, cond_unet)

    # -- losses (per image, summed over the batch) ------------------------------
    def loss(self, m: str, maps: dict, early: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Method m's loss at scale 1, summed over the images, and a stopping statistic
        (refocus: min in-box maximum; others: the loss itself). Both stay on the device."""
        lay, (h, w) = self.layout, self.grid
        if m == "backward":
            bsz, dev = maps["bw"][0][0].shape[0], maps["bw"][0][0].device
        else:
            bsz, dev = maps["cross"].shape[0], maps["cross"].device
        base = m.split("_")[0]
        cfg = self.cfg.get(base) or config_for(base)
        total, stat = torch.zeros((), device=dev), []
        for b in range(bsz):
            if m == "refocus":
                tm = L.token_maps(maps["cross"][b], lay.n_tokens, h, w, cfg.temperature, cfg.smooth)
                masks = self.masks.masks(h, w, dev)
                car, min_in = L.car_loss(tm, lay.groups, masks, early)
                total = total + car
                if "self" in maps:
                    total = total + L.sar_loss(maps["self"][b], masks)
                stat.append(min_in)
            elif m == "excite":
                tm = L.token_maps(maps["cross"][b], lay.n_tokens, h, w, cfg.temperature, cfg.smooth)
                total = total + L.excite_loss(tm, sorted({t for ts in lay.tokens for t in ts}))
            elif m == "excite_refine":
                tm = L.token_maps(maps["cross"][b], lay.n_tokens, h, w, cfg.temperature, cfg.smooth)
                subj = sorted({t for ts in lay.tokens for t in ts})
                total = total + L.excite_loss(tm, subj) + L.iou_loss(tm, [g for g, _ in lay.groups])
            elif m == "backward":
                per_layer = [(p[b], self.masks.group_masks(hh, ww, dev).flatten(1)) for p, hh, ww in maps["bw"]]
                total = total + L.backward_loss(per_layer, lay.tokens)
            else:
                raise ValueError(m)
        st = torch.stack(stat).amin() if stat else total.detach()
        return total, st

    # -- gradient steps on the latent ---------------------------------------------
    def _descend(self, m: str, latents, t, cond_unet, scale: float, lr: float, max_iter: int, keep_going) -> torch.Tensor:
        """Up to ``max_iter`` steps x <- x - lr * grad(scale * loss) while ``keep_going(loss, stat)``
        (both unscaled floats, one device-to-host copy per iteration)."""
        early = self._early
        for _ in range(max_iter):
            with torch.enable_grad():
                x = latents.detach().float().requires_grad_(True)
                loss, stat = self.loss(m, self._guide_pass(x.to(latents.dtype), t, cond_unet), early)
                self.passes["forward"] += 1
                value, s = torch.stack([loss.detach(), stat.detach().float()]).tolist()
                self.last_loss[m] = value
                if EARLY_STOP and not keep_going(value / self.batch, s):
                    break
                (g,) = torch.autograd.grad(scale * loss, x)
                self.passes["backward"] += 1
            latents = (x.detach() - lr * g).to(latents.dtype)
        return latents

    def refine(self, i: int, t, latents: torch.Tensor, cond_unet, scheduler) -> torch.Tensor:
        """Gradient steps on the latent for refocus / excite / backward at step i (their schedules)."""
        if not self.active or not self.caps_guide:
            return latents
        i50 = i * 50 / self.steps  # schedules are published for 50 steps
        abar = self._abar(i, scheduler)
        self._early = i50 < 15
        if "refocus" in self.methods:
            latents = self._refocus(i, i50, t, latents, cond_unet)
        if "excite" in self.methods:
            latents = self._excite(i, i50, t, latents, cond_unet)
        if "backward" in self.methods:
            c = self.cfg["backward"]
            if i50 < c.max_step:
                latents = self._descend("backward", latents, t, cond_unet, c.loss_scale, c.lr_scale * (1 - abar),
                                        c.max_iter, lambda v, s: v > c.loss_threshold)
        return latents

    def _refocus(self, i, i50, t, latents, cond_unet):
        """Steps 0-9: iterate while loss (at the published s) > 0.1 and the weakest in-box max < 0.2,
        (s, max_iter) = (4, 2) / (4, 6) / (3, 3); then up to 2 iterations at steps 10, 15, ..., 35."""
        c = self.cfg["refocus"]
        if i50 < 10:
            s, n = (4, 2) if i50 < 2 else (4, 6) if i50 < 5 else (3, 3)

            def keep(v, min_in):
                return v * s > c.loss_threshold and min_in < c.min_in_threshold
        elif events_at(i, self.steps, c.late_steps):
            s, n = (3 if i50 < 20 else 1), 2

            def keep(v, min_in):
                return min_in < c.min_in_threshold
        else:
            return latents
        return self._descend("refocus", latents, t, cond_unet, c.loss_scale * s / 4, 1.0, n, keep)

    def _excite(self, i, i50, t, latents, cond_unet):
        c = self.cfg["excite"]
        sel = c.selected_step
        if sel is not None and i == min(self.steps - 1, int(sel * self.steps / 50)):
            latents = self._refine_adam(t, latents, cond_unet, c)
        if not c.per_step or i50 >= c.max_step or (sel is not None and i50 <= sel):
            return latents
        alpha = c.scale_factor * math.sqrt(1.0 - 0.5 * int(i50) / 49)  # scale * sqrt(linspace(1, .5, 50)[i])
        if sel is None:  # A&E's iterative refinements at steps 0, 10, 20
            for step, theta in c.thresholds:
                if events_at(i, self.steps, [step]):
                    latents = self._descend("excite", latents, t, cond_unet, alpha, 1.0, c.max_refine,
                                            lambda v, s, th=theta: v > 1.0 - th)
        return self._descend("excite", latents, t, cond_unet, alpha, 1.0, 1, lambda v, s: True)

    def _refine_adam(self, t, latents, cond_unet, c) -> torch.Tensor:
        """Grimal et al.: minimise L_CN + L_IoU over the latent with Adam at one step."""
        x = latents.detach().float().clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=c.refine_lr)
        first = last = None
        with torch.enable_grad():
            for _ in range(c.refine_iters):
                opt.zero_grad(set_to_none=True)
                loss, _ = self.loss("excite_refine", self._guide_pass(x.to(latents.dtype), t, cond_unet))
                loss.backward()
                self.passes["forward"] += 1
                self.passes["backward"] += 1
                opt.step()
                last = loss.detach()
                first = last if first is None else first
        if first is not None:
            f, lst = torch.stack([first, last]).tolist()
            self.last_loss["excite_refine_first"] = f / self.batch
            self.last_loss["excite_refine_last"] = lst / self.batch
        return x.detach().to(latents.dtype)

    # -- the CFG pass: RCA masks, ZestGuide keeps its graph, scores ---------------
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
        st.rca_on = "rca" in self.methods and self.active and i < math.ceil(self.cfg["rca"].until * self.steps)
        zest_x = None
        try:
            if zest_now:
                with torch.enable_grad():
                    zest_x = latents.detach().float().requires_grad_(True)
                    yield zest_x
            else:
                yield None
        finally:
            st.capturing, st.rca_on = False, False
        if score_now and self.score_cap.value() is not None:
            self._add_scores(self.score_cap.value())

    def _add_scores(self, cross: torch.Tensor) -> None:
        """Accumulate in-box shares and L_CN + L_IoU from a (B, N, T) layout-level capture."""
        lay, (h, w) = self.layout, self.grid
        masks = self.masks.group_masks(h, w, cross.device).flatten(1)
        shares, cn = [], []
        for b in range(cross.shape[0]):
            shares.append(L.in_box_share(cross[b], lay.tokens, masks))
            tm = L.token_maps(cross[b], lay.n_tokens, h, w)
            cn.append(L.excite_loss(tm, sorted({t for ts in lay.tokens for t in ts}))
                      + L.iou_loss(tm, [g for g, _ in lay.groups]))
        self._score_sum += torch.stack(shares).mean(0).cpu()
        self._cn_iou_sum += float(torch.stack(cn).mean())
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
        """Gradient of the ZestGuide loss (maps of the CFG's conditional half) w.r.t. the latent."""
        if zest_latent is None:
            return None
        c, lay = self.cfg["zest"], self.layout
        with torch.enable_grad():
            z = self.zest_cap.value()
            targets = self.masks.group_masks(c.resolution, c.resolution, z.device).flatten(1)
            loss = sum(L.zest_loss(z[b], lay.tokens, targets, c.gain, c.gate, c.gate_normalised)
                       for b in range(z.shape[0]))
            (g,) = torch.autograd.grad(loss, zest_latent)
        self.passes["backward"] += 1  # through the CFG's own conditional pass: no extra forward
        self._zest_loss = loss.detach() / self.batch  # read at the end: no host sync per step
        return g

    def after_step(self, i: int, t, latents: torch.Tensor, zest_grad, scheduler) -> torch.Tensor:
        """ZestGuide: x_{t-1} -= eta * sqrt(1 - abar_t) * grad / max|grad| (per image)."""
        if zest_grad is None:
            return latents
        g = zest_grad.float()
        g = g / g.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        abar = self._abar(i, scheduler)
        return (latents.float() - self.cfg["zest"].eta * math.sqrt(1 - abar) * g).to(latents.dtype)

    # -- what the render reports ---------------------------------------------------
    def scores(self) -> dict[str, float]:
        """Per guided object: mean over the score window of its attention-in-box share."""
        n = max(1, self._score_n)
        return {self.layout.ids[k]: float(self._score_sum[k]) / n for k in self.layout.guided}

    def losses(self) -> dict[str, float]:
        """Last loss of each method (per image, scale 1) and ``cn_iou``: L_CN + L_IoU over the score window."""
        out = dict(self.last_loss)
        if self._zest_loss is not None:
            out["zest"] = float(self._zest_loss)
        if self._score_n and self.layout.guided:
            out["cn_iou"] = self._cn_iou_sum / self._score_n
        return out

    # -- measurement (tests, sweeps): every loss from one conditional pass ------------
    def measure(self, latents: torch.Tensor, t, cond_unet) -> dict[str, float]:
        """Each gradient method's loss, the ZestGuide loss, in-box shares and L_CN + L_IoU at
        (latents, t), from one unmasked conditional pass; nothing is changed."""
        layers = self.layers
        caps = {"cross": A.Capture(set(A.select_layers(layers, "cross_layout"))),
                "self": A.Capture(set(A.select_layers(layers, "self_layout"))),
                "bw": self._bw_capture(), "zest": self._zest_capture()}
        saved = self.unet.attn_processors
        A.install(self.unet, self.state, set().union(*(c.layers for c in caps.values())), set())
        try:
            maps = self._pass(caps, latents, t, cond_unet)
        finally:
            self.unet.set_attn_processor(saved)
        out = {m: float(self.loss(m, maps)[0]) / latents.shape[0] for m in ("refocus", "excite", "backward")}
        c = self.cfg.get("zest") or config_for("zest")
        targets = self.masks.group_masks(c.resolution, c.resolution, latents.device).flatten(1)
        out["zest"] = float(sum(L.zest_loss(maps["zest"][b], self.layout.tokens, targets, c.gain, c.gate,
                                            c.gate_normalised) for b in range(latents.shape[0]))) / latents.shape[0]
        h, w = self.grid
        masks = self.masks.group_masks(h, w, latents.device).flatten(1)
        share = torch.stack([L.in_box_share(maps["cross"][b], self.layout.tokens, masks)
                             for b in range(latents.shape[0])]).mean(0)
        out.update({f"in_box:{self.layout.ids[k]}": float(share[k]) for k in self.layout.guided})
        out["in_box"] = float(share[self.layout.guided].mean()) if self.layout.guided else float("nan")
        return out
