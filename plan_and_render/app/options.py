"""Command-line options shared by the commands (``cli``, ``chat_cli``): one definition each.

Render options are not written here: ``render_options`` makes one option per field of the renderer's
``RenderSettings`` (name, type and help from the model), and ``render_settings`` builds the validated
settings from them - so the CLI, the API and metadata.json cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import UsageError
from ..renderer.settings import RenderSettings
from . import api

PLANNER_HELP = "Planner backend: local (Gemma 3 270M, offline), rules (no model), openai:MODEL, hf:PATH, gguf:FILE."


def planner_options(f):
    """--planner and the options that go to the planner backend's constructor."""
    for opt in reversed([
        click.option("--planner", "-p", default=api.DEFAULT_PLANNER, show_default=True, help=PLANNER_HELP),
        click.option("--base-url", help="OpenAI-compatible endpoint (else OPENAI_BASE_URL). The API key is read "
                     "from the environment only."),
        click.option("--retries", type=click.IntRange(min=0), help="Retries after invalid model output."),
        click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to wait for the language model per call."),
        click.option("--planner-device", help="Device for the local/hf planners."),
    ]):
        f = opt(f)
    return f


def backend_options(base_url, retries, timeout, planner_device) -> dict[str, Any]:
    opts = {"base_url": base_url, "retries": retries, "timeout": timeout, "device": planner_device}
    return {k: v for k, v in opts.items() if v is not None}


def parse_method_options(text: str | None) -> dict[str, dict] | None:
    """``--method-options`` JSON -> {method: {field: value}}, checked against the methods' configs so that a
    typo fails before anything is planned or written."""
    if text is None:
        return None
    from ..renderer import check_options

    try:
        return check_options(json.loads(text))
    except json.JSONDecodeError as e:
        raise UsageError(f"--method-options is not valid JSON ({e.msg} at character {e.pos})") from None
    except UsageError as e:
        raise UsageError(f"--method-options: {e.message}") from None


_SHORT = {"num_images": "-n"}
_TYPES = {int: int, float: float, str: str}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def render_options(*names: str):
    """Decorator: one option per ``RenderSettings`` field (all of them, or ``names``), its help the field's
    description. Unset options stay None, so the settings' own defaults and the model's apply."""
    fields = RenderSettings.model_fields

    def deco(f):
        for name in reversed(names or tuple(fields)):
            info = fields[name]
            kind = next((k for k in _TYPES if k in (info.annotation, *getattr(info.annotation, "__args__", ()))), str)
            decls = [_flag(name), *([_SHORT[name]] if name in _SHORT else [])]
            default = "" if info.default in (None, {}) or callable(info.default_factory) else f" [default: {info.default}]"
            help_text = (info.description or "") + default
            if name == "method_options":
                help_text += " Give it as JSON."
            f = click.option(*decls, name, type=kind if name != "method_options" else str, default=None,
                             help=help_text)(f)
        return f

    return deco


def render_settings(values: dict[str, Any]) -> RenderSettings:
    """The validated settings from the options ``render_options`` made (unset ones left to the defaults)."""
    given = {k: v for k, v in values.items() if k in RenderSettings.model_fields and v is not None}
    if "method_options" in given:
        given["method_options"] = parse_method_options(given["method_options"])
    try:
        return RenderSettings(**given)
    except UsageError as e:  # "steps 0 is out of range" -> "--steps 0 ...": name the option the user typed
        name = e.message.split(" ", 1)[0]
        if name in given:
            raise UsageError(_flag(name) + e.message[len(name):]) from None
        raise


def size_help(what: str) -> str:
    return f"{what} in pixels (multiple of 8 to render). Default: the model's native size for a local folder, else 512."
