"""Repair a small model's scene graph and cross-check it against the rules parser.

A 270M model misses objects, repeats them, relates a thing to itself and reads
"a vase with a cat to its left" backwards; the ``rules`` parser is exact on the
phrasings it knows and silent on the rest. ``repair`` makes a model graph
valid on its own; ``merge`` combines the two graphs field by field with one
principle - **what is grounded in the prompt text beats what is not; when both
sides are grounded and disagree, the rules parser wins** (it scores 98.6 %
exact on NSR-1K counting, the model much less, see the README, "Local language-model planners"):

======================  ==========================================================
field                   policy
======================  ==========================================================
objects                 union by singular name. A model-only object is kept only if
                        its name occurs in the prompt, is not an adjective or frame
                        word, not the rules parser's background or exclusion, and
                        shares no word with a rules object (the same words read
                        two ways - "window sill" / "window" - are one object).
count                   agreement -> that count. Otherwise the side whose number is
                        stated next to the noun in the text wins; if both or
                        neither are, the rules parser's count.
attributes              the rules parser's when it found any, else the model's
                        words that occur in the prompt.
region, depth           the rules parser's when it found one, else the model's
                        when the prompt states it (``vocab.stated_region`` /
                        ``stated_depth``: "top_left" needs a top and a left word).
relations               per object pair: the rules parser's relation when it has
                        one; a model-only relation is kept when a phrase of its
                        predicate occurs in the prompt between the two names,
                        and it creates no contradiction (``local`` also drops
                        them when the geometry stage cannot place the result).
background / excluded   the rules parser's; else the model's when grounded
                        (excluded: negated in the prompt).
======================  ==========================================================

Every decision is recorded in ``Merge.notes`` so a disagreement can be
inspected (``LocalPlanner.last.notes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from ..errors import PlanAndRenderError
from .expand import slug
from .graph import check_graph
from .normalize import build_graph, negated_in_prompt, words
from ..scene import GraphObject, GraphRelation, SceneGraph, SceneGraphDraft, first_error
from ..vocab import ADJECTIVES, COUNT_PHRASES, PREDICATE_PHRASES, parse_count, singularize, stated_depth, stated_region

_NON_OBJECTS = frozenset(
    """photo picture image scene view realistic photograph illustration drawing painting shot closeup background
    number side left right top bottom front middle center centre one two three some""".split()
)


def _mentions(ws: list[str], name: str) -> list[int]:
    """Start indices where ``name`` (singular or plural last word) occurs in ``ws``."""
    parts = name.lower().split()
    if not parts:
        return []
    n, hits = len(parts), []
    for i in range(len(ws) - n + 1):
        if ws[i : i + n - 1] == parts[:-1] and singularize(ws[i + n - 1]) == singularize(parts[-1]):
            hits.append(i)
    return hits


def grounded_name(prompt: str, name: str) -> bool:
    return bool(_mentions(words(prompt), name))


def stated_counts(prompt: str, name: str) -> set[int]:
    """Counts the text puts right before ``name`` (up to 3 words back, skipping adjectives)."""
    ws = words(prompt)
    out: set[int] = set()
    for i in _mentions(ws, name):
        j = i
        while j > 0 and ws[j - 1] in ADJECTIVES:
            j -= 1
        for n in (3, 2, 1):
            if j - n < 0:
                continue
            phrase = " ".join(ws[j - n : j])
            value = parse_count(phrase)
            if value is None and phrase.endswith(" of"):
                value = COUNT_PHRASES.get(phrase)
            if value is not None:
                out.add(value)
                break
    return out


def grounded_relation(prompt: str, relation: GraphRelation, names: dict[str, str]) -> bool:
    """Does a phrase of ``relation.predicate`` occur between mentions of its two objects?"""
    ws = words(prompt)
    text = " ".join(ws)
    subj, obj = names.get(relation.subject), names.get(relation.object)
    if not subj or not obj:
        return False
    phrases = [p for p, pred in PREDICATE_PHRASES.items() if pred == relation.predicate]
    for i in _mentions(ws, subj):
        for j in _mentions(ws, obj):
            lo, hi = sorted((i, j))
            between = f" {' '.join(ws[lo:hi + 1])} "
            if any(f" {p} " in between for p in phrases):
                return True
    return relation.predicate == "between" and " between " in f" {text} "


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
# Merge with the rules parser
# --------------------------------------------------------------------------


@dataclass
class Merge:
    graph: SceneGraph
    notes: list[str] = field(default_factory=list)
    model_added: int = 0  # objects, counts, attributes or relations the final graph takes from the model


def _stated_placement(prompt: str, model: GraphObject, rules: GraphObject | None) -> dict:
    """The model's region / depth for an object where the rules parser has none and the prompt states it."""
    out = {}
    if model.region and not (rules and rules.region) and stated_region(model.region, prompt):
        out["region"] = model.region
    if model.depth and not (rules and rules.depth) and stated_depth(model.depth, prompt):
        out["depth"] = model.depth
    return out


def _key(name: str) -> str:
    return singularize(name.lower().strip())


def merge(prompt: str, model: SceneGraph | None, rules: SceneGraph) -> Merge:
    """Combine a (repaired) model graph with the rules parser's graph; see the module docstring."""
    if model is None:
        return Merge(rules, ["model answer unusable; used the rules parser's graph"])
    notes: list[str] = []
    added = 0
    rules_keys = {_key(o.name): o for o in rules.objects}
    reserved = {_key(x) for x in rules.excluded} | set(words(rules.background or "")) | set(ADJECTIVES)
    model_by_key = {_key(o.name): o for o in model.objects}
    objects: list[GraphObject] = []
    id_map: dict[str, str] = {}  # model id -> final id
    for r in rules.objects:
        m = model_by_key.get(_key(r.name))
        obj = r
        if m is not None:
            id_map[m.id] = r.id
            if m.count != r.count:
                m_stated, r_stated = m.count in stated_counts(prompt, r.name), r.count in stated_counts(prompt, r.name)
                if m_stated and not r_stated:
                    obj = obj.model_copy(update={"count": m.count})
                    notes.append(f"{r.id}: count {m.count} from the model (stated in the text), not {r.count}")
                    added += 1
                else:
                    notes.append(f"{r.id}: kept the rules count {r.count}; the model said {m.count}")
            if not r.attributes and m.attributes:
                attrs = [a for a in m.attributes if a in words(prompt)]
                if attrs:
                    obj = obj.model_copy(update={"attributes": attrs})
                    notes.append(f"{r.id}: attributes {attrs} from the model")
                    added += 1
            placed = _stated_placement(prompt, m, r)
            if placed:
                obj = obj.model_copy(update=placed)
                notes.append(f"{r.id}: {', '.join(f'{k} {v}' for k, v in placed.items())} from the model")
                added += 1
        objects.append(obj)
    taken = {o.id for o in objects}
    for m in model.objects:
        k = _key(m.name)
        if k in rules_keys:
            continue
        head = k.split()[-1] if k else k
        if not grounded_name(prompt, m.name) or k in reserved or head in _NON_OBJECTS or head in ADJECTIVES:
            notes.append(f"ignored model object {m.name!r}: not a thing the prompt names")
            continue
        same = next((r.id for r in rules.objects if set(map(singularize, k.split())) & set(map(singularize, _key(r.name).split()))), None)
        if same is not None:  # the same words read differently ("window sill" / "window"): one object
            id_map.setdefault(m.id, same)
            notes.append(f"ignored model object {m.name!r}: the rules parser read those words as {same!r}")
            continue
        oid, n = slug(m.name), 2
        while oid in taken:
            oid, n = f"{slug(m.name)}_{n}", n + 1
        taken.add(oid)
        id_map[m.id] = oid
        objects.append(m.model_copy(update={"id": oid, "attributes": [a for a in m.attributes if a in words(prompt)],
                                            "region": None, "depth": None, **_stated_placement(prompt, m, None)}))
        notes.append(f"added model object {m.name!r} (the rules parser missed it)")
        added += 1

    relations = list(rules.relations)
    pairs = {frozenset((r.subject, r.object)) for r in relations}
    names = {o.id: o.name for o in objects}
    for r in model.relations:
        s, o = id_map.get(r.subject), id_map.get(r.object)
        o2 = id_map.get(r.object2) if r.object2 else None
        if s is None or o is None or (r.object2 and o2 is None) or frozenset((s, o)) in pairs:
            continue
        cand = GraphRelation(subject=s, predicate=r.predicate, object=o, object2=o2)
        if not grounded_relation(prompt, cand, names):
            notes.append(f"ignored model relation {s} {r.predicate} {o}: its phrase is not in the prompt")
            continue
        try:
            check_graph(SceneGraph(objects=objects, relations=[*relations, cand]))
        except (ValidationError, PlanAndRenderError):  # a self-relation, or a contradiction
            notes.append(f"ignored model relation {s} {r.predicate} {o}: contradicts the others")
            continue
        relations.append(cand)
        pairs.add(frozenset((s, o)))
        notes.append(f"added model relation {s} {r.predicate} {o}")
        added += 1

    background = rules.background
    if background is None and model.background and all(w in words(prompt) for w in words(model.background)):
        background = model.background
        added += 1
    excluded = list(rules.excluded)
    for e in model.excluded:
        if _key(e) not in {_key(x) for x in excluded} and grounded_name(prompt, e) and negated_in_prompt(_key(e), prompt):
            excluded.append(_key(e))
            objects = [o for o in objects if _key(o.name) != _key(e)]
            relations = [r for r in relations if {r.subject, r.object, r.object2} - {None} <= {o.id for o in objects}]
            notes.append(f"excluded {e!r} (the model read a negation)")
            added += 1
    final = build_graph(objects=objects, relations=relations, background=background, excluded=excluded)
    return Merge(final, notes, added)
