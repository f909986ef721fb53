"""Parity with the published algorithms: each loss and one full update step of each method.

Every expected value here is computed inside the test from the formula as the official code writes
it - plain loops over objects, tokens and boxes, ``int()`` box edges, attention read by forward hooks
on the UNet's own attention modules - never by calling ``plan_and_render.renderer``'s functions,
which are what is checked. Where each formula comes from: docs/guidance.md.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from plan_and_render.renderer import guidance
from plan_and_render.renderer import losses as L
from plan_and_render.renderer.masks import MaskSet

pytestmark = pytest.mark.usefixtures("torch_one_thread")

STEPS = 50


def close(a, b, tol=1e-5) -> bool:
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


# ---------------------------------------------------------------------------
# the formulas, written out
# ---------------------------------------------------------------------------

def kernel_1d(sigma=0.5):
    """Attend-and-Excite / Attention Refocusing ``GaussianSmoothing``: exp(-((x - mu) / (2 sigma))^2), normalised."""
    w = [math.exp(-(((x - 1) / (2 * sigma)) ** 2)) for x in range(3)]
    return [v / sum(w) for v in w]


def smooth(m):
    """3x3 smoothing with reflect padding, pixel by pixel."""
    h, w = m.shape
    k = kernel_1d()

    def at(i, j):
        i = -i if i < 0 else 2 * (h - 1) - i if i >= h else i
        j = -j if j < 0 else 2 * (w - 1) - j if j >= w else j
        return m[i, j]

    rows = []
    for i in range(h):
        rows.append(torch.stack([sum(k[a] * k[b] * at(i + a - 1, j + b - 1) for a in range(3) for b in range(3))
                                 for j in range(w)]))
    return torch.stack(rows)


def token_map(A, token, h, w, temperature=100.0):
    """``softmax(100 * A[..., 1:-1])``, the token's column (position - 1), smoothed. A: (N, T)."""
    inner = torch.softmax(temperature * A[:, 1:-1], dim=-1)
    return smooth(inner[:, token - 1].reshape(h, w))


def cells(box, h, w):
    x0, y0, x1, y1 = box
    return int(y0 * h), int(y1 * h), int(x0 * w), int(x1 * w)


def car(maps, objects, early):
    """Attention Refocusing ``caculate_loss_att_fixed_cnt``: objects = [(tokens, boxes)], maps[token] (h, w)."""
    total, min_in = 0.0, 1000.0
    for oi, (tokens, boxes) in enumerate(objects):
        for tok in tokens:
            a = maps[tok]
            h, w = a.shape
            other, rest = a.clone(), a.clone()
            for box in boxes:
                r0, r1, c0, c1 = cells(box, h, w)
                m_in = a[r0:r1, c0:c1].max()
                if m_in < 0.1:
                    total = total + 6 * (1 - m_in)
                elif m_in < 0.2 or early:
                    total = total + (1 - m_in)
                min_in = min(min_in, float(m_in))
                other[r0:r1, c0:c1] = 0
                rest[r0:r1, c0:c1] = 0
            for oj, (_, their_boxes) in enumerate(objects):
                if oj == oi:
                    continue
                for box in their_boxes:
                    r0, r1, c0, c1 = cells(box, h, w)
                    m_out = other[r0:r1, c0:c1].max()
                    rest[r0:r1, c0:c1] = 0
                    if m_out > 0.15:
                        total = total + 4 * m_out
                    elif m_out > 0.1 or early:
                        total = total + m_out
            total = total + len(boxes) * rest.max() / 2
    return total / len(objects), min_in


def sar(attn, objects, h, w):
    """``loss_one_att_outside`` for one layer: attn (heads, N, N)."""
    total = 0.0
    for _, boxes in objects:
        for box in boxes:
            r0, r1, c0, c1 = cells(box, h, w)
            mask = torch.zeros(h, w)
            mask[r0:r1, c0:c1] = 1
            inside = [r * w + c for r in range(r0, r1) for c in range(c0, c1)]
            row = attn[:, inside, :].sum(1) / len(inside)  # (heads, N)
            total = total + (row * (1 - mask).flatten()).sum(-1).mean()
    return total / len(objects)


def l_cn(maps, tokens):
    return max(torch.clamp(1 - maps[t].max(), min=0) for t in tokens)


def l_iou(maps, tokens):
    pairs = [(a, b) for i, a in enumerate(tokens) for b in tokens[i + 1:]]
    return sum(torch.minimum(maps[a], maps[b]).sum() / (maps[a] + maps[b]).sum() for a, b in pairs) / len(pairs)


def backward_loss(layers, objects):
    """layout-guidance ``compute_ca_loss``: layers = [(probs (heads, N, T), h, w)]."""
    total = 0.0
    for probs, h, w in layers:
        for tokens, boxes in objects:
            mask = torch.zeros(h, w)
            for box in boxes:
                r0, r1, c0, c1 = cells(box, h, w)
                mask[r0:r1, c0:c1] = 1
            obj = 0.0
            for tok in tokens:
                p = probs[:, :, tok]
                a = (p * mask.flatten()).sum(-1) / p.sum(-1)
                obj = obj + ((1 - a) ** 2).mean()
            total = total + obj / len(tokens)
    return total / (len(objects) * len(layers))


def zest_bce(S, G, gain=10.0, eps=1e-3):
    """ZestGuide ``bce_loss2``: S (K, N) summed token maps, G (K, N) targets."""
    A = gain * S
    An = A / (A.max(-1, keepdim=True).values + 1e-4)
    A = A * ((A > 0.01) | (G > 0.01)).float()
    An = An * ((An > 0.1) | (G > 0.1)).float()

    def bce(p, g):
        p, g = p.clamp(eps, 1 - eps), g.clamp(eps, 1 - eps)
        return -(g * torch.log(p) + (1 - g) * torch.log(1 - p)).mean()

    return sum(bce(A[k], G[k]) for k in range(len(S))) / len(S) + sum(bce(An[k], G[k]) for k in range(len(S))) / len(S)


# ---------------------------------------------------------------------------
# kernel and masks
# ---------------------------------------------------------------------------

def test_kernel_weights_are_the_official_ones():
    assert [round(v, 3) for v in kernel_1d()] == [0.212, 0.576, 0.212]
    got = L.gaussian_kernel()
    assert torch.allclose(got, torch.tensor(kernel_1d()), atol=1e-6)
    delta = torch.zeros(1, 5, 5)
    delta[0, 2, 2] = 1.0
    assert torch.allclose(L.gaussian_smooth(delta)[0], smooth(delta[0]), atol=1e-6)


def test_box_masks_truncate_both_edges_and_label_maps_resize_by_nearest_and_area():
    box = (0.1, 0.26, 0.49, 0.8)  # on 10 x 10: rows int(2.6)=2 .. int(8.0)=8, columns int(1.0)=1 .. int(4.9)=4
    ms = MaskSet([box], [0], grid=(10, 10), min_cells=0, image_hw=(8, 8))
    want = torch.zeros(10, 10)
    want[2:8, 1:4] = 1
    assert torch.equal(ms.masks(10, 10)[0], want)
    # label map at 8 x 8 pixels: rows int(2.08)=2 .. int(6.4)=6, columns int(0.8)=0 .. int(3.92)=3
    lab = torch.zeros(8, 8)
    lab[2:6, 0:3] = 1
    assert torch.equal((ms.label_map() == 0).float(), lab)
    # nearest to 4 x 4 reads pixels 0, 2, 4, 6 of each axis; area averages 2 x 2 blocks
    assert torch.equal(ms.label_masks(4, 4)[0], lab[::2, ::2])
    assert torch.allclose(ms.area_masks(4, 4)[0], lab.reshape(4, 2, 4, 2).mean((1, 3)))
    # overlapping boxes: the smaller one is painted last and owns the overlap
    two = MaskSet([(0.0, 0.0, 1.0, 1.0), (0.5, 0.5, 1.0, 1.0)], [0, 1], grid=(4, 4), min_cells=0,
                  image_hw=(4, 4), order=[0, 1])
    assert two.label_masks(4, 4)[0].sum() == 12 and two.label_masks(4, 4)[1].sum() == 4


# ---------------------------------------------------------------------------
# each loss on small fixed tensors
# ---------------------------------------------------------------------------

H = W = 6
T = 9  # start, 6 prompt tokens, end, padding
OBJECTS = [([2], [(0.0, 0.1, 0.5, 0.6)]), ([4, 5], [(0.5, 0.2, 0.99, 0.7), (0.1, 0.7, 0.4, 1.0)])]


@pytest.fixture(scope="module")
def cross():
    g = torch.Generator().manual_seed(0)
    return torch.softmax(3 * torch.randn(H * W, T, generator=g), dim=-1)


def _masks_and_groups():
    boxes = [b for _, bs in OBJECTS for b in bs]
    group_of = [0, 1, 1]
    ms = MaskSet(boxes, group_of, grid=(H, W), min_cells=0)
    groups = [(OBJECTS[0][0], [0]), (OBJECTS[1][0], [1, 2])]
    return ms, groups


@pytest.mark.parametrize("early", [True, False])
def test_car_matches_the_official_loops(cross, early):
    ms, groups = _masks_and_groups()
    maps = {t: token_map(cross, t, H, W) for t in range(1, T - 1)}
    want, want_min = car(maps, OBJECTS, early)
    got, got_min = L.car_loss(L.token_maps(cross, 8, H, W), groups, ms.masks(H, W), early)
    assert close(got, want) and close(got_min, want_min)


def test_sar_matches_the_official_loops():
    g = torch.Generator().manual_seed(1)
    attn = torch.softmax(torch.randn(3, H * W, H * W, generator=g), dim=-1)  # 3 heads
    ms, _ = _masks_and_groups()
    got = L.sar_loss(attn.mean(0), ms.masks(H, W), n_objects=len(OBJECTS))
    assert close(got, sar(attn, OBJECTS, H, W))


def test_l_cn_and_l_iou_match_the_formulas(cross):
    maps = {t: token_map(cross, t, H, W) for t in range(1, T - 1)}
    tm = L.token_maps(cross, 8, H, W)
    assert close(L.excite_loss(tm, [2, 4, 5]), l_cn(maps, [2, 4, 5]))
    assert close(L.iou_loss(tm, [[2], [4], [5]]), l_iou(maps, [2, 4, 5]))


def test_backward_loss_matches_compute_ca_loss():
    g = torch.Generator().manual_seed(2)
    layers = [(torch.softmax(torch.randn(2, n * n, T, generator=g), -1), n, n) for n in (3, 6, 6)]
    ms, groups = _masks_and_groups()
    per_layer = [(p, ms.group_masks(h, w)[[0, 1]].flatten(1)) for p, h, w in layers]
    assert close(L.backward_loss(per_layer, [OBJECTS[0][0], OBJECTS[1][0]]), backward_loss(layers, OBJECTS))


def test_zest_bce_matches_bce_loss2():
    g = torch.Generator().manual_seed(3)
    z = torch.softmax(4 * torch.randn(64, T, generator=g), dim=-1)  # 8 x 8 maps
    ms, _ = _masks_and_groups()
    targets = ms.area_masks(8, 8)[[0, 1]].flatten(1)
    S = torch.stack([z[:, OBJECTS[0][0]].sum(-1), z[:, OBJECTS[1][0]].sum(-1)])
    got = L.zest_loss(z, [OBJECTS[0][0], OBJECTS[1][0]], targets)
    assert close(got, zest_bce(S, targets))


# ---------------------------------------------------------------------------
# one full update step of each method, through the real Guider on the tiny UNet
# ---------------------------------------------------------------------------

LAYOUT16 = ["down_blocks.1.attentions.0.transformer_blocks.0", "up_blocks.1.attentions.0.transformer_blocks.0",
            "up_blocks.1.attentions.1.transformer_blocks.0"]  # the tiny UNet's 16 x 16 (layout-level) blocks
UP32 = ["up_blocks.2.attentions.0.transformer_blocks.0", "up_blocks.2.attentions.1.transformer_blocks.0"]
MID = ["mid_block.attentions.0.transformer_blocks.0"]


class Probe:
    """Forward pre-hooks on attention modules that keep (heads, N, T) probabilities or scores of the
    batch's first image, with their graph - the official code's attention store, independently of
    the renderer's processors."""

    def __init__(self, unet, names, logits=False):
        self.items, self.handles = [], []
        for name in names:
            mod = unet.get_submodule(name)
            self.handles.append(mod.register_forward_pre_hook(self._hook(logits), with_kwargs=True))

    def _hook(self, logits):
        def hook(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            ctx = kwargs.get("encoder_hidden_states")
            ctx = x if ctx is None else ctx
            q, k = mod.to_q(x[:1]), mod.to_k(ctx[:1])
            heads = mod.heads
            q = q.view(q.shape[1], heads, -1).transpose(0, 1)
            k = k.view(k.shape[1], heads, -1).transpose(0, 1)
            s = q @ k.transpose(-1, -2) * mod.scale
            self.items.append(s if logits else s.softmax(-1))
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def _setup(pipe, plan, methods, options):
    text, neg = guidance.compose_prompt(plan)
    layout, _ = guidance.build_layout(plan, pipe.tokenizer, text, 77)
    cond = pipe.encode_text(layout.text, neg)[0]
    sched = pipe.make_scheduler("ddim")
    sched.set_timesteps(STEPS)

    def run(x, t):
        return pipe.unet(x, t, encoder_hidden_states=cond).sample

    g = guidance.Guider(methods, pipe.unet, layout, STEPS, (32, 32), 1, options, scheduler=sched,
                        image_hw=(64, 64))
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(5))
    return g, run, sched, layout, x


def _reference_grad(pipe, run, x, t, names, loss_of, logits=False):
    probe = Probe(pipe.unet, names, logits)
    try:
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            run(xg, t)
            loss = loss_of(probe.items)
            (grad,) = torch.autograd.grad(loss, xg)
    finally:
        probe.close()
    return grad, loss


def _objects(plan, layout):
    return [(tokens, [plan.objects[k].box for k in members]) for tokens, members in layout.groups]


def _mean_map(items):
    return torch.cat(items).mean(0)  # over layers and heads: (N, T)


def test_one_refocus_step(tiny_pipe, two_plan):
    opts = {"refocus": {"loss_scale": 40.0, "loss_threshold": 1e9}}  # one step, then the test stops it
    g, run, sched, layout, x = _setup(tiny_pipe, two_plan, ["refocus"], opts)
    t = sched.timesteps[0]
    objects = _objects(two_plan, layout)
    try:
        got = g.before_cfg(0, t, x, run)
    finally:
        g.close()
    cross = Probe(tiny_pipe.unet, [n + ".attn2" for n in LAYOUT16])
    selfs = Probe(tiny_pipe.unet, [n + ".attn1" for n in LAYOUT16])
    try:
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            run(xg, t)
            A = _mean_map(cross.items)
            maps = {tok: token_map(A, tok, 16, 16) for tokens, _ in objects for tok in tokens}
            car_value, _ = car(maps, objects, early=True)
            sar_value = sum(sar(a, objects, 16, 16) for a in selfs.items) / len(selfs.items)
            s = 40.0 * 4 / 4  # step 0: the published s = 4, times loss_scale / 4
            (grad,) = torch.autograd.grad(s * car_value + s * sar_value, xg)
    finally:
        cross.close()
        selfs.close()
    want = x - grad
    assert (want - x).abs().max() > 1e-6
    assert torch.allclose(got, want, atol=1e-5 * float((want - x).abs().max()) + 1e-7)
    assert g.passes == {"forward": 1, "backward": 1}


def test_one_excite_step(tiny_pipe, two_plan):
    g, run, sched, layout, x = _setup(tiny_pipe, two_plan, ["excite"], {})
    i, t = 1, sched.timesteps[1]  # step 1: the per-step update alone (no threshold refinement)
    tokens = sorted({tok for ts in layout.tokens for tok in ts})
    try:
        got = g.before_cfg(i, t, x, run)
    finally:
        g.close()
    grad, _ = _reference_grad(tiny_pipe, run, x, t, [n + ".attn2" for n in LAYOUT16],
                              lambda items: l_cn({tok: token_map(_mean_map(items), tok, 16, 16) for tok in tokens}, tokens))
    alpha = 20 * math.sqrt(1 - 0.5 * i / (STEPS - 1))  # 20 * sqrt(linspace(1, 0.5, 50)[1])
    want = x - alpha * grad
    assert (want - x).abs().max() > 1e-6
    assert torch.allclose(got, want, atol=1e-5 * float((want - x).abs().max()) + 1e-7)


def test_one_step_selection_adam_step(tiny_pipe, two_plan):
    opts = {"excite": {"refine_step": 8, "per_step": False, "refine_iters": 1, "refine_lr": 0.01}}
    g, run, sched, layout, x = _setup(tiny_pipe, two_plan, ["excite"], opts)
    i, t = 8, sched.timesteps[8]
    subjects = sorted({tok for ts in layout.tokens for tok in ts})
    groups = [tokens[0] for tokens, _ in layout.groups]
    try:
        got = g.before_cfg(i, t, x, run)
    finally:
        g.close()

    def loss(items):
        maps = {tok: token_map(_mean_map(items), tok, 16, 16) for tok in subjects}
        return (l_cn(maps, subjects) + l_iou(maps, groups)) / 2

    grad, _ = _reference_grad(tiny_pipe, run, x, t, [n + ".attn2" for n in LAYOUT16], loss)
    # Adam's first step with bias correction: lr * g / (|g| + eps), eps = 1e-3 (gsn-factory)
    want = x - 0.01 * grad / (grad.abs() + 1e-3)
    assert torch.allclose(got, want, atol=1e-6)
    torch_default = x - 0.01 * grad / (grad.abs() + 1e-8)
    assert not torch.allclose(got, torch_default, atol=1e-6)  # the eps matters at these gradients


def test_one_backward_step(tiny_pipe, two_plan):
    opts = {"backward": {"loss_threshold": 1e9}}  # one step, then off for good
    g, run, sched, layout, x = _setup(tiny_pipe, two_plan, ["backward"], opts)
    t = sched.timesteps[0]
    objects = _objects(two_plan, layout)
    try:
        got = g.before_cfg(0, t, x, run)
        again = g.before_cfg(1, sched.timesteps[1], got, run)
    finally:
        g.close()
    names = [n + ".attn2" for n in MID + LAYOUT16[1:]]  # mid 8 x 8 and the up 16 x 16 layers

    def loss(items):
        grids = [int(math.isqrt(p.shape[1])) for p in items]
        return 30 * backward_loss([(p, n, n) for p, n in zip(items, grids)], objects)

    grad, _ = _reference_grad(tiny_pipe, run, x, t, names, loss)
    abar = float(sched.alphas_cumprod[int(t)])
    want = x - (1 - abar) * grad  # sigma^2 * grad on LMS latents = (1 - abar) * grad on DDIM ones
    assert (want - x).abs().max() > 1e-6
    assert torch.allclose(got, want, atol=1e-5 * float((want - x).abs().max()) + 1e-7)
    assert again is got  # the loss reached the threshold: no later step is guided


def test_one_zest_step(tiny_pipe, two_plan):
    T77 = 77  # the text encoder's length: every token joins ZestGuide's softmax
    g, run, sched, layout, x = _setup(tiny_pipe, two_plan, ["zest"], {})
    i, t = 0, sched.timesteps[0]
    objects = _objects(two_plan, layout)
    try:
        with g.cfg_pass(i, x) as xg:
            run(xg, t)
        x_next = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(6))
        got = g.after_step(i, x_next, torch.ones(1, 1, 1, 1))
        options = g.step_options(i)
    finally:
        g.close()
    # targets: the label map at 64 x 64 pixels, area-resized to 32 x 32 (2 x 2 means)
    G = []
    for _, boxes in objects:
        m = torch.zeros(64, 64)
        for box in boxes:
            r0, r1, c0, c1 = cells(box, 64, 64)
            m[r0:r1, c0:c1] = 1
        G.append(m.reshape(32, 2, 32, 2).mean((1, 3)).flatten())
    G = torch.stack(G)

    def loss(items):
        # per layer: scores (heads, N, T) -> (heads, T, h, w) resized to 32 x 32, softmax over tokens
        maps = []
        for s in items:
            n = int(math.isqrt(s.shape[1]))
            s = s.permute(0, 2, 1).reshape(s.shape[0], T77, n, n)
            if n != 32:
                s = F.interpolate(s, size=(32, 32), mode="bilinear", align_corners=False)
            maps.append(s.softmax(1))
        A = torch.cat(maps).mean(0).flatten(1)  # (T, 1024), mean over layers and heads
        S = torch.stack([A[tokens].sum(0) for tokens, _ in objects])
        return zest_bce(S, G)

    grad, _ = _reference_grad(tiny_pipe, run, x, t, [n + ".attn2" for n in LAYOUT16 + UP32], loss, logits=True)
    abar = float(sched.alphas_cumprod[int(t)])
    want = x_next - 0.3 * math.sqrt(1 - abar) * grad / (grad.abs().max() + 1e-6)
    assert torch.allclose(got, want, atol=1e-5)
    assert options == {"eta": 0.5}  # the official run samples its guided steps with DDIM eta 0.5
