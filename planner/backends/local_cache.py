"""Start-up caches for the ``local`` planner, kept in its converted-model folder.

A cold start is mostly fixed work: parsing a 33 MB tokenizer, building
xgrammar's table of 262k tokens and running the ~800-token few-shot prefix
through the model. Each result is saved once, next to the weights, under a
name that encodes what it depends on (xgrammar / transformers / torch versions,
the prefix text), so a changed prompt file or library simply makes a new file.
Files are written to a temporary name and renamed, so readers never see half
a file; a file that fails to load is rebuilt.

tokenizers, xgrammar, transformers and torch are imported where they are used
(heavy; this module is imported with the ``local`` backend's class).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib.metadata import version
from pathlib import Path

from .constrained import tokenizer_info


class RustTokenizer:
    """The few tokenizer methods the decoder needs, on ``tokenizers.Tokenizer`` directly."""

    chat_template = None

    def __init__(self, path: Path, bos_token_id: int | None):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self.bos_token_id = bos_token_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


def rust_tokenizer(folder: Path, config) -> RustTokenizer:
    return RustTokenizer(folder / "tokenizer.json", getattr(config, "bos_token_id", None))


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs start-up time
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _info_path(folder: Path) -> Path:
    return folder / f"xgrammar-{version('xgrammar')}-tokenizer-info.json"


def write_tokenizer_info(folder: Path, tokenizer, vocab_size: int) -> None:
    """Save xgrammar's table for ``tokenizer`` (called by the conversion, which has it loaded)."""
    info = tokenizer_info(tokenizer, vocab_size)
    _atomic_write(_info_path(folder), lambda tmp: Path(tmp).write_text(info.serialize_json()))


def cached_tokenizer_info(folder: Path, config):
    """xgrammar's ``TokenizerInfo`` for the folder's tokenizer, built once."""
    import xgrammar as xgr

    path = _info_path(folder)
    if path.is_file():
        try:
            return xgr.TokenizerInfo.deserialize_json(path.read_text())
        except Exception:  # a file from an incompatible build: rebuild it
            pass
    from transformers import AutoTokenizer

    info = tokenizer_info(AutoTokenizer.from_pretrained(folder, local_files_only=True),
                          int(getattr(config, "vocab_size", 0) or 0))
    _atomic_write(path, lambda tmp: Path(tmp).write_text(info.serialize_json()))
    return info


def cached_prefix_state(folder: Path, decoder, prefix: str) -> None:
    """Load (or compute and save) the decoder's key/value cache for ``prefix``."""
    import torch
    import transformers

    dtype = getattr(decoder.model, "dtype", "")
    key = hashlib.sha256(f"{prefix}|{dtype}|{transformers.__version__}|{torch.__version__}".encode()).hexdigest()[:16]
    path = folder / f"prefix-{key}.pt"
    if path.is_file():
        try:
            # our own file in our own cache folder (a pickled transformers cache object)
            decoder.load_prefix_state(torch.load(path, weights_only=False))
            return
        except Exception:
            pass
    state = decoder.prefix_state(prefix)
    _atomic_write(path, lambda tmp: torch.save(state, tmp))
