"""Errors with a ``type`` from plan-format.md, so every stage reports alike.

The CLI prints ``str(error)`` as one line and exits non-zero; ``record()`` is
the JSON error form written by ``--json`` and batch planning.
"""

from __future__ import annotations


class PlanAndRenderError(Exception):
    """Base class: a user-facing failure with a one-line message."""

    type: str = "error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def record(self, prompt: str | None = None) -> dict:
        out: dict = {"error": {"type": self.type, "message": self.message}}
        if prompt is not None:
            out = {"prompt": prompt, **out}
        return out


class ConflictError(PlanAndRenderError):
    """Relations that cannot all hold; the message names them."""

    type = "conflict"


class InvalidPromptError(PlanAndRenderError):
    """Empty, too long, too many instances, unknown ids..."""

    type = "invalid_prompt"


class LLMError(PlanAndRenderError):
    """The language model failed, hung or returned unusable output after retries."""

    type = "llm"


class ModelUnavailableError(PlanAndRenderError):
    """Weights or an endpoint cannot be reached; the message says how to provide them."""

    type = "model_unavailable"


class UsageError(PlanAndRenderError):
    """A bad option or file given on the command line or to the API."""

    type = "usage"


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM). The CLI raises it from its signal handler, so a run stops
    like on Ctrl-C - keeping what it wrote - but records "terminated" instead of "interrupted"."""
