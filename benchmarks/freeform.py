"""The free-form prompt sets and their scorer: prompts written the way people type them.

``benchmarks/data/freeform.jsonl`` (177 prompts), ``freeform_heldout.jsonl`` (49, another
author style, never tuned on) and ``freeform_heldout2.jsonl`` (70, written before the parser fixes
of issue 13 and scored once before them; never edited to fit the parser) hold one record per line::

    {"id": "ff-001", "prompt": "a watercolor of two foxes curled up under a pine tree",
     "tags": ["style"],
     "objects": [{"name": "fox", "count": 2}, {"name": "pine tree", "also": ["tree"]}],
     "relations": [["fox", "under", "pine tree"]], "loose": [], "excluded": []}

An object entry: ``name``; ``count`` (an int, ``"2+"`` for a bare plural or a vague word, ``"any"``;
default 1); ``colors`` (colour words it must carry; ``"yellow?"`` may be there or not); ``region`` /
``depth`` (``"left?"``: that value or none; absent: none); ``also`` (other names that count);
``optional`` (scenery and parts - a lake, the sky, a railing - that may be an object, the
background or absent); ``ref`` (what relations call it when two entries share a name).
A relation is ``[subject, predicate, object]`` or ``[subject, "between", object, object2]``; a
predicate may list alternatives (``"inside|on"``). ``loose`` pairs may be related any way or not
at all ("a girl holding a kite": holding is not a spatial relation). ``excluded`` names must not
be drawn.

**Fully right** = every part below holds. The rules, applied to a ``ScenePlan`` (instances grouped
back by their scene-graph ``group``) or a ``SceneGraph``:

* names: a planned name matches an entry when, singular and lower-case ("X of Y" read as X: a cup
  of coffee is a cup), it equals the entry's
  name or an ``also`` name, one is the other's alias in ``vocab.ALIASES`` ("sofa" / "couch"), or
  one ends with the other as its head noun ("park bench" / "bench"; not for the misleading heads,
  a "hot dog" is no dog). Each planned group goes to its best entry: same name before a head-noun
  match, fitting colours, then matching placement.
* objects: every required entry is planned, no planned group is left without an entry (a style
  or camera word - "watercolor", "35mm" - drawn as a thing fails here), nothing excluded is planned.
* counts: the groups of an entry add up to its count (optional entries: not checked).
* colours: each group's colour words (attributes and the first word of a longer name, ``COLOUR_WORDS``;
  grey = gray; "an orange" is a fruit, "a red apple" named so is red)
  include the entry's required colours and nothing outside its allowed ones ("a black and white
  photo of a man" must not make the man black).
* placement: region and depth as the entry says (optional entries too, when planned).
* relations: compared after mirroring (``b right_of a`` is ``a left_of b``; below/above,
  behind/in front of), with next_to and near as one "beside", unordered; ``between``'s two
  references unordered. Every expected relation is planned, and every planned relation is
  expected or within a loose pair; relations touching an optional entry are not scored.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plan_and_render.vocab import ALIASES, COLOURS, MISLEADING_HEADS, singularize

DATA = Path(__file__).resolve().parent / "data"
SETS = {"freeform": "freeform.jsonl", "freeform_heldout": "freeform_heldout.jsonl",
        "freeform_heldout2": "freeform_heldout2.jsonl"}
# Colour words the scorer checks: COLOURS without the metals (also materials) and the vague ones
COLOUR_WORDS = COLOURS - {"gold", "golden", "silver", "bronze", "copper", "rainbow", "colorful", "colourful",
                          "multicolored", "multicoloured", "blond", "blonde"}
MIRROR = {"right_of": "left_of", "below": "above", "behind": "in_front_of"}
BESIDE = {"next_to", "near"}
PARTS = ("objects", "counts", "colours", "placement", "relations")


def load_freeform(name: str = "freeform") -> list[dict]:
    """The records of one set (a key of ``SETS``)."""
    path = DATA / SETS[name]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------
# Names and colours
# --------------------------------------------------------------------------


def _norm(name: str) -> str:
    """Lower case, singular, and "X of Y" as X (a cup of coffee is a cup)."""
    name = " ".join(name.lower().replace("-", " ").split()).split(" of ")[0]
    return singularize(name)


def _names(entry: dict) -> list[str]:
    return [_norm(n) for n in [entry["name"], *entry.get("also", [])]]


def name_fits(planned: str, expected: str) -> int:
    """2: the same name (or a direct alias); 1: the same head noun; 0: no match."""
    p, e = _norm(planned), _norm(expected)
    if p == e or ALIASES.get(p) == e or ALIASES.get(e) == p:
        return 2
    if p in MISLEADING_HEADS or e in MISLEADING_HEADS:
        return 0
    return 1 if p.endswith(" " + e) or e.endswith(" " + p) else 0


def entry_fit(planned: str, entry: dict) -> int:
    return max(name_fits(planned, n) for n in _names(entry))


def colours_of(name: str, attributes: list[str]) -> set[str]:
    """Colour words among the attributes, and a name's first word ("red apple"; not "ice cream cone")."""
    head = name.lower().split(" of ")[0].split()
    words = [w for a in attributes for w in a.lower().replace("-", " ").split()] + (head[:1] if len(head) > 1 else [])
    return {"gray" if w == "grey" else w for w in words if w in COLOUR_WORDS}


def colours_fit(found: set[str], entry: dict) -> bool:
    wanted = entry.get("colors", [])
    required = {c for c in wanted if not c.endswith("?")}
    allowed = required | {c.rstrip("?") for c in wanted}
    return required <= found <= allowed


def placement_fits(value: str | None, wanted: str | None) -> bool:
    if wanted is None:
        return value is None
    if wanted.endswith("?"):
        return value in (None, wanted[:-1])
    return value == wanted


# --------------------------------------------------------------------------
# Planned groups
# --------------------------------------------------------------------------


@dataclass
class Group:
    """One scene-graph group as planned: name, attributes, region, depth, instance count."""

    id: str
    name: str
    attributes: list[str]
    region: str | None
    depth: str | None
    count: int


def planned_groups(layout: Any) -> tuple[list[Group], list[tuple[str, str, str, str | None]]]:
    """Groups and group-level relations ``(subject, predicate, object, object2)`` of a ScenePlan
    (instances folded back by ``group``) or a SceneGraph."""
    objects = list(getattr(layout, "objects", []))
    if objects and hasattr(objects[0], "count"):  # a SceneGraph: already groups
        groups = [Group(o.id, o.name, list(o.attributes), o.region, o.depth, o.count) for o in objects]
        rels = [(r.subject, r.predicate, r.object, r.object2) for r in layout.relations]
        return groups, rels
    by_group: dict[str, Group] = {}
    owner: dict[str, str] = {}
    for o in objects:
        gid = o.group or o.id
        owner[o.id] = gid
        if gid in by_group:
            by_group[gid].count += 1
        else:
            by_group[gid] = Group(gid, o.name, list(o.attributes), o.region, o.depth, 1)
    rels = {(owner.get(r.subject, r.subject), r.predicate, owner.get(r.object, r.object),
             owner.get(r.object2, r.object2) if r.object2 else None) for r in layout.relations}
    return list(by_group.values()), sorted(rels, key=str)


def assign(groups: list[Group], entries: list[dict]) -> dict[str, int | None]:
    """Group id -> index of its best entry (None: it matches no entry)."""
    out: dict[str, int | None] = {}
    for g in groups:
        found = colours_of(g.name, g.attributes)
        best, best_key = None, (0,)
        for i, e in enumerate(entries):
            fit = entry_fit(g.name, e)
            if not fit:
                continue
            key = (1, colours_fit(found, e), fit, placement_fits(g.region, e.get("region")) and
                   placement_fits(g.depth, e.get("depth")))
            if key > best_key:
                best, best_key = i, key
        out[g.id] = best
    return out


# --------------------------------------------------------------------------
# Relations
# --------------------------------------------------------------------------


def canonical(subject: int, predicate: str, obj: int, obj2: int | None = None) -> tuple:
    """One spelling per relation: mirrors turned round, beside and between unordered."""
    if predicate == "between":
        return (subject, "between", *sorted((obj, obj2)))
    if predicate in MIRROR:
        return (obj, MIRROR[predicate], subject)
    if predicate in BESIDE:
        return (*sorted((subject, obj)), "beside")
    return (subject, predicate, obj)


def _resolve(ref: str, entries: list[dict]) -> list[int]:
    """The entries a reference in ``relations`` / ``loose`` means: by ``ref``, else by name."""
    by_ref = [i for i, e in enumerate(entries) if e.get("ref") == ref]
    if by_ref:
        return by_ref
    by_name = [i for i, e in enumerate(entries) if _norm(e["name"]) == _norm(ref)]
    return by_name or [i for i, e in enumerate(entries) if entry_fit(ref, e) == 2]


def expected_relations(record: dict) -> list[set[tuple]]:
    """Each expected relation as the set of canonical forms that satisfy it."""
    entries = record["objects"]
    out = []
    for rel in record.get("relations", []):
        subj, preds, obj, *rest = rel
        forms = set()
        for s in _resolve(subj, entries):
            for o in _resolve(obj, entries):
                for p in preds.split("|"):
                    if p == "between":
                        for o2 in _resolve(rest[0], entries):
                            forms.add(canonical(s, p, o, o2))
                    else:
                        forms.add(canonical(s, p, o))
        if not forms:
            raise ValueError(f"{record['id']}: relation {rel} names no object entry")
        out.append(forms)
    return out


def loose_pairs(record: dict) -> set[frozenset]:
    entries = record["objects"]
    return {frozenset((a, b)) for x, y in record.get("loose", []) for a in _resolve(x, entries)
            for b in _resolve(y, entries)}


# --------------------------------------------------------------------------
# The score
# --------------------------------------------------------------------------


@dataclass
class FreeformScore:
    """One prompt: each part, and what went wrong (for reading failures)."""

    id: str
    tags: list[str]
    objects: bool = True
    counts: bool = True
    colours: bool = True
    placement: bool = True
    relations: bool = True
    problems: list[str] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return all(getattr(self, p) for p in PARTS)

    def fail(self, part: str, problem: str) -> None:
        setattr(self, part, False)
        self.problems.append(f"{part}: {problem}")


def score_freeform(layout: Any, record: dict) -> FreeformScore:
    """Score one plan (``ScenePlan`` or ``SceneGraph``; None = the planner failed) against a record."""
    score = FreeformScore(record["id"], record.get("tags", []))
    if layout is None:
        for part in PARTS:
            setattr(score, part, False)
        score.problems.append("no plan")
        return score
    entries = record["objects"]
    groups, rels = planned_groups(layout)
    owner = assign(groups, entries)
    _score_objects(score, groups, owner, entries, record.get("excluded", []))
    _score_relations(score, rels, owner, record)
    return score


def _score_objects(score: FreeformScore, groups: list[Group], owner: dict, entries: list[dict],
                   excluded: list[str]) -> None:
    totals: Counter = Counter()
    for g in groups:
        i = owner[g.id]
        if i is None:
            score.fail("objects", f"extra object {g.name!r}")
            continue
        e = entries[i]
        totals[i] += g.count
        found = colours_of(g.name, g.attributes)
        if not colours_fit(found, e):
            score.fail("colours", f"{g.name!r} has colours {sorted(found)}, expected {e.get('colors', [])}")
        if not placement_fits(g.region, e.get("region")):
            score.fail("placement", f"{g.name!r} region {g.region}, expected {e.get('region')}")
        if not placement_fits(g.depth, e.get("depth")):
            score.fail("placement", f"{g.name!r} depth {g.depth}, expected {e.get('depth')}")
        if any(name_fits(g.name, x) == 2 for x in excluded):
            score.fail("objects", f"excluded {g.name!r} is planned")
    for i, e in enumerate(entries):
        if e.get("optional"):
            continue
        if not totals[i]:
            score.fail("objects", f"missing {e['name']!r}")
            continue
        want = e.get("count", 1)
        ok = want == "any" or (totals[i] >= 2 if want == "2+" else totals[i] == want)
        if not ok:
            score.fail("counts", f"{e['name']!r} count {totals[i]}, expected {want}")


def _score_relations(score: FreeformScore, rels: list, owner: dict, record: dict) -> None:
    entries = record["objects"]
    optional = {i for i, e in enumerate(entries) if e.get("optional")}
    planned = set()
    for s, p, o, o2 in rels:
        idx = [owner.get(x) for x in (s, o) + ((o2,) if o2 else ())]
        if any(i is None for i in idx) or optional & set(idx):
            continue  # an extra object fails already; optional scenery is not scored
        planned.add(canonical(idx[0], p, idx[1], idx[2] if o2 else None))
    expected = [forms - {f for f in forms if optional & set(x for x in f if isinstance(x, int))}
                for forms in expected_relations(record)]
    loose = loose_pairs(record)
    for forms in expected:
        if forms and not forms & planned:
            score.fail("relations", f"missing {_show(next(iter(forms)), entries)}")
    for rel in planned:
        if any(rel in forms for forms in expected):
            continue
        ids = [x for x in rel if isinstance(x, int)]
        if len(ids) == 2 and frozenset(ids) in loose:
            continue
        score.fail("relations", f"unexpected {_show(rel, entries)}")


def _show(rel: tuple, entries: list[dict]) -> str:
    return " ".join(entries[x].get("ref", entries[x]["name"]) if isinstance(x, int) else x for x in rel)


def summarise(scores: list[FreeformScore]) -> dict:
    """Share fully right, per part and per tag (percent), and the failing prompts' problems."""
    def share(values: list[bool]) -> float:
        return round(100.0 * sum(values) / len(values), 1) if values else 0.0

    tags = sorted({t for s in scores for t in s.tags})
    return {
        "accuracy": share([s.correct for s in scores]),
        "n": len(scores),
        "parts": {p: share([getattr(s, p) for s in scores]) for p in PARTS},
        "by_tag": {t: share([s.correct for s in scores if t in s.tags]) for t in tags},
        "failures": {s.id: s.problems for s in scores if not s.correct},
    }
