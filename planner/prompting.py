"""Prompt templates and few-shot examples for the language-model planners.

The words live in ``prompts/`` (package data) so they can be read, diffed and
tuned without touching code; this module only assembles them. The user's text
is always framed as data to describe, never as instructions to follow.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files


@lru_cache(maxsize=None)
def template(name: str) -> str:
    """The text of ``prompts/<name>``."""
    return files("prompts").joinpath(name).read_text(encoding="utf-8").strip()


@lru_cache(maxsize=None)
def examples(name: str = "fewshot_graph.jsonl") -> tuple[dict, ...]:
    """Few-shot pairs ``{"prompt": ..., "graph": {...}}`` from ``prompts/<name>``."""
    lines = template(name).splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def frame(text: str) -> str:
    """The user turn: the description, fenced so it reads as data."""
    return f"Description: {text}"


def answer(graph: dict) -> str:
    return json.dumps(graph, separators=(", ", ": "))


def graph_messages(prompt: str, k: int | None = None) -> list[dict]:
    """Chat messages: system rules, ``k`` few-shot turns (all by default), then the prompt."""
    shots = examples()[:k] if k is not None else examples()
    msgs = [{"role": "system", "content": template("system_graph.md")}]
    for ex in shots:
        msgs += [{"role": "user", "content": frame(ex["prompt"])},
                 {"role": "assistant", "content": answer(ex["graph"])}]
    return msgs + [{"role": "user", "content": frame(prompt)}]


def graph_completion(prompt: str, k: int | None = None) -> str:
    """The same as plain text, for base models without a chat template; ends where the JSON starts."""
    shots = examples()[:k] if k is not None else examples()
    parts = [template("system_graph.md"), ""]
    for ex in shots:
        parts += [frame(ex["prompt"]), f"Scene graph: {answer(ex['graph'])}", ""]
    parts += [frame(prompt), "Scene graph: "]
    return "\n".join(parts)
