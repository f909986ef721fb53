"""Planning stage: free-text prompt -> scene graph -> ScenePlan with boxes."""

if __name__ != "plan_and_render.planner":  # one copy of each module: the folder installs under the namespace
    raise ImportError(f"import plan_and_render.planner, not {__name__!r} (this folder is installed as plan_and_render.planner)")

from ..errors import (
    ConflictError,
    InvalidPromptError,
    LLMError,
    ModelUnavailableError,
    PlanAndRenderError,
    UsageError,
)
from ..scene import Canvas, GraphObject, GraphRelation, PlanObject, PlanRelation, ScenePlan, SceneGraph

__all__ = [
    "Canvas", "ConflictError", "GraphObject", "GraphRelation", "InvalidPromptError", "LLMError",
    "ModelUnavailableError", "PlanAndRenderError", "PlanObject", "PlanRelation", "ScenePlan",
    "SceneGraph", "UsageError", "make_plan", "plan_from_graph", "get_planner",
]


def __getattr__(name):  # lazy: importing planner stays cheap
    if name in ("make_plan", "plan_from_graph", "validate_prompt"):
        from . import plan

        return getattr(plan, name)
    if name == "get_planner":
        from .backends import get_planner

        return get_planner
    raise AttributeError(name)
