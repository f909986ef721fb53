"""Planning stage: free-text prompt -> scene graph -> ScenePlan with boxes, and chat edits of a plan.

    from plan_and_render.planner import make_plan, get_planner, available
    plan = make_plan("a cat to the left of a vase", planner="rules")

Backends are plugins found through entry points (``plan_and_render.planner.backends.base``);
the plan contract and the error types live one layer down, in ``plan_and_render.scene`` and
``plan_and_render.errors``.
"""

if __name__ != "plan_and_render.planner":  # one copy of each module: the folder installs under the namespace
    raise ImportError(f"import plan_and_render.planner, not {__name__!r} (this folder is installed as plan_and_render.planner)")

from .backends import ENTRY_POINT_GROUP, LLMPlanner, Planner, available, get_planner, planner_class
from .edits import parse_instruction
from .plan import make_plan, plan_from_graph, validate_prompt

__all__ = [
    "ENTRY_POINT_GROUP", "LLMPlanner", "Planner", "available", "get_planner", "make_plan", "parse_instruction",
    "plan_from_graph", "planner_class", "validate_prompt",
]
