"""Tiny random-weight Stable Diffusion parts (SD 1.x, SDXL, SD 3, FLUX), built offline from configs.

Tests, benchmarks and the toy shapes models need real diffusers/transformers
modules without downloading weights. Everything here is deterministic for a
given seed and small enough to run many sampling steps on a CPU in seconds.
The tokenizers are built from word lists: a CLIP-style byte-level BPE
(``build_clip_tokenizer``) and a T5-style unigram one (``build_t5_tokenizer``:
no start token, "</s>" at the end, "<pad>" = 0), both with character offsets.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizerFast, T5Config,
                          T5EncoderModel, T5TokenizerFast)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"

DEFAULT_WORDS = (
    "a an the and of on in to with left right above below under near next behind front inside between "
    "cat dog vase table ball box apple tree house car bird bear teddy fire hydrant chair sky grass room "
    "red green blue gray grey yellow black white wooden small large big three two one photo sunny beach"
).split()


def _byte_chars() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE (as in GPT-2/CLIP)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def build_clip_tokenizer(words: list[str] | tuple[str, ...] = DEFAULT_WORDS, out_dir: str | Path | None = None,
                         model_max_length: int = 77) -> CLIPTokenizerFast:
    """A CLIP-style byte-level BPE tokenizer whose vocabulary holds ``words`` whole.

    Any other text still tokenizes (character by character), and offsets work, so
    token mapping behaves as with the real CLIP tokenizer. Words longer than one
    character get left-to-right merges, so a word may also split into pieces when
    a shorter word's merge ranks first - which is what multi-token tests need.
    """
    vocab: dict[str, int] = {}

    def add(tok: str) -> None:
        if tok not in vocab:
            vocab[tok] = len(vocab)

    add(BOS)
    add(EOS)
    for c in _byte_chars():
        add(c)
        add(c + "</w>")
    merges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for w in dict.fromkeys(w.lower() for w in words if w):
        if len(w) < 2:
            continue
        cur = w[0]
        for i, c in enumerate(w[1:], start=1):
            last = i == len(w) - 1
            right = c + "</w>" if last else c
            rule = (cur, right)
            cur = cur + right
            if rule not in seen:
                seen.add(rule)
                merges.append(rule)
            add(cur)
    tok = CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=model_max_length)
    if out_dir is not None:
        tok.save_pretrained(str(out_dir))
    return tok


# ---------------------------------------------------------------------------
# configs (JSON-able dicts; the benchmark keeps full-size ones in benchmarks/configs)
# ---------------------------------------------------------------------------

def tiny_unet_config(sdxl: bool = False, cross_attention_dim: int = 32) -> dict:
    """Cross-attention at two resolutions (latent/1, latent/2) plus an 8x8-style mid block.

    With the tiny VAE (factor 2) a 64x64 image gives a 32x32 latent, so the
    layout level (the coarsest up/down cross-attention) is 16x16 as in SD 1.5.
    """
    cfg = dict(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=2, norm_num_groups=8,
    )
    if sdxl:
        cfg.update(addition_embed_type="text_time", addition_time_embed_dim=8,
                   projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64)
    return cfg


def tiny_vae_config() -> dict:
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        layers_per_block=1, norm_num_groups=8, sample_size=64,
    )


def tiny_text_config(vocab_size: int, hidden: int = 32, projection: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, projection_dim=projection,
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_act="gelu",
    )


def sd_scheduler() -> DDIMScheduler:
    """SD 1.x noise schedule (scaled-linear betas) with DDIM sampling."""
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def sharpen_attention(unet, gain: float = 1.5) -> None:
    """Scale query/key projections so random attention is peaked rather than uniform.

    A freshly initialised tiny UNet attends almost uniformly, so its maps hardly
    respond to the latent; trained models are far from uniform. Multiplying
    W_q and W_k by ``gain`` multiplies the scores by gain^2.
    """
    with torch.no_grad():
        for name, mod in unet.named_modules():
            if name.endswith(("attn1", "attn2")):
                mod.to_q.weight.mul_(gain)
                mod.to_k.weight.mul_(gain)


def tiny_sd_components(seed: int = 0, words=DEFAULT_WORDS) -> dict:
    """unet, vae, text_encoder, tokenizer, scheduler for a tiny random SD 1.x."""
    torch.manual_seed(seed)
    tok = build_clip_tokenizer(words)
    unet = UNet2DConditionModel(**tiny_unet_config()).eval()
    sharpen_attention(unet)
    return dict(
        unet=unet,
        vae=AutoencoderKL(**tiny_vae_config()).eval(),
        text_encoder=CLIPTextModel(tiny_text_config(len(tok))).eval(),
        tokenizer=tok,
        scheduler=sd_scheduler(),
    )


def tiny_sdxl_components(seed: int = 0, words=DEFAULT_WORDS) -> dict:
    """The SDXL set: two text encoders (the second with projection), text_time UNet."""
    torch.manual_seed(seed)
    tok = build_clip_tokenizer(words)
    unet = UNet2DConditionModel(**tiny_unet_config(sdxl=True)).eval()
    sharpen_attention(unet)
    return dict(
        unet=unet,
        vae=AutoencoderKL(**tiny_vae_config()).eval(),
        text_encoder=CLIPTextModel(tiny_text_config(len(tok))).eval(),
        text_encoder_2=CLIPTextModelWithProjection(tiny_text_config(len(tok))).eval(),
        tokenizer=tok,
        tokenizer_2=build_clip_tokenizer(words),
        scheduler=sd_scheduler(),
    )


# ---------------------------------------------------------------------------
# transformer families: SD 3 (MMDiT, CLIP-L + CLIP-G + T5) and FLUX (CLIP-L pooled + T5)
# ---------------------------------------------------------------------------

def build_t5_tokenizer(words: list[str] | tuple[str, ...] = DEFAULT_WORDS, out_dir: str | Path | None = None,
                       model_max_length: int = 512) -> T5TokenizerFast:
    """A T5-style tokenizer (SentencePiece unigram conventions) whose vocabulary holds ``words`` whole.

    As the real T5 tokenizer: "▁" marks a word start, no start token, "</s>" (id 1) ends every
    text, "<pad>" is id 0, unknown characters map to "<unk>" (id 2). Words not in the list are
    spelled character by character, so offsets and multi-token words behave as with the real one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces: dict[str, float] = {"<pad>": 0.0, "</s>": 0.0, "<unk>": 0.0}
    for w in dict.fromkeys(w.lower() for w in words if w):
        pieces.setdefault("\u2581" + w, -1.0)  # whole words score far above their spelling
    for c in [chr(c) for c in range(33, 127)]:
        pieces.setdefault(c, -10.0)
        pieces.setdefault("\u2581" + c, -10.0)
    pieces.setdefault("\u2581", -10.0)
    tok = Tokenizer(models.Unigram(list(pieces.items()), unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    out = T5TokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0,
                          model_max_length=model_max_length)
    if out_dir is not None:
        out.save_pretrained(str(out_dir))
    return out


def tiny_t5_config(vocab_size: int, d_model: int = 32, layers: int = 2, heads: int = 4) -> T5Config:
    """T5 v1.1-style encoder (gated GELU, relative position buckets), as SD 3 and FLUX use."""
    return T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // heads, d_ff=2 * d_model,
                    num_layers=layers, num_heads=heads, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                    relative_attention_num_buckets=8, relative_attention_max_distance=32, pad_token_id=0,
                    eos_token_id=1, decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False)


def flow_scheduler(shift: float = 3.0, dynamic: bool = False):
    """SD 3's flow-matching Euler scheduler (shift 3.0); ``dynamic`` = FLUX's resolution-dependent shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if dynamic:
        return FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)
    return FlowMatchEulerDiscreteScheduler(shift=shift)


def tiny_sd3_transformer_config(text_dim: int = 32, pooled_dim: int = 64) -> dict:
    """Four joint blocks (SD 3.5's dual attention in the first, QK RMS-norm), 2x2 patches:
    a 64x64 image -> 32x32 latent (tiny VAE) -> 16x16 patches, the layout level of the tiny UNets."""
    return dict(sample_size=32, patch_size=2, in_channels=4, out_channels=4, num_layers=4, attention_head_dim=8,
                num_attention_heads=4, joint_attention_dim=text_dim, caption_projection_dim=32,
                pooled_projection_dim=pooled_dim, pos_embed_max_size=32, dual_attention_layers=(0,),
                qk_norm="rms_norm")


def tiny_flux_transformer_config(text_dim: int = 32, pooled_dim: int = 32, guidance: bool = True) -> dict:
    """Two double-stream and two single-stream blocks on packed 2x2 latents (4 channels x 4 = 16);
    ``guidance``: FLUX.1 [dev]'s distilled-guidance embedding (schnell has none)."""
    return dict(patch_size=1, in_channels=16, out_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=8,
                num_attention_heads=4, joint_attention_dim=text_dim, pooled_projection_dim=pooled_dim,
                guidance_embeds=guidance, axes_dims_rope=(2, 2, 4))


def tiny_sd3_components(seed: int = 0, words=DEFAULT_WORDS, t5: bool = True) -> dict:
    """transformer, vae, text_encoder (CLIP-L-like), text_encoder_2 (CLIP-G-like), text_encoder_3 (T5),
    their tokenizers and the flow-matching scheduler of a tiny random SD 3. ``t5=False`` leaves the
    T5 part out (as SD 3 allows: its sequence is then zeros)."""
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(seed)
    tok = build_clip_tokenizer(words)
    tok5 = build_t5_tokenizer(words, model_max_length=32)
    comps = dict(
        transformer=SD3Transformer2DModel(**tiny_sd3_transformer_config(text_dim=32, pooled_dim=32)).eval(),
        vae=AutoencoderKL(**tiny_vae_config()).eval(),
        text_encoder=CLIPTextModelWithProjection(tiny_text_config(len(tok), hidden=16, projection=16)).eval(),
        text_encoder_2=CLIPTextModelWithProjection(tiny_text_config(len(tok), hidden=16, projection=16)).eval(),
        text_encoder_3=T5EncoderModel(tiny_t5_config(len(tok5), d_model=32)).eval() if t5 else None,
        tokenizer=tok, tokenizer_2=build_clip_tokenizer(words), tokenizer_3=tok5 if t5 else None,
        scheduler=flow_scheduler(3.0),
    )
    return comps


def tiny_flux_components(seed: int = 0, words=DEFAULT_WORDS, guidance: bool = True) -> dict:
    """transformer, vae, text_encoder (CLIP-L-like, pooled), text_encoder_2 (T5), tokenizers and scheduler of a
    tiny random FLUX.1 [dev] (``guidance=False``: [schnell], no guidance embedding)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    tok = build_clip_tokenizer(words)
    tok5 = build_t5_tokenizer(words, model_max_length=32)
    return dict(
        transformer=FluxTransformer2DModel(**tiny_flux_transformer_config(32, 32, guidance)).eval(),
        vae=AutoencoderKL(**tiny_vae_config()).eval(),
        text_encoder=CLIPTextModel(tiny_text_config(len(tok), hidden=32)).eval(),
        text_encoder_2=T5EncoderModel(tiny_t5_config(len(tok5), d_model=32)).eval(),
        tokenizer=tok, tokenizer_2=tok5,
        scheduler=flow_scheduler(3.0, dynamic=True),
    )


def save_config(cfg: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(cfg, indent=2))
