"""Chat instructions -> ``EditScript`` by phrasing rules (the ``rules`` planner's ``edit_ops``).

Deterministic and model-free, like the rules graph parser. An instruction is
split into clauses ("make the cat black and move it left"); each clause is
matched against verb patterns (undo, background, swap, remove, add, resize,
move, relation, attribute change) and its noun phrases are resolved against
the current plan: ids ("cat-2"), names and plurals, aliases ("kitten"),
attributes ("the black cat"), positions ("the left cat", "the cat on the
right"), ordinals ("the second cat") and pronouns ("it" = the object the
previous clause or turn talked about).

Where an object belongs is a region or depth, not a move: "move the cat to
the top right corner", "put the dog in the foreground", "add a tree in the
background", "add a cat on the left" give ``region`` / ``depth`` on the
move or add (a plain "move the cat left" stays a move by a direction).

It never guesses: a singular reference that fits several objects ("the cat"
with two cats, "it" with no referent) becomes one ``clarify`` operation
asking which; a name not in the scene is an ``EditError`` listing the objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..edit_ops import (
    AddOp,
    BackgroundOp,
    ChangeOp,
    ClarifyOp,
    EditError,
    EditScript,
    MoveOp,
    RedoOp,
    RelateOp,
    RemoveOp,
    ResizeOp,
    SwapOp,
    UndoOp,
    UnrelateOp,
    fresh_ids,
)
from ..normalize import normalize_name
from ...scene import PlanObject, ScenePlan
from ...vocab import (ALIASES, COLOURS, DESCRIPTIVE, MATERIALS, PREDICATE_PHRASES, SIZE_WORDS, canonical_depth,
                      canonical_region, is_plural, parse_count)
from ...vocab import singularize


class Ambiguous(Exception):
    """A reference that fits several objects (or none is in focus): ask, do not guess."""

    def __init__(self, question: str):
        super().__init__(question)
        self.question = question


# --------------------------------------------------------------------------
# Vocabulary of the edit language
# --------------------------------------------------------------------------

_POLITE = re.compile(
    r"^(?:(?:please|pls|ok(?:ay)?|now|so|then|and|also|hey|hmm+|well|next|actually|oh|ah|right|alright|hm+|"
    r"can you|could you|would you|will you|"
    r"i want you to|i'd like you to|i would like you to|i want to|i'd like to|let's|lets|let us|try to|"
    r"go ahead and|just)[\s,]+)+"
)
_VERBS_START = (
    r"add|insert|include|draw|put|place|remove|delete|erase|get rid of|take out|take away|drop|eliminate|move|"
    r"shift|push|pull|nudge|slide|drag|bring|set|position|relocate|make|turn|paint|colou?r|recolou?r|change|"
    r"swap|switch|exchange|undo|redo|resize|enlarge|shrink|grow|scale|double|halve|replace|rename|raise|lift|"
    r"lower|give|use|then"
)
_CLAUSE_SPLIT = re.compile(rf"\s*(?:;|\.\s+|,?\s+and then\s+|,?\s+then\s+|,\s+(?=(?:{_VERBS_START})\b)|"
                           rf"\s+and\s+(?=(?:also\s+)?(?:{_VERBS_START})\b))\s*")

_PRONOUNS = {"it", "them", "that", "this", "that one", "this one", "the object", "the thing", "those", "these",
             "him", "her", "itself", "the same", "the same one", "that thing", "this thing"}
_EVERYTHING = {"everything", "all", "all objects", "all the objects", "the whole scene", "the scene", "all of them",
               "them all", "every object", "each object", "the objects", "all things", "everything else"}

_SMALL = (r"(?:just\s+)?(?:a\s+(?:little\s+)?bit|a\s+little|slightly|a\s+tad|a\s+touch|a\s+smidge|somewhat|"
          r"marginally|a\s+hair)")
_LARGE = r"(?:a\s+lot|much|way|far|a\s+great\s+deal|significantly|considerably|quite\s+a\s+bit|a\s+long\s+way|lots)"
_MAX = (r"(?:all\s+the\s+way|as\s+far\s+as\s+(?:possible|it\s+goes|it\s+can\s+go)|completely|"
        r"to\s+the\s+(?:very\s+|far\s+)?(?:edge|end))")

_DIRS: list[tuple[str, str, str | None]] = [  # regex, direction, forced amount
    (r"to\s+the\s+(?:very\s+|far\s+)?top(?:\s+(?:edge|of\s+the\s+\w+))?", "up", "max"),
    (r"to\s+the\s+(?:very\s+|far\s+)?bottom(?:\s+(?:edge|of\s+the\s+\w+))?", "down", "max"),
    (r"to\s+the\s+(?:very\s+|far\s+)?left\s+(?:edge|side\s+of\s+the\s+(?:image|picture|canvas|scene|frame))",
     "left", "max"),
    (r"to\s+the\s+(?:very\s+|far\s+)?right\s+(?:edge|side\s+of\s+the\s+(?:image|picture|canvas|scene|frame))",
     "right", "max"),
    (r"(?:to|into|in)\s+the\s+(?:middle|center|centre)(?:\s+of\s+the\s+\w+)?|(?:to\s+)?(?:the\s+)?(?:center|centre)",
     "center", None),
    (r"(?:to|towards?|on|over)\s+(?:to\s+)?the\s+(?:far\s+|very\s+)?left(?:\s+(?:side|hand\s+side))?|"
     r"leftwards?|left", "left", None),
    (r"(?:to|towards?|on|over)\s+(?:to\s+)?the\s+(?:far\s+|very\s+)?right(?:\s+(?:side|hand\s+side))?|"
     r"rightwards?|right", "right", None),
    (r"upwards?|up|higher(?:\s+up)?|towards?\s+the\s+top|skywards?", "up", None),
    (r"downwards?|down|lower(?:\s+down)?|towards?\s+the\s+bottom", "down", None),
]
_DIR_RE = [(re.compile(rf"\b(?:{rx})\b"), d, amt) for rx, d, amt in _DIRS]

_BIGGER = r"(?:bigger|larger|taller|wider|greater|huger|longer)"
_SMALLER = r"(?:smaller|tinier|shorter|littler|narrower|thinner)"
_SIZE_ADJ = {"big": 1.3, "large": 1.3, "huge": 1.7, "giant": 1.7, "enormous": 1.8, "gigantic": 1.8, "massive": 1.7,
             "tall": 1.3, "small": 0.75, "little": 0.75, "tiny": 0.55, "miniature": 0.55, "mini": 0.6}

_ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3, "fifth": 4,
             "5th": 4, "sixth": 5, "6th": 5, "last": -1, "final": -1}
_POSITION = {"left": ("x", min), "leftmost": ("x", min), "left-most": ("x", min), "right": ("x", max),
             "rightmost": ("x", max), "right-most": ("x", max), "top": ("y", min), "upper": ("y", min),
             "topmost": ("y", min), "highest": ("y", min), "bottom": ("y", max), "lower": ("y", max),
             "bottommost": ("y", max), "lowest": ("y", max), "middle": ("m", None), "center": ("m", None),
             "centre": ("m", None), "central": ("m", None), "biggest": ("a", max), "largest": ("a", max),
             "smallest": ("a", min), "front": ("y2", max), "frontmost": ("y2", max), "back": ("y2", min)}
_POS_SUFFIX = re.compile(r"\s+(?:on|at|in|to)\s+the\s+(left|right|top|bottom|middle|center|centre|front|back)"
                         r"(?:\s+(?:side|edge|corner))?$")
_ADJ = COLOURS | MATERIALS | DESCRIPTIVE


def _clean(text: str) -> str:
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"[!?]+", " ", t)
    t = re.sub(r"(?<=\w)-(?=\d)", "-", t)
    t = " ".join(t.split()).strip(" .,;:")
    return t


_POLITE_END = re.compile(r"(?:[\s,]+(?:please|pls|thanks|thank\s+you|thx|for\s+me|now))+$")


def _strip_polite(t: str) -> str:
    prev = None
    while prev != t:
        prev, t = t, _POLITE_END.sub("", _POLITE.sub("", t)).strip(" ,")
    return t


# --------------------------------------------------------------------------
# References: noun phrase -> instance ids
# --------------------------------------------------------------------------


def _centre(o: PlanObject) -> tuple[float, float]:
    return ((o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2)


def _where(o: PlanObject, among: list[PlanObject]) -> str:
    """'on the left' / 'at the top right'... relative to the other candidates."""
    xs = [_centre(c)[0] for c in among]
    ys = [_centre(c)[1] for c in among]
    cx, cy = _centre(o)
    parts = []
    if max(ys) - min(ys) > 0.1:
        parts.append("top" if cy == min(ys) else "bottom" if cy == max(ys) else "")
    if max(xs) - min(xs) > 0.1:
        parts.append("left" if cx == min(xs) else "right" if cx == max(xs) else "middle")
    words = " ".join(p for p in parts if p)
    return f"on the {words}" if words else ""


def _which(name: str, cands: list[PlanObject]) -> str:
    opts = [f"{c.id} ({c.phrase}{', ' + _where(c, cands) if _where(c, cands) else ''})" for c in cands]
    listed = ", ".join(opts[:-1]) + f" or {opts[-1]}" if len(opts) > 1 else opts[0]
    return f"Which {name} do you mean: {listed}? Say e.g. 'the left {name}' or '{cands[-1].id}'."


def _name_matches(words: str, o: PlanObject) -> bool:
    w = words.strip()
    if not w:
        return False
    sing = singularize(w)
    alias = ALIASES.get(sing) or ALIASES.get(w)
    name = o.name.lower()
    group = (o.group or "").replace("_", " ")
    return (w in (name, group, o.id) or sing in (name, group) or alias == name
            or (len(name.split()) > 1 and sing == name.split()[-1]))


@dataclass
class _Reference:
    """How a noun phrase picks objects: its words from the noun on, and what came before them."""

    words: list[str]
    many: bool = False  # "all", "both", "every", "each"
    quantity: int | None = None  # "a" / "one" 1, "two" 2; "some": None
    ordinal: int | None = None  # "the second": 1
    position: str | None = None  # "the left one", "... on the left"


def _read_reference(t: str) -> _Reference:
    """Determiners, counts, ordinals and positions of a cleaned noun phrase, then the rest of its words."""
    ref = _Reference(words=[])
    m = _POS_SUFFIX.search(t)
    if m:
        ref.position, t = m.group(1), t[:m.start()]
    words = t.split()
    while words:
        w = words[0]
        if w in ("all", "both", "every", "each") or (w == "of" and ref.many):
            ref.many = True
        elif w in ("the", "that", "this", "these", "those", "my", "our", "your", "its", "their", "of"):
            pass
        elif w in ("a", "an", "any", "some", "one"):
            ref.quantity = 1 if w != "some" else None
        elif parse_count(w) is not None and w not in ("a", "an"):
            ref.quantity = parse_count(w)
        elif w in _ORDINALS:
            ref.ordinal = _ORDINALS[w]
        elif w in _POSITION and len(words) > 1:
            ref.position = w
        else:
            break
        words = words[1:]
    ref.words = words
    return ref


class Resolver:
    """Resolves noun phrases against a plan, remembering what the last clause talked about."""

    def __init__(self, plan: ScenePlan, last: list[str] | None = None):
        self.plan = plan
        self.last = [i for i in (last or []) if plan.object_by_id(i)]

    def all_ids(self) -> list[str]:
        return [o.id for o in self.plan.objects]

    def listing(self) -> str:
        return ", ".join(f"{o.id} ({o.phrase})" for o in self.plan.objects) or "nothing yet"

    def find(self, text: str, allow_indefinite_many: bool = False) -> list[str]:
        """Instance ids for a noun phrase or a list of them ("the cat and the vase")."""
        try:
            return self._find(text, allow_indefinite_many)
        except EditError:
            parts = [p for p in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+", _clean(text)) if p]
            if len(parts) < 2:
                raise
            ids: list[str] = []
            for part in parts:
                ids += [i for i in self._find(part, allow_indefinite_many) if i not in ids]
            return ids

    def _find(self, text: str, allow_indefinite_many: bool = False) -> list[str]:
        """Instance ids for one noun phrase; raises Ambiguous or EditError (unknown)."""
        t = _clean(text)
        t = re.sub(r"^(?:to|on|at|in|with|of|for|from)\s+", "", t)
        if not self.plan.objects:
            raise EditError("the scene is empty: add something first, e.g. 'add a cat'")
        named = self._named_outright(t)
        if named is not None:
            return named
        ref = _read_reference(t)
        if not ref.words:
            raise EditError(f"which object? {text!r} does not name one; the scene has {self.listing()}")
        attrs, words = self._leading_attributes(ref.words)
        noun = " ".join(words)
        many = ref.many or (is_plural(words[-1]) and ref.quantity is None)
        cands = self._narrowed([o for o in self.plan.objects if _name_matches(noun, o)], attrs, noun)
        ids = self.all_ids()
        if ref.position and len(cands) > 1:
            cands = [self._by_position(ref.position, cands)]
        if ref.ordinal is not None and len(cands) > 1:
            if ref.ordinal >= len(cands):
                raise EditError(f"there are only {len(cands)} {noun}s")
            cands = [sorted(cands, key=lambda c: ids.index(c.id))[ref.ordinal]]
        if ref.quantity is not None and ref.quantity > 1:
            if ref.quantity > len(cands):
                raise EditError(f"there are only {len(cands)} {noun!r} in the scene, not {ref.quantity}")
            return [c.id for c in cands[-ref.quantity:]]
        if len(cands) > 1 and not many:
            if ref.quantity == 1 and allow_indefinite_many:
                return [cands[-1].id]
            raise Ambiguous(_which(singularize(noun), cands))
        return [c.id for c in cands]

    def _named_outright(self, t: str) -> list[str] | None:
        """A pronoun (the latest objects), "everything", or an explicit id ("cat-2", "cat 2", "cat #2")."""
        if t in _PRONOUNS or re.fullmatch(r"(?:it|them|that|this)(?:\s+(?:one|thing|object))?", t):
            if self.last:
                return list(self.last)
            if len(self.plan.objects) == 1:
                return self.all_ids()
            raise Ambiguous(f"Which object do you mean by {t!r}? The scene has {self.listing()}.")
        if t in _EVERYTHING:
            return self.all_ids()
        for i in self.all_ids():
            name, _, num = i.rpartition("-")
            spoken = re.escape(name.replace("_", " "))
            if re.fullmatch(rf"(?:the\s+)?{re.escape(i)}|(?:the\s+)?{spoken}\s*#?\s*{num}", t):
                return [i]
        return None

    def _leading_attributes(self, words: list[str]) -> tuple[list[str], list[str]]:
        """Adjectives and size words before the noun, and the noun's words ("teddy bear" keeps its adjective)."""
        words, attrs = list(words), []
        while len(words) > 1 and (words[0] in _ADJ or words[0] in SIZE_WORDS):
            if any(_name_matches(" ".join(words), o) for o in self.plan.objects):
                break  # "teddy bear": the adjective belongs to the name
            attrs.append(words.pop(0))
        return attrs, words

    def _narrowed(self, cands: list[PlanObject], attrs: list[str], noun: str) -> list[PlanObject]:
        """The objects named ``noun`` that have every attribute; a size word keeps the largest or smallest."""
        if not cands:
            raise EditError(f"there is no {noun!r} in the scene; it has {self.listing()}")
        for a in attrs:
            if a in SIZE_WORDS and not any(a in c.attributes for c in cands):
                key = max if SIZE_WORDS[a] in ("large", "huge") else min
                area = {c.id: (c.box[2] - c.box[0]) * (c.box[3] - c.box[1]) for c in cands}
                if len(cands) > 1:
                    cands = [key(cands, key=lambda c: area[c.id])]
                continue
            kept = [c for c in cands if a in c.attributes or a in c.phrase.split()]
            if not kept:
                raise EditError(f"there is no {a} {noun} in the scene; it has {self.listing()}")
            cands = kept
        return cands

    @staticmethod
    def _by_position(word: str, cands: list[PlanObject]) -> PlanObject:
        axis, pick = _POSITION[word]
        if axis == "x":
            return pick(cands, key=lambda c: _centre(c)[0])
        if axis == "y":
            return pick(cands, key=lambda c: _centre(c)[1])
        if axis == "y2":
            return pick(cands, key=lambda c: c.box[3])
        if axis == "a":
            return pick(cands, key=lambda c: (c.box[2] - c.box[0]) * (c.box[3] - c.box[1]))
        return min(cands, key=lambda c: abs(_centre(c)[0] - 0.5) + abs(_centre(c)[1] - 0.5))


# --------------------------------------------------------------------------
# Relation phrases inside a clause
# --------------------------------------------------------------------------

_EXTRA_PREDS = {"right of": "right_of", "left of": "left_of", "on the left side of": "left_of",
                "on the right side of": "right_of", "under neath": "under", "in front of": "in_front_of",
                "to the right hand side of": "right_of", "to the left hand side of": "left_of",
                "on top of": "on", "close to": "near", "next to": "next_to", "beside": "next_to",
                "closer to": "near", "nearer to": "near", "nearer": "near", "towards": "near", "toward": "near",
                "up against": "next_to", "right next to": "next_to", "in the middle of": "inside"}
_REL_PHRASES = sorted({**{k: v for k, v in PREDICATE_PHRASES.items() if k not in ("left", "right", "by", "after",
                                                                                 "before", "around", "top of",
                                                                                 "bottom of", "in_front", "nextto",
                                                                                 "under the", "back of", "front of")},
                       **_EXTRA_PREDS}.items(), key=lambda kv: -len(kv[0]))
_REL_RE = re.compile(r"\b(?:is\s+|are\s+|be\s+|sits\s+|sit\s+|stands\s+|stand\s+)?(" +
                     "|".join(re.escape(k) for k, _ in _REL_PHRASES) + r")\b")
_REL_MAP = dict(_REL_PHRASES)


def _split_relation(rest: str, r: Resolver, need_left: bool = True):
    """Find ``LEFT <predicate phrase> RIGHT`` where RIGHT resolves to scene objects.

    Returns (left_text, predicate, ref_ids, ref2_ids) or None. Ambiguous
    references propagate (the caller asks).
    """
    chain = _relation_chain(rest, r, need_left)
    if chain is None:
        return None
    left, rels = chain
    return (left, *rels[0])


def _relation_chain(rest: str, r: Resolver, need_left: bool = True):
    """``LEFT rel1 REF1 [rel2 REF2 ...]`` -> (left_text, [(predicate, ref_ids, ref2_ids), ...]) or None.

    "a cup on the table to the right of the vase" gives two relations for the cup.
    """
    for m in _REL_RE.finditer(rest):
        left, right = rest[:m.start()].strip(), rest[m.end():].strip()
        if (need_left and not left) or not right:
            continue
        pred = _REL_MAP[m.group(1)]
        if pred == "between":
            parts = re.split(r"\s+and\s+", right, maxsplit=1)
            if len(parts) != 2:
                continue
            try:
                a, b = r.find(parts[0]), r.find(parts[1])
            except EditError:
                continue
            return left, [(pred, a, b)]
        try:
            return left, [(pred, r.find(right, allow_indefinite_many=True), None)]
        except EditError:
            pass
        for m2 in _REL_RE.finditer(right):  # the reference ends where the next relation starts
            head, tail = right[:m2.start()].strip(), right[m2.start():].strip()
            if not head:
                continue
            try:
                refs = r.find(head, allow_indefinite_many=True)
            except EditError:
                continue
            more = _relation_chain(tail, r, need_left=False)
            if more is not None and not more[0]:
                return left, [(pred, refs, None), *more[1]]
    return None


def _ref(r: Resolver, ids: list[str] | None) -> str | None:
    if not ids:
        return None
    return ids[0] if len(ids) == 1 else _group_ref(r, ids)


def _amount(t: str):
    m = re.search(r"\bby\s+(\d+(?:\.\d+)?)\s*(%|percent|per\s*cent|px|pixels?)?", t)
    if m:
        v = float(m.group(1))
        unit = m.group(2) or ""
        if unit.startswith(("%", "per")):
            v /= 100
        elif unit.startswith(("px", "pixel")):
            v = -v  # resolved against the canvas by the caller
        elif v > 1:
            v /= 100
        return v
    if re.search(rf"\b{_MAX}\b", t):
        return "max"
    if re.search(rf"\b{_SMALL}\b", t):
        return "small"
    if re.search(rf"\b{_LARGE}\b", t):
        return "large"
    return "medium"


def _strip_amount(t: str) -> str:
    t = re.sub(r"\bby\s+\d+(?:\.\d+)?\s*(?:%|percent|per\s*cent|px|pixels?)?", " ", t)
    for rx in (_MAX, _SMALL, _LARGE, r"(?:further|farther|more|even\s+more|some\s+more|again|over|a\s+bit\s+more)"):
        t = re.sub(rf"\b{rx}\b", " ", t)
    return " ".join(t.split())


_CORNER = re.compile(r"\b(?:(?:to|into|in|towards?)\s+)?the\s+(?P<v>top|upper|bottom|lower)[\s-](?P<h>left|right)"
                     r"(?:\s+(?:corner|hand\s+corner|side|edge))?(?:\s+of\s+the\s+\w+)?\b")


_FRAME_TAIL = r"(?:\s+of\s+the\s+(?:image|picture|canvas|scene|frame|photo|painting|view))?"
_CORNER_PLACE = re.compile(r"\b(?:to|into|in|towards?|at|on)\s+the\s+(?:very\s+|far\s+)?(?P<w>(?:top|upper|bottom|lower)"
                           r"[\s-](?:left|right))(?:[\s-]hand)?(?:\s+(?:corner|side|part|area|quadrant))?"
                           + _FRAME_TAIL + r"\b")
_SIDE_PLACE = re.compile(r"\b(?:on|at|in|to|towards?)\s+the\s+(?:very\s+|far\s+)?(?P<w>left|right|top|bottom|middle|"
                         r"center|centre)(?:\s+(?:side|edge|part|half|area))?" + _FRAME_TAIL + r"\b(?!\s+of\b)")
_DEPTH_PLACE = re.compile(r"\b(?:(?:in|into|to|toward|towards)\s+the\s+(?:far\s+|very\s+)?(?P<w>foreground|background|"
                          r"distance|front|back)(?!\s+of\b)|(?P<u>up\s+close|close\s+up|far\s+away|far\s+off))\b")


def _places(t: str, sides: bool = False) -> tuple[str | None, str | None, str]:
    """The region and depth ``t`` names ("to the top right corner", "in the background"; with
    ``sides`` also "on the left", "in the middle") and ``t`` without those phrases."""
    region = depth = None
    patterns = [("region", _CORNER_PLACE)] + ([("region", _SIDE_PLACE)] if sides else []) + [("depth", _DEPTH_PLACE)]
    for kind, rx in patterns:
        m = rx.search(t)
        if m is None or (kind == "region" and region is not None):
            continue
        word = m.group("w") or m.groupdict().get("u") or ""
        if kind == "region":
            region = canonical_region(word)
        else:
            depth = canonical_depth(word)
        t = " ".join(f"{t[:m.start()]} {t[m.end():]}".split())
    return region, depth, t


def _direction_spans(t: str) -> list[tuple[int, int, str, str | None]]:
    """(start, end, direction, forced amount) of every direction phrase, left to right.

    A bare side word used as an adjective ("the left dog") is not a direction;
    a corner ("to the top left corner") is two moves to the edges.
    """
    found: list[tuple[int, int, str, str | None]] = []
    masked = t
    for m in _CORNER.finditer(t):
        if not re.search(r"\b(?:to|into|in|towards?)\s+$", t[:m.start()] + " ") and not m.group(0).startswith(
                ("to", "into", "in", "toward")):
            continue  # "the top left dog" names a dog
        v = "up" if m.group("v") in ("top", "upper") else "down"
        found += [(m.start(), m.end(), v, "max"), (m.start(), m.end(), m.group("h"), "max")]
        masked = masked[:m.start()] + "\0" * (m.end() - m.start()) + masked[m.end():]
    for rx, d, amt in _DIR_RE:
        for m in rx.finditer(masked):
            before = masked[:m.start()].rstrip()
            after = masked[m.end():].strip()
            if re.search(r"\b(?:the|a|an)$", before) and after and not after.startswith(("and", ",")):
                continue  # "the left dog", "the upper shelf"
            found.append((m.start(), m.end(), d, amt))
            masked = masked[:m.start()] + "\0" * (m.end() - m.start()) + masked[m.end():]
    return sorted(found)


def _directions(t: str) -> tuple[list[tuple[str, str | None]], str]:
    """All direction phrases in ``t`` (in order) and the text without them."""
    spans = _direction_spans(t)
    rest = t
    for a, b in sorted({(a, b) for a, b, _, _ in spans}, reverse=True):
        rest = rest[:a] + " " + rest[b:]
    rest = " ".join(rest.split())
    rest = re.sub(r"(?:\s+(?:and|a\s+bit|to|toward|towards|,))+$", "", rest).strip()
    return [(d, amt) for _, _, d, amt in spans], rest


# --------------------------------------------------------------------------
# Clause patterns
# --------------------------------------------------------------------------

_UNDO = re.compile(r"^(?:undo|revert|go\s+back|step\s+back|take\s+(?:that|it)\s+back|back|oops|undo\s+(?:that|it|this)|"
                   r"(?:undo|revert)\s+(?:that|the|this|my)?\s*(?:last|previous)\s+(?:edit|change|step|one|turn|move)|"
                   r"revert\s+(?:that|it|this)|put\s+it\s+back(?:\s+(?:where\s+it\s+was|how\s+it\s+was))?|"
                   r"(?:undo|revert|cancel)\s+(?:that|it|this)\s+(?:edit|change))"
                   r"(?:\s+(?P<n>\w+)\s+(?:times|steps|edits|changes))?(?:\s+(?P<tw>twice|thrice))?$")
_UNDO_N = re.compile(r"^(?:undo|revert)\s+(?:the\s+)?last\s+(?P<n>\w+)\s+(?:edits|changes|steps|turns)$")
_REDO = re.compile(r"^(?:redo|redo\s+(?:that|it|this)|re-do|do\s+(?:that|it)\s+again|undo\s+the\s+undo)"
                   r"(?:\s+(?P<n>\w+)\s+(?:times|steps))?(?:\s+(?P<tw>twice|thrice))?$")
_BACKGROUND = re.compile(
    r"^(?:(?:change|set|make|switch|turn|replace|update)\s+(?:the\s+)?(?:background|setting|backdrop|scenery|"
    r"location|environment)\s*(?:to|into|as|:|with|=)?\s+(?:be\s+)?(?P<a>.+)|"
    r"(?:the\s+)?(?:background|setting|backdrop)\s*(?::|=|should\s+be|is\s+now|is|becomes)\s*(?P<b>.+)|"
    r"(?:use|give\s+(?:it|the\s+scene|the\s+picture))\s+(?:a\s+|an\s+)?(?P<c>.+?)\s+(?:background|backdrop|setting)|"
    r"(?:move|put|place|set|relocate|take)\s+(?:everything|the\s+(?:whole\s+)?scene|them\s+all|it\s+all|all\s+of\s+it|"
    r"them|the\s+picture)\s+(?:in|into|to|on|at)\s+(?P<d>.+)|"
    r"set\s+(?:it|this|the\s+picture|the\s+image)\s+(?:in|on|at)\s+(?P<f>.+)|"
    r"(?P<e>(?:in|on|at)\s+(?:a|an|the)\s+.+?)\s+instead)$")
_NO_BACKGROUND = re.compile(r"^(?:remove|clear|delete|drop|erase|get\s+rid\s+of)\s+(?:the\s+)?(?:background|setting|"
                            r"backdrop)$|^(?:no|plain|empty|blank)\s+(?:background|backdrop|setting)$")
_SWAP = re.compile(r"^(?:swap|switch|exchange|interchange|trade|flip)\s+(?:the\s+)?"
                   r"(?:places?\s+of\s+|positions?\s+of\s+|"
                   r"spots?\s+of\s+)?(?P<a>.+?)\s+(?:and|with|&)\s+(?P<b>.+?)(?:\s+(?:around|places|positions|spots|"
                   r"over|sides))?$|^(?P<c>.+?)\s+and\s+(?P<d>.+?)\s+(?:should\s+)?(?:swap|switch|exchange|trade)"
                   r"\s+(?:places|positions|spots|sides)$")
_UNRELATE = re.compile(r"^(?:remove|drop|delete|forget|ignore|clear|cancel)\s+(?:the\s+)?(?:relation|relationship|"
                       r"constraint|link|connection)s?\s+(?:between\s+(?P<a>.+?)\s+and\s+(?P<b>.+)|(?:of|for|on)\s+"
                       r"(?P<c>.+))$")
_REMOVE = re.compile(r"^(?:remove|delete|erase|get\s+rid\s+of|take\s+(?:out|away)|drop|eliminate|lose|ditch|"
                     r"cut|kill|discard|no\s+more|hide)\s+(?P<t>.+?)(?:\s+(?:out|away|from\s+(?:the\s+)?"
                     r"(?:scene|picture|image|plan|canvas|layout)))?$|^(?P<u>.+?)\s+(?:should|has\s+to|must|can)"
                     r"\s+go(?:\s+away)?$|^(?:i\s+)?(?:don't|do\s+not)\s+want\s+(?P<v>.+?)(?:\s+any\s*more)?$")
_ADD = re.compile(r"^(?:add|insert|include|draw|put\s+in|throw\s+in|create|introduce|also|plus|there\s+should\s+be|"
                  r"i\s+want|give\s+me|let\s+there\s+be|we\s+need|place|put|paint|bring\s+in)\s+(?P<t>.+)$")
_RENAME = re.compile(
    r"^(?:(?:turn|change|transform|convert|make)\s+(?P<a>.+?)\s+(?:into|to|in\s+to)\s+(?P<b>.+)|"
    r"replace\s+(?P<c>.+?)\s+(?:with|by)\s+(?P<d>.+)|rename\s+(?P<e>.+?)\s+(?:to|as)\s+(?P<f>.+)|"
    r"call\s+(?P<g>.+?)\s+(?P<h>(?:a|an)\s+.+)|(?P<i>.+?)\s+should\s+be\s+(?P<j>(?:a|an)\s+.+))$")
_PHRASE = re.compile(r"^(?:set|change|make)\s+(?:the\s+)?(?:phrase|text|description|caption|prompt)\s+(?:of|for)\s+"
                     r"(?P<t>.+?)\s+(?:to|:|=)\s*[\"'](?P<p>.+)[\"']$|^(?:describe|call)\s+(?P<u>.+?)\s+(?:as\s+)?"
                     r"[\"'](?P<q>.+)[\"']$")
_RESIZE_VERB = re.compile(
    r"^(?P<v>double\s+the\s+size\s+of|triple\s+the\s+size\s+of|halve\s+the\s+size\s+of|enlarge|grow|expand|"
    r"scale\s+up|upscale|magnify|increase\s+the\s+size\s+of|blow\s+up|embiggen|shrink|scale\s+down|downscale|"
    r"decrease\s+the\s+size\s+of|reduce\s+the\s+size\s+of|reduce|minimi[sz]e|downsize|double|triple|halve)"
    r"\s+(?P<t>.+?)(?:\s+in\s+size)?$")
_MAKE = re.compile(r"^(?:make|render|draw|have|get|let|paint|colou?r|recolou?r|dye|turn|set)\s+(?P<t>.+)$")
_SHOULD = re.compile(r"^(?P<t>.+?)\s+(?:should\s+be|needs\s+to\s+be|must\s+be|has\s+to\s+be|is\s+now|could\s+be|"
                     r"ought\s+to\s+be|will\s+be|to\s+be|goes|should\s+go|belongs|is|are|looks)\s+(?P<r>.+)$")
_MOVE = re.compile(r"^(?P<v>move|shift|push|pull|nudge|slide|drag|bring|put|place|set|position|reposition|relocate|"
                   r"scoot|take|raise|lift|lower|sink|get)\s+(?P<t>.+)$")
_COLOUR_OF = re.compile(r"^(?:change|set|make)\s+(?:the\s+)?(?:colou?r|material)\s+of\s+(?P<t>.+?)\s+(?:to|into)\s+"
                        r"(?P<a>.+)$|^(?:change|set|make)\s+(?P<u>.+?)'s?\s+(?:colou?r|material)\s+(?:to|into)\s+"
                        r"(?P<b>.+)$")


def _count_word(n: str | None) -> int:
    if not n:
        return 1
    return {"twice": 2, "thrice": 3}.get(n) or parse_count(n) or 1


class _Clause:
    """Parses one clause with a shared resolver; returns ops (may raise Ambiguous / EditError)."""

    def __init__(self, r: Resolver):
        self.r = r

    def __call__(self, t: str) -> list:
        for handler in (self.undo_redo, self.background, self.swap, self.unrelate, self.phrase, self.colour_of,
                        self.remove, self.negative, self.want, self.rename, self.resize_verb, self.give, self.move,
                        self.add, self.make, self.should, self.bare):
            ops = handler(t)
            if ops:
                return ops
        return []

    # -- each returns a list of ops, or None when it does not apply --------

    def undo_redo(self, t: str):
        m = _UNDO.match(t) or _UNDO_N.match(t)
        if m:
            return [UndoOp(steps=_count_word(m.groupdict().get("n") or m.groupdict().get("tw")))]
        m = _REDO.match(t)
        if m:
            return [RedoOp(steps=_count_word(m.group("n") or m.group("tw")))]
        return None

    def background(self, t: str):
        if _NO_BACKGROUND.match(t):
            return [BackgroundOp(background=None)]
        m = _BACKGROUND.match(t)
        if not m:
            return None
        bg = next(v for v in m.groupdict().values() if v)
        if m.group("d") or m.group("e") or m.group("f"):
            bg = re.sub(r"^(?:in|on|at)\s+", "", bg)
        if bg in ("none", "nothing", "empty", "blank", "plain"):
            return [BackgroundOp(background=None)]
        return [BackgroundOp(background=bg.strip())]

    def swap(self, t: str):
        m = _SWAP.match(t)
        if not m:
            one = re.match(r"^(?:swap|switch|exchange|interchange|trade|flip)\s+(?:the\s+)?(?:places?\s+of\s+|"
                           r"positions?\s+of\s+)?(?P<x>.+?)(?:\s+(?:around|places|positions|over))?$", t)
            if not one:
                return None
            ids = self.r.find(one.group("x"), allow_indefinite_many=True)
            if len(ids) != 2:
                raise Ambiguous("Which two objects should change places? e.g. 'swap the cat and the vase'.")
            self.r.last = ids
            return [SwapOp(first=ids[0], second=ids[1])]
        a, b = (m.group("a"), m.group("b")) if m.group("a") else (m.group("c"), m.group("d"))
        ia, ib = self.r.find(a), self.r.find(b)
        if len(ia) != 1 or len(ib) != 1:
            raise Ambiguous("Swap needs one object on each side: which two objects should change places?")
        self.r.last = ia + ib
        return [SwapOp(first=ia[0], second=ib[0])]

    def unrelate(self, t: str):
        m = _UNRELATE.match(t)
        if not m:
            return None
        if m.group("c"):
            subs = self.r.find(m.group("c"))
            return [UnrelateOp(subject=s) for s in subs]
        a, b = self.r.find(m.group("a")), self.r.find(m.group("b"))
        return [UnrelateOp(subject=s, object=o) for s in a for o in b]

    def phrase(self, t: str):
        m = _PHRASE.match(t)
        if not m:
            return None
        ids = self.r.find(m.group("t") or m.group("u"))
        self.r.last = ids
        return [ChangeOp(target=i, phrase=m.group("p") or m.group("q")) for i in ids]

    def colour_of(self, t: str):
        m = _COLOUR_OF.match(t)
        if not m:
            return None
        ids = self.r.find(m.group("t") or m.group("u"))
        self.r.last = ids
        attrs = (m.group("a") or m.group("b")).split()
        return [ChangeOp(target=i, add_attributes=attrs) for i in ids]

    def remove(self, t: str):
        m = _REMOVE.match(t)
        if not m:
            return None
        text = m.group("t") or m.group("u") or m.group("v")
        if re.fullmatch(r"(?:the\s+)?(?:background|setting|backdrop)", text):
            return [BackgroundOp(background=None)]
        ids = self.r.find(text, allow_indefinite_many=True)
        self.r.last = []
        return [RemoveOp(target=i) for i in ids]

    def rename(self, t: str):
        m = _RENAME.match(t)
        if not m:
            return None
        g = m.groupdict()
        pairs = [("a", "b"), ("c", "d"), ("e", "f"), ("g", "h"), ("i", "j")]
        target, new = next((g[x], g[y]) for x, y in pairs if g[x])
        new = new.strip()
        words = new.split()
        if all(w in _ADJ | set(SIZE_WORDS) for w in words):  # "turn the cat black"/"turn it to red"
            return None
        try:
            ids = self.r.find(target)
        except EditError:
            if g["i"]:  # "X should be a Y" where X is not an object: not this pattern
                return None
            raise
        parts = normalize_name(new)
        if not parts.name:
            return None
        self.r.last = ids
        if _name_matches(parts.name, self.r.plan.object_by_id(ids[0])) and not parts.attributes:
            return None
        ops = [ChangeOp(target=i, name=parts.name, add_attributes=parts.attributes,
                        remove_attributes=[a for a in self.r.plan.object_by_id(i).attributes
                                           if a not in parts.attributes])
               for i in ids]
        if parts.size:
            ops += [ResizeOp(target=i, scale=_SIZE_ADJ.get(parts.size, 1.3 if parts.size in ("large", "huge")
                                                            else 0.75)) for i in ids]
        return ops

    def resize_verb(self, t: str):
        m = _RESIZE_VERB.match(t)
        scale_word = re.match(r"^(?:scale|size|resize)\s+(?P<t>.+?)\s+(?P<d>up|down)\b(?P<rest>.*)$", t)
        if scale_word:
            v, target, tail = ("scale up" if scale_word.group("d") == "up" else "scale down",
                               scale_word.group("t"), scale_word.group("rest"))
        elif m:
            v, target, tail = " ".join(m.group("v").split()), m.group("t"), ""
        else:
            return None
        up = v in ("enlarge", "grow", "expand", "scale up", "upscale", "magnify", "increase the size of",
                   "blow up", "embiggen")
        by = re.search(r"\bby\s+(?:(?P<p>\d+(?:\.\d+)?)\s*(?:%|percent)|(?P<f>half|a\s+half|a\s+third|a\s+quarter|"
                       r"(?P<x>\d+(?:\.\d+)?)\s*(?:x|times)|a\s+factor\s+of\s+(?P<k>\d+(?:\.\d+)?)))",
                       f"{target} {tail}")
        target = re.sub(r"\s+by\s+.*$", "", target)
        amt = _amount(f"{target} {tail}")
        target = re.sub(r"\s+(?:size|in\s+size)$", "", _strip_amount(target))
        if v.startswith("double"):
            scale = 2.0
        elif v.startswith("triple"):
            scale = 3.0
        elif v.startswith("halve"):
            scale = 0.5
        elif by and (by.group("x") or by.group("k")):
            f = float(by.group("x") or by.group("k"))
            scale = f if up else 1 / f
        elif by:
            frac = float(by.group("p")) / 100 if by.group("p") else {"half": 0.5, "a half": 0.5, "a third": 1 / 3,
                                                                    "a quarter": 0.25}[" ".join(by.group("f").split())]
            scale = 1 + frac if up else max(1 - frac, 0.11)
        else:
            scale = _scale(up, amt)
        ids = self.r.find(target)
        self.r.last = ids
        return [ResizeOp(target=i, scale=round(scale, 4)) for i in ids]

    def move(self, t: str):
        m = _MOVE.match(t)
        if not m:
            return None
        verb, rest = m.group("v"), m.group("t")
        indefinite = re.match(r"^(?:a|an|another|\d+|two|three|four|five|some)\b", rest)
        if verb in ("set", "get", "put", "place", "take") and indefinite:
            return None  # "put a dog ..." adds
        away = re.match(r"^(?P<t>.+?)\s+(?:further\s+|farther\s+|a\s+bit\s+|more\s+)?away\s+from\s+(?P<r>.+)$", rest)
        if away:
            return self._away(away.group("t"), away.group("r"), _amount(rest))
        chain = _relation_chain(rest, self.r)
        if chain:
            left, rels = chain
            subs = self.r.find(_strip_amount(left))
            self.r.last = subs
            (pred, refs, refs2), others = rels[0], rels[1:]
            ops: list = [MoveOp(target=x, predicate=pred, reference=_ref(self.r, refs), reference2=_ref(self.r, refs2))
                         for x in subs]
            ops += [RelateOp(subject=x, predicate=p2, object=_ref(self.r, b), object2=_ref(self.r, b2))
                    for p2, b, b2 in others for x in subs]
            return ops
        placed = self._place(rest)
        if placed:
            return placed
        if verb in ("raise", "lift"):
            rest += " up"
        elif verb in ("lower", "sink"):
            rest += " down"
        return self._direction_move(rest, required=verb not in ("set", "get", "take"))

    def _place(self, rest: str):
        """ "the cat to the top right corner", "the dog into the background" -> a move to a region / depth."""
        region, depth, target = _places(rest)
        if region is None and depth is None:
            return None
        target = re.sub(r"\s+(?:over|back|again|instead)$", "", _strip_amount(target)).strip()
        ids = self.r.find(target)
        self.r.last = ids
        return [MoveOp(target=_ref(self.r, ids), region=region, depth=depth)]

    def _away(self, target: str, ref: str, amount) -> list:
        """"move the cat away from the vase": along the axis they are further apart on, away from it."""
        ids, refs = self.r.find(target), self.r.find(ref)
        self.r.last = ids
        (sx, sy), (rx, ry) = _mean_centre(self.r.plan, ids), _mean_centre(self.r.plan, refs)
        dx, dy = sx - rx, sy - ry
        direction = ("right" if dx >= 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy >= 0 else "up")
        amount = amount if isinstance(amount, str) else _px_to_fraction(amount, self.r.plan, direction)
        return [MoveOp(target=_ref(self.r, ids), direction=direction, amount=amount)]

    def _direction_move(self, rest: str, required: bool):
        amt = _amount(rest)
        text = _strip_amount(rest)
        spans = _direction_spans(text)
        dirs, target = _directions(text)
        target = re.sub(r"\s+(?:a\s+bit|a\s+little|slightly|some|over|around|back|there|here|elsewhere|"
                        r"somewhere(?:\s+else)?)$", "", target).strip()
        if not dirs:
            if required and target:
                ids = self.r.find(target)
                name = self.r.plan.object_by_id(ids[0]).name
                raise Ambiguous(f"Where should the {name} go: left, right, up, down, or next to another object?")
            return None
        try:
            ids = self.r.find(target)
        except Ambiguous:
            # "move the dog on the left up": the first side phrase describes the dog
            a, b = spans[0][0], spans[0][1]
            if len(spans) < 2 or not re.match(r"(?:on|at|in)\s+the\s+", text[a:b]):
                raise
            ids = self.r.find(f"{text[:a].strip()} {text[a:b]}")
            dirs = dirs[1:]
        self.r.last = ids
        amount = _px_to_fraction(amt, self.r.plan, dirs[0][0]) if isinstance(amt, float) else amt
        return [MoveOp(target=_group_ref(self.r, ids) if len(ids) > 1 else ids[0], direction=d,
                       amount=forced or amount) for d, forced in dirs]

    def add(self, t: str):
        m = _ADD.match(t)
        if not m:
            return None
        rest = m.group("t")
        verb = t.split()[0]
        indefinite = re.match(r"^(?:a|an|another|one|some|more|(?:\d+|two|three|four|five|six|seven|eight|nine|ten|"
                              r"a\s+few|a\s+couple\s+of|a\s+pair\s+of|a\s+dozen|several)\b)", rest)
        if verb in ("place", "put", "paint") and not indefinite:
            return None  # "put the cat left of the dog" moves
        region, depth, rest = _places(rest, sides=True)  # "add a tree in the background on the left"
        chain = _relation_chain(rest, self.r)
        rels: list = []
        if chain:
            np_text, rels = chain
        else:
            np_text = rest
            loc = _REL_RE.search(np_text)  # "a moon in the sky": a place that is not an object is left out
            if loc and loc.start() > 0 and re.match(r"(?:the|a|an)\b", np_text[loc.end():].strip()):
                np_text = np_text[:loc.start()]
        np_text = re.sub(r"\s+(?:too|as\s+well|also|somewhere|here|there|to\s+the\s+(?:scene|picture|image))$", "",
                         np_text.strip())
        another = re.match(r"^(?:another|one\s+more|an\s+other|a\s+second)\s+(?P<n>.+)$", np_text)
        more = re.match(r"^(?P<c>\w+)\s+more\s+(?P<n>.+)$", np_text)
        parts = normalize_name(another.group("n") if another else more.group("n") if more else np_text)
        if not parts.name:
            raise EditError(f"add what? could not find an object in {np_text!r}")
        count = parts.count or 1
        if more:
            count = parse_count(more.group("c")) or 1
        attrs, size = list(parts.attributes), parts.size
        if another or more:  # same look as the existing ones
            same = [o for o in self.r.plan.objects if o.name == parts.name]
            if same and not attrs:
                attrs, size = list(same[0].attributes), same[0].size
        pred, refs, refs2 = rels[0] if rels else (None, None, None)
        op = AddOp(name=parts.name, count=count, attributes=attrs, size=size, predicate=pred,
                   reference=_ref(self.r, refs), reference2=_ref(self.r, refs2), region=region, depth=depth)
        new_ids = _predict_ids(self.r.plan, parts.name, count)
        self.r.last = new_ids
        ops: list = [op]
        for p2, refs_b, refs2_b in rels[1:]:
            ops += [RelateOp(subject=i, predicate=p2, object=_ref(self.r, refs_b), object2=_ref(self.r, refs2_b))
                    for i in new_ids]
        return ops

    def make(self, t: str):
        m = _MAKE.match(t)
        if not m:
            return None
        rest = m.group("t")
        verb = t.split()[0]
        # "make the cat bigger", "make it a bit smaller", "make the vase twice as big"
        out = self._size_phrase(rest)
        if out is not None:
            return out
        if verb in ("make", "set", "have", "get", "let"):
            rel = _split_relation(re.sub(r"\b(?:sit|stand|be|go|lie)\s+", "", rest), self.r)
            if rel:
                left, pred, refs, refs2 = rel
                subs = self.r.find(left)
                self.r.last = subs
                return [RelateOp(subject=s, predicate=pred, object=refs[0] if len(refs) == 1 else
                                 _group_ref(self.r, refs), object2=(refs2[0] if len(refs2) == 1 else
                                                                    _group_ref(self.r, refs2)) if refs2 else None)
                        for s in subs]
        return self._attribute_phrase(rest)

    def _size_phrase(self, rest: str):
        out = self._size_extra(rest)
        if out is not None:
            return out
        return self._size_basic(rest)

    def _size_extra(self, rest: str):
        """ "20% bigger", "3x larger", "as big as the vase", "the same size as the vase", "too big"."""
        m = re.match(rf"^(?P<t>.+?)\s+(?:(?P<p>\d+(?:\.\d+)?)\s*(?:%|percent)|(?P<x>\d+(?:\.\d+)?)\s*(?:x|times))\s+"
                     rf"(?P<w>{_BIGGER}|{_SMALLER})$", rest)
        if m:
            up = re.fullmatch(_BIGGER, m.group("w")) is not None
            if m.group("p"):
                frac = float(m.group("p")) / 100
                scale = 1 + frac if up else max(1 - frac, 0.11)
            else:
                f = float(m.group("x"))
                scale = f if up else 1 / f
            return self._resize(m.group("t"), scale)
        m = re.match(r"^(?P<t>.+?)\s+(?:as\s+(?:big|large|tall|small|wide)\s+as|the\s+same\s+size\s+as|"
                     r"(?:the\s+)?same\s+size\s+as)\s+(?P<r>.+)$", rest)
        if m:
            ids, refs = self.r.find(m.group("t")), self.r.find(m.group("r"))
            self.r.last = ids

            def area(i: str) -> float:
                b = self.r.plan.object_by_id(i).box
                return (b[2] - b[0]) * (b[3] - b[1])

            ref_area = sum(area(i) for i in refs) / len(refs)
            return [ResizeOp(target=i, scale=round(min(max((ref_area / area(i)) ** 0.5, 0.11), 5.0), 4))
                    for i in ids]
        m = re.match(r"^(?P<t>.+?)\s+(?:is\s+|are\s+|looks\s+|seems\s+)?"
                     r"(?:way\s+|much\s+|a\s+bit\s+|a\s+little\s+)?too\s+"
                     r"(?P<w>big|large|huge|tall|wide|small|tiny|little|short|narrow)$", rest)
        if m:
            up = m.group("w") in ("small", "tiny", "little", "short", "narrow")
            return self._resize(m.group("t"), _scale(up, _amount(rest)))
        return None

    def _resize(self, target: str, scale: float) -> list:
        ids = self.r.find(target)
        self.r.last = ids
        return [ResizeOp(target=i, scale=round(scale, 4)) for i in ids]

    def _size_basic(self, rest: str):
        m = re.match(rf"^(?P<t>.+?)\s+(?P<mod>(?:{_SMALL}|{_LARGE}|even|a\s+bit|some|\w+\s+times)\s+)?"
                     rf"(?P<w>{_BIGGER}|{_SMALLER})(?:\s+than\s+(?:it\s+is|before|now))?$", rest)
        if m:
            up = re.fullmatch(_BIGGER, m.group("w")) is not None
            mod = m.group("mod") or ""
            tm = re.match(r"(\w+)\s+times", mod.strip())
            scale = float(parse_count(tm.group(1)) or 2) if tm else _scale(up, _amount(mod))
            if tm and not up:
                scale = 1 / scale
            ids = self.r.find(m.group("t"))
            self.r.last = ids
            return [ResizeOp(target=i, scale=scale) for i in ids]
        m = re.match(r"^(?P<t>.+?)\s+(?:(?P<k>twice|two\s+times|three\s+times|thrice|half)\s+(?:as\s+(?:big|large|tall|"
                     r"small)|the\s+size)(?:\s+as\s+(?:it\s+is|before|now))?|(?P<f>double|triple|half)\s+(?:the\s+)?"
                     r"size|(?P<s>huge|giant|enormous|gigantic|massive|big|large|tall|small|little|tiny|miniature|"
                     r"mini))$", rest)
        if m:
            k = m.group("k") or m.group("f")
            if k:
                scale = 0.5 if k == "half" else 3.0 if k in ("three times", "thrice", "triple") else 2.0
            else:
                scale = _SIZE_ADJ[m.group("s")]
            ids = self.r.find(m.group("t"))
            self.r.last = ids
            return [ResizeOp(target=i, scale=scale) for i in ids]
        return None

    def _attribute_phrase(self, rest: str):
        """``TARGET adj [and adj]`` / ``TARGET not adj`` / ``TARGET adj instead of adj``."""
        rest = re.sub(r"\s+(?:instead|too|as\s+well|now|again|please|colou?red)$", "", rest)
        removes: list[str] = []
        m = re.match(r"^(?P<r>.+?)\s+instead\s+of\s+(?:being\s+)?(?P<o>[a-z-]+)$", rest)
        if m:
            rest, removes = m.group("r"), [m.group("o")]
        words = rest.split()
        error: EditError | None = None
        for k in (1, 2, 3, 4, 5):
            if k >= len(words):
                break
            tail, target = words[-k:], " ".join(words[:-k])
            negate = tail[0] in ("not", "non") or tail[:2] == ["no", "longer"]
            attrs = [w for w in tail if w not in ("not", "non", "no", "longer", "and", "in", "colored", "coloured")]
            if not attrs or target.endswith((" not", " no", " and")) or tail[0] == "and":
                continue
            known = all(w in _ADJ for w in attrs)
            if not known and k > 1:
                continue
            try:
                ids = self.r.find(target)
            except EditError as exc:
                error = error or (exc if known else None)
                continue
            self.r.last = ids
            if negate:
                return [ChangeOp(target=i, remove_attributes=attrs) for i in ids]
            return [ChangeOp(target=i, add_attributes=attrs, remove_attributes=removes) for i in ids]
        if error is not None:
            raise error
        return None

    def want(self, t: str):
        """ "I want the cat to be behind the vase", "I'd like the vase bigger"."""
        m = re.match(r"^(?:i\s+(?:want|need|would\s+like|'d\s+like)|i'd\s+like|let's\s+have|have)\s+(?P<t>.+?)\s+"
                     r"(?:to\s+be|to\s+go|to\s+sit|to\s+stand|be)\s+(?P<r>.+)$", t)
        if not m:
            return None
        return self.should(f"{m.group('t')} should be {m.group('r')}")

    def negative(self, t: str):
        """ "the cat should not be left of the vase" / "the cat no longer on the table" -> drop that relation."""
        m = re.match(r"^(?P<t>.+?)\s+(?:should\s+not|shouldn't|must\s+not|mustn't|does\s+not\s+need\s+to|"
                     r"doesn't\s+need\s+to|need\s+not|needn't|is\s+not|isn't|no\s+longer\s+needs\s+to)\s+"
                     r"(?:be\s+|sit\s+|stand\s+)?(?P<r>.+)$|^(?P<u>.+?)\s+(?:is\s+)?no\s+longer\s+(?P<q>.+)$", t)
        if not m:
            return None
        target, rest = (m.group("t"), m.group("r")) if m.group("t") else (m.group("u"), m.group("q"))
        try:
            subs = self.r.find(target)
        except EditError:
            return None
        rel = _split_relation(f"{target} {rest}", self.r)
        if not rel:
            return None
        _, pred, refs, refs2 = rel
        self.r.last = subs
        wanted = set(refs) | set(refs2 or [])
        plan_rels = [x for x in self.r.plan.relations if x.subject in subs and {x.object, x.object2} & wanted]
        if not any(x.predicate == pred for x in plan_rels):
            raise EditError(f"there is no relation '{' / '.join(subs)} {pred} {' / '.join(refs)}' to remove")
        return [UnrelateOp(subject=x, object=o) for x in subs for o in refs]

    def should(self, t: str):
        m = _SHOULD.match(t)
        if not m:
            return None
        target, rest = m.group("t"), m.group("r")
        try:
            self.r.find(target)
        except EditError:
            return None
        too = re.match(r"^(?:way\s+|much\s+|a\s+bit\s+|a\s+little\s+)?too\s+(?:far\s+)?(?:to\s+the\s+)?"
                       r"(?P<d>left|right|high|low|up|down)$", rest)
        if too:
            opposite = {"left": "right", "right": "left", "high": "down", "up": "down", "low": "up", "down": "up"}
            return self._direction_move(f"{target} {opposite[too.group('d')]} {'a bit' if 'bit' in rest else ''}",
                                        required=True)
        close = re.match(r"^(?:way\s+|much\s+|a\s+bit\s+)?too\s+(?:close|near)\s+to\s+(?P<r>.+)$", rest)
        if close:
            return self._away(target, close.group("r"), "medium")
        rel = _split_relation(f"{target} {rest}", self.r)
        if rel:
            left, pred, refs, refs2 = rel
            subs = self.r.find(left)
            self.r.last = subs
            return [RelateOp(subject=x, predicate=pred, object=_ref(self.r, refs), object2=_ref(self.r, refs2))
                    for x in subs]
        out = self._size_phrase(f"{target} {rest}")
        if out is not None:
            return out
        region, depth, left = _places(rest, sides=True)
        if (region or depth) and not left:  # "the dog should be in the foreground"
            ids = self.r.find(target)
            self.r.last = ids
            return [MoveOp(target=_ref(self.r, ids), region=region, depth=depth)]
        dirs, left = _directions(_strip_amount(rest))
        if dirs and not left:
            return self._direction_move(f"{target} {rest}", required=True)
        return self._attribute_phrase(f"{target} {rest}")

    def give(self, t: str):
        """ "give the cat a red hat" -> add a red hat on the cat."""
        m = re.match(r"^give\s+(?P<t>.+?)\s+(?P<n>(?:a|an|some|two|three|\d+)\s+.+)$", t)
        if not m:
            return None
        try:
            ids = self.r.find(m.group("t"))
        except EditError:
            return None
        return self.add(f"add {m.group('n')} on {_ref(self.r, ids)}")

    def bare(self, t: str):
        """Verb-less: "the cat further left", "cat a bit up", "a lamp behind the cat" -> move / resize / add."""
        if re.match(r"^(?:a|an|another|one\s+more|two|three|four|five|some|\d+)\s+\w", t):
            try:
                return self.add(f"add {t}")
            except EditError:
                return None
        dirs, target = _directions(_strip_amount(t))
        if dirs and target:
            return self._direction_move(t, required=True)
        m = re.match(rf"^(?P<w>{_BIGGER}|{_SMALLER})\s+(?P<t>.+)$", t)
        if m:
            return self._size_phrase(f"{m.group('t')} {m.group('w')}")
        return self._size_phrase(t)


def _mean_centre(plan: ScenePlan, ids: list[str]) -> tuple[float, float]:
    cs = [_centre(plan.object_by_id(i)) for i in ids]
    return (sum(c[0] for c in cs) / len(cs), sum(c[1] for c in cs) / len(cs))


def _scale(up: bool, amount) -> float:
    f = {"small": 1.15, "medium": 1.3, "large": 1.6, "max": 2.0}.get(amount, 1.3) if isinstance(amount, str) else 1.3
    return f if up else round(1 / f, 4)


def _px_to_fraction(v: float, plan: ScenePlan, direction: str) -> float:
    if v >= 0:
        return min(max(v, 0.01), 1.0)
    side = plan.canvas.width if direction in ("left", "right") else plan.canvas.height
    return min(max(-v / side, 0.01), 1.0)


def _group_ref(r: Resolver, ids: list[str]) -> str:
    """A reference naming exactly ``ids``: "all", their shared group id or name, else the first id."""
    if len(ids) > 1 and sorted(ids) == sorted(r.all_ids()):
        return "all"
    objs = [r.plan.object_by_id(i) for i in ids]
    groups = {o.group for o in objs if o}
    if len(groups) == 1:
        g = groups.pop()
        if g and sorted(o.id for o in r.plan.objects if o.group == g) == sorted(ids):
            return g
    names = {o.name for o in objs if o}
    if len(names) == 1:
        n = names.pop()
        if sorted(o.id for o in r.plan.objects if o.name == n) == sorted(ids):
            return n
    return ids[0]


def _predict_ids(plan: ScenePlan, name: str, count: int) -> list[str]:
    return fresh_ids(plan, singularize(name), count)


def split_clauses(text: str) -> list[str]:
    return [c for c in (_strip_polite(p) for p in _CLAUSE_SPLIT.split(text)) if c]


def parse_edit(instruction: str, plan: ScenePlan, last_targets: list[str] | None = None) -> EditScript:
    """An instruction -> ``EditScript`` (ambiguity -> one clarify op; unknown object -> EditError)."""
    text = _strip_polite(_clean(instruction or ""))
    if not text:
        raise EditError("the instruction is empty: say what to change, e.g. 'move the cat left'")
    r = Resolver(plan, last_targets)
    parse = _Clause(r)
    ops: list = []
    try:
        for clause in split_clauses(text):
            got = parse(clause)
            if not got:
                return EditScript(ops=[ClarifyOp(question=_not_understood(clause))])
            ops += got
    except Ambiguous as exc:
        return EditScript(ops=[ClarifyOp(question=exc.question)])
    return EditScript(ops=ops)


NOT_UNDERSTOOD = "I did not understand"


def understood(script: EditScript) -> bool:
    """False when the parser gave up on a clause (its question starts with ``NOT_UNDERSTOOD``): a language
    model may still read the instruction. A question about an ambiguous reference counts as understood."""
    q = script.clarification
    return q is None or not q.startswith(NOT_UNDERSTOOD)


def _not_understood(clause: str) -> str:
    return (f"{NOT_UNDERSTOOD} {clause!r}. Try e.g. 'add a dog behind the vase', 'move the cat a bit left', "
            f"'make the vase bigger', 'make the cat black', 'swap the cat and the dog', 'remove the dog', "
            f"'change the background to a beach' or 'undo'.")


def edit_ops(instruction: str, context: dict) -> EditScript:
    """``Planner.edit_ops`` for the rules backend: ``context`` is ``plan_and_render.planner.edit_ops.edit_context(...)``."""
    plan = ScenePlan.model_validate(context["plan"])
    return parse_edit(instruction, plan, context.get("last_targets"))
