"""Command-line options shared by the commands (``cli``, ``chat_cli``): one definition each."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import UsageError
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
    from ..renderer.config import check_options

    try:
        return check_options(json.loads(text))
    except json.JSONDecodeError as e:
        raise UsageError(f"--method-options is not valid JSON ({e.msg} at character {e.pos})") from None
    except UsageError as e:
        raise UsageError(f"--method-options: {e.message}") from None


def size_help(what: str) -> str:
    return f"{what} in pixels (multiple of 8 to render). Default: the model's native size for a local folder, else 512."
