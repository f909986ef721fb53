"""plan-and-render: prompt -> scene plan (objects, boxes, relations) -> attention-guided diffusion image.

    import plan_and_render as par
    plan = par.plan("a gray cat to the left of a blue vase")       # ScenePlan
    result = par.render(plan)                                     # RenderResult(images, scores, timings, ...)
    result = par.generate("a cat on a sofa", out_dir="outputs/cat")   # Result(plan, images, scores, ...)
    session = par.Session()                                       # chat-style layout edits

The package root holds the scene contract (``scene``, ``errors``, ``vocab``); the API names below come
from the app layer (``plan_and_render.app``) on first use, so importing a lower layer - or this package -
stays cheap and never pulls in torch, diffusers or the planners.
"""

from __future__ import annotations

from importlib import import_module

from .errors import (
    ConflictError,
    InvalidPromptError,
    LLMError,
    ModelUnavailableError,
    PlanAndRenderError,
    UsageError,
)
from .scene import Canvas, PlanObject, PlanRelation, ScenePlan

_API = ("DEFAULT_METHOD", "DEFAULT_MODEL", "DEFAULT_PLANNER", "Result", "check", "clear_cache", "generate",
        "get_pipeline", "get_planner", "load_plan", "parse_plan", "plan", "render", "save_preview")

__all__ = [
    "Canvas", "ConflictError", "InvalidPromptError", "LLMError", "ModelUnavailableError", "PlanAndRenderError",
    "PlanObject", "PlanRelation", "ScenePlan", "Session", "UsageError", *_API,
]


def __getattr__(name: str):
    """The API (``plan_and_render.app.api``) and ``Session`` (``plan_and_render.app.session``), on first use."""
    if name in _API:
        return getattr(import_module(".app.api", __name__), name)
    if name == "Session":
        return import_module(".app.session", __name__).Session
    raise AttributeError(f"module 'plan_and_render' has no attribute {name!r}")
