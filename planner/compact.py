"""A compact, prompt-grounded answer format for small local models.

Measured on Gemma 3 270M (a base model): asked for ``SceneGraph`` JSON it
lists one object of two and writes ``"on"`` for nearly every relation; asked
for short lines that read like the prompt it copies counts, names and relation
phrases correctly far more often. So ``local`` decodes this form::

    Objects: 3 red apples; 1 table; 1 moon (top right, background)
    Relations: apples | on | table
    Background: a kitchen
    Excluded: none

* an object is ``count phrase``; the phrase is words of the prompt, and
  ``plan_and_render.planner.normalize.normalize_name`` splits it into name, attributes, size;
  an optional ``(region, depth)`` after it ("top left", "background") says where the
  prompt puts it - the grammar offers only the regions and depths the prompt states;
* a relation copies its phrase from the prompt (or a plain predicate name),
  and ``plan_and_render.vocab.canonical_predicate`` maps it; ``between`` takes two
  references;
* ``grounded_grammar(prompt)`` is the EBNF grammar used for decoding: every
  name and phrase is a choice among the prompt's own word sequences, so the
  model cannot write a word that is not in the text, and the answer is finite.

``answer_lines`` renders the few-shot examples (the same ``prompts/``
examples the JSON backends use) and ``parse_lines`` turns an answer into a
``SceneGraphDraft`` (its references are the model's; ``crosscheck.repair``
mends them).
"""

from __future__ import annotations

import json
import re

from .expand import slug
from .normalize import normalize_name, words
from ..scene import MAX_INSTANCES, GraphObject, GraphRelation, SceneGraphDraft
from ..vocab import (ADJECTIVES, DEPTHS, PREDICATE_NAMES, PREDICATE_PHRASES, REGIONS, canonical_depth,
                     canonical_predicate, canonical_region, singularize, stated_depth, stated_region)

MAX_OBJECTS, MAX_RELATIONS, MAX_EXCLUDED, MAX_PHRASE_WORDS = 8, 8, 4, 4
BASE_PHRASES = tuple(p.replace("_", " ") for p in PREDICATE_NAMES if p != "between")
# Words a thing's name never starts or ends with (articles, prepositions, numbers, verbs of being...)
_EDGE_WORDS = frozenset(
    """a an the this that these those some any no not without with and or of to in on at by for from into onto
    over under above below behind near next between is are was were be there here it its their his her one two
    three four five six seven eight nine ten eleven twelve dozen pair couple few several many more less than
    left right top bottom front side middle photo picture image scene view number same""".split()
)


# --------------------------------------------------------------------------
# Few-shot answers
# --------------------------------------------------------------------------


def relation_phrase(prompt: str, predicate: str) -> str:
    """The longest multi-word phrasing of ``predicate`` in ``prompt``, else the predicate with spaces."""
    text = f" {' '.join(words(prompt))} "
    found = [p for p, pred in PREDICATE_PHRASES.items() if pred == predicate and " " in p and f" {p} " in text]
    return max(found, key=len) if found else predicate.replace("_", " ")


def answer_lines(graph: SceneGraphDraft | dict, prompt: str = "") -> str:
    """The line-form answer for a scene graph (objects as ``count attributes name``)."""
    g = graph if isinstance(graph, SceneGraphDraft) else SceneGraphDraft.model_validate(graph)
    names = {o.id: o.name for o in g.objects}
    objs = "; ".join(f"{o.count} {' '.join([*([o.size] if o.size else []), *o.attributes, o.name])}{place(o)}"
                     for o in g.objects) or "none"
    rels = []
    for r in g.relations:
        if r.predicate == "between":
            rels.append(f"{names.get(r.subject, r.subject)} | between | {names.get(r.object, r.object)} | "
                        f"{names.get(r.object2, r.object2)}")
        else:
            rels.append(f"{names.get(r.subject, r.subject)} | {relation_phrase(prompt, r.predicate)} | "
                        f"{names.get(r.object, r.object)}")
    return (f"Objects: {objs}\nRelations: {'; '.join(rels) or 'none'}\n"
            f"Background: {g.background or 'none'}\nExcluded: {', '.join(g.excluded) or 'none'}")


def place(obj: GraphObject) -> str:
    """`` (top left, background)``: an object's region and depth in the line form, or ""."""
    parts = [p.replace("_", " ") for p in (obj.region, obj.depth) if p]
    return f" ({', '.join(parts)})" if parts else ""


def stated_places(prompt: str) -> tuple[list[str], list[str]]:
    """The regions and depths the prompt states (in the line form's spelling): all an answer may use."""
    regions = [r.replace("_", " ") for r in REGIONS if stated_region(r, prompt)]
    return regions, [d for d in DEPTHS if stated_depth(d, prompt)]


# --------------------------------------------------------------------------
# Decoding grammar: names limited to the prompt's word sequences
# --------------------------------------------------------------------------


def prompt_phrases(prompt: str, max_words: int = MAX_PHRASE_WORDS) -> list[str]:
    """Word sequences of the prompt that could name a thing, plus singular forms.

    A name does not start or end with an article, preposition or number, and
    does not end with an adjective the prompt uses before a noun ("white" in
    "a white horse"), so "1 white" cannot stand for the horse."""
    ws = words(prompt)
    out: dict[str, None] = {}
    for n in range(1, max_words + 1):
        for i in range(len(ws) - n + 1):
            gram = ws[i : i + n]
            if gram[0] in _EDGE_WORDS or gram[-1] in _EDGE_WORDS:
                continue
            if gram[-1] in ADJECTIVES and i + n < len(ws) and ws[i + n] not in _EDGE_WORDS:
                continue
            out[" ".join(gram)] = None
            out[" ".join([*gram[:-1], singularize(gram[-1])])] = None
    return [p for p in out if p]


_SIDE_HINTS = {"left_of": ("left",), "right_of": ("right",)}  # "to its left" -> "left of"


def relation_phrases(prompt: str) -> list[str]:
    """Relation phrasings the prompt contains, plus the plain name of each
    predicate the prompt expresses; empty when it states no relation."""
    ws = words(prompt)
    text = f" {' '.join(ws)} "
    found = {p for p, pred in PREDICATE_PHRASES.items() if pred != "between" and f" {p} " in text}
    preds = {PREDICATE_PHRASES[p] for p in found}
    preds |= {pred for pred, hints in _SIDE_HINTS.items() if any(h in ws for h in hints)}
    return sorted(found | {p.replace("_", " ") for p in preds})


def _alt(options: list[str]) -> str:
    return " | ".join(json.dumps(o) for o in options)


def grounded_grammar(prompt: str) -> str:
    """EBNF (xgrammar dialect) for the line answer to ``prompt``; starts with the
    space after ``Objects:`` and ends with a newline."""
    names = prompt_phrases(prompt) or ["object"]
    places = names + [f"a {p}" for p in names if len(p.split()) <= 2]
    return "\n".join([
        'root ::= " " objects "\\nRelations: " relations "\\nBackground: " background "\\nExcluded: " excluded "\\n"',
        f'objects ::= "none" | object ("; " object){{0,{MAX_OBJECTS - 1}}}',
        *where_rules(prompt),
        'count ::= [1-9] | [1-2] [0-9] | "30"',
        relations_rule(prompt),
        'background ::= "none" | place',
        f'excluded ::= "none" | name (", " name){{0,{MAX_EXCLUDED - 1}}}',
        f"name ::= {_alt(names)}",
        f"place ::= {_alt(places)}",
    ] + ([f"phrase ::= {_alt(relation_phrases(prompt))}"] if relation_phrases(prompt) else []))


def where_rules(prompt: str) -> list[str]:
    """``object``: ``count name``, and `` (region, depth)`` only when the prompt states one."""
    regions, depths = stated_places(prompt)
    if not regions and not depths:
        return ['object ::= count " " name']
    shapes = [s for s, ok in (("region", regions), ("depth", depths), ('region ", " depth', regions and depths)) if ok]
    return ['object ::= count " " name (" (" where ")")?', f"where ::= {' | '.join(shapes)}"] + \
        ([f"region ::= {_alt(regions)}"] if regions else []) + ([f"depth ::= {_alt(depths)}"] if depths else [])


def relations_rule(prompt: str) -> str:
    """Relations the grammar allows: only "none" when the prompt states no relation."""
    shapes = []
    if relation_phrases(prompt):
        shapes.append('name " | " phrase " | " name')
    if "between" in words(prompt) or "among" in words(prompt):
        shapes.append('name " | between | " name " | " name')
    if not shapes:
        return 'relations ::= "none"'
    return (f'relations ::= "none" | relation ("; " relation){{0,{MAX_RELATIONS - 1}}}\n'
            f"relation ::= {' | '.join(shapes)}")


# --------------------------------------------------------------------------
# Back to a SceneGraph
# --------------------------------------------------------------------------

_OBJECT = re.compile(r"^(\d+)\s+(.+?)(?:\s*\(([^()]*)\))?$")


def parse_lines(text: str) -> SceneGraphDraft:
    """A line answer (as ``grounded_grammar`` produces) as a ``SceneGraphDraft``.

    Names are split by ``normalize_name``; ids come from names (a repeated name
    gets ``_2``); a reference is matched to an object by phrase, name or
    singular; a relation phrase that maps to no predicate is dropped. A
    reference that matches nothing, or a thing related to itself, stays for
    ``crosscheck.repair`` to drop (with a note).
    """
    fields: dict[str, str] = {}
    for line in ("Objects:" + text).splitlines():
        key, _, value = line.partition(":")
        if value:
            fields[key.strip().lower()] = value.strip()
    objects: list[GraphObject] = []
    ids: dict[str, str] = {}
    for item in _items(fields.get("objects", ""), ";"):
        m = _OBJECT.match(item)
        if not m:
            continue
        parts = normalize_name(m.group(2))
        where = [w.strip() for w in (m.group(3) or "").split(",") if w.strip()]
        region = next((r for r in map(canonical_region, where) if r), None)
        depth = next((d for d in map(canonical_depth, where) if d), None)
        base = slug(parts.name)
        oid, k = base, 2
        while any(o.id == oid for o in objects):
            oid, k = f"{base}_{k}", k + 1
        for key in (m.group(2), parts.name, singularize(m.group(2))):
            ids.setdefault(key.lower(), oid)
        objects.append(GraphObject(id=oid, name=parts.name, count=max(1, min(MAX_INSTANCES, int(m.group(1)))),
                                   attributes=parts.attributes, size=parts.size, region=region, depth=depth))

    def ref(phrase: str) -> str:
        p = phrase.strip().lower()
        return ids.get(p) or ids.get(normalize_name(p).name) or ids.get(singularize(p)) or slug(normalize_name(p).name)

    relations: list[GraphRelation] = []
    for item in _items(fields.get("relations", ""), ";"):
        parts = [p.strip() for p in item.split("|")]
        if len(parts) == 4 and parts[1] == "between":
            relations.append(GraphRelation(subject=ref(parts[0]), predicate="between", object=ref(parts[2]),
                                           object2=ref(parts[3])))
        elif len(parts) == 3 and (pred := canonical_predicate(parts[1])) and pred != "between":
            relations.append(GraphRelation(subject=ref(parts[0]), predicate=pred, object=ref(parts[2])))
    background = fields.get("background")
    excluded = [normalize_name(x).name for x in _items(fields.get("excluded", ""), ",")]
    return SceneGraphDraft(objects=objects, relations=relations,
                           background=None if background in (None, "", "none") else background, excluded=excluded)


def _items(value: str, sep: str) -> list[str]:
    return [] if value.strip() in ("", "none") else [x.strip() for x in value.split(sep) if x.strip()]
