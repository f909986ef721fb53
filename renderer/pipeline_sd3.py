"""Layout-guided Stable Diffusion 3 / 3.5 (MMDiT, flow matching). Work in progress: the text recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sd3_text_embeddings(clip_l, clip_g, t5, ids_l: torch.Tensor, ids_g: torch.Tensor,
                        ids_t5: torch.Tensor | None, t5_length: int, joint_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SD 3's conditioning: (sequence (B, L_clip + L_t5, joint_dim), pooled (B, P_l + P_g)).

    Each CLIP's penultimate hidden states, concatenated along channels and zero-padded to the T5
    width, then the T5 states appended along the sequence (zeros of ``t5_length`` tokens when the
    model has no T5); pooled: the two CLIPs' projected end-token embeddings side by side. The
    positions of the sequence are therefore CLIP tokens first (0 .. L_clip-1), then T5 tokens.
    """
    out_l = clip_l(ids_l, output_hidden_states=True)
    out_g = clip_g(ids_g, output_hidden_states=True)
    clip = torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], -1)
    if t5 is not None and ids_t5 is not None:
        seq5 = t5(ids_t5)[0]
    else:
        seq5 = clip.new_zeros(clip.shape[0], t5_length, joint_dim)
    clip = F.pad(clip, (0, seq5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, seq5.to(clip.dtype)], 1), torch.cat([out_l.text_embeds, out_g.text_embeds], -1)
