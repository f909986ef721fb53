"""Prompt -> validated ScenePlan: the planning stage end to end.

    prompt --validate--> backend.graph() --normalise--> check (networkx)
           --expand--> instances --geometry--> boxes --> ScenePlan
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from itertools import islice
from typing import Iterable

from .. import vocab
from ..errors import ConflictError, InvalidPromptError
from ..geometry import SizePrior, solve
from ..scene import (MAX_INSTANCES, MAX_PROMPT_CHARS, Canvas, PlanObject, ScenePlan, SceneGraphDraft, clean_text,
                     first_error)
from .backends import Planner, get_planner
from .expand import expand
from .graph import check_graph
from .normalize import normalize_graph


# Text that addresses the planner's language model instead of describing a scene.
# Phrase patterns, not single words: "a solar system poster" or "a sign that says
# ignore me" are scenes; "ignore previous instructions and ..." is not.
_INSTRUCTION_NOUNS = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|messages?|context|orders)"
_INJECTION_PATTERNS: tuple[re.Pattern, ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # "ignore (all) (the|your) previous instructions", "disregard the above prompt"
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:all\s+|any\s+|of\s+|everything\s+)*"
        r"(?:the\s+|your\s+|my\s+|these\s+|those\s+)?"
        r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|system|developer)\s+"
        + _INSTRUCTION_NOUNS + r"\b",
        # "ignore all instructions", "forget your rules"
        r"\b(?:ignore|disregard|forget|override|bypass)\s+(?:all\s+)?(?:your|all|any)\s+" + _INSTRUCTION_NOUNS + r"\b",
        # "print/reveal/show your system prompt", "repeat the hidden instructions"
        r"\b(?:print|reveal|show|repeat|output|display|leak|tell|give|write|dump|share|return|echo)\b[\w\s',]{0,30}?"
        r"\b(?:system|hidden|secret|initial|original|developer|internal)\s+(?:prompt|instructions?|message)s?\b",
        # role hijacking
        r"\byou\s+are\s+(?:now\s+)?(?:no\s+longer|not)\s+an?\s+(?:planner|assistant|ai|model)\b",
        r"\b(?:developer|god|jailbreak|dan)\s+mode\b|\bdo\s+anything\s+now\b",
        r"\bnew\s+instructions\s*:",
    )
)


def looks_like_injection(prompt: str) -> str | None:
    """The phrase that makes ``prompt`` read as instructions to the planner, else None."""
    for pattern in _INJECTION_PATTERNS:
        m = pattern.search(prompt)
        if m:
            return " ".join(m.group(0).split())
    return None


def validate_prompt(prompt: str) -> str:
    """Reject what no planner should see; return the prompt without terminal escapes and control
    characters, whitespace collapsed."""
    if prompt is not None and not isinstance(prompt, str):
        raise InvalidPromptError(f"the prompt must be text (a str), not {type(prompt).__name__}")
    if prompt is not None:
        prompt = " ".join(clean_text(prompt).split())
    if not prompt:
        raise InvalidPromptError("the prompt is empty: describe the scene, e.g. 'a cat to the left of a vase'")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidPromptError(f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    phrase = looks_like_injection(prompt)
    if phrase:
        raise InvalidPromptError(f"the prompt reads as instructions to the planner ({phrase!r}), not a scene; "
                                 "describe what to draw, e.g. 'a cat to the left of a vase'")
    return prompt


# A small English word list: function words plus the planner's own vocabulary.
# Used only to warn that a plan is best-effort, never to reject a prompt.
_ENGLISH_FUNCTION_WORDS = frozenset(
    """a an the of and or with without to in on at by for from into onto over under above below behind
    beside between near next left right top bottom front back side middle is are there some two three
    four five six seven eight nine ten its their his her this that these those each other one many few
    several sitting standing lying""".split()
)


def _english_words() -> frozenset[str]:
    words = set(_ENGLISH_FUNCTION_WORDS) | set(vocab.COLOURS) | set(vocab.MATERIALS) | set(vocab.SIZE_WORDS)
    for phrase in (*vocab.PREDICATE_PHRASES, *vocab.COUNT_PHRASES, *vocab.COCO_CATEGORIES, *vocab.ALIASES):
        words.update(phrase.split())
    return frozenset(words)


def looks_non_english(prompt: str) -> bool:
    """Heuristic: mostly non-Latin letters, or several words and almost none of them English."""
    letters = [c for c in prompt if c.isalpha()]
    if not letters:
        return False
    if sum(1 for c in letters if not c.isascii()) / len(letters) > 0.3:
        return True
    words = re.findall(r"[^\W\d_]+", prompt.lower())
    if len(words) < 4:
        return False
    known = _english_words()
    return sum(1 for w in words if w in known or w.rstrip("s") in known) / len(words) < 0.2


NON_ENGLISH_WARNING = ("the prompt does not look like English; planners are tuned for English, "
                       "so this plan is best-effort (check the objects, or rephrase in English)")


def plan_from_graph(prompt: str, graph: SceneGraphDraft, canvas: Canvas | None = None, seed: int = 0,
                    size_prior: SizePrior | None = None) -> ScenePlan:
    """Normalise and check a scene graph (or a model's draft of one), then place every instance
    (``size_prior``: the diffusion model's own, see ``geometry.SizePrior``; None: real-world sizes)."""
    canvas = canvas or Canvas()
    graph, warnings = normalize_graph(graph, prompt)
    if not graph.objects and not (graph.background or graph.excluded):  # "a bedroom without a bed" is a plan
        raise InvalidPromptError("no objects found in the prompt: name at least one thing to draw")
    if graph.instance_count > MAX_INSTANCES:
        raise InvalidPromptError(f"the prompt asks for {graph.instance_count} instances; the limit is {MAX_INSTANCES}")
    check_graph(graph)
    objects, relations = expand(graph)
    layout = solve(objects, relations, canvas, seed=seed, size_prior=size_prior) if objects else None
    placed = [PlanObject(**{**o.model_dump(), "box": layout.boxes[o.id]}) for o in objects] if layout else []
    try:
        return ScenePlan(
            prompt=prompt,
            canvas=canvas,
            background=graph.background,
            negative_prompt=", ".join(graph.excluded) or None,
            objects=placed,
            relations=relations,
            warnings=[*warnings, *(layout.warnings if layout else [])],
        )
    except ValidationError as e:  # e.g. more instance relations than a plan may hold
        raise InvalidPromptError(f"the prompt makes an invalid plan: {first_error(e)}") from None


MAX_READINGS = 8  # readings of one prompt the planner tries before it reports a conflict


def plan_first_reading(prompt: str, readings: Iterable[SceneGraphDraft], canvas: Canvas | None = None,
                       seed: int = 0, size_prior: SizePrior | None = None) -> ScenePlan:
    """The plan of the first reading (a backend's ``readings``) whose relations, regions and depths
    can all hold. When none can, the first reading's ``ConflictError`` names its relations: a
    conflict is reported only when every reading contradicts itself."""
    first: ConflictError | None = None
    for graph in islice(readings, MAX_READINGS):
        try:
            return plan_from_graph(prompt, graph, canvas, seed, size_prior)
        except ConflictError as e:
            first = first or e
    if first is None:  # a backend that read nothing at all
        raise InvalidPromptError("no objects found in the prompt: name at least one thing to draw")
    raise first


def make_plan(
    prompt: str,
    planner: str | Planner = "local",
    canvas: Canvas | None = None,
    seed: int = 0,
    size_prior: SizePrior | None = None,
    **planner_options,
) -> ScenePlan:
    """Plan one prompt. ``planner`` is a backend spec or an already-built backend; ``size_prior`` the
    diffusion model's own (``geometry.SizePrior``, from its folder's guidance.json), else real-world sizes."""
    prompt = validate_prompt(prompt)
    backend = get_planner(planner, **planner_options) if isinstance(planner, str) else planner
    non_english = looks_non_english(prompt)
    tried: list[SceneGraphDraft] = []

    def readings():
        for graph in backend.readings(prompt):
            tried.append(graph)
            yield graph

    try:
        plan = plan_first_reading(prompt, readings(), canvas, seed, size_prior)
    except InvalidPromptError as e:
        if non_english and not (tried and tried[-1].objects):
            raise InvalidPromptError(f"{e.message} (the prompt does not look like English; rephrase it in English "
                                     "or use a language-model planner such as --planner local)") from None
        raise
    if non_english:
        plan.warnings.insert(0, NON_ENGLISH_WARNING)
    return plan
