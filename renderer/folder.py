"""What a local model folder's ``guidance.json`` says before any weights load (no torch).

The planner needs one of its keys - ``"size_prior"``, the sizes the model draws things at - before the
renderer is loaded, so the plan's boxes are ones the model can fill; ``loading.folder_defaults`` reads
the render settings and method options from the same file when the pipeline loads. Keys are
documented in docs/renderer.md ("Model folders").
"""

from __future__ import annotations

import json
from pathlib import Path

from plan_and_render.errors import ModelUnavailableError, UsageError
from plan_and_render.geometry import SizePrior

FILE = "guidance.json"


def guidance_json(model: str | Path) -> dict:
    """The folder's guidance.json as a dict; {} when ``model`` is no folder or has none."""
    f = Path(model).expanduser() / FILE
    if not f.is_file():
        return {}
    try:
        data = json.loads(f.read_text())
    except ValueError as e:
        raise ModelUnavailableError(f"{f} is not valid ({str(e).splitlines()[0]}); fix or delete it") from None
    if not isinstance(data, dict):
        raise ModelUnavailableError(f"{f} is not valid (not a JSON object); fix or delete it")
    return data


def size_prior(model: str | Path | None) -> SizePrior | None:
    """The folder's ``"size_prior"`` (``{"side": 0.32}``: every object one size, see ``geometry.SizePrior``),
    None when it has none or no model is named (None or "": real-world sizes; "" must not read ./)."""
    if not model:
        return None
    data = guidance_json(model).get("size_prior")
    if data is None:
        return None
    try:
        return SizePrior.parse(data)
    except UsageError as e:
        raise ModelUnavailableError(f"{Path(model).expanduser() / FILE} is not valid ({e.message}); "
                                    "fix or delete it") from None
