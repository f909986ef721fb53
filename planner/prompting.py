"""Prompt templates and few-shot examples for the language-model planners.

The words live in ``prompts/`` (package data) so they can be read, diffed and
tuned without touching code; this module only assembles them. The user's text
is always framed as data to describe, never as instructions to follow.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files

from .compact import answer_lines


@lru_cache(maxsize=None)
def template(name: str) -> str:
    """The text of ``prompts/<name>``."""
    return files("plan_and_render.prompts").joinpath(name).read_text(encoding="utf-8").strip()


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


# --------------------------------------------------------------------------
# Chat edits: scene summary + instruction -> EditScript (plan_and_render.planner.edit_ops)
# --------------------------------------------------------------------------


def scene_summary(context: dict) -> str:
    """The current scene as the model sees it: ids, phrases, boxes, relations, background, focus."""
    plan = context.get("plan") or {}
    lines = ["Scene (boxes are [x0, y0, x1, y1], 0..1, y grows downwards):"]
    for o in plan.get("objects", []):
        box = ", ".join(f"{v:.2f}" for v in o.get("box", ()))
        where = "".join(f", {k} {o[k]}" for k in ("region", "depth") if o.get(k))
        lines.append(f"- {o['id']}: {o.get('phrase') or o.get('name', '')} [{box}]{where}")
    if not plan.get("objects"):
        lines.append("- (no objects)")
    rels = []
    for r in plan.get("relations", []):
        tail = f" and {r['object2']}" if r.get("object2") else ""
        rels.append(f"{r['subject']} {r['predicate']} {r['object']}{tail}")
    lines.append("Relations: " + ("; ".join(rels) if rels else "none"))
    lines.append(f"Background: {plan.get('background') or 'none'}")
    lines.append("Previous edit touched: " + (", ".join(context.get("last_targets") or []) or "nothing"))
    return "\n".join(lines)


def edit_frame(instruction: str, context: dict) -> str:
    return f"{scene_summary(context)}\nInstruction: {instruction}"


def edit_messages(instruction: str, context: dict, k: int | None = None) -> list[dict]:
    """Chat messages for ``LLMPlanner.edit_ops``: rules, ``k`` worked examples (all by default), the edit."""
    shots = examples("fewshot_edit.jsonl")
    shots = shots[:k] if k is not None else shots
    msgs = [{"role": "system", "content": template("system_edit.md")}]
    for ex in shots:
        msgs += [{"role": "user", "content": edit_frame(ex["instruction"], ex["context"])},
                 {"role": "assistant", "content": answer({"ops": ex["ops"]})}]
    return msgs + [{"role": "user", "content": edit_frame(instruction, context)}]


def edit_completion(instruction: str, context: dict, k: int | None = None) -> str:
    """The same as plain text for base models; ends where the JSON starts."""
    shots = examples("fewshot_edit.jsonl")
    shots = shots[:k] if k is not None else shots
    parts = [template("system_edit.md"), ""]
    for ex in shots:
        parts += [edit_frame(ex["instruction"], ex["context"]), f"Edit: {answer({'ops': ex['ops']})}", ""]
    parts += [edit_frame(instruction, context), "Edit: "]
    return "\n".join(parts)



def local_completion(prompt: str, k: int | None = None) -> tuple[str, str]:
    """Few-shot completion in the line form small local models answer best
    (see ``plan_and_render.planner.compact``), split as ``(prefix, tail)``.

    The prefix (instructions and examples) is the same for every prompt, so a
    local backend can cache the model's state after it; the tail is the
    description and ends with ``Objects:``, where the answer starts.
    """
    shots = examples()[:k] if k is not None else examples()
    parts = [template("system_graph_local.md"), ""]
    for ex in shots:
        parts += [frame(ex["prompt"]), answer_lines(ex["graph"], ex["prompt"]), ""]
    return "\n".join(parts) + "\n", f"{frame(prompt)}\nObjects:"
