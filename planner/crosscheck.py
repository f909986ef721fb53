"""Repair a small model's scene graph, and decide between the rules parser's readings with it.

A 270M model misses objects, repeats them, relates a thing to itself and reads
"a vase with a cat to its left" backwards; ``repair`` makes such a graph valid
on its own (the ``local`` planner's model-alone answer, ``crosscheck=False``).

Why the model no longer writes the graph: on the free-form set (``benchmarks/freeform.py``) the
model's own graph was fully right on 13 % of the prompts, the parser on 41 % and the old
field-by-field merge of the two on 39.5 % (the model's extra objects and relations cost more
than they added). So the model **decides where the parser is unsure**: the parser lists its
readings of an ambiguous prompt (which noun "it" means, which noun a relation, a "with" clause or
a placement belongs to; ``rules.readings``), and the model weighs them as a language model - how
likely is "the cat is under the table" against "the cat is under the vase" after the prompt.
Measured on the 28 free-form prompts with several readings that hold together: the parser's
preferred reading is right on 23, the model's choice (mean log-probability per token, margin 0.5)
on 24, and some reading on 26; docs/planners.md has the figures. The policy (``choose_reading``):

======================  ==========================================================
situation               decision
======================  ==========================================================
one reading             the parser's graph; the model is not asked
several readings        the facts every reading shares are left out; each
                        reading's own facts (relations, regions, depths) are
                        said as a sentence (``restatement``) and scored by the
                        model after the prompt (``LocalPlanner.plausibility``)
model prefers another   that reading, when its score beats the parser's
                        preferred one by more than ``MARGIN`` nats per token
                        (chosen on the free-form set; the held-out set checks it)
otherwise, or a         the parser's preferred reading
model failure
======================  ==========================================================
"""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import PlanAndRenderError
from .graph import check_graph
from ..scene import GraphObject, GraphRelation, SceneGraph, SceneGraphDraft, first_error
from ..vocab import pluralize

# --------------------------------------------------------------------------
# Repair: a model graph that stands on its own
# --------------------------------------------------------------------------


def repair(graph: SceneGraphDraft, prompt: str) -> tuple[SceneGraph, list[str]]:
    """Make a model's draft a valid graph: merge repeated objects, rename a reused
    id, drop self-relations, relations to unknown ids, duplicates, second
    relations between the same pair and relations that contradict earlier ones
    or break the contract. Returns the graph and what was changed."""
    notes: list[str] = []
    objects: list[GraphObject] = []
    alias: dict[str, str] = {}
    ids: set[str] = set()
    for o in graph.objects:
        twin = next((x for x in objects if x.name == o.name and x.attributes == o.attributes), None)
        if twin is not None:
            alias[o.id] = twin.id
            notes.append(f"model listed {o.name!r} twice; kept the first ({twin.count})")
            continue
        if o.id in ids:  # another thing under a taken id: relations name the first one
            oid, k = o.id, 2
            while oid in ids:
                oid, k = f"{o.id}_{k}", k + 1
            notes.append(f"model used the id {o.id!r} twice; the second ({o.name!r}) is now {oid!r}")
            o = o.model_copy(update={"id": oid})
        ids.add(o.id)
        objects.append(o)
    relations: list[GraphRelation] = []
    for r in graph.relations:
        r = r.model_copy(update={"subject": alias.get(r.subject, r.subject), "object": alias.get(r.object, r.object),
                                 "object2": alias.get(r.object2, r.object2) if r.object2 else None})
        refs = [r.subject, r.object] + ([r.object2] if r.object2 else [])
        if any(x not in ids for x in refs):
            notes.append(f"dropped model relation {r.subject} {r.predicate} {r.object}: unknown object")
            continue
        if r.subject in (r.object, r.object2) or r in relations:
            notes.append(f"dropped model relation {r.subject} {r.predicate} {r.object}: self or duplicate")
            continue
        if any({x.subject, x.object} == {r.subject, r.object} for x in relations):
            # a second relation between the same two objects is a small model's echo, and
            # pairs like "left_of" + "on" cannot be placed together
            notes.append(f"dropped model relation {r.subject} {r.predicate} {r.object}: the pair is already related")
            continue
        try:
            check_graph(SceneGraph(objects=objects, relations=[*relations, r]))
        except ValidationError as e:  # e.g. "between" one object and itself
            notes.append(f"dropped model relation {r.subject} {r.predicate} {r.object}: {first_error(e)}")
            continue
        except PlanAndRenderError:
            notes.append(f"dropped model relation {r.subject} {r.predicate} {r.object}: contradicts another")
            continue
        relations.append(r)
    excluded = [e for e in graph.excluded if e not in {o.name for o in objects}]
    return SceneGraph(objects=objects, relations=relations, background=graph.background, excluded=excluded), notes


# --------------------------------------------------------------------------
# Choosing between the parser's readings
# --------------------------------------------------------------------------

MARGIN = 0.5  # nats per token the model's favourite must beat the parser's preferred reading by
_SAID = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below",
         "on": "on", "under": "under", "in_front_of": "in front of", "behind": "behind", "next_to": "next to",
         "near": "near", "inside": "in"}


def facts(graph: SceneGraph) -> list[tuple]:
    """What a reading says, by names: relations and placements, in the graph's order."""
    names = {o.id: o for o in graph.objects}
    out: list[tuple] = [(r.predicate, r.subject, r.object, r.object2) for r in graph.relations]
    out += [("region", o.id, o.region) for o in graph.objects if o.region]
    out += [("depth", o.id, o.depth) for o in graph.objects if o.depth]
    return [tuple(names[x].name if x in names else x for x in f) for f in out]


def _noun(graph: SceneGraph, name: str) -> tuple[str, bool]:
    """("the cats", True) for a group of several, ("the cat", False) for one."""
    obj = next((o for o in graph.objects if o.name == name), None)
    many = obj is not None and obj.count > 1
    return f"the {pluralize(name) if many else name}", many


def restatement(graph: SceneGraph, said: list[tuple]) -> str:
    """``said`` (facts of ``graph``) as one plain sentence: "the cat is under the table"."""
    parts = []
    for kind, name, *rest in said:
        subject, many = _noun(graph, name)
        if kind == "region":
            tail = f"in the {rest[0].replace('_', ' ')} of the picture"
        elif kind == "depth":
            tail = f"in the {rest[0]}"
        elif kind == "between":
            tail = f"between {_noun(graph, rest[0])[0]} and {_noun(graph, rest[1])[0]}"
        else:
            tail = f"{_SAID[kind]} {_noun(graph, rest[0])[0]}"
        verb = "are" if many else "is"
        parts.append(f"{subject} {verb} {tail.removeprefix('is ')}")
    return ", and ".join(parts)


def contested(readings: list[SceneGraph]) -> list[str]:
    """Each reading's own facts as a sentence ("" where it says nothing the others do not)."""
    all_facts = [facts(g) for g in readings]
    shared = set.intersection(*map(set, all_facts)) if all_facts else set()
    return [restatement(g, [f for f in fs if f not in shared]) for g, fs in zip(readings, all_facts)]


def choose_reading(scores: list[float | None], margin: float = MARGIN) -> int:
    """Index of the reading to plan: the model's favourite (highest score) when it beats the
    parser's preferred reading (index 0) by more than ``margin``; a reading not scored (None)
    is never chosen, and the parser's stands when it was not scored."""
    if not scores or scores[0] is None:
        return 0
    best = max((i for i, x in enumerate(scores) if x is not None), key=lambda i: scores[i])
    return best if scores[best] - scores[0] > margin else 0
