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
Formulas, and where each comes from in the official code: docs/guidance.md.

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

SPANS = ("all", "prompt")  # which tokens the re-softmax keeps: see ``token_maps``


def gaussian_kernel(sigma: float = 0.5, k: int = 3) -> torch.Tensor:
    """The official 1-D weights: exp(-((x - mu) / (2 sigma))^2), normalised - not the textbook
    exp(-(x - mu)^2 / (2 sigma^2)); for sigma 0.5, k 3: [0.212, 0.576, 0.212]."""
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-((x / (2 * sigma)) ** 2))
    return (g / g.sum()).float()


def gaussian_smooth(maps: torch.Tensor, sigma: float = 0.5, k: int = 3) -> torch.Tensor:
    """(M, h, w) -> (M, h, w): the official k x k kernel (outer product of ``gaussian_kernel``) with
    reflect padding (needs h, w > k // 2)."""
    g = gaussian_kernel(sigma, k).to(maps.device, maps.dtype)
    kernel = (g[:, None] * g[None, :])[None, None]
    p = k // 2
    return F.conv2d(F.pad(maps[:, None], (p, p, p, p), mode="reflect"), kernel)[:, 0]


def token_maps(cross: torch.Tensor, n_tokens: int, h: int, w: int, temperature: float = 100.0,
               smooth: bool = True, span: str = "all") -> torch.Tensor:
    """(N, T) cross-attention -> (T, h, w) re-softmaxed, smoothed maps, indexed by token position.

    ``span="all"`` (official Attention Refocusing, Attend-and-Excite on SD 1.4, gsn-factory): drop
    the start token and the last position, ``softmax(temperature * A[..., 1:-1])`` - the end token
    and the padding stay in the softmax. ``span="prompt"`` (A&E's SD 2.1 branch): keep only the
    prompt's own tokens, 1 .. ``n_tokens - 2``. Dropped positions are zero.
    """
    if span not in SPANS:
        raise ValueError(f"span must be one of {SPANS}, not {span!r}")
    c = cross.float()
    stop = c.shape[1] - 1 if span == "all" else n_tokens - 1
    inner = torch.softmax(temperature * c[:, 1:stop], dim=-1)
    maps = inner.T.reshape(-1, h, w)
    if smooth and h > 1 and w > 1:
        maps = gaussian_smooth(maps)
    return F.pad(maps, (0, 0, 0, 0, 1, c.shape[1] - stop))


# ---------------------------------------------------------------------------
# Attention Refocusing
# ---------------------------------------------------------------------------

def car_loss(maps: torch.Tensor, groups: Groups, masks: torch.Tensor, early: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention refocusing at s = 1; returns (loss, min over tokens and boxes of the in-box maximum).

    maps (T, h, w) from ``token_maps``; masks (K, h, w) binary, one per object; groups: per
    group of instances (the official code's "object": one phrase, several boxes) its token
    positions and object indices. For each token of a group and each of the group's boxes:
    6(1 - m_in) if m_in < 0.1, (1 - m_in) if < 0.2 or ``early``; for each box of another group
    (own boxes zeroed): 4 m_out if > 0.15, m_out if > 0.1 or ``early``; plus |boxes| * max
    outside all boxes / 2. Divided by the number of groups. A box with no cell counts m_in = 1
    (no term), as the official code does.
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
        m_in = torch.where(own.flatten(1).amax(1) > 0, m_in, torch.ones_like(m_in))
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


def sar_loss(self_attn: torch.Tensor, masks: torch.Tensor, n_objects: int | None = None) -> torch.Tensor:
    """Self-attention refocusing: for each box, the attention its query pixels (their mean row) pay
    to key pixels outside it; summed over boxes and divided by ``n_objects`` - the number of
    groups (phrases), as the official code does, so a group of two instances weighs twice
    (default: the number of boxes). self_attn (N, N) averaged over heads (the loss is linear in
    it, so the head mean commutes), masks (K, h, w) one per box."""
    s = self_attn.float()
    f = masks.flatten(1).float()  # (K, N)
    if f.shape[0] == 0:
        return s.new_zeros(())
    rows = (f @ s) / f.sum(1, keepdim=True).clamp_min(1)  # (K, N): mean attention row of the box's pixels
    return (rows * (1 - f)).sum() / (n_objects or f.shape[0])


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

    layers: per layer (probs (heads, N, T) without re-softmax, masks (K, N)); tokens: per object -
    the official code's object is a phrase (a group) whose mask is the union of its boxes.
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
              gate: float = 0.01, gate_normalised: float = 0.1, clip: float = 1e-3) -> torch.Tensor:
    """ZestGuide's BCE of each object's summed token maps against its mask, raw and max-normalised.

    zmap (N, T): token-softmaxed maps at the ZestGuide resolution; tokens: per object (one per
    label of the segmentation: a group); masks (K, N) targets in [0, 1]. A = gain * S_hat,
    A_n = A / (max A + 1e-4) (from A before gating); pixels where prediction and target are both
    at most the gate get prediction 0 (held constant, no gradient). Prediction and target are
    clipped to [clip, 1 - clip] and the BCE is averaged over ALL pixels, gated ones included
    (official ``bce_loss2``); mean over objects of each BCE, the two BCEs summed.
    """
    keep = [k for k, t in enumerate(tokens) if t]
    if not keep:
        return zmap.new_zeros(())
    z = zmap.float()
    pred = torch.stack([z.index_select(1, _ix(tokens[k], z)).sum(-1) for k in keep])  # (K', N)
    target = masks.float().index_select(0, _ix(keep, masks))
    a = gain * pred
    an = a / (a.amax(-1, keepdim=True) + 1e-4)
    t = target.clamp(clip, 1 - clip)

    def bce(p: torch.Tensor, g: float) -> torch.Tensor:
        on = ((p.detach() > g) | (target > g)).float()
        p = (p * on).clamp(clip, 1 - clip)
        return -(t * p.log() + (1 - t) * (1 - p).log()).mean(-1).mean()

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
