"""Prompt -> validated ScenePlan: the planning stage end to end.

    prompt --validate--> backend.graph() --normalise--> check (networkx)
           --expand--> instances --geometry--> boxes --> ScenePlan
"""

from __future__ import annotations

from .backends import Planner, get_planner
from .errors import InvalidPromptError
from .expand import expand
from .graph import check_graph
from .normalize import normalize_graph
from .scene import MAX_INSTANCES, MAX_PROMPT_CHARS, Canvas, PlanObject, ScenePlan, SceneGraph


def validate_prompt(prompt: str) -> str:
    """Reject what no planner should see; return the stripped prompt."""
    if prompt is None or not prompt.strip():
        raise InvalidPromptError("the prompt is empty: describe the scene, e.g. 'a cat to the left of a vase'")
    prompt = " ".join(prompt.split())
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidPromptError(f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    return prompt


def plan_from_graph(prompt: str, graph: SceneGraph, canvas: Canvas | None = None, seed: int = 0) -> ScenePlan:
    """Normalise and check a scene graph, then place every instance."""
    from .geometry import solve  # geometry pulls in scipy; import on use

    canvas = canvas or Canvas()
    graph, warnings = normalize_graph(graph, prompt)
    if not graph.objects and not (graph.background or graph.excluded):  # "a bedroom without a bed" is a plan
        raise InvalidPromptError("no objects found in the prompt: name at least one thing to draw")
    if graph.instance_count > MAX_INSTANCES:
        raise InvalidPromptError(f"the prompt asks for {graph.instance_count} instances; the limit is {MAX_INSTANCES}")
    check_graph(graph)
    objects, relations = expand(graph)
    layout = solve(objects, relations, canvas, seed=seed) if objects else None
    placed = [PlanObject(**{**o.model_dump(), "box": layout.boxes[o.id]}) for o in objects] if layout else []
    return ScenePlan(
        prompt=prompt,
        canvas=canvas,
        background=graph.background,
        negative_prompt=", ".join(graph.excluded) or None,
        objects=placed,
        relations=relations,
        warnings=[*warnings, *(layout.warnings if layout else [])],
    )


def make_plan(
    prompt: str,
    planner: str | Planner = "local",
    canvas: Canvas | None = None,
    seed: int = 0,
    **planner_options,
) -> ScenePlan:
    """Plan one prompt. ``planner`` is a backend spec or an already-built backend."""
    prompt = validate_prompt(prompt)
    backend = get_planner(planner, **planner_options) if isinstance(planner, str) else planner
    graph = backend.graph(prompt)
    return plan_from_graph(prompt, graph, canvas, seed)
