"""Find and load weights (hub id from the HF cache, diffusers folder, or one file) into a pipeline.

``load_pipeline`` builds the pipeline of the model's family - SD 1.x/2.x, SDXL, SD 3 / 3.5 or
FLUX.1 [dev]/[schnell], told apart by the folder's transformer/UNet and text encoders
(``detect_family``) - with the defaults the model folder's ``guidance.json`` recommends
(``folder_defaults``, ``folder_layout_blocks``), optionally with CPU offload (``offload``);
``plan_and_render.renderer.get_pipeline`` caches what it loads.

Loading never waits on a network that is not there: hub ids are looked up in
the local Hugging Face cache first; the network is tried only when
``HF_HUB_OFFLINE`` is unset and huggingface.co answers within a few seconds.
Any failure to find weights becomes one ``ModelUnavailableError`` line.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from plan_and_render.errors import ModelUnavailableError, UsageError

from . import offload as O
from .folder import size_prior
from .locate import HOW, _online, locate_model, resolve_hub
from .methods import check_options
from .pipeline_flux import LayoutPipelineFlux
from .pipeline_sd import LayoutPipeline
from .pipeline_sd3 import LayoutPipelineSD3
from .pipeline_sdxl import LayoutPipelineXL
from .saving import META_KEY
from .settings import check_model_defaults, dtype_name

TEXT_PARTS = ("text_encoder", "text_encoder_2")
TRANSFORMER_FAMILIES = ("sd3", "flux")


def default_device() -> str:
    """CUDA when available, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str) -> str:
    """``name`` if this machine can run on it, else a UsageError saying why (before any weights load)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"device {name!r} is not a torch device name (cpu, cuda, cuda:1, mps...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r}: CUDA is not available here (no GPU, or torch was built without "
                             "CUDA); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"device {name!r}: Apple MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as e:
            raise UsageError(f"device {name!r} cannot be used here ({_first_line(e)}); use --device cpu") from None
    return name


def torch_dtype(dtype: str | torch.dtype | None, device: str, family: str = "sd") -> torch.dtype:
    """A dtype name (fp16, bf16, fp32 and their aliases) as torch's; None: on CUDA fp16 for UNets and
    bf16 for SD 3 / FLUX (what they were trained and published in), fp32 on the CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if family in TRANSFORMER_FAMILIES else torch.float16
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name(dtype)]


# ---------------------------------------------------------------------------
# pipelines
# ---------------------------------------------------------------------------

def components_family(components: dict) -> str:
    """"sd", "sdxl", "sd3" or "flux" from the parts themselves (the denoiser's class decides)."""
    if "transformer" in components:
        return "flux" if type(components["transformer"]).__name__.startswith("Flux") else "sd3"
    return "sdxl" if "text_encoder_2" in components else "sd"


PIPELINES = {"sd": LayoutPipeline, "sdxl": LayoutPipelineXL, "sd3": LayoutPipelineSD3, "flux": LayoutPipelineFlux}


def pipeline_from_components(components: dict, name: str = "custom", device: str | None = None,
                             dtype: str | torch.dtype | None = None, offload: str | None = None) -> LayoutPipeline:
    """Wrap already-built components (e.g. ``tools.tiny.tiny_sd3_components()``) in their family's pipeline,
    on ``device`` in ``dtype`` (``offload``: "model" or "sequential" keeps the weights on the CPU)."""
    device = device or default_device()
    family = components_family(components)
    pipe = PIPELINES[family](**components, name=name)
    pipe.to(None if offload in ("model", "sequential") else device, torch_dtype(dtype, device, family))
    O.enable(pipe, offload or "none", device)
    return pipe


def load_pipeline(model: str, device: str | None = None, dtype: str | None = None,
                  offload: str | None = None) -> LayoutPipeline:
    """The model's pipeline (SD 1.x/2.x, SDXL, SD 3 / 3.5 or FLUX, chosen from the weights) from a hub id,
    a diffusers folder or one file, with the defaults the folder's ``guidance.json`` recommends.
    ``offload`` ("model", "sequential"; SD 3 / FLUX) keeps weights on the CPU (``offload.py``). Most
    callers want the cached ``plan_and_render.renderer.get_pipeline``.

    Raises ``ModelUnavailableError`` (one line) when the weights cannot be found.
    """
    device = device or default_device()
    if offload not in (None, *O.MODES):
        raise UsageError(f"unknown offload mode {offload!r}; choose from {', '.join(O.MODES)}")
    settings, methods = folder_defaults(model)
    family, comps = load_components(str(model), device, dtype)
    pipe = pipeline_from_components(comps, name=str(model), device=device, dtype=torch_dtype(dtype, device, family),
                                    offload=offload)
    pipe.settings_defaults, pipe.method_defaults = settings, methods
    if hasattr(pipe, "layout_blocks"):
        pipe.layout_blocks = folder_layout_blocks(model)
    return pipe


def folder_defaults(model: str | Path) -> tuple[dict, dict]:
    """(render settings, per-method options) a local model folder recommends in ``guidance.json``:
    ``{"settings": {"guidance_scale": 4}, "refocus": {"temperature": 1.0}}``; ({}, {}) for anything
    else. A model trained differently from SD can need other settings than the published ones, and
    the folder is where that knowledge travels. Keys starting with "_" are notes; ``"layout_blocks"`` and
    ``"size_prior"`` are read by ``folder_layout_blocks`` and ``folder.size_prior`` (checked here too)."""
    f = Path(model).expanduser() / "guidance.json"
    if not f.is_file():
        return {}, {}
    try:
        data, settings = json.loads(f.read_text()), {}
        if isinstance(data, dict):
            size_prior(model)
            data = {k: v for k, v in data.items() if not k.startswith("_") and k not in ("layout_blocks", "size_prior")}
            settings = check_model_defaults(data.pop("settings", {}))
        return settings, check_options(data)
    except (ValueError, UsageError) as e:
        raise ModelUnavailableError(f"{f} is not valid ({str(e).splitlines()[0]}); fix or delete it") from None


def folder_layout_blocks(model: str | Path) -> list[int] | None:
    """The joint blocks a transformer model's folder says carry layout (``"layout_blocks": [2, 3]`` in its
    ``guidance.json``, measured on that model: docs/renderer.md); None: the rule of
    ``joint_attention.default_layout_blocks``."""
    f = Path(model).expanduser() / "guidance.json"
    if not f.is_file():
        return None
    blocks = json.loads(f.read_text()).get("layout_blocks")
    if blocks is not None and not (isinstance(blocks, list) and all(isinstance(b, int) and b >= 0 for b in blocks)):
        raise ModelUnavailableError(f"{f}: layout_blocks must be a list of block indices, e.g. [2, 3]")
    return blocks


def load_components(model: str, device: str, dtype: str | torch.dtype | None) -> tuple[str, dict]:
    """(family, components) from a folder, a single file or a hub id; ``dtype`` None: the family's default."""
    where = locate_model(model)  # "not found" says so, before anything loads
    p = Path(where)
    if p.is_file():
        return load_single_file(p, dtype, device)
    if p.is_dir():
        return load_folder(p, dtype, device)
    return load_folder(resolve_hub(where), dtype, device)


def detect_family(folder: Path) -> str:
    """"sd", "sdxl", "sd3" or "flux" from a diffusers folder: its transformer's class when it has one
    (SD3Transformer2DModel, FluxTransformer2DModel), else SDXL when it has a second text encoder."""
    index_file = folder / "model_index.json"
    if not index_file.exists():
        raise ModelUnavailableError(f"{folder} is not a diffusers pipeline folder (no model_index.json); {HOW}")
    try:
        index = json.loads(index_file.read_text())
        index.get("transformer")
    except (ValueError, AttributeError) as e:
        raise ModelUnavailableError(f"{index_file} is not valid ({_first_line(e)}); {HOW}") from None
    if index.get("transformer") or (folder / "transformer" / "config.json").exists():
        cfg = folder / "transformer" / "config.json"
        cls = json.loads(cfg.read_text()).get("_class_name", "") if cfg.exists() else ""
        cls = cls or (index.get("transformer") or [None, ""])[1] or ""
        if cls.startswith("Flux") or index.get("_class_name", "").startswith("Flux"):
            return "flux"
        if cls.startswith("SD3") or index.get("_class_name", "").startswith("StableDiffusion3"):
            return "sd3"
        raise ModelUnavailableError(f"{folder}: transformer {cls or '?'} is not one of SD 3 / FLUX; "
                                    "supported families: SD 1.x/2.x, SDXL, SD 3 / 3.5, FLUX.1")
    return "sdxl" if index.get("text_encoder_2") else "sd"


def load_folder(folder: Path, dtype: str | torch.dtype | None, device: str = "cpu") -> tuple[str, dict]:
    family = detect_family(folder)
    dtype = torch_dtype(dtype, device, family)
    if family in TRANSFORMER_FAMILIES:
        return family, _load_transformer_folder(folder, family, dtype)
    return family, _load_unet_folder(folder, family, dtype)


def _parts(folder: Path) -> set[str]:
    """Parts the folder's model_index.json names (not null) and that exist as subfolders."""
    index = json.loads((folder / "model_index.json").read_text())
    return {k for k, v in index.items() if isinstance(v, list) and v[0] is not None and (folder / k).is_dir()}


def _load_transformer_folder(folder: Path, family: str, dtype: torch.dtype) -> dict:
    """SD 3: transformer, VAE, CLIP-L, CLIP-G, T5 (optional: SD 3 runs without it) and their tokenizers;
    FLUX: transformer, VAE, CLIP-L, T5 and theirs; plus the flow-matching scheduler."""
    import diffusers
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizerFast, T5EncoderModel, T5TokenizerFast

    have = _parts(folder)
    try:
        model_cls = diffusers.SD3Transformer2DModel if family == "sd3" else diffusers.FluxTransformer2DModel
        comps: dict = {
            "transformer": model_cls.from_pretrained(folder, subfolder="transformer", torch_dtype=dtype),
            "vae": diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype),
            "tokenizer": CLIPTokenizerFast.from_pretrained(folder, subfolder="tokenizer"),
            "scheduler": diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler"),
        }
        if family == "sd3":
            for k in ("text_encoder", "text_encoder_2"):
                comps[k] = CLIPTextModelWithProjection.from_pretrained(folder, subfolder=k, dtype=dtype)
            comps["tokenizer_2"] = CLIPTokenizerFast.from_pretrained(folder, subfolder="tokenizer_2")
            t5 = "text_encoder_3" in have
            comps["text_encoder_3"] = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder_3", dtype=dtype) if t5 else None
            comps["tokenizer_3"] = T5TokenizerFast.from_pretrained(folder, subfolder="tokenizer_3") if t5 else None
        else:
            comps["text_encoder"] = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype)
            comps["text_encoder_2"] = T5EncoderModel.from_pretrained(folder, subfolder="text_encoder_2", dtype=dtype)
            comps["tokenizer_2"] = T5TokenizerFast.from_pretrained(folder, subfolder="tokenizer_2")
    except (OSError, ValueError, RuntimeError, TypeError) as e:
        raise ModelUnavailableError(f"incomplete {family} folder {folder}: {_first_line(e)}; {HOW}") from None
    return comps


def _load_unet_folder(folder: Path, family: str, dtype: torch.dtype) -> dict:
    import diffusers
    from safetensors import SafetensorError
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizerFast

    index = json.loads((folder / "model_index.json").read_text())
    try:
        comps: dict = {
            "unet": diffusers.UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype),
            "vae": diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype),
            "text_encoder": CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype),
            "tokenizer": CLIPTokenizerFast.from_pretrained(folder, subfolder="tokenizer"),
        }
        sched_cls = getattr(diffusers, index.get("scheduler", [None, "DDIMScheduler"])[1], diffusers.DDIMScheduler)
        comps["scheduler"] = sched_cls.from_pretrained(folder, subfolder="scheduler")
        if family == "sdxl":
            comps["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(folder, subfolder="text_encoder_2",
                                                                                  dtype=dtype)
            comps["tokenizer_2"] = CLIPTokenizerFast.from_pretrained(folder, subfolder="tokenizer_2")
    except (OSError, ValueError, RuntimeError, TypeError, SafetensorError) as e:
        raise ModelUnavailableError(f"incomplete pipeline folder {folder}: {_first_line(e)}; {HOW}") from None
    return comps


# ---------------------------------------------------------------------------
# single file
# ---------------------------------------------------------------------------

def load_single_file(path: Path, dtype: str | torch.dtype | None, device: str = "cpu") -> tuple[str, dict]:
    from safetensors import SafetensorError, safe_open

    if path.stat().st_size == 0:
        raise ModelUnavailableError(f"weights file {path} is empty; {HOW}")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), "pt") as f:
                meta = (f.metadata() or {}).get(META_KEY)
        except (SafetensorError, OSError) as e:
            raise ModelUnavailableError(f"{path} is not a readable .safetensors file ({_first_line(e)}); "
                                        f"{HOW}") from None
        if meta:
            try:
                return _load_own_file(path, json.loads(meta), dtype, device)
            except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
                raise ModelUnavailableError(f"{path} is damaged or incomplete ({_first_line(e)}); {HOW}") from None
    return _load_original_file(path, dtype, device)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def _own_tokenizer(t: dict):
    """A tokenizer saved by ``saving.save_single_file``: CLIP from vocab + merges, others from their JSON."""
    from transformers import CLIPTokenizerFast

    if "json" in t:
        import transformers
        from tokenizers import Tokenizer

        cls = getattr(transformers, t["class"])
        return cls(tokenizer_object=Tokenizer.from_str(t["json"]), model_max_length=t["max_length"], **t["special"])
    merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in t["merges"]]
    return CLIPTokenizerFast(vocab=t["vocab"], merges=merges, model_max_length=t["max_length"])


def _load_own_file(path: Path, meta: dict, dtype: str | torch.dtype | None, device: str) -> tuple[str, dict]:
    import diffusers
    import transformers
    from safetensors.torch import load_file

    family = meta["family"]
    family = "flux" if family.startswith("flux") else family
    dtype = torch_dtype(dtype, device, family)
    state = load_file(str(path))
    comps: dict = {}
    classes = meta.get("classes", {})
    for name, cfg in meta["configs"].items():
        cls_name = classes.get(name) or {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL",
                                          "text_encoder_2": "CLIPTextModelWithProjection"}.get(name, "CLIPTextModel")
        if hasattr(diffusers, cls_name):
            m = getattr(diffusers, cls_name).from_config(cfg)
        else:
            cls = getattr(transformers, cls_name)
            m = cls(cls.config_class.from_dict(cfg))
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        m.load_state_dict(sub)
        comps[name] = torch.nn.Module.to(m, dtype).eval()
    for name, t in meta["tokenizers"].items():
        comps[name] = _own_tokenizer(t)
    if family == "sd3" and "text_encoder_3" not in comps:
        comps["text_encoder_3"] = comps["tokenizer_3"] = None
    sched = meta["scheduler"]
    comps["scheduler"] = getattr(diffusers, sched["class"]).from_config(sched["config"])
    return family, comps


def original_family(keys) -> str:
    """The family of an original-format checkpoint from its tensor names: "flux" (double_blocks...),
    "sd3" (joint_blocks...), "sdxl" (a second conditioner embedder) or "sd"."""
    keys = list(keys)
    if any(k.split("model.diffusion_model.")[-1].startswith("double_blocks.") for k in keys):
        return "flux"
    if any(k.split("model.diffusion_model.")[-1].startswith("joint_blocks.") for k in keys):
        return "sd3"
    return "sdxl" if any(k.startswith("conditioner.embedders.1") for k in keys) else "sd"


# the published pipelines whose configs (and, for a transformer-only file, other parts) an original
# checkpoint needs from the local cache
FLUX_REPOS = {True: "black-forest-labs/FLUX.1-dev", False: "black-forest-labs/FLUX.1-schnell"}


def _load_original_file(path: Path, dtype: str | torch.dtype | None, device: str) -> tuple[str, dict]:
    """An original-format checkpoint (Stability's SD 1.x/XL/3.x, Black Forest Labs' FLUX); diffusers
    needs the matching configs from the local cache (and, for a FLUX transformer file, the other parts)."""
    import diffusers

    family, keys = "sd", []
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                keys = list(f.keys())
            family = original_family(keys)
        dt = torch_dtype(dtype, device, family)
        if family == "flux":
            dev = any(k.endswith("guidance_in.in_layer.weight") for k in keys)
            transformer = diffusers.FluxTransformer2DModel.from_single_file(
                str(path), torch_dtype=dt, config=FLUX_REPOS[dev], subfolder="transformer",
                local_files_only=not _online())
            _, comps = load_folder(resolve_hub(FLUX_REPOS[dev]), dt, device)
            return family, {**comps, "transformer": transformer}
        cls = {"sd": diffusers.StableDiffusionPipeline, "sdxl": diffusers.StableDiffusionXLPipeline,
               "sd3": diffusers.StableDiffusion3Pipeline}[family]
        pipe = cls.from_single_file(str(path), torch_dtype=dt, local_files_only=not _online())
    except ModelUnavailableError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ModelUnavailableError(f"could not load checkpoint {path} ({str(e).splitlines()[0][:160]}); {HOW}") from None
    names = {"sd": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
             "sdxl": ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "text_encoder_2", "tokenizer_2"),
             "sd3": ("transformer", "vae", "text_encoder", "tokenizer", "scheduler", "text_encoder_2", "tokenizer_2",
                     "text_encoder_3", "tokenizer_3")}[family]
    return family, {n: getattr(pipe, n) for n in names}
