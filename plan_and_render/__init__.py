"""plan-and-render: prompt -> scene plan (objects, boxes, relations) -> attention-guided diffusion image.

    import plan_and_render as par
    plan = par.plan("a gray cat to the left of a blue vase")       # ScenePlan
    result = par.render(plan)                                     # RenderResult(images, scores, timings, ...)
    result = par.generate("a cat on a sofa", out_dir="outputs/cat")   # Result(plan, images, scores, ...)
    session = par.Session()                                       # chat-style layout edits

Importing this package is cheap: torch and diffusers load on the first render.
"""

from __future__ import annotations

from .errors import (
    ConflictError,
    InvalidPromptError,
    LLMError,
    ModelUnavailableError,
    PlanAndRenderError,
    UsageError,
)
from .scene import Canvas, PlanObject, PlanRelation, ScenePlan

from .app.api import (
    DEFAULT_METHOD,
    DEFAULT_MODEL,
    DEFAULT_PLANNER,
    Result,
    check,
    clear_cache,
    generate,
    get_pipeline,
    get_planner,
    load_plan,
    parse_plan,
    plan,
    render,
    save_preview,
)

__all__ = [
    "DEFAULT_METHOD", "DEFAULT_MODEL", "DEFAULT_PLANNER", "Canvas", "ConflictError", "InvalidPromptError",
    "LLMError", "ModelUnavailableError", "PlanAndRenderError", "PlanObject", "PlanRelation", "Result",
    "ScenePlan", "Session", "UsageError", "check", "clear_cache", "generate", "get_pipeline", "get_planner",
    "load_plan", "parse_plan", "plan", "render", "save_preview",
]


def __getattr__(name: str):
    """``Session`` comes from plan_and_render.session (chat edits), imported on first use."""
    if name == "Session":
        try:
            from .app.session import Session
        except ImportError as e:  # the chat module is optional for planning and rendering
            raise AttributeError(f"plan_and_render.Session is not available: {e}") from None
        return Session
    raise AttributeError(f"module 'plan_and_render' has no attribute {name!r}")
