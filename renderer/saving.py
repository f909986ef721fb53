"""Write a pipeline as a diffusers folder or as one .safetensors file (configs and tokenizers in its metadata).

Apart from ``loading`` so that pipelines can save themselves without importing the loader, which
imports the pipeline classes.
"""

from __future__ import annotations

import json
from pathlib import Path

META_KEY = "plan_and_render"  # the single file's metadata key that ``loading`` reads back


def save_folder(pipe, path) -> None:
    """A standard diffusers folder (model_index.json + one subfolder per component)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": "StableDiffusionXLPipeline" if pipe.family == "sdxl" else "StableDiffusionPipeline"}
    for name, comp in pipe.components().items():
        comp.save_pretrained(str(path / name))
        lib = "transformers" if name.startswith(("text_encoder", "tokenizer")) else "diffusers"
        index[name] = [lib, type(comp).__name__]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps({k: v for k, v in dict(cfg).items()}, default=list))


def save_single_file(pipe, path) -> None:
    """All weights in one .safetensors; configs and tokenizers ride in its metadata."""
    from safetensors.torch import save_file

    tensors, meta = {}, {"family": pipe.family, "configs": {}, "tokenizers": {}}
    for name, m in pipe.modules().items():
        for k, v in m.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().contiguous().clone().cpu()
        cfg = m.config.to_dict() if hasattr(m.config, "to_dict") else _jsonable(m.config)
        meta["configs"][name] = json.loads(json.dumps(cfg, default=str))
    for name, tok in pipe.components().items():
        if name.startswith("tokenizer"):
            model = json.loads(tok.backend_tokenizer.to_str())["model"]
            meta["tokenizers"][name] = {"vocab": model["vocab"], "merges": model["merges"],
                                        "max_length": tok.model_max_length}
    meta["scheduler"] = {"class": type(pipe.scheduler).__name__, "config": _jsonable(pipe.scheduler.config)}
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})
