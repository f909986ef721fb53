"""Where a model's weights are: a local folder or file (as an absolute path), or a hub id in the cache.

Torch-free, so the app can say "not found" before it loads a planner or torch: ``locate_model`` is the
check, ``resolve_hub`` turns a hub id into its local snapshot folder. The network is tried only when
``HF_HUB_OFFLINE`` is unset and huggingface.co answers within a few seconds.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from plan_and_render.errors import ModelUnavailableError, UsageError

HOW = ("provide a local diffusers folder (--model PATH), a single .safetensors/.ckpt file, "
       "or download it once into the Hugging Face cache (huggingface-cli download ID) and set HF_HUB_OFFLINE=1")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_HUB_FILES = ["*.json", "*.txt", "tokenizer*/*", "*.safetensors"]


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _online() -> bool:
    if offline():
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` or ``name`` (a path such as ``./m``, ``/m``, ``a/b/c`` or ``m.safetensors`` is not)."""
    return bool(_HUB_ID.fullmatch(text)) and not text.endswith(WEIGHT_SUFFIXES)


def model_text(model: object) -> str:
    """The model argument as text; anything but a string or a path is a UsageError."""
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise UsageError(f"model must be a hub id, a folder or a weights file path, not {model!r}")
    return str(model).strip()


def _cached_snapshot(model: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True, allow_patterns=_HUB_FILES))
    except Exception:  # noqa: BLE001 - not in the cache (or no hub library): not found here
        return None


def locate_model(model: str | os.PathLike) -> str:
    """The weights ``model`` names: an existing folder or file as its absolute path (so it means the same
    from any working directory), else a hub id that is in the local cache or can be downloaded.

    Raises ``ModelUnavailableError`` saying it was not found, and where it was looked for.
    """
    text = model_text(model)
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    here = f"no folder or file {text!r} in {Path.cwd()}"
    if not looks_like_hub_id(text):
        raise ModelUnavailableError(f"model not found: {here}; {HOW}")
    if _cached_snapshot(text) is not None:
        return text
    why = ("HF_HUB_OFFLINE is set, so the hub was not asked" if offline() else
           None if _online() else "the hub cannot be reached")
    if why is None:
        return text  # to be downloaded when it loads
    raise ModelUnavailableError(f"model {text!r} not found: {here}, and no {text!r} in the local Hugging Face cache "
                                f"({why}); {HOW}")


def resolve_hub(model: str) -> Path:
    """A hub id -> its local snapshot folder (cache first, then the network if reachable)."""
    cached = _cached_snapshot(model)
    if cached is not None:
        return cached
    if not _online():
        why = "HF_HUB_OFFLINE is set" if offline() else "the hub cannot be reached"
        raise ModelUnavailableError(f"model {model!r} is not in the local Hugging Face cache ({why}); {HOW}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, allow_patterns=_HUB_FILES))
    except Exception as e:  # noqa: BLE001 - one line for the user
        raise ModelUnavailableError(f"could not download model {model!r} ({type(e).__name__}); {HOW}") from None
