"""A compact, prompt-grounded scene-graph answer for small local models.

The full ``SceneGraph`` makes a model write every object's id and size and
choose predicates from an abstract list; on a 2-core CPU each chosen token
costs ~0.1 s, and a 270M model mostly picks the first predicate it saw. The
compact form asks for what a small model does well - copying - and derives the
rest deterministically:

* objects name a ``name`` (a phrase of the prompt, singular allowed), ``count``
  and ``attributes`` (words of the prompt); ids come from names;
* a relation copies its phrase from the prompt (``"to the left of"``), which
  ``planner.vocab.canonical_predicate`` maps to the vocabulary;
* ``between`` has its own shape with ``object2``.

``grounded_schema(prompt)`` is the JSON schema used for decoding: every string
is an enum of the prompt's own words and phrases, so the model cannot write a
word that is not in the text. ``CompactGraph`` validates the answer and
``to_graph`` turns it into a ``SceneGraph``; few-shot answers come from the
full examples through ``from_graph``, so there is one set of examples.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .expand import slug
from .scene import MAX_INSTANCES, GraphObject, GraphRelation, SceneGraph
from .vocab import PREDICATE_NAMES, PREDICATE_PHRASES, canonical_predicate, singularize

Word = Annotated[str, Field(min_length=1, max_length=40)]
MAX_OBJECTS, MAX_RELATIONS, MAX_ATTRIBUTES, MAX_EXCLUDED = 8, 8, 4, 4
BASE_PHRASES = tuple(p.replace("_", " ") for p in PREDICATE_NAMES if p != "between")


class CompactObject(BaseModel):
    name: Word
    count: int = Field(ge=1, le=MAX_INSTANCES)
    attributes: list[Word] = Field(max_length=MAX_ATTRIBUTES)


class CompactRelation(BaseModel):
    subject: Word
    relation: Word
    object: Word


class CompactBetween(BaseModel):
    subject: Word
    relation: Literal["between"]
    object: Word
    object2: Word


class CompactGraph(BaseModel):
    objects: list[CompactObject] = Field(max_length=MAX_OBJECTS)
    relations: list[CompactBetween | CompactRelation] = Field(max_length=MAX_RELATIONS)
    background: Word | None
    excluded: list[Word] = Field(max_length=MAX_EXCLUDED)


# --------------------------------------------------------------------------
# Few-shot answers
# --------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def relation_phrase(prompt: str, predicate: str) -> str:
    """The longest phrasing of ``predicate`` that occurs in ``prompt`` (else the
    predicate with spaces) - what a model is shown to copy."""
    text = f" {' '.join(_words(prompt))} "
    found = [p for p, pred in PREDICATE_PHRASES.items() if pred == predicate and f" {p} " in text]
    return max(found, key=len) if found else predicate.replace("_", " ")


def from_graph(graph: SceneGraph | dict, prompt: str = "") -> dict:
    """The compact answer (a plain dict, keys in schema order) for a scene graph."""
    g = SceneGraph.model_validate(graph)
    names = {o.id: o.name for o in g.objects}
    rels = []
    for r in g.relations:
        rel = {"subject": names.get(r.subject, r.subject), "relation": relation_phrase(prompt, r.predicate),
               "object": names.get(r.object, r.object)}
        if r.predicate == "between":
            rel = {**rel, "relation": "between", "object2": names.get(r.object2, r.object2)}
        rels.append(rel)
    return {
        "objects": [{"name": o.name, "count": o.count, "attributes": list(o.attributes)} for o in g.objects],
        "relations": rels,
        "background": g.background,
        "excluded": list(g.excluded),
    }


# --------------------------------------------------------------------------
# Decoding schema: strings limited to the prompt's words
# --------------------------------------------------------------------------


def prompt_phrases(prompt: str, max_words: int = 3) -> list[str]:
    """Word n-grams of the prompt (n <= max_words) and their singular forms."""
    words = _words(prompt)
    out: dict[str, None] = {}
    for n in range(1, max_words + 1):
        for i in range(len(words) - n + 1):
            gram = " ".join(words[i : i + n])
            out[gram] = None
            out[" ".join([*words[i : i + n - 1], singularize(words[i + n - 1])])] = None
    return [p for p in out if p]


def grounded_schema(prompt: str) -> dict:
    """``CompactGraph``'s JSON schema with every string an enum of the prompt's phrases.

    Relation phrases are the vocabulary phrasings found in the prompt plus the
    plain predicate names, so each one maps to a predicate.
    """
    phrases = prompt_phrases(prompt) or ["object"]
    words = list(dict.fromkeys(_words(prompt))) or ["object"]
    text = f" {' '.join(_words(prompt))} "
    rel = sorted({p for p, pred in PREDICATE_PHRASES.items() if pred != "between" and f" {p} " in text}
                 | set(BASE_PHRASES))
    name = {"type": "string", "enum": phrases}
    obj = {"type": "object", "properties": {
        "name": name, "count": {"type": "integer", "minimum": 1, "maximum": MAX_INSTANCES},
        "attributes": {"type": "array", "items": {"type": "string", "enum": words}, "maxItems": MAX_ATTRIBUTES}},
        "required": ["name", "count", "attributes"]}
    pair = {"type": "object", "properties": {"subject": name, "relation": {"type": "string", "enum": rel},
                                             "object": name}, "required": ["subject", "relation", "object"]}
    between = {"type": "object", "properties": {"subject": name, "relation": {"const": "between"}, "object": name,
                                                "object2": name},
               "required": ["subject", "relation", "object", "object2"]}
    background = [p for p in phrases if len(p.split()) <= 2] + [f"a {p}" for p in words]
    return {"type": "object", "properties": {
        "objects": {"type": "array", "items": obj, "maxItems": MAX_OBJECTS},
        "relations": {"type": "array", "items": {"anyOf": [pair, between]}, "maxItems": MAX_RELATIONS},
        "background": {"anyOf": [{"type": "string", "enum": background}, {"type": "null"}]},
        "excluded": {"type": "array", "items": name, "maxItems": MAX_EXCLUDED}},
        "required": ["objects", "relations", "background", "excluded"]}


# --------------------------------------------------------------------------
# Back to a SceneGraph
# --------------------------------------------------------------------------


def to_graph(compact: CompactGraph) -> SceneGraph:
    """Ids from names (``teddy bear`` -> ``teddy_bear``; a repeated name gets ``_2``);
    relations that name an object point at its first id; a relation phrase
    that maps to no predicate is dropped."""
    objects: list[GraphObject] = []
    ids_by_name: dict[str, str] = {}
    for o in compact.objects:
        base = slug(o.name)
        oid, k = base, 2
        while any(x.id == oid for x in objects):
            oid, k = f"{base}_{k}", k + 1
        ids_by_name.setdefault(o.name.strip().lower(), oid)
        objects.append(GraphObject(id=oid, name=o.name, count=o.count, attributes=o.attributes))

    def ref(name: str) -> str:
        key = name.strip().lower()
        return ids_by_name.get(key) or ids_by_name.get(singularize(key)) or slug(key)

    relations = []
    for r in compact.relations:
        if isinstance(r, CompactBetween):
            relations.append(GraphRelation(subject=ref(r.subject), predicate="between", object=ref(r.object),
                                           object2=ref(r.object2)))
            continue
        predicate = canonical_predicate(r.relation)
        if predicate and predicate != "between":
            relations.append(GraphRelation(subject=ref(r.subject), predicate=predicate, object=ref(r.object)))
    return SceneGraph(objects=objects, relations=relations, background=compact.background, excluded=compact.excluded)
