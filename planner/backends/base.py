"""The planner-backend interface, and how a spec string finds its backend.

A backend turns a prompt into a ``SceneGraph``; everything after that
(normalisation, checks, geometry) is shared. A spec names a backend by its
prefix: ``rules``, ``local``, ``openai:gpt-4o-mini``, ``hf:path/or/repo``,
``gguf:/path/model.gguf``.

Backends are plugins (simonw/llm style): every installed distribution may
declare entry points in the group ``plan_and_render.planners``, one per prefix,
naming a ``Planner`` class (or a factory with the same call signature). This
package declares the built-in ones in its own pyproject.toml; another package
adds a backend the same way, with no change here. Listing the prefixes reads
only package metadata; looking one up imports its module, whose heavy
libraries (torch, transformers, openai) load when the backend is built.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, Iterator, TypeVar

from pydantic import BaseModel

from ...errors import ModelUnavailableError, UsageError
from ...scene import SceneGraph, SceneGraphDraft
from ..edit_ops import EditScript
from ..prompting import edit_messages, graph_messages

M = TypeVar("M", bound=BaseModel)

ENTRY_POINT_GROUP = "plan_and_render.planners"


class Planner(ABC):
    """Prompt -> scene graph. Subclasses load their model once in ``__init__``."""

    name: str = "planner"
    # Chat edits: ask the rules parser first and this backend only for what the rules did not
    # understand (a class attribute, so it is known without loading a model; see ``planner.edits``).
    edit_rules_first: bool = False

    @abstractmethod
    def graph(self, prompt: str) -> SceneGraphDraft:
        """Return the scene graph for one prompt (raise a PlanAndRenderError on failure).

        A ``SceneGraph``, or a ``SceneGraphDraft`` from a backend that cannot make
        its model's references valid; ``plan_from_graph`` normalises either."""

    def readings(self, prompt: str) -> Iterator[SceneGraphDraft]:
        """Every way this backend reads ``prompt``, the one ``graph`` gives first. The planner tries
        the others when a reading's relations contradict each other, and reports a conflict only
        when all of them do (the rules parser overrides this with its alternative readings)."""
        yield self.graph(prompt)

    def edit_ops(self, instruction: str, context: dict) -> EditScript:  # pragma: no cover - overridden where supported
        """Turn a chat instruction into an ``EditScript``.

        ``context`` is ``plan_and_render.planner.edit_ops.edit_context(plan, ...)``: the current plan as JSON plus
        the ids the previous edit touched (what "it" refers to)."""
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
        return self.structured(graph_messages(prompt), self.graph_schema)

    def edit_ops(self, instruction: str, context: dict) -> EditScript:
        """The model fills ``EditScript`` (typed operations) from the scene summary and the instruction."""
        return self.structured(edit_messages(instruction, context), EditScript)


# --------------------------------------------------------------------------
# Finding a backend: entry points
# --------------------------------------------------------------------------


def _entry_points() -> dict[str, EntryPoint]:
    """Prefix -> entry point, from the installed distributions' metadata (nothing is imported).

    Reading the metadata takes ~10 ms, and a chat session looks its backend up on every edit, so the table
    is kept per search path: a folder added to ``sys.path`` is seen at once; a package installed into an
    already-read folder while this process runs is not (as with importlib's own caches)."""
    return _entry_points_on(tuple(sys.path))


@lru_cache(maxsize=8)
def _entry_points_on(search_path: tuple[str, ...]) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    """The prefixes a spec may start with, from every installed distribution."""
    return sorted(_entry_points())


def planner_class(spec: str) -> Callable[..., Planner]:
    """The class (or factory) that builds the backend ``spec`` names, without building it."""
    prefix = spec.partition(":")[0]
    found = _entry_points()
    if prefix not in found:
        if not found:
            raise UsageError(f"unknown planner {spec!r}: no planner backends are installed "
                             f"(reinstall plan-and-render: pip install -e .)")
        raise UsageError(f"unknown planner {spec!r}; choose one of: {', '.join(sorted(found))} (e.g. openai:MODEL)")
    ep = found[prefix]
    try:
        return ep.load()
    except (ImportError, AttributeError) as e:  # a plugin installed but broken
        raise ModelUnavailableError(f"planner {prefix!r} ({ep.value}) cannot be loaded: {type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}") from None


def get_planner(spec: str, **options) -> Planner:
    """Build the backend a spec names; ``options`` go to its constructor (base_url, retries...)."""
    factory = planner_class(spec)
    _, _, arg = spec.partition(":")
    return factory(arg, **options) if arg else factory(**options)
