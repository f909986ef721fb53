"""Run folders and crash-safe files.

Every file a run writes goes through ``atomic_write``: the bytes go to a temp
file in the same folder, are flushed to disk, then ``os.replace`` puts them in
place. A crash or Ctrl-C therefore leaves either the old file or the new one,
never half of one - which is what lets ``plan.json`` and ``layout.png`` survive
a render that is interrupted or cannot start.
"""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator

from ..errors import UsageError

DEFAULT_OUTPUTS = Path("outputs")

# Names that must never reach metadata.json, whatever a caller passes in options.
_SECRET_WORDS = ("key", "token", "secret", "password", "auth", "credential")


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; put it back at once
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 must not survive the rename


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path`` (same suffix); on success it replaces ``path`` with the mode a
    plain ``open()`` would have given (images and metadata are meant to be shared and served)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a folder; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:  # name the file the caller asked for, not the folder or the temp file
        raise OSError(e.errno, e.strerror, str(path)) from None
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # the writer may not have synced
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers never see a partial file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def atomic_save_image(image, path: str | Path) -> Path:
    """Save a PIL image atomically; the format comes from the suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format=(path.suffix.lstrip(".") or "png").upper().replace("JPG", "JPEG"))
    return path


# --------------------------------------------------------------------------
# Run folders
# --------------------------------------------------------------------------


def slugify(text: str, max_len: int = 40) -> str:
    """``"A gray cat, left of a vase!"`` -> ``"a-gray-cat-left-of-a-vase"`` (ASCII, never empty)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "run"


def new_run_dir(prompt: str, root: str | Path = DEFAULT_OUTPUTS, now: datetime | None = None) -> Path:
    """Create and return ``root/<YYYYmmdd-HHMMSS>-<slug>/``; a clash gets ``-2``, ``-3``..."""
    now = now or datetime.now()
    base = Path(root) / f"{now:%Y%m%d-%H%M%S}-{slugify(prompt)}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


def image_names(n: int) -> list[str]:
    """``image.png`` for one image, ``image-1.png`` ... ``image-N.png`` for several."""
    return ["image.png"] if n == 1 else [f"image-{i}.png" for i in range(1, n + 1)]


CONTACT_SHEET = "contact-sheet.png"
# The files a run writes into its folder (and the temp files of ``atomic_path`` a kill may leave).
_RUN_FILES = re.compile(r"(plan\.json|layout\.png|metadata\.json|image(-\d+)?\.png|" + re.escape(CONTACT_SHEET)
                        + r")|\.(plan|layout|metadata|image(-\d+)?|contact-sheet)\..+\.tmp\.(json|png)")


def claim_run_dir(folder: str | Path) -> Path:
    """Make ``folder`` this run's own: create it, or remove from it the files an earlier run wrote there
    (plan.json, layout.png, image*.png, contact-sheet.png, metadata.json; other files stay).

    So a folder never holds images of one run beside the plan of another - not after a run with fewer
    images, and not after a run killed halfway. A path that is a file is a UsageError.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"output folder {str(folder)!r} is a file; give a folder (a run writes several files)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if _RUN_FILES.fullmatch(entry.name) and entry.is_file():
                entry.unlink()
    except OSError as e:
        raise UsageError(f"cannot use output folder {str(folder)!r}: {e.strerror or e}") from None
    return folder


def contact_sheet(images: list, labels: list[str] | None = None, columns: int | None = None, gap: int = 4):
    """One grid image of ``images`` (PIL), near-square by default, each tile captioned with its label.

    Tiles keep the first image's size (others are resized to it); captions sit in a strip under each tile,
    so the pictures themselves are untouched. Used for ``-n N`` runs, batch prompts and the web UI.
    """
    from PIL import Image, ImageDraw, ImageFont

    if not images:
        raise ValueError("a contact sheet needs at least one image")
    w, h = images[0].size
    cols = columns or max(1, round(len(images) ** 0.5 + 0.49))
    rows = -(-len(images) // cols)
    font = ImageFont.load_default()
    strip = 14 if labels else 0
    sheet = Image.new("RGB", (cols * w + (cols + 1) * gap, rows * (h + strip) + (rows + 1) * gap), "white")
    draw = ImageDraw.Draw(sheet)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        x, y = gap + c * (w + gap), gap + r * (h + strip + gap)
        sheet.paste(img.convert("RGB").resize((w, h)) if img.size != (w, h) else img.convert("RGB"), (x, y))
        if labels:
            draw.text((x + 2, y + h + 1), str(labels[k])[: max(4, w // 6)], fill="black", font=font)
    return sheet


# --------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------

_PACKAGES = ("plan-and-render", "torch", "diffusers", "transformers", "pydantic", "numpy", "pillow", "click")


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages that decide what an image looks like."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def _is_secret(name: str) -> bool:
    return any(w in name.lower() for w in _SECRET_WORDS)


def _strip_userinfo(url: str) -> str:
    """``https://user:pw@host/v1`` -> ``https://host/v1``; other strings unchanged."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@\s]*@", r"\1", url, flags=re.IGNORECASE)


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """Planner options fit to record: no secrets, no credentials inside URLs, no unset values."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if v is None or _is_secret(k):
            continue
        out[k] = _strip_userinfo(v) if isinstance(v, str) else v
    return out


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
