"""The planner-backend interface and its registry (simonw/llm style).

A backend turns a prompt into a ``SceneGraph``; everything after that
(normalisation, checks, geometry) is shared. Backends register under a prefix
and are chosen by a spec string: ``rules``, ``local``, ``openai:gpt-4o-mini``,
``hf:path/or/repo``, ``gguf:/path/model.gguf``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, TypeVar

from pydantic import BaseModel

from ...errors import UsageError
from ...scene import SceneGraph, SceneGraphDraft

M = TypeVar("M", bound=BaseModel)

_REGISTRY: dict[str, Callable[..., "Planner"]] = {}


class Planner(ABC):
    """Prompt -> scene graph. Subclasses load their model once in ``__init__``."""

    name: str = "planner"

    @abstractmethod
    def graph(self, prompt: str) -> SceneGraphDraft:
        """Return the scene graph for one prompt (raise a PlanAndRenderError on failure).

        A ``SceneGraph``, or a ``SceneGraphDraft`` from a backend that cannot make
        its model's references valid; ``plan_from_graph`` normalises either."""

    def edit_ops(self, instruction: str, context: dict):  # pragma: no cover - overridden where supported
        """Turn a chat instruction into a ``plan_and_render.planner.edit_ops.EditScript``.

        ``context`` is ``plan_and_render.planner.edit_ops.edit_context(plan, ...)``: the current plan as JSON plus the ids
        the previous edit touched (what "it" refers to)."""
        raise NotImplementedError(f"planner {self.name!r} does not parse edit instructions")


class LLMPlanner(Planner):
    """A backend on a language model that can fill any pydantic schema.

    Subclasses implement ``structured`` (hosted: instructor; local: constrained
    decoding); prompts come from ``plan_and_render.planner.prompting`` so every model sees the
    same instructions and few-shot examples. The graph is asked for as
    ``graph_schema``: ``SceneGraph``, whose validation errors instructor sends
    back to the model, unless the backend can only produce a draft.
    """

    graph_schema: type[SceneGraphDraft] = SceneGraph

    @abstractmethod
    def structured(self, messages: list[dict], schema: type[M]) -> M:
        """Answer the chat ``messages`` with an instance of ``schema`` (raise LLMError on failure)."""

    def graph(self, prompt: str) -> SceneGraph:
        from ..prompting import graph_messages

        return self.structured(graph_messages(prompt), self.graph_schema)

    def edit_ops(self, instruction: str, context: dict):
        """The model fills ``EditScript`` (typed operations) from the scene summary and the instruction."""
        from ..edit_ops import EditScript
        from ..prompting import edit_messages

        return self.structured(edit_messages(instruction, context), EditScript)


def register(prefix: str) -> Callable[[Callable[..., Planner]], Callable[..., Planner]]:
    """Class decorator: make a backend available as ``prefix`` or ``prefix:arg``."""

    def deco(factory: Callable[..., Planner]) -> Callable[..., Planner]:
        _REGISTRY[prefix] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_planner(spec: str, **options) -> Planner:
    """Build the backend a spec names; ``options`` go to its constructor (base_url, retries...)."""
    prefix, _, arg = spec.partition(":")
    if prefix not in _REGISTRY:
        raise UsageError(f"unknown planner {spec!r}; choose one of: {', '.join(available())} (e.g. openai:MODEL)")
    factory = _REGISTRY[prefix]
    return factory(arg, **options) if arg else factory(**options)
