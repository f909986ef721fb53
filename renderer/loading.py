"""Find and load weights (hub id from the HF cache, diffusers folder, or one file) into a pipeline.

``load_pipeline`` builds the SD or SDXL pipeline with the defaults the model folder's
``guidance.json`` recommends (``folder_defaults``); ``plan_and_render.renderer.get_pipeline``
caches what it loads.

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

from .locate import HOW, _online, locate_model, resolve_hub
from .methods import check_options
from .pipeline_sd import LayoutPipeline
from .pipeline_sdxl import LayoutPipelineXL
from .saving import META_KEY
from .settings import check_model_defaults, dtype_name

TEXT_PARTS = ("text_encoder", "text_encoder_2")


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


def torch_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """A dtype name (fp16, bf16, fp32 and their aliases) as torch's; None: fp16 on CUDA, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name(dtype)]


# ---------------------------------------------------------------------------
# pipelines
# ---------------------------------------------------------------------------

def pipeline_from_components(components: dict, name: str = "custom", device: str | None = None,
                             dtype: str | torch.dtype | None = None) -> LayoutPipeline:
    """Wrap already-built components (e.g. ``tools.tiny.tiny_sd_components()``) in the SD or SDXL pipeline."""
    device = device or default_device()
    cls = LayoutPipelineXL if "text_encoder_2" in components else LayoutPipeline
    pipe = cls(**components, name=name)
    return pipe.to(device, torch_dtype(dtype, device))


def load_pipeline(model: str, device: str | None = None, dtype: str | None = None) -> LayoutPipeline:
    """SD 1.x/2.x or SDXL (chosen from the weights) from a hub id, a diffusers folder or one file, with
    the defaults the folder's ``guidance.json`` recommends. Most callers want the cached
    ``plan_and_render.renderer.get_pipeline``.

    Raises ``ModelUnavailableError`` (one line) when the weights cannot be found.
    """
    device = device or default_device()
    dt = torch_dtype(dtype, device)
    settings, methods = folder_defaults(model)
    _family, comps = load_components(str(model), device, dt)
    pipe = pipeline_from_components(comps, name=str(model), device=device, dtype=dt)
    pipe.settings_defaults, pipe.method_defaults = settings, methods
    return pipe


def folder_defaults(model: str | Path) -> tuple[dict, dict]:
    """(render settings, per-method options) a local model folder recommends in ``guidance.json``:
    ``{"settings": {"guidance_scale": 4}, "refocus": {"temperature": 1.0}}``; ({}, {}) for anything
    else. A model trained differently from SD can need other settings than the published ones, and
    the folder is where that knowledge travels. Keys starting with "_" are notes."""
    f = Path(model).expanduser() / "guidance.json"
    if not f.is_file():
        return {}, {}
    try:
        data, settings = json.loads(f.read_text()), {}
        if isinstance(data, dict):
            data = {k: v for k, v in data.items() if not k.startswith("_")}
            settings = check_model_defaults(data.pop("settings", {}))
        return settings, check_options(data)
    except (ValueError, UsageError) as e:
        raise ModelUnavailableError(f"{f} is not valid ({str(e).splitlines()[0]}); fix or delete it") from None


def load_components(model: str, device: str, dtype: torch.dtype) -> tuple[str, dict]:
    """('sd' | 'sdxl', components) from a folder, a single file or a hub id."""
    where = locate_model(model)  # "not found" says so, before anything loads
    p = Path(where)
    if p.is_file():
        return load_single_file(p, dtype)
    if p.is_dir():
        return load_folder(p, dtype)
    return load_folder(resolve_hub(where), dtype)


def load_folder(folder: Path, dtype: torch.dtype) -> tuple[str, dict]:
    import diffusers
    from safetensors import SafetensorError
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizerFast

    index_file = folder / "model_index.json"
    if not index_file.exists():
        raise ModelUnavailableError(f"{folder} is not a diffusers pipeline folder (no model_index.json); {HOW}")
    try:
        index = json.loads(index_file.read_text())
        family = "sdxl" if index.get("text_encoder_2") else "sd"
    except (ValueError, AttributeError) as e:
        raise ModelUnavailableError(f"{index_file} is not valid ({_first_line(e)}); {HOW}") from None
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
    return family, comps


# ---------------------------------------------------------------------------
# single file
# ---------------------------------------------------------------------------

def load_single_file(path: Path, dtype: torch.dtype) -> tuple[str, dict]:
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
                return _load_own_file(path, json.loads(meta), dtype)
            except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as e:
                raise ModelUnavailableError(f"{path} is damaged or incomplete ({_first_line(e)}); {HOW}") from None
    return _load_original_file(path, dtype)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def _load_own_file(path: Path, meta: dict, dtype: torch.dtype) -> tuple[str, dict]:
    import diffusers
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizerFast

    state = load_file(str(path))
    comps: dict = {}
    for name, cfg in meta["configs"].items():
        if name == "unet":
            m = diffusers.UNet2DConditionModel.from_config(cfg)
        elif name == "vae":
            m = diffusers.AutoencoderKL.from_config(cfg)
        else:
            cls = CLIPTextModelWithProjection if name == "text_encoder_2" else CLIPTextModel
            m = cls(CLIPTextConfig.from_dict(cfg))
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        m.load_state_dict(sub)
        comps[name] = m.to(dtype).eval()
    for name, t in meta["tokenizers"].items():
        merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in t["merges"]]
        comps[name] = CLIPTokenizerFast(vocab=t["vocab"], merges=merges, model_max_length=t["max_length"])
    sched = meta["scheduler"]
    comps["scheduler"] = getattr(diffusers, sched["class"]).from_config(sched["config"])
    return meta["family"], comps


def _load_original_file(path: Path, dtype: torch.dtype) -> tuple[str, dict]:
    """An original-format SD checkpoint; diffusers needs the matching configs from the local cache."""
    import diffusers

    try:
        from safetensors import safe_open

        xl = False
        if path.suffix == ".safetensors":
            with safe_open(str(path), "pt") as f:
                xl = any(k.startswith("conditioner.embedders.1") for k in f.keys())
        cls = diffusers.StableDiffusionXLPipeline if xl else diffusers.StableDiffusionPipeline
        pipe = cls.from_single_file(str(path), torch_dtype=dtype, local_files_only=not _online())
    except Exception as e:  # noqa: BLE001
        raise ModelUnavailableError(f"could not load checkpoint {path} ({str(e).splitlines()[0][:160]}); {HOW}") from None
    names = ("unet", "vae", "text_encoder", "tokenizer", "scheduler") + (("text_encoder_2", "tokenizer_2") if xl else ())
    return ("sdxl" if xl else "sd"), {n: getattr(pipe, n) for n in names}
