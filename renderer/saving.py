"""Write a pipeline as a diffusers folder or as one .safetensors file (configs and tokenizers in its metadata).

Apart from ``loading`` so that pipelines can save themselves without importing the loader, which
imports the pipeline classes.
"""

from __future__ import annotations

import json
from pathlib import Path

META_KEY = "plan_and_render"  # the single file's metadata key that ``loading`` reads back
INDEX_CLASS = {"sd": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline",
               "flux": "FluxPipeline", "flux-schnell": "FluxPipeline"}


def save_folder(pipe, path) -> None:
    """A standard diffusers folder (model_index.json + one subfolder per component)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": INDEX_CLASS[pipe.family]}
    for name, comp in pipe.components().items():
        if comp is None:  # SD 3 without its T5
            index[name] = [None, None]
            continue
        comp.save_pretrained(str(path / name))
        lib = "transformers" if name.startswith(("text_encoder", "tokenizer")) else "diffusers"
        index[name] = [lib, type(comp).__name__]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps({k: v for k, v in dict(cfg).items()}, default=list))


def _tokenizer_meta(tok) -> dict:
    """CLIP-style BPE as vocab + merges (as before); any other fast tokenizer as its full JSON."""
    data = json.loads(tok.backend_tokenizer.to_str())
    if data["model"]["type"] == "BPE":
        return {"vocab": data["model"]["vocab"], "merges": data["model"]["merges"], "max_length": tok.model_max_length}
    special = {k: str(getattr(tok, k)) for k in ("eos_token", "pad_token", "unk_token") if getattr(tok, k, None)}
    if type(tok).__name__.startswith("T5"):
        special["extra_ids"] = 0
    return {"class": type(tok).__name__, "json": tok.backend_tokenizer.to_str(), "max_length": tok.model_max_length,
            "special": special}


def save_single_file(pipe, path) -> None:
    """All weights in one .safetensors; configs and tokenizers ride in its metadata."""
    from safetensors.torch import save_file

    tensors, meta = {}, {"family": pipe.family, "configs": {}, "classes": {}, "tokenizers": {}}
    for name, m in pipe.modules().items():
        for k, v in m.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().clone().cpu()
        cfg = m.config.to_dict() if hasattr(m.config, "to_dict") else _jsonable(m.config)
        meta["configs"][name] = json.loads(json.dumps(cfg, default=str))
        meta["classes"][name] = type(m).__name__
    for name, tok in pipe.components().items():
        if name.startswith("tokenizer") and tok is not None:
            meta["tokenizers"][name] = _tokenizer_meta(tok)
    meta["scheduler"] = {"class": type(pipe.scheduler).__name__, "config": _jsonable(pipe.scheduler.config)}
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})
