"""The sampling-time side of layout guidance, shared by every pipeline (SD, SDXL, SD 3, FLUX).

``Guider`` owns one render's guidance: it makes the chosen methods (``plan_and_render.renderer.methods``:
one class per method, with its config and its schedule) and calls their hooks at each step, installs
the attention processors their captures and masks need, runs the conditional passes of gradient steps,
and keeps the attention-in-box scores. It never asks which methods it holds. The losses are the pure
functions of ``plan_and_render.renderer.losses``, phrase -> token positions ``plan_and_render.renderer.tokens``
and boxes -> masks ``plan_and_render.renderer.masks``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field

import torch

from plan_and_render.scene import ScenePlan

from . import attention as A
from . import losses as L
from .masks import MaskSet
from .methods import available_methods, config_for, method_class
from .schedulers import alpha_bars


def compose_prompt(plan: ScenePlan) -> tuple[str, str]:
    """The text to encode (prompt, plus the background when the prompt lacks it) and the negative prompt."""
    text = plan.prompt.strip()
    bg = (plan.background or "").strip()
    if bg and bg.lower() not in text.lower():
        text = f"{text}, {bg}"
    return text, (plan.negative_prompt or "").strip()


def encoded_plan(plan: ScenePlan, encode: str | None = "prompt") -> ScenePlan:
    """The plan as the text encoder and the guidance see it. "prompt" (or None): as it is. "objects": its
    prompt is every object's phrase joined as a caption ("a blue star, a blue star and a red circle") and
    every object is its own group, so each instance has its own name token and box - for a model trained
    on captions that name each thing once without saying where (position words are noise to it, counts
    it never read; the boxes say where)."""
    if encode in (None, "prompt"):
        return plan
    objects = [o.model_copy(update={"group": o.id}) for o in plan.objects]
    return plan.model_copy(update={"prompt": object_caption(plan), "objects": objects})


def object_caption(plan: ScenePlan) -> str:
    """"a red circle, a blue square and a green star": every object's phrase, in plan order."""
    phrases = [(o.phrase or o.name).strip() for o in plan.objects]
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


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
    order: list[int] = field(default_factory=list)  # object indices back to front (label maps paint in this order)

    @property
    def guided(self) -> list[int]:
        return [k for k, t in enumerate(self.tokens) if t]


def build_layout(plan: ScenePlan, tokenizer, text: str, max_length: int, *,
                 token_map=None) -> tuple[Layout, list[str]]:
    """Token positions of every group via tokenizer offsets (``plan_and_render.renderer.tokens``), plus boxes.
    ``token_map``: positions already found (a ``tokens.JointTokens`` of a joint transformer's text axis)."""
    from .tokens import group_key, plan_groups, plan_tokens

    tm = token_map if token_map is not None else plan_tokens(tokenizer, plan, text, max_length)
    keys = list(plan_groups(plan.objects))
    group_of = [keys.index(group_key(o)) for o in plan.objects]
    tokens = [list(tm.groups.get(group_key(o), [])) for o in plan.objects]
    groups = [(list(tm.groups.get(g, [])), [k for k, gi in enumerate(group_of) if gi == j]) for j, g in enumerate(keys)]
    # paint order of label maps (back to front): background objects, then the rest, then foreground
    # ones; within each, larger boxes first, so a smaller object lying on a larger one keeps its pixels
    depth = {"background": 0, None: 1, "foreground": 2}

    def area(b) -> float:
        return (b[2] - b[0]) * (b[3] - b[1])

    order = sorted(range(len(plan.objects)),
                   key=lambda k: (depth.get(plan.objects[k].depth, 1), -area(plan.objects[k].box)))
    lay = Layout(tm.text, [o.id for o in plan.objects], tokens, [tuple(o.box) for o in plan.objects], group_of,
                 groups, tm.n_tokens, order)
    return lay, list(tm.warnings)


# ---------------------------------------------------------------------------
# the guider
# ---------------------------------------------------------------------------

class Guider:
    """Runs the chosen methods for one render and keeps what they share.

    ``methods`` are names (as ``parse_method`` returns them); ``overrides`` per-method options.
    ``steps`` is the number of iterations of the sampling loop (``len(scheduler.timesteps)``).
    ``early_stop=False`` switches off the methods' stopping tests, so every scheduled iteration runs
    (benchmarks time that worst case). ``scheduler`` is read (its noise level per step) when a method
    asks for ``abar``. ``image_hw``: the image in pixels (label maps); ``embed_words(words)`` gives
    (1, M, D) text-encoder states of single words (ZestGuide's negative classes). ``attention``: the
    model's layers and processors (default ``attention.UNetAttention(unet)``; joint transformers give
    ``joint_attention.JointAttention``); ``cfg=False``: the model samples without a classifier-free
    guidance pass (FLUX), so the conditional rows are the whole batch. ``box_cells``: how the boxes
    become map cells (``masks.box_cells``; the setting of that name).

    Every latent the methods see and return is the DDIM-scaled one, x = sqrt(abar) x0 +
    sqrt(1 - abar) eps, which is the UNet's input: the pipelines map the scheduler's own latent
    to it and back (``plan_and_render.renderer.schedulers``), so a step has the same effect under
    every scheduler.
    """

    def __init__(self, methods: list[str], unet, layout: Layout, steps: int, latent_hw: tuple[int, int],
                 batch: int, overrides: dict | None = None, n_ctx: int = 77, *, scheduler=None,
                 early_stop: bool = True, image_hw: tuple[int, int] | None = None, embed_words=None,
                 attention=None, cfg: bool = True, box_cells: str = "truncate") -> None:
        overrides = overrides or {}
        self.unet, self.layout, self.steps, self.batch = unet, layout, steps, batch
        self.latent_hw, self.n_ctx, self.scheduler, self.early_stop = latent_hw, n_ctx, scheduler, early_stop
        self.embed_words, self.cfg = embed_words, cfg
        self.attention = attention or A.UNetAttention(unet)
        self.state = self.attention.new_state()
        self.state.latent_hw = latent_hw
        self.layers = self.attention.layers
        self.grid = A.downsampled(latent_hw, self.attention.level)
        self.masks = MaskSet(layout.boxes, layout.group_of, self.grid, layout.ids,
                             image_hw=image_hw or (8 * latent_hw[0], 8 * latent_hw[1]), order=layout.order or None,
                             rounding=box_cells)
        self.warnings: list[str] = list(self.masks.warnings)
        self.active = bool(layout.guided)
        if methods and not self.active:
            self.warnings.append("the plan has no objects; guidance disabled" if not layout.ids else
                                 "no object phrase could be located in the prompt; guidance disabled")
        self.last_loss: dict[str, float] = {}  # written by ``descend`` and the methods
        # extra UNet work beyond plain CFG sampling: conditional forwards (each stops after the last
        # captured layer) and backwards to the latent; the cost model of the spec's table
        self.passes = {"forward": 0, "backward": 0}
        self._abars: list[float] | None = None  # alpha_bar per step, read once (see abar)

        # the methods, in the order their hooks run; what their passes capture and mask
        self.by_name = {m: method_class(m)(config_for(m, overrides.get(m)), self) for m in methods}
        self.methods = sorted(self.by_name.values(), key=lambda m: m.order)
        self.caps_guide: dict[str, A.Capture] = {}
        for m in self.methods:
            self.caps_guide.update(m.guide_captures())
        cross_layout = set(self.select("cross_layout"))
        self.score_cap = A.Capture(cross_layout)
        in_cfg = [c for m in self.methods for c in m.cfg_captures().values()]
        capture = set().union(cross_layout, *(c.layers for c in [*self.caps_guide.values(), *in_cfg]))
        masked = set().union(*(m.masked_layers() for m in self.methods))
        self._saved = unet.attn_processors
        self.n_custom = self.attention.install(self.state, capture, masked)
        if self.active:
            for m in self.methods:
                m.setup(self.state)
        self._score_sum = torch.zeros(batch, len(layout.ids))  # per image, summed over the score window
        self._cn_iou_sum, self._score_n = 0.0, 0
        self.score_steps = self._score_window()

    def select(self, which: str) -> list[str]:
        """The names of a layer set the methods ask for ("cross_layout", "self_layout", "cross_zest",
        "cross_backward", "cross_all": ``attention.select_layers``) on this model."""
        return self.attention.select(which)

    def _score_window(self) -> set[int]:
        """Steps over which scores are averaged: the last 5 of the guided first half."""
        end = max(1, math.ceil(self.steps / 2))
        return set(range(max(0, end - 5), end))

    def abar(self, i: int) -> float:
        """alpha_bar at step i (``schedulers.alpha_bars``: from the scheduler's sigmas when it has
        them); read to the host once per render, not once per step."""
        if self._abars is None:
            self._abars = alpha_bars(self.scheduler)
        return self._abars[i]

    def config(self) -> dict:
        """Each chosen method's hyperparameters, in the order the render named them."""
        return {name: asdict(m.config) for name, m in self.by_name.items()}

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

    def guide_pass(self, x: torch.Tensor, t, cond_unet) -> dict:
        """The maps every chosen gradient method reads, from one conditional pass at (x, t)."""
        return self._pass(self.caps_guide, x, t, cond_unet)

    # -- gradient steps on the latent ---------------------------------------------
    def descend(self, name: str, loss_fn, x, t, cond_unet, scale: float, lr: float, max_iter: int,
                keep_going, *, test_first: bool = False) -> torch.Tensor:
        """The official loops: compute the loss at x, step x <- x - lr * grad(scale * loss), then test
        ``keep_going(loss, stat)`` on that loss (the one before the step); at most ``max_iter`` steps.
        So at least one step is taken - except with ``test_first`` (A&E's refinement, entered only
        when the loss is above its target), where the first test comes before the first step.
        ``loss_fn(maps)`` gives (loss summed over the images, stopping statistic); the test sees the
        loss per image and the statistic as floats (one device-to-host copy per iteration); the last
        loss per image is recorded under ``name``. x is the DDIM-scaled latent (the UNet's input)."""
        for k in range(max_iter):
            with torch.enable_grad():
                xg = x.detach().float().requires_grad_(True)
                loss, stat = loss_fn(self.guide_pass(xg.to(x.dtype), t, cond_unet))
                self.passes["forward"] += 1
                value, s = torch.stack([loss.detach(), stat.detach().float()]).tolist()
                self.last_loss[name] = value / self.batch
                go = not self.early_stop or keep_going(value / self.batch, s)
                if test_first and k == 0 and not go:
                    break
                (g,) = torch.autograd.grad(scale * loss, xg)
                self.passes["backward"] += 1
            x = (xg.detach() - lr * g).to(x.dtype)
            if not go:
                break
        return x

    def before_cfg(self, i: int, t, x: torch.Tensor, cond_unet) -> torch.Tensor:
        """Each method's gradient steps on the DDIM-scaled latent x at step i (its own schedule);
        returns x itself when no method moved it."""
        if not self.active:
            return x
        for m in self.methods:
            x = m.before_cfg(i, t, x, cond_unet)
        return x

    # -- the CFG pass: methods capture or mask, scores ------------------------------
    @contextlib.contextmanager
    def cfg_pass(self, i: int, latents: torch.Tensor):
        """Around the classifier-free guidance pass of step i. Yields None, or - when a method wants
        the gradient through the conditional half (ZestGuide) - an fp32 copy of the latent that
        tracks it; the conditional half must then run alone (see ``paused``)."""
        st = self.state
        score_now = i in self.score_steps
        st.captures = {"score": self.score_cap} if score_now else {}
        st.rca_on, with_grad = False, False
        if self.active:
            for m in self.methods:
                with_grad = m.cfg_pass(i, st) or with_grad
        st.clear()
        st.capturing = bool(st.captures)
        # batched CFG is [uncond, cond]; with a gradient the cond pass runs alone
        st.cond_rows = slice(None) if with_grad or not self.cfg else slice(self.batch, None)
        x = None
        try:
            if with_grad:
                with torch.enable_grad():
                    x = latents.detach().float().requires_grad_(True)
                    yield x
            else:
                yield None
        finally:
            st.capturing, st.rca_on = False, False
        if self.active:
            for m in self.methods:
                m.after_cfg(i, x)
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
        self._score_sum += torch.stack(shares).cpu()
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

    def after_step(self, i: int, latents: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Each method's correction after the scheduler step (ZestGuide's), made on the DDIM-scaled
        latent of the next step, ``scale`` * the scheduler's ``latents``; returns the scheduler's latent."""
        x = (latents.float() * scale).to(latents.dtype)
        moved = x
        for m in self.methods:
            moved = m.after_step(i, moved)
        if moved is x:
            return latents
        return (moved.float() / scale).to(latents.dtype)

    def step_options(self, i: int) -> dict:
        """Keyword arguments the methods ask of the scheduler's step at step i (ZestGuide's DDIM eta)."""
        out: dict = {}
        for m in self.methods:
            out.update(m.step_options(i))
        return out

    # -- what the render reports ---------------------------------------------------
    def scores(self) -> dict[str, float]:
        """Per guided object: mean over the score window (and the images) of its attention-in-box share."""
        n = max(1, self._score_n)
        mean = self._score_sum.mean(0)
        return {self.layout.ids[k]: float(mean[k]) / n for k in self.layout.guided}

    def image_scores(self) -> list[dict[str, float]]:
        """``scores`` of each image of the batch on its own."""
        n = max(1, self._score_n)
        return [{self.layout.ids[k]: float(row[k]) / n for k in self.layout.guided} for row in self._score_sum]

    def losses(self) -> dict[str, float]:
        """Last loss of each method (per image, scale 1) and ``cn_iou``: L_CN + L_IoU over the score window."""
        out = dict(self.last_loss)
        for m in self.methods:
            out.update(m.report())
        if self._score_n and self.layout.guided:
            out["cn_iou"] = self._cn_iou_sum / self._score_n
        return out

    # -- measurement (tests, sweeps): every loss from one conditional pass ------------
    def measure(self, latents: torch.Tensor, t, cond_unet) -> dict[str, float]:
        """Every method's loss (per image, scale 1; the render's config where it chose the method, else
        the defaults), in-box shares and their mean at (latents, t), from one unmasked conditional pass;
        nothing is changed."""
        every = [self.by_name.get(n) or method_class(n)(config_for(n), self)
                 for n in available_methods(include_none=False)]
        caps = {"cross": A.Capture(set(self.select("cross_layout")))}
        for m in every:
            caps.update({**m.guide_captures(), **m.cfg_captures()})
        saved = self.unet.attn_processors
        self.attention.install(self.state, set().union(*(c.layers for c in caps.values())), set())
        try:
            maps = self._pass(caps, latents, t, cond_unet)
        finally:
            self.unet.set_attn_processor(saved)
        out = {}
        for m in every:
            loss = m.loss(maps)
            if loss is not None:
                out[m.name] = float(loss[0]) / latents.shape[0]
        h, w = self.grid
        masks = self.masks.group_masks(h, w, latents.device).flatten(1)
        share = torch.stack([L.in_box_share(maps["cross"][b], self.layout.tokens, masks)
                             for b in range(latents.shape[0])]).mean(0)
        out.update({f"in_box:{self.layout.ids[k]}": float(share[k]) for k in self.layout.guided})
        out["in_box"] = float(share[self.layout.guided].mean()) if self.layout.guided else float("nan")
        return out
