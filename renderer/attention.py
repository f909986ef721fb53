"""Attention processors that capture maps or mask scores, on chosen layers only.

Layers are chosen by *level*: how many times the UNet has downsampled the
latent where the layer sits. The "layout level" is the coarsest level of the
down/up blocks that has cross-attention: 16x16 in SD 1.5 at 512 px, 32x32 in
SDXL at 1024 px, 16x16 in the tiny test model at 64 px. Layers not asked for
keep diffusers' scaled-dot-product processor, and a capture keeps only
reductions of the current pass (a running sum or a short list), never maps of
past steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F


def _sdpa_processor():
    """diffusers' default processor, imported on first use so ``import renderer`` stays light."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    return AttnProcessor2_0()


@dataclass(frozen=True)
class LayerInfo:
    name: str  # module path of the Attention module, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn2"
    place: str  # "down" | "mid" | "up"
    level: int  # number of downsamplings from the latent
    cross: bool  # attn2 (text keys) or attn1 (self)


def unet_layers(unet) -> list[LayerInfo]:
    """Every transformer attention layer of a diffusers UNet2DConditionModel with its level."""
    n_up = len(unet.up_blocks)
    out = []
    for name, _ in unet.attn_processors.items():
        mod = name.removesuffix(".processor")
        parts = mod.split(".")
        if parts[0] == "down_blocks":
            place, level = "down", int(parts[1])
        elif parts[0] == "up_blocks":
            place, level = "up", n_up - 1 - int(parts[1])
        elif parts[0] == "mid_block":
            place, level = "mid", len(unet.down_blocks) - 1
        else:  # pragma: no cover - other block kinds
            continue
        out.append(LayerInfo(mod, place, level, parts[-1] == "attn2"))
    return out


def layout_level(layers: list[LayerInfo]) -> int:
    """The coarsest down/up level with cross-attention (16x16 in SD 1.5 at 512 px)."""
    return max(li.level for li in layers if li.cross and li.place != "mid")


def downsampled(latent_hw: tuple[int, int], level: int) -> tuple[int, int]:
    """(h, w) of the maps at ``level``: the latent halved (rounding up) ``level`` times."""
    h, w = latent_hw
    for _ in range(level):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def select_layers(layers: list[LayerInfo], which: str) -> list[str]:
    """Named layer sets the methods need (see the module docstring for levels)."""
    lvl = layout_level(layers)
    pick = {
        "cross_layout": lambda li: li.cross and li.place != "mid" and li.level == lvl,
        "self_layout": lambda li: (not li.cross) and li.place != "mid" and li.level == lvl,
        # ZestGuide's official layers: the layout level (down and up) plus the up path one level finer
        "cross_zest": lambda li: li.cross and ((li.place != "mid" and li.level == lvl)
                                               or (li.place == "up" and li.level == lvl - 1)),
        "cross_backward": lambda li: li.cross and (li.place == "mid" or (li.place == "up" and li.level == lvl)),
        "cross_all": lambda li: li.cross,
    }[which]
    return [li.name for li in layers if pick(li)]


def head_mean(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """A capture's default reduction: a layer's maps averaged over its heads (each query row on its own)."""
    return x.mean(1)


CHUNK_BYTES = 2**28  # recomputed head-averaged maps are made in pieces of at most this many bytes of probabilities


@dataclass
class Capture:
    """One reduction over layers of the current pass.

    ``reduce(x, h, w)`` turns a layer's (batch, heads, N, T) probabilities (or raw
    scores when ``logits``) of the conditional rows into what is kept; with
    ``mode="mean"`` the results are averaged over layers on the fly. ``extra_keys``
    (1, M, D) text-encoder states (with ``logits`` only) add M key columns after the
    prompt's: each layer's own key projection of them (ZestGuide's negative classes).
    """

    layers: set[str]
    reduce: Callable[[torch.Tensor, int, int], torch.Tensor] = head_mean
    mode: str = "mean"  # "mean" or "list"
    logits: bool = False
    extra_keys: torch.Tensor | None = None
    total: torch.Tensor | None = None
    count: int = 0
    items: list[torch.Tensor] = field(default_factory=list)

    def add(self, x: torch.Tensor, h: int, w: int) -> None:
        self.keep(self.reduce(x, h, w))

    def add_probs(self, scores_of: Callable[..., torch.Tensor], q: torch.Tensor, k: torch.Tensor,
                  h: int, w: int) -> None:
        """``add`` of the softmax of ``scores_of(q, k)`` (queries (B, heads, N, D)). Averaged over heads (the
        default reduction) the full maps are not kept for the backward pass but recomputed there
        (``recomputed``), and as each query row stands alone they go in pieces of rows of at most
        ``CHUNK_BYTES`` of probabilities, each recomputed on its own: the backward holds one piece's
        probabilities and gradients at a time. A reduction that keeps the full maps gains nothing from it."""
        def maps(qc: torch.Tensor, kc: torch.Tensor) -> torch.Tensor:
            return self.reduce(scores_of(qc, kc).softmax(-1), h, w)

        if not (RECOMPUTE and self.reduce is head_mean):
            return self.keep(maps(q, k))
        rows = max(1, CHUNK_BYTES // (q.shape[0] * q.shape[1] * k.shape[-2] * 4))
        pieces = [recomputed(maps, q[:, :, i:i + rows], k) for i in range(0, q.shape[2], rows)]
        self.keep(torch.cat(pieces, dim=-2) if len(pieces) > 1 else pieces[0])

    def keep(self, r: torch.Tensor) -> None:
        """Add one layer's reduction to what the capture holds."""
        if self.mode == "list":
            self.items.append(r)
        else:
            self.total = r if self.total is None else self.total + r
            self.count += 1

    def value(self):
        if self.mode == "list":
            return self.items
        return None if self.total is None else self.total / self.count

    def clear(self) -> None:
        self.total, self.count, self.items = None, 0, []


RECOMPUTE = True  # off: every layer's maps kept for the backward (tests compare; benchmarks' --keep-maps)


def recomputed(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """``fn(*inputs)``, with what its backward needs recomputed then instead of kept (torch's non-reentrant
    checkpoint) when a gradient will flow. A layer's fp32 attention probabilities (batch x heads x N x keys:
    1.5 GiB for one SD 3.5 Medium block at 1024 px) are the largest thing a guidance pass would keep, one per
    captured layer; recomputing them costs one matmul and softmax per layer, and the gradient is the same."""
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        return fn(*inputs)
    from torch.utils.checkpoint import checkpoint

    return checkpoint(fn, *inputs, use_reentrant=False)


class StopForward(Exception):
    """Raised once every captured layer has reported, so a guidance pass skips the rest of the UNet."""


class AttentionState:
    """What the processors read: active captures, RCA masks, latent shape, cond rows."""

    def __init__(self) -> None:
        self.captures: dict[str, Capture] = {}
        self.capturing = False
        self.latent_hw: tuple[int, int] = (64, 64)
        self.cond_rows: slice = slice(None)  # batch rows that hold the conditional pass
        self.rca_masks: dict[tuple[int, int], torch.Tensor] | None = None  # (h, w) -> (N, T) bool "forbidden"
        self.rca_on = False
        self.stop_after: int | None = None  # number of captures after which a guidance pass stops
        self.seen = 0
        self._bias: dict[tuple, torch.Tensor | None] = {}

    def grid(self, n: int) -> tuple[int, int]:
        """(h, w) of a layer with n query pixels: the latent halved (rounding up) until it fits."""
        h, w = self.latent_hw
        for _ in range(16):
            if h * w == n:
                return h, w
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        raise ValueError(f"no downsampling of the {self.latent_hw} latent has {n} pixels")

    def rca_bias(self, h: int, w: int, batch: int, dtype: torch.dtype, device) -> torch.Tensor | None:
        """Additive SDPA mask (batch, 1, N, T): -inf where a row of the conditional pass may not
        look at an object token. Built once per resolution, batch layout and dtype, then reused
        by every layer and step (it only depends on the boxes)."""
        rows = range(batch)[self.cond_rows]
        key = (h, w, batch, rows.start, rows.stop, dtype, str(device))
        if key not in self._bias:
            forbid = self.rca_masks.get((h, w)) if self.rca_masks else None
            bias = None
            if forbid is not None:
                n, t = forbid.shape
                # rows padded to a multiple of 16 elements and sliced back: PyTorch's memory-efficient
                # SDPA kernel wants aligned mask strides and would otherwise pad a copy on every call
                full = torch.zeros(batch, 1, n, -(-t // 16) * 16, dtype=dtype, device=device)
                bias = full[..., :t]
                bias[rows.start:rows.stop] = bias[rows.start:rows.stop].masked_fill(forbid.to(device), float("-inf"))
            self._bias[key] = bias
        return self._bias[key]

    def clear(self) -> None:
        self.seen = 0
        for c in self.captures.values():
            c.clear()


class LayoutAttnProcessor:
    """Scaled-dot-product attention unless this layer must capture or mask.

    Capturing computes scores explicitly (fp32 softmax) so the maps keep their
    gradient to the latent; masking (RCA) passes an additive -inf bias to SDPA.
    """

    def __init__(self, state: AttentionState, name: str, cross: bool, capture: bool, rca: bool) -> None:
        self.state, self.name, self.cross = state, name, cross
        self.capture, self.rca = capture, rca
        self.fast = _sdpa_processor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        st = self.state
        want_cap = self.capture and st.capturing and any(self.name in c.layers for c in st.captures.values())
        want_rca = self.rca and st.rca_on and st.rca_masks is not None
        if not (want_cap or want_rca) or hidden_states.ndim != 3 or attention_mask is not None:
            return self.fast(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        b, n, _ = hidden_states.shape
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        q, k, v = attn.to_q(hidden_states), attn.to_k(ctx), attn.to_v(ctx)
        hd = q.shape[-1] // attn.heads
        q, k, v = (t.view(b, -1, attn.heads, hd).transpose(1, 2) for t in (q, k, v))
        h, w = st.grid(n)
        bias = st.rca_bias(h, w, b, q.dtype, q.device) if want_rca else None
        if want_cap:
            # unmasked fp32 maps: losses and scores see where the image puts each word, even
            # where RCA masks the layer's output (masked maps would read 1.0 in every box)
            rows, scale = st.cond_rows, attn.scale
            for cap in st.captures.values():
                if self.name not in cap.layers:
                    continue
                if cap.logits:
                    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
                    cap.add(_with_extra_keys(attn, q, scores, cap.extra_keys)[rows], h, w)
                else:
                    cap.add_probs(lambda qc, kc: (qc.float() @ kc.float().transpose(-1, -2)) * scale,
                                  q[rows], k[rows], h, w)
            st.seen += 1
            if st.stop_after is not None and st.seen >= st.stop_after:
                raise StopForward
        # the layer output always goes through SDPA: autograd then keeps only the fp32 maps the
        # captures need, not a second low-precision copy of them
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, n, -1)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


def _with_extra_keys(attn, q: torch.Tensor, scores: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
    """``scores`` (B, heads, N, T) with the scores of the layer's keys of ``extra`` (1, M, D) appended."""
    if extra is None:
        return scores
    k = attn.to_k(extra.to(q.dtype))
    k = k.view(1, -1, attn.heads, q.shape[-1]).transpose(1, 2)  # (1, heads, M, hd)
    more = (q.float() @ k.float().transpose(-1, -2)) * attn.scale
    return torch.cat([scores, more.expand(scores.shape[0], -1, -1, -1)], dim=-1)


class UNetAttention:
    """A UNet's attention layers as the Guider sees them: the layers with their levels, the named
    layer sets the methods ask for, the state its processors read and their installation.
    ``joint_attention.JointAttention`` is the same for joint-attention transformers."""

    def __init__(self, unet) -> None:
        self.model = unet
        self.layers = unet_layers(unet)
        self.level = layout_level(self.layers)  # the maps of every layout loss live at this level

    def new_state(self) -> AttentionState:
        return AttentionState()

    def select(self, which: str) -> list[str]:
        return select_layers(self.layers, which)

    def install(self, state: AttentionState, capture_layers: set[str], rca_layers: set[str]) -> int:
        return install(self.model, state, capture_layers, rca_layers)


def install(unet, state: AttentionState, capture_layers: set[str], rca_layers: set[str]) -> int:
    """Put our processor on the layers that capture or mask; SDPA everywhere else.

    Returns the number of layers that got a custom processor.
    """
    procs, n = {}, 0
    for key in unet.attn_processors:
        mod = key.removesuffix(".processor")
        cap, rca = mod in capture_layers, mod in rca_layers
        if cap or rca:
            procs[key] = LayoutAttnProcessor(state, mod, mod.endswith("attn2"), cap, rca)
            n += 1
        else:
            procs[key] = _sdpa_processor()
    unet.set_attn_processor(procs)
    return n
