"""Attention-map losses of the guidance methods: pure functions of tensors and masks.

Everything here takes attention maps that the capture already averaged over
heads (and layers where the method does), masks at the maps' resolution, and
token positions; it returns a scalar tensor that keeps the graph to the maps.
No host synchronisation: piecewise weights that depend on map values are
chosen with ``torch.where`` on detached values, so a guidance iteration needs
one device-to-host copy (the guider's stopping test), not one per token.
Index lists become device tensors through a small cache (``_ix``), so a guidance
iteration does not copy indices to the GPU either (a list index on a CUDA tensor is
a synchronous host-to-device copy). Maths is fp32 whatever the maps' dtype.
Formulas: shared/spec/guidance.md.

Shapes used below: ``T`` tokens of the encoded prompt (start token = 0),
``K`` objects (instances), ``h x w`` map cells, ``N = h * w``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

Groups = Sequence[tuple[Sequence[int], Sequence[int]]]  # per group: (token positions, object indices)


@lru_cache(maxsize=512)
def _on_device(values: tuple, dtype: torch.dtype, device: str) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def _ix(values: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a long tensor on ``like``'s device, made once per (values, device)."""
    return _on_device(tuple(int(v) for v in values), torch.long, str(like.device))


# ---------------------------------------------------------------------------
# map post-processing (Attend-and-Excite convention)
# ---------------------------------------------------------------------------

def gaussian_smooth(maps: torch.Tensor, sigma: float = 0.5, k: int = 3) -> torch.Tensor:
    """(M, h, w) -> (M, h, w): a k x k Gaussian with reflect padding (needs h, w > k // 2)."""
    x = torch.arange(k, dtype=maps.dtype, device=maps.device) - (k - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]
    p = k // 2
    return F.conv2d(F.pad(maps[:, None], (p, p, p, p), mode="reflect"), kernel)[:, 0]


def token_maps(cross: torch.Tensor, n_tokens: int, h: int, w: int, temperature: float = 100.0,
               smooth: bool = True) -> torch.Tensor:
    """(N, T) cross-attention -> (T, h, w) maps of the content tokens.

    Drops the start token, the end token and padding (positions >= ``n_tokens - 1``),
    re-softmaxes the rest over tokens at ``temperature`` and smooths each map. The
    dropped positions are zero, so token positions keep indexing the first axis.
    """
    c = cross.float()
    inner = torch.softmax(temperature * c[:, 1:n_tokens - 1], dim=-1)
    maps = inner.T.reshape(-1, h, w)
    if smooth and h > 1 and w > 1:
        maps = gaussian_smooth(maps)
    return F.pad(maps, (0, 0, 0, 0, 1, c.shape[1] - n_tokens + 1))


# ---------------------------------------------------------------------------
# Attention Refocusing
# ---------------------------------------------------------------------------

def car_loss(maps: torch.Tensor, groups: Groups, masks: torch.Tensor, early: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention refocusing at s = 1; returns (loss, min over objects of the in-box maximum).

    maps (T, h, w) from ``token_maps``; masks (K, h, w) binary, one per object; groups: per
    group of instances (they share tokens) its token positions and object indices. For each
    token of a group and each of the group's boxes: 6(1 - m_in) if m_in < 0.1, (1 - m_in) if
    < 0.2 or ``early``; for each box of another group (own boxes zeroed): 4 m_out if > 0.15,
    m_out if > 0.1 or ``early``; plus |boxes| * max outside all boxes / 2. Mean over groups.
    """
    maps, masks = maps.float(), masks.float()
    everything = masks.amax(0)
    loss, mins, n = maps.new_zeros(()), [], 0
    for tokens, members in groups:
        if not tokens:
            continue
        a = maps.index_select(0, _ix(tokens, maps))  # (t, h, w)
        own = masks.index_select(0, _ix(members, masks))  # (b, h, w)
        m_in = (a[:, None] * own[None]).amax((-1, -2))  # (t, b)
        v = m_in.detach()
        w_in = torch.where(v < 0.1, 6.0, torch.where(v < 0.2, 1.0, 1.0 if early else 0.0))
        loss = loss + (w_in * (1 - m_in)).sum()
        mins.append(v.amin())
        others = [k for k in range(masks.shape[0]) if k not in set(members)]
        if others:
            away = masks.index_select(0, _ix(others, masks)) * (1 - own.amax(0))  # own boxes zeroed
            m_out = (a[:, None] * away[None]).amax((-1, -2))  # (t, o)
            v = m_out.detach()
            w_out = torch.where(v > 0.15, 4.0, torch.where(v > 0.1, 1.0, 1.0 if early else 0.0))
            loss = loss + (w_out * m_out).sum()
        loss = loss + len(members) * (a * (1 - everything)).amax((-1, -2)).sum() / 2
        n += 1
    min_in = torch.stack(mins).amin() if mins else maps.new_ones(())
    return loss / max(n, 1), min_in


def sar_loss(self_attn: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Self-attention refocusing: for each box, the mean over its query pixels of the
    attention they pay to key pixels outside it; mean over boxes. self_attn (N, N), masks (K, h, w)."""
    s = self_attn.float()
    f = masks.flatten(1).float()  # (K, N); never empty (the mask rule keeps at least one cell)
    if f.shape[0] == 0:
        return s.new_zeros(())
    rows = (f @ s) / f.sum(1, keepdim=True).clamp_min(1)  # (K, N): mean attention row of the box's pixels
    return (rows * (1 - f)).sum(1).mean()


# ---------------------------------------------------------------------------
# Attend-and-Excite and step selection
# ---------------------------------------------------------------------------

def excite_loss(maps: torch.Tensor, tokens: Sequence[int]) -> torch.Tensor:
    """L_CN: max over subject tokens of max(0, 1 - the token's largest map value). maps (T, h, w)."""
    if not tokens:
        return maps.new_zeros(())
    peak = maps.index_select(0, _ix(tokens, maps)).float().amax((-1, -2))
    return (1 - peak).clamp_min(0).amax()


def iou_loss(maps: torch.Tensor, groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """L_IoU: mean over pairs of groups of sum(min(A_i, A_j)) / sum(A_i + A_j).

    A group's map is the mean of its tokens' maps, so the words of one phrase
    ("teddy", "bear") are not pushed apart from each other. maps (T, h, w).
    """
    g = [maps.index_select(0, _ix(t, maps)).float().mean(0) for t in groups if t]
    if len(g) < 2:
        return maps.new_zeros(())
    a = torch.stack(g)  # (G, h, w)
    i, j = torch.triu_indices(len(g), len(g), 1, device=maps.device)
    inter = torch.minimum(a[i], a[j]).sum((-1, -2))
    total = (a[i] + a[j]).sum((-1, -2)).clamp_min(1e-8)
    return (inter / total).mean()


# ---------------------------------------------------------------------------
# backward guidance (Chen et al.)
# ---------------------------------------------------------------------------

def backward_loss(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], tokens: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean over layers and objects of the mean over heads and tokens of (1 - in-box share)^2.

    layers: per layer (probs (heads, N, T) without re-softmax, masks (K, N)); tokens: per object.
    The share of a token is its attention mass inside the object's mask over its total mass.
    """
    obj = [k for k, t in enumerate(tokens) for _ in t]
    tok = [p for t in tokens for p in t]
    if not tok:
        return torch.zeros(())
    first = layers[0][0]
    keep = [k for k, t in enumerate(tokens) if t]
    inv_count = _on_device(tuple(1.0 / len(tokens[k]) for k in keep), torch.float32, str(first.device))
    per_layer = []
    for probs, masks in layers:
        p = probs.float().index_select(2, _ix(tok, probs))  # (H, N, P)
        m = masks.float().index_select(0, _ix(obj, masks)).T  # (N, P)
        share = (p * m[None]).sum(1) / p.sum(1).clamp_min(1e-12)  # (H, P)
        v = ((1 - share) ** 2).mean(0)  # (P,)
        sums = torch.zeros(len(tokens), device=v.device).index_add(0, _ix(obj, v), v)
        per_layer.append((sums.index_select(0, _ix(keep, v)) * inv_count).mean())  # per object: mean over its tokens
    return torch.stack(per_layer).mean()


# ---------------------------------------------------------------------------
# ZestGuide
# ---------------------------------------------------------------------------

def zest_loss(zmap: torch.Tensor, tokens: Sequence[Sequence[int]], masks: torch.Tensor, gain: float = 10.0,
              gate: float = 0.01, gate_normalised: float = 0.1) -> torch.Tensor:
    """BCE of each object's summed token maps against its mask, raw and max-normalised.

    zmap (N, T): token-softmaxed maps at the ZestGuide resolution; masks (K, N) targets in [0, 1].
    A = gain * S_hat, A_n = A / (max A + 1e-4); pixels where prediction and target are both at
    most the gate are left out; mean over objects of each BCE, the two BCEs summed.
    """
    keep = [k for k, t in enumerate(tokens) if t]
    if not keep:
        return zmap.new_zeros(())
    z = zmap.float()
    pred = torch.stack([z.index_select(1, _ix(tokens[k], z)).sum(-1) for k in keep])  # (K', N)
    target = masks.float().index_select(0, _ix(keep, masks))
    a = gain * pred
    an = a / (a.amax(-1, keepdim=True) + 1e-4)

    def bce(p: torch.Tensor, g: float) -> torch.Tensor:
        p = p.clamp(1e-6, 1 - 1e-6)
        on = ~((p <= g) & (target <= g))
        v = -(target * p.log() + (1 - target) * (1 - p).log())
        return ((v * on).sum(-1) / on.sum(-1).clamp_min(1)).mean()

    return bce(a, gate) + bce(an, gate_normalised)


# ---------------------------------------------------------------------------
# the self-check
# ---------------------------------------------------------------------------

def in_box_share(cross: torch.Tensor, tokens: Sequence[Sequence[int]], masks: torch.Tensor) -> torch.Tensor:
    """(K,) per object: share of its tokens' attention mass inside its mask, mean over its tokens.

    cross (N, T) head- and layer-averaged probabilities (no re-softmax); masks (K, N).
    Objects without tokens get NaN.
    """
    out = torch.full((len(tokens),), float("nan"), device=cross.device)
    c = cross.float()
    for k, t in enumerate(tokens):
        if t:
            a = c.index_select(1, _ix(t, c))
            out[k] = ((a * masks[k].float()[:, None]).sum(0) / a.sum(0).clamp_min(1e-12)).mean()
    return out
