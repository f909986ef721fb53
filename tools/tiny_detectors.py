"""Tiny random-weight open-vocabulary detectors, built offline from configs and saved as model folders.

``plan_and_render.scoring`` loads OWL-ViT, OWLv2 and Grounding DINO the standard way (``AutoProcessor`` +
``AutoModelForZeroShotObjectDetection`` from a folder); these folders let tests run that path - loading,
the forward pass, thresholds, NMS, box conversion - in a second, without downloading weights. Their
detections are random, so tests check the mechanics against the model's own outputs, not what is found.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .tiny import build_clip_tokenizer

WORDS = "a an photo of red green blue yellow orange purple circle square star ring triangle cat dog".split()


def _owl_tokenizer(words: list[str], max_length: int):
    """A CLIP tokenizer whose start token is not id 0: OWL models treat a query starting with id 0 as padding."""
    from transformers import CLIPTokenizerFast

    base = build_clip_tokenizer(words, model_max_length=max_length)
    model = json.loads(base.backend_tokenizer.to_str())["model"]
    vocab = {"<|unused|>": 0, **{tok: i + 1 for tok, i in model["vocab"].items()}}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return CLIPTokenizerFast(vocab=vocab, merges=merges, model_max_length=max_length, pad_token="<|endoftext|>")


def tiny_owlv2(out_dir: str | Path, seed: int = 0, image_size: int = 64) -> Path:
    """An OWLv2 detector (one layer each, 16-pixel patches: 16 boxes on a 64-pixel input) in ``out_dir``."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2Processor
    from transformers.models.owlv2 import Owlv2ImageProcessorPil

    out = Path(out_dir)
    tok = _owl_tokenizer(WORDS, max_length=16)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=image_size, patch_size=16)
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(Owlv2Config(text_config=text, vision_config=vision, projection_dim=32)).eval()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": image_size, "width": image_size}),
                               tokenizer=tok)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_grounding_dino(out_dir: str | Path, seed: int = 0) -> Path:
    """A Grounding DINO detector (tiny Swin backbone, one encoder layer, 10 box queries) in ``out_dir``."""
    from transformers import BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoProcessor
    from transformers.models.grounding_dino import GroundingDinoImageProcessorPil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]) + "\n")
    tok = BertTokenizerFast(str(out / "vocab.txt"), model_max_length=32)
    config = GroundingDinoConfig(
        backbone_config=dict(model_type="swin", embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                             window_size=2, image_size=128, out_features=["stage2", "stage3", "stage4"]),
        text_config=dict(model_type="bert", vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32, max_position_embeddings=32),
        num_queries=10, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_feature_levels=4, encoder_n_points=1,
        decoder_n_points=1, max_text_len=32)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 128})
    model.save_pretrained(out)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(out)
    return out
