"""Layout-guided SDXL: the SD pipeline's algorithm with SDXL's text conditioning.

SDXL concatenates the penultimate hidden states of two CLIP text encoders
(token positions are shared, so token mapping uses the first tokenizer) and
adds the second encoder's pooled projection plus size/crop "time ids" as extra
UNet inputs. Everything else - the sampling loop, guidance, scores - is
inherited unchanged from ``LayoutPipeline``; the defaults that differ (guidance
scale 5.0) are the "sdxl" row of ``settings.FAMILY_DEFAULTS``.
"""

from __future__ import annotations

import torch

from .pipeline_sd import LayoutPipeline


class LayoutPipelineXL(LayoutPipeline):
    family = "sdxl"

    def __init__(self, unet, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler,
                 name: str = "custom") -> None:
        self.text_encoder_2, self.tokenizer_2 = text_encoder_2, tokenizer_2
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler, name)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {**super().modules(), "text_encoder_2": self.text_encoder_2}

    def components(self) -> dict:
        return {**super().components(), "tokenizer_2": self.tokenizer_2}

    def _encode_one(self, text: str, zero: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = self.text_encoder(self._tokens(self.tokenizer, text), output_hidden_states=True).hidden_states[-2]
        out2 = self.text_encoder_2(self._tokens(self.tokenizer_2, text), output_hidden_states=True)
        hidden = torch.cat([h1, out2.hidden_states[-2]], dim=-1)
        pooled = out2.text_embeds
        if zero:  # SDXL's default for an empty negative prompt
            hidden, pooled = torch.zeros_like(hidden), torch.zeros_like(pooled)
        return hidden.to(self.dtype), pooled.to(self.dtype)

    def encode_words(self, words: list[str]) -> torch.Tensor:
        """(1, M, D): each word's first-token state from both encoders (penultimate layers), concatenated."""
        def first_token(encoder, tokenizer) -> torch.Tensor:
            ids = tokenizer(list(words), padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(self.device)
            return encoder(ids, output_hidden_states=True).hidden_states[-2][:, 1]

        both = torch.cat([first_token(self.text_encoder, self.tokenizer),
                          first_token(self.text_encoder_2, self.tokenizer_2)], dim=-1)
        return both[None].to(self.dtype)

    def encode_text(self, text: str, negative: str):
        cond, pooled = self._encode_one(text)
        uncond, pooled_u = self._encode_one(negative, zero=not negative)
        return cond, uncond, {"text_embeds": pooled}, {"text_embeds": pooled_u}

    def unet_kwargs(self, extra: dict, batch: int, size: tuple[int, int]) -> dict:
        h, w = size
        ids = torch.tensor([[h, w, 0, 0, h, w]], device=self.device, dtype=self.dtype).expand(batch, -1)
        return {"text_embeds": extra["text_embeds"].expand(batch, -1), "time_ids": ids}
