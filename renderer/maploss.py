"""Attention-map losses and method hyperparameters used by ``renderer.guidance``.

Pure functions of attention tensors and masks (fp32). They follow
shared/spec/guidance.md. The shared contract modules ``renderer.losses``,
``renderer.tokens`` and ``renderer.methods_config`` (another helper's) are
preferred where present; this module is the renderer's working set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


# ---------------------------------------------------------------------------
# hyperparameters: one dataclass per method (published defaults; see notes)
# ---------------------------------------------------------------------------

@dataclass
class RefocusConfig:
    loss_scale: float = 40.0  # paper's s=4 on GLIGEN; the authors advise ~40 on plain SD (x10 on all s)
    temperature: float = 100.0
    smooth: bool = True


@dataclass
class ZestConfig:
    tau: float = 0.5  # guide the first half of the steps
    eta: float = 0.3  # x -= eta * sqrt(1 - abar) * grad / max|grad|
    gain: float = 10.0


@dataclass
class ExciteConfig:
    scale_factor: float = 20.0
    max_step: int = 25
    thresholds: tuple = ((0, 0.05), (10, 0.5), (20, 0.8))
    max_refine: int = 20
    temperature: float = 100.0
    smooth: bool = True


@dataclass
class RCAConfig:
    all_steps: bool = True


@dataclass
class BackwardConfig:
    loss_scale: float = 30.0
    max_step: int = 10
    max_iter: int = 5
    loss_below: float = 0.2  # iterate while L > this
    lr_scale: float = 1.0  # step = lr_scale * sigma_t^2 in DDIM units (1 - abar)
    temperature: float = 100.0
    smooth: bool = False


CONFIGS = {"refocus": RefocusConfig, "zest": ZestConfig, "excite": ExciteConfig, "rca": RCAConfig,
           "backward": BackwardConfig}


def config_for(method: str):
    try:
        from . import methods_config  # the shared module, when present

        return methods_config.config_for(method)
    except (ImportError, AttributeError, TypeError):
        return CONFIGS[method]()


# ---------------------------------------------------------------------------
# token positions (offset based)
# ---------------------------------------------------------------------------

def object_token_positions(tokenizer, text: str, objects, max_length: int) -> tuple[list[list[int]], list[str]]:
    """Token positions of each object's phrase (its name words) in ``text``, via character offsets.

    Instances of one group share their tokens; different groups with the same
    phrase take successive occurrences. Tokens cut by truncation are dropped
    with a warning; an object whose tokens are all cut falls back to none.
    """
    try:
        from . import tokens  # the shared module, when present

        return tokens.object_token_positions(tokenizer, text, objects, max_length=max_length)
    except (ImportError, AttributeError, TypeError):
        pass
    enc = tokenizer(text, return_offsets_mapping=True, truncation=False)
    offsets = enc["offset_mapping"]
    low = text.lower()
    warnings, out, group_pos, used_from = [], [], {}, 0
    taken: set[int] = set()
    for o in objects:
        key = o.group or o.name
        if key in group_pos:
            out.append(group_pos[key])
            continue
        pos: list[int] = []
        name = o.name.lower()
        start = 0
        while True:
            j = low.find(name, start)
            if j < 0:
                break
            end = j + len(name)
            while end < len(low) and low[end].isalnum():  # plural or other tail of the same word
                end += 1
            toks = [k for k, (a, b) in enumerate(offsets) if b > a and j <= a < end]
            if toks and not set(toks) & taken:
                # include a plural tail ("apples") that shares the token run
                pos = toks
                break
            start = j + 1
        taken |= set(pos)
        kept = [p for p in pos if p < max_length - 1]
        if pos and not kept:
            warnings.append(f"object {o.id!r}: its words fall past the text encoder's {max_length} tokens; not guided")
        elif len(kept) < len(pos):
            warnings.append(f"object {o.id!r}: some of its tokens were truncated")
        elif not pos:
            warnings.append(f"object {o.id!r}: '{o.name}' not found in the prompt text; not guided")
        group_pos[key] = kept
        out.append(kept)
    return out, warnings


# ---------------------------------------------------------------------------
# map post-processing
# ---------------------------------------------------------------------------

def gaussian_smooth(maps: torch.Tensor, sigma: float = 0.5, k: int = 3) -> torch.Tensor:
    """(K, h, w) -> same, 3x3 Gaussian with reflect padding."""
    x = torch.arange(k, dtype=maps.dtype, device=maps.device) - (k - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    ker = (g[:, None] * g[None, :])[None, None]
    y = F.pad(maps[:, None], (1, 1, 1, 1), mode="reflect")
    return F.conv2d(y, ker)[:, 0]


def token_maps(cross: torch.Tensor, n_tokens: int, h: int, w: int, cfg) -> torch.Tensor:
    """(N, T) cross-attention -> (T, h, w): content tokens re-softmaxed with temperature, smoothed.

    Start, end and padding tokens are zeroed so positions keep their meaning.
    """
    c = cross.float()
    inner = torch.softmax(getattr(cfg, "temperature", 100.0) * c[:, 1:n_tokens - 1], dim=-1)
    maps = inner.T.reshape(-1, h, w)
    if getattr(cfg, "smooth", True) and h > 2 and w > 2:
        maps = gaussian_smooth(maps)
    out = torch.zeros(c.shape[1], h, w, device=c.device)
    out[1:n_tokens - 1] = maps
    return out


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------

def car_loss(maps: torch.Tensor, tokens: list[list[int]], masks: list[torch.Tensor], i50: int, cfg=None):
    """Cross-attention refocusing: (loss / 4 units, min over objects of max-in-box)."""
    groups: dict[tuple, list[int]] = {}
    for k, t in enumerate(tokens):
        if t:
            groups.setdefault(tuple(t), []).append(k)
    loss, min_in, n = maps.new_zeros(()), 1.0, 0
    all_boxes = torch.stack(masks).amax(0)
    for tok, members in groups.items():
        own = torch.stack([masks[k] for k in members]).amax(0)
        others = [masks[k] for k in range(len(masks)) if k not in members and tokens[k]]
        for t in tok:
            a = maps[t]
            for k in members:
                m_in = (a * masks[k]).amax()
                v = float(m_in.detach())
                min_in = min(min_in, v)
                if v < 0.1:
                    loss = loss + 6 * (1 - m_in)
                elif v < 0.2:
                    loss = loss + (1 - m_in)
                elif i50 < 15:
                    loss = loss + (1 - m_in)
            for om in others:
                m_out = (a * om * (1 - own)).amax()
                v = float(m_out.detach())
                if v > 0.15:
                    loss = loss + 4 * m_out
                elif v > 0.1 or i50 < 15:
                    loss = loss + m_out
            loss = loss + len(members) * (a * (1 - all_boxes)).amax() / 2
        n += 1
    return loss / max(n, 1), min_in


def sar_loss(self_attn: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Self-attention refocusing: attention from in-box queries to out-of-box keys, mean over boxes."""
    s = self_attn.float()
    vals = []
    for m in masks:
        f = m.flatten().to(s.device)
        if f.sum() == 0:
            continue
        row = (f @ s) / f.sum()
        vals.append((row * (1 - f)).sum())
    return torch.stack(vals).mean() if vals else s.new_zeros(())


def excite_loss(maps: torch.Tensor, tokens: list[list[int]]) -> torch.Tensor:
    """Attend-and-Excite L_CN: max over subject tokens of 1 - max pixel attention."""
    subj = sorted({t for ts in tokens for t in ts})
    if not subj:
        return maps.new_zeros(())
    return torch.stack([(1 - maps[t].amax()).clamp_min(0) for t in subj]).amax()


def iou_loss(maps: torch.Tensor, tokens: list[list[int]]) -> torch.Tensor:
    """Mean over subject pairs of sum(min(A_i, A_j)) / sum(A_i + A_j)."""
    subj = sorted({t for ts in tokens for t in ts})
    vals = [torch.minimum(maps[a], maps[b]).sum() / (maps[a] + maps[b]).sum().clamp_min(1e-8)
            for i, a in enumerate(subj) for b in subj[i + 1:]]
    return torch.stack(vals).mean() if vals else maps.new_zeros(())


def _mask(box, h, w, device):
    x0, y0, x1, y1 = box
    m = torch.zeros(h, w, device=device)
    m[math.floor(y0 * h):max(math.ceil(y1 * h), math.floor(y0 * h) + 1),
      math.floor(x0 * w):max(math.ceil(x1 * w), math.floor(x0 * w) + 1)] = 1
    return m.flatten()


def backward_loss(per_layer: list, tokens: list[list[int]], boxes: list) -> torch.Tensor:
    """Chen et al.: mean over heads, layers and objects of (1 - in-box share)^2 (no re-softmax)."""
    vals = []
    for probs, h, w in per_layer:  # probs (heads, N, T)
        p = probs.float()
        for toks, box in zip(tokens, boxes):
            if not toks:
                continue
            m = _mask(box, h, w, p.device)
            a = p[:, :, toks]  # heads, N, k
            share = (a * m[None, :, None]).sum(1) / a.sum(1).clamp_min(1e-12)  # heads, k
            vals.append(((1 - share) ** 2).mean())
    return torch.stack(vals).mean() if vals else torch.zeros(())


def zest_loss(zmap: torch.Tensor, tokens: list[list[int]], boxes: list, gain: float = 10.0) -> torch.Tensor:
    """ZestGuide: BCE of summed token maps (32x32) vs box masks, raw and max-normalised, gated."""
    preds, targets = [], []
    for toks, box in zip(tokens, boxes):
        if toks:
            preds.append(zmap[:, toks].float().sum(-1))
            targets.append(_mask(box, 32, 32, zmap.device))
    if not preds:
        return zmap.new_zeros(())
    a = gain * torch.stack(preds)
    s = torch.stack(targets)
    an = a / (a.amax(-1, keepdim=True) + 1e-4)

    def bce(p, gate):
        p = p.clamp(1e-6, 1 - 1e-6)
        keep = ~((p <= gate) & (s <= gate))
        v = -(s * p.log() + (1 - s) * (1 - p).log())
        return (v * keep).sum(-1) / keep.sum(-1).clamp_min(1)

    return bce(a, 0.01).mean() + bce(an, 0.1).mean()
