"""Make any backend's scene graph look alike before it is checked and placed.

Language models write "Cats", "three red apples", "the vase" or refer to an
object by name instead of id; the rules parser is tidier but not perfect. The
normaliser fixes what can be fixed without guessing and says what it changed
(the warnings end up in the plan), so later stages only see singular names,
counts as numbers, adjectives as attributes and relations between real ids.
It takes a ``SceneGraphDraft`` (a grammar-constrained model's answer, whose ids
may repeat or name objects) and returns a checked ``SceneGraph``.
"""

from __future__ import annotations

import re

from pydantic import ValidationError

from ..errors import InvalidPromptError
from ..scene import MAX_INSTANCES, GraphObject, GraphRelation, SceneGraph, SceneGraphDraft, first_error
from ..vocab import (
    ADJECTIVES,
    COMPOUND_NOUNS,
    SIZE_WORDS,
    VAGUE_COUNTS,
    canonical_predicate,
    parse_count,
    singularize,
)

__all__ = ["build_graph", "normalize_graph", "normalize_name", "negated_in_prompt", "words", "canonical_predicate",
           "parse_count", "NameParts"]

_ARTICLES = ("the", "a", "an", "some", "any", "this", "that", "these", "those", "its", "their", "his", "her", "no",
             "without")
_NEGATIONS = re.compile(r"\b(?:without|no|not|nor|never|none|zero|excluding|except|minus|lacking|free of)\b")


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (letters and digits, with an apostrophe suffix: "cat's")."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


class NameParts:
    """A name taken apart: the bare singular noun, a count and the adjectives found."""

    __slots__ = ("name", "count", "attributes", "size")

    def __init__(self, name: str, count: int | None, attributes: list[str], size: str | None):
        self.name, self.count, self.attributes, self.size = name, count, attributes, size

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"NameParts({self.name!r}, count={self.count}, attributes={self.attributes}, size={self.size})"


def _clean(text: str) -> str:
    t = text.lower().replace("_", " ")
    t = re.sub(r"[^\w\s'-]+", " ", t)
    return " ".join(t.split())


def _take_count(words: list[str]) -> tuple[int | None, list[str]]:
    """Strip a leading quantity ("a dozen", "7", "twenty one", "a few") from ``words``."""
    for n in (3, 2, 1):
        if len(words) > n:
            head = " ".join(words[:n])
            if head in ("a", "an"):
                continue
            value = parse_count(head)
            if value is None:
                value = VAGUE_COUNTS.get(head)
            if value is not None:
                return value, words[n:]
    return None, words


def normalize_name(raw: str) -> NameParts:
    """``"Three big red Apples"`` -> name ``apple``, count 3, attributes
    ``["red"]``, size ``large``. Compound nouns ("hot dog") stay whole."""
    words = _clean(raw).split()
    while words and words[0] in _ARTICLES and len(words) > 1:
        words = words[1:]
    count, words = _take_count(words)
    while words and words[0] in _ARTICLES and len(words) > 1:
        words = words[1:]
    attributes: list[str] = []
    size: str | None = None
    # an adjective starts the name only as part of a compound ("red panda"), unless the words after it
    # are a compound themselves ("white wine glass" is a white "wine glass")
    while len(words) > 1 and words[0] in ADJECTIVES and words[1] != "of" and (
            " ".join(words[:2]) not in COMPOUND_NOUNS or " ".join(words[1:]) in COMPOUND_NOUNS):  # "glass of water"
        adj = words.pop(0)
        if adj in SIZE_WORDS and size is None:
            size = SIZE_WORDS[adj]
        elif adj not in attributes:
            attributes.append(adj)
        while len(words) > 1 and words[0] in ("and", ","):
            words.pop(0)
    name = singularize(" ".join(words)) if words else _clean(raw)
    return NameParts(name, count, attributes, size)


def _dedupe(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen


def _normalize_object(obj: GraphObject, warnings: list[str]) -> GraphObject:
    parts = normalize_name(obj.name)
    count = obj.count
    if parts.count is not None and parts.count != obj.count:
        if obj.count == 1 and 1 <= parts.count <= MAX_INSTANCES:
            warnings.append(f"{obj.id}: count {parts.count} taken from the name {obj.name!r}")
            count = parts.count
        elif obj.count != 1:
            warnings.append(f"{obj.id}: kept count {obj.count}; the name {obj.name!r} says {parts.count}")
    attributes = []
    size = obj.size
    for attr in [*obj.attributes, *parts.attributes]:
        a = " ".join(_clean(attr).split())
        if a in SIZE_WORDS:
            size = size or SIZE_WORDS[a]  # a size word is a hint, not something to draw
            continue
        attributes.append(a)
    size = size or parts.size
    if parts.name != obj.name:
        warnings.append(f"{obj.id}: name {obj.name!r} normalised to {parts.name!r}")
    return GraphObject(id=obj.id.strip(), name=parts.name or obj.name, count=count, attributes=_dedupe(attributes),
                       size=size, region=obj.region, depth=obj.depth)


def _unique_ids(objects: list[GraphObject], warnings: list[str]) -> list[GraphObject]:
    seen: set[str] = set()
    out = []
    for obj in objects:
        oid, k = obj.id, 2
        while oid in seen:
            oid, k = f"{obj.id}_{k}", k + 1
        if oid != obj.id:
            warnings.append(f"duplicate id {obj.id!r} renamed to {oid!r}")
            obj = obj.model_copy(update={"id": oid})
        seen.add(oid)
        out.append(obj)
    return out


def _resolver(objects: list[GraphObject]):
    """Map a reference (id, id in other case, or object name) to an id."""
    by_id = {o.id: o.id for o in objects}
    by_lower = {o.id.lower(): o.id for o in objects}
    by_name: dict[str, list[str]] = {}
    for o in objects:
        by_name.setdefault(o.name, []).append(o.id)

    def resolve(ref: str | None) -> str | None:
        if ref is None or ref in by_id:
            return ref
        r = ref.strip()
        if r in by_id:
            return r
        if r.lower() in by_lower:
            return by_lower[r.lower()]
        name = normalize_name(r).name
        if len(by_name.get(name, [])) == 1:
            return by_name[name][0]
        # instance-style refs from a model that read the plan format ("cat-1", "cat_2")
        base = re.sub(r"[-_ ]?\d+$", "", r.lower())
        if base in by_lower:
            return by_lower[base]
        if len(by_name.get(normalize_name(base).name, [])) == 1:
            return by_name[normalize_name(base).name][0]
        return ref

    return resolve


def negated_in_prompt(name: str, prompt: str) -> bool:
    """Does the prompt put a negation shortly before ``name`` (or its plural)?"""
    text = _clean(prompt)
    head = name.split()[-1]
    for m in _NEGATIONS.finditer(text):
        window = " ".join(text[m.end():].split()[:5])
        if any(singularize(w) == head or w == head for w in window.split()):
            return True
    return False


def build_graph(**fields) -> SceneGraph:
    """A ``SceneGraph`` from parts a planner assembled. What breaks the contract
    (an unknown id, a relation of an object to itself...) is the prompt's
    ``InvalidPromptError``, with the contract's own one-line message."""
    try:
        return SceneGraph(**fields)
    except ValidationError as e:
        raise InvalidPromptError(first_error(e)) from None


def normalize_graph(graph: SceneGraphDraft, prompt: str) -> tuple[SceneGraph, list[str]]:
    """Return a tidied, checked copy of ``graph`` and a list of what was changed.

    * names: lower case, singular, no article/count/colour/material/size word
      (those move to ``count``, ``attributes`` and ``size``);
    * duplicate ids get a suffix; relations that name an object instead of its
      id are pointed at the id; exact duplicate relations are dropped;
    * an object also listed in ``excluded`` is removed when ``prompt`` negates
      it ("a room without a bed"), otherwise the exclusion is dropped.
    What cannot be mended (a reference to nothing, an object related to itself)
    is an ``InvalidPromptError`` with ``SceneGraph``'s message.
    """
    warnings: list[str] = []
    objects = _unique_ids([_normalize_object(o, warnings) for o in graph.objects], warnings)

    excluded: list[str] = []
    for raw in graph.excluded:
        name = normalize_name(raw).name
        if name and name not in excluded:
            excluded.append(name)
    dropped_ids: set[str] = set()
    for name in list(excluded):
        clashing = [o for o in objects if o.name == name]
        if not clashing:
            continue
        if negated_in_prompt(name, prompt):
            dropped_ids |= {o.id for o in clashing}
            objects = [o for o in objects if o.name != name]
            warnings.append(f"{name!r} is excluded by the prompt; removed it from the objects")
        else:
            excluded.remove(name)
            warnings.append(f"{name!r} was both an object and excluded; kept it as an object")

    resolve = _resolver(objects)
    relations: list[GraphRelation] = []
    seen: set[tuple] = set()
    for r in graph.relations:
        s, o, o2 = resolve(r.subject), resolve(r.object), resolve(r.object2)
        if dropped_ids & {s, o, o2}:
            warnings.append(f"dropped relation {r.subject} {r.predicate} {r.object} (it refers to an excluded object)")
            continue
        if (s, o, o2) != (r.subject, r.object, r.object2):
            warnings.append(f"relation {r.subject} {r.predicate} {r.object} refers to objects by name; mapped to ids")
        if r.predicate == "between" and o2 is not None and o is not None and o2 < o and o != o2:
            o, o2 = o2, o  # between is symmetric in its references
        key = (s, r.predicate, o, o2)
        if key in seen:
            warnings.append(f"dropped duplicate relation {s} {r.predicate} {o}")
            continue
        seen.add(key)
        relations.append(GraphRelation(subject=s, predicate=r.predicate, object=o, object2=o2))

    background = " ".join(graph.background.split()) if graph.background else None
    out = build_graph(objects=objects, relations=relations, background=background or None, excluded=excluded)
    return out, warnings
