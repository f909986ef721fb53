"""Attention processors for joint-attention transformers (SD 3 MMDiT, FLUX): capture maps, mask scores.

In a joint block image patches and text tokens form one sequence and attend to each other in one
softmax. Guidance reads two blocks of it, with the image patches as queries:

* **cross** (image query x text key): what each patch reads from each word; taken as the softmax
  of the text-key scores alone (re-normalised over the text), then put on the token axis the
  losses expect (``tokens.JointTokens.order``: special slot, the prompt's tokens of every text
  encoder, special slot, the rest), so each method's loss works unchanged;
* **self** (image query x image key): the patch-to-patch attention, re-normalised over the image.

Both are (batch, heads, N_image, keys) fp32 tensors handed to ``attention.Capture`` exactly as the
UNet processors hand theirs. Masking (RCA) adds -inf to the image-query x text-key scores of the
conditional rows where a word may not be read; text queries and image keys are left alone.

A block is one module (``transformer_blocks.3.attn``) that serves two *layer names*, ``...:cross``
and ``...:self``, so captures select them as they select a UNet's attn2 / attn1 layers. Which
blocks carry layout is a property of the trained model (docs/renderer.md, "SD 3 and FLUX"): ``layout_blocks``.
SD 3 puts the image first in the sequence, FLUX the text first (and its single-stream blocks
receive the two already joined); the processors reproduce diffusers' own (projections, QK norms,
FLUX's rotary embedding) and differ from them only while capturing or masking.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from plan_and_render.errors import UsageError

from .attention import AttentionState, StopForward


@dataclass(frozen=True)
class JointLayer:
    """One half of a joint block as a guidance layer (the attention module's name + ":cross" / ":self")."""

    name: str
    place: str  # "joint" (SD 3, FLUX double-stream) or "single" (FLUX single-stream)
    level: int  # downsamplings from the VAE latent to the patch grid (1 for 2x2 patches)
    cross: bool
    block: int  # index in the model's order of blocks (FLUX: double-stream blocks first)
    layout: bool  # one of the blocks guidance reads maps from

    @property
    def module(self) -> str:
        return self.name.rsplit(":", 1)[0]


def joint_modules(model) -> list[tuple[str, str]]:
    """(attention module name, place) of every joint block, in order (SD 3's dual image-only attn2 excluded)."""
    out = []
    for key in model.attn_processors:
        mod = key.removesuffix(".processor")
        if mod.startswith("transformer_blocks.") and mod.endswith(".attn"):
            out.append((mod, "joint"))
        elif mod.startswith("single_transformer_blocks.") and mod.endswith(".attn"):
            out.append((mod, "single"))
    return sorted(out, key=lambda m: (m[1] == "single", int(m[0].split(".")[1])))


def default_layout_blocks(n_blocks: int) -> list[int]:
    """Blocks read when the model folder does not name its own: about six, evenly over the middle half
    of the depth (where layout forms in the measured shapes model and in published MMDiT studies)."""
    lo, hi = n_blocks // 4, max(n_blocks // 4 + 1, (3 * n_blocks + 3) // 4)
    step = max(1, (hi - lo) // 6)
    return list(range(lo, hi, step))[:6]


def joint_layers(model, layout_blocks: list[int] | None = None) -> list[JointLayer]:
    """Both halves of every joint block; ``layout_blocks`` (indices into ``joint_modules``) marks the
    ones guidance reads (default ``default_layout_blocks``)."""
    mods = joint_modules(model)
    chosen = set(default_layout_blocks(len(mods)) if layout_blocks is None else layout_blocks)
    level = patch_level(model)
    return [JointLayer(f"{mod}:{half}", place, level, half == "cross", k, k in chosen)
            for k, (mod, place) in enumerate(mods) for half in ("cross", "self")]


def patch_level(model) -> int:
    """How often the latent is halved into the patch grid: SD 3's patch_size 2, FLUX's 2x2 packing -> 1."""
    p = int(getattr(model.config, "patch_size", 1) or 1)
    p = 2 if type(model).__name__.startswith("Flux") else p
    return max(0, p.bit_length() - 1)


def select(layers: list[JointLayer], which: str) -> list[str]:
    """The layer sets the methods ask for (``attention.select_layers`` names), on a joint transformer:
    every map a method reads comes from the layout blocks (one resolution: the patch grid); RCA
    masks every block."""
    pick = {
        "cross_layout": lambda li: li.cross and li.layout,
        "self_layout": lambda li: (not li.cross) and li.layout,
        "cross_zest": lambda li: li.cross and li.layout,
        "cross_backward": lambda li: li.cross and li.layout,
        "cross_all": lambda li: li.cross,
    }[which]
    return [li.name for li in layers if pick(li)]


# ---------------------------------------------------------------------------
# the processors
# ---------------------------------------------------------------------------

class JointState(AttentionState):
    """``AttentionState`` plus the text axis: ``text_order`` (real text positions in the order the
    losses read them, ``tokens.JointTokens.order``) and the text length (FLUX's single blocks
    receive text and image joined)."""

    def __init__(self) -> None:
        super().__init__()
        self.text_order: torch.Tensor | None = None
        self.text_len = 0
        self._inverse: dict[str, torch.Tensor] = {}

    def on_axis(self, x: torch.Tensor) -> torch.Tensor:
        """(..., T) over the real text positions -> over the losses' axis."""
        if self.text_order is None:
            return x
        return x.index_select(-1, self.text_order.to(x.device))

    def joint_bias(self, n_img: int, n_txt: int, image_first: bool, batch: int, dtype, device) -> torch.Tensor | None:
        """(batch, 1, S, S) additive mask: -inf where a conditional row's image patch may not read a word.
        The RCA masks (``rca_masks[(h, w)]``: (N, T) on the losses' axis) are put back on the real text
        positions; built once per shape and batch layout, then reused by every block and step."""
        h, w = self.grid(n_img)
        rows = range(batch)[self.cond_rows]
        key = ("joint", h, w, n_txt, image_first, batch, rows.start, rows.stop, dtype, str(device))
        if key not in self._bias:
            forbid = self.rca_masks.get((h, w)) if self.rca_masks else None
            bias = None
            if forbid is not None:
                real = torch.zeros(n_img, n_txt, dtype=torch.bool)
                order = self.text_order if self.text_order is not None else torch.arange(n_txt)
                real[:, order.cpu()] = forbid[:, : len(order)]
                s = n_img + n_txt
                img, txt = (slice(0, n_img), slice(n_img, s)) if image_first else (slice(n_txt, s), slice(0, n_txt))
                # the last axis padded to a multiple of 16 and sliced back (aligned strides for SDPA's kernels)
                bias = torch.zeros(batch, 1, s, -(-s // 16) * 16, dtype=dtype, device=device)[..., :s]
                block = bias[rows.start:rows.stop, :, img, txt]
                bias[rows.start:rows.stop, :, img, txt] = block.masked_fill(real.to(device), float("-inf"))
            self._bias[key] = bias
        return self._bias[key]


class JointLayoutProcessor:
    """Diffusers' joint attention for one block, plus capture (fp32 maps) and RCA masking when asked."""

    def __init__(self, state: JointState, module: str, capture: bool, rca: bool, default) -> None:
        self.state, self.module, self.capture, self.rca, self.default = state, module, capture, rca, default
        self.names = {f"{module}:cross": "cross", f"{module}:self": "self"}

    def wanted(self) -> tuple[bool, bool]:
        st = self.state
        cap = self.capture and st.capturing and any(n in c.layers for c in st.captures.values() for n in self.names)
        return cap, self.rca and st.rca_on and st.rca_masks is not None

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_img: int, n_txt: int,
               image_first: bool, masked: bool) -> torch.Tensor:
        """SDPA over (B, H, S, D) after capturing the image-query maps; RCA's bias when ``masked``."""
        st = self.state
        img = slice(0, n_img) if image_first else slice(n_txt, n_txt + n_img)
        txt = slice(n_img, n_img + n_txt) if image_first else slice(0, n_txt)
        if self.wanted()[0]:
            h, w = st.grid(n_img)
            rows, on_axis = st.cond_rows, st.on_axis
            qi = q[rows, :, img].float() * q.shape[-1] ** -0.5
            keys = {"cross": k[rows, :, txt], "self": k[rows, :, img]}
            for cap in st.captures.values():
                for name, half in self.names.items():
                    if name not in cap.layers:
                        continue
                    if half == "cross" and cap.logits:
                        cap.add(on_axis(qi @ keys["cross"].float().transpose(-1, -2)), h, w)
                    elif half == "cross":  # re-normalised over the prompt's tokens only
                        cap.add_probs(lambda a, b: on_axis(a @ b.float().transpose(-1, -2)), qi, keys["cross"], h, w)
                    else:  # re-normalised over the image
                        cap.add_probs(lambda a, b: a @ b.float().transpose(-1, -2), qi, keys["self"], h, w)
            st.seen += sum(any(n in c.layers for c in st.captures.values()) for n in self.names)
            if st.stop_after is not None and st.seen >= st.stop_after:
                raise StopForward
        bias = st.joint_bias(n_img, n_txt, image_first, q.shape[0], q.dtype, q.device) if masked else None
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class SD3Processor(JointLayoutProcessor):
    """SD 3 / 3.5 joint block: [image; text] (diffusers' ``JointAttnProcessor2_0``)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        cap, rca = self.wanted()
        if not (cap or rca) or encoder_hidden_states is None or attention_mask is not None:
            return self.default(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        b, n, _ = hidden_states.shape

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        eq, ek, ev = (heads(attn.add_q_proj(encoder_hidden_states)), heads(attn.add_k_proj(encoder_hidden_states)),
                      heads(attn.add_v_proj(encoder_hidden_states)))
        if attn.norm_q is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)
        if attn.norm_added_q is not None:
            eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
        t = encoder_hidden_states.shape[1]
        out = self.attend(torch.cat([q, eq], 2), torch.cat([k, ek], 2), torch.cat([v, ev], 2), n, t, True, rca)
        out = out.transpose(1, 2).reshape(b, n + t, -1).to(q.dtype)
        img, txt = out[:, :n], out[:, n:]
        if not attn.context_pre_only:
            txt = attn.to_add_out(txt)
        return attn.to_out[1](attn.to_out[0](img)), txt


class FluxProcessor(JointLayoutProcessor):
    """FLUX double-stream ([text; image], text from ``encoder_hidden_states``) and single-stream
    (text and image already joined, text first) blocks (diffusers' ``FluxAttnProcessor``)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        cap, rca = self.wanted()
        if not (cap or rca) or attention_mask is not None:
            return self.default(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        from diffusers.models.embeddings import apply_rotary_emb

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (-1, attn.head_dim))  # (B, S, H, D), as diffusers keeps them

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        q, k = attn.norm_q(q), attn.norm_k(k)
        joined = encoder_hidden_states is None
        if not joined:
            e = encoder_hidden_states
            eq, ek, ev = heads(attn.add_q_proj(e)), heads(attn.add_k_proj(e)), heads(attn.add_v_proj(e))
            eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
            q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
            k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        t = self.state.text_len if joined else encoder_hidden_states.shape[1]
        s = q.shape[1]
        out = self.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), s - t, t, False, rca)
        out = out.transpose(1, 2).flatten(2, 3).to(q.dtype)
        if joined:
            return out
        txt, img = out[:, :t], out[:, t:]
        img = attn.to_out[1](attn.to_out[0](img.contiguous()))
        return img, attn.to_add_out(txt.contiguous())


def install(model, state: JointState, capture_layers: set[str], rca_layers: set[str]) -> int:
    """Our processor on the blocks that capture or mask (by layer name, either half); diffusers' own
    everywhere else. Returns the number of blocks that got ours."""
    flux = type(model).__name__.startswith("Flux")
    procs, n = {}, 0
    for key, proc in model.attn_processors.items():
        mod = key.removesuffix(".processor")
        default = proc.default if isinstance(proc, JointLayoutProcessor) else type(proc)()
        cap = any(n_.rsplit(":", 1)[0] == mod for n_ in capture_layers)
        rca = any(n_.rsplit(":", 1)[0] == mod for n_ in rca_layers)
        if cap or rca:
            procs[key] = (FluxProcessor if flux else SD3Processor)(state, mod, cap, rca, default)
            n += 1
        else:
            procs[key] = default
    model.set_attn_processor(procs)
    return n


class JointAttention:
    """A joint transformer's blocks as the Guider sees them (``attention.UNetAttention``'s interface):
    both halves of every block as layers, the layout blocks' maps on the patch grid, a ``JointState``
    that knows the text axis (``order``: real text positions in the losses' order, ``tokens.JointTokens``)."""

    def __init__(self, model, layout_blocks: list[int] | None, order: list[int], text_len: int) -> None:
        self.model, self.order, self.text_len = model, order, text_len
        self.layers = joint_layers(model, layout_blocks)
        n = len(self.layers) // 2
        bad = [b for b in (layout_blocks or []) if b >= n]
        if bad:
            raise UsageError(f"layout blocks {bad} do not exist: the model has {n} joint blocks")
        self.level = patch_level(model)

    def new_state(self) -> JointState:
        st = JointState()
        st.text_order, st.text_len = torch.tensor(self.order, dtype=torch.long), self.text_len
        return st

    def select(self, which: str) -> list[str]:
        return select(self.layers, which)

    def install(self, state: JointState, capture_layers: set[str], rca_layers: set[str]) -> int:
        return install(self.model, state, capture_layers, rca_layers)

    @contextlib.contextmanager
    def blocks_recomputed(self, on: bool = True):
        """Context (``memory: "low"``): in passes that build a gradient, every block but the layout blocks
        runs under torch's checkpoint, so the backward recomputes its activations instead of finding them
        kept. Layout blocks are left as they are: their processors capture maps and may stop the pass, which
        a recomputation would repeat. Gradients are the same; each guidance iteration costs one more forward
        of the recomputed blocks (before the last layout block: the pass stops there)."""
        blocks = [*self.model.transformer_blocks, *getattr(self.model, "single_transformer_blocks", [])]
        layout = {li.block for li in self.layers if li.layout}
        chosen = [b for k, b in enumerate(blocks) if on and k not in layout]
        own = [b.__dict__.get("forward") for b in chosen]  # a forward set on the block itself (accelerate's hooks)
        for block in chosen:
            block.forward = _recomputed_forward(block.forward)
        try:
            yield
        finally:
            for block, forward in zip(chosen, own):
                if forward is None:
                    del block.forward  # the class's own forward again
                else:
                    block.forward = forward


def _recomputed_forward(forward):
    from torch.utils.checkpoint import checkpoint

    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run
