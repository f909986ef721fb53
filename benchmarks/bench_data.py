"""Benchmark data under ``shared/bench`` and the layout-level scoring rules of
its README, as pure functions.

Stable interface (benchmarks/planner.py and benchmarks/geometry.py use it):

* ``bench_dir()``; loaders ``load_nsr_spatial(split)``, ``load_nsr_counting(split)``, ``load_lmd()``.
* A *layout* is a ``ScenePlan`` or a sequence of ``(name, box)`` / ``(name, box, phrase)``
  with ``box = (x0, y0, x1, y1)`` normalised, origin top-left (plan-format.md).
  ``xywh_to_xyxy`` converts the benchmark's own ``[x, y, w, h]`` boxes.
* ``score_nsr_spatial(layout, record) -> bool``; ``score_nsr_spatial_graph(plan, record) -> bool``
  (relations only, no boxes)
* ``score_nsr_counting(layout, record) -> CountingScore``; ``aggregate_counting(scores) -> dict``
* ``score_lmd(layout, record) -> bool``
* ``names_match(predicted, category) -> bool``: singular/plural, adjectives,
  multi-word names ("hot dog" is not a "dog") and common aliases ("sofa" = "couch").
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from plan_and_render.planner.normalize import normalize_name
from plan_and_render.vocab import ALIASES, COCO_CATEGORIES, MISLEADING_HEADS, singularize

BENCH_ENV = "PLAN_AND_RENDER_BENCH"

Box = tuple[float, float, float, float]


def bench_dir() -> Path:
    """``$PLAN_AND_RENDER_BENCH`` or ``shared/bench`` next to the repository."""
    env = os.environ.get(BENCH_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "bench"


def _read_json(rel: str) -> Any:
    path = bench_dir() / rel
    if not path.exists():
        raise FileNotFoundError(f"benchmark file {path} not found; set {BENCH_ENV} to the shared/bench folder")
    return json.loads(path.read_text())


def load_nsr_spatial(split: str = "val") -> list[dict]:
    """NSR-1K spatial records (``obj1``, ``obj2``, ``prompt``, ``relation``, ``type``)."""
    return _read_json(f"nsr1k/spatial.{split}.json")


def load_nsr_counting(split: str = "val") -> list[dict]:
    """NSR-1K counting records (``num_object``, ``object_list``, ``prompt``, ``sub-type``)."""
    return _read_json(f"nsr1k/counting.{split}.json")


def load_lmd() -> list[dict]:
    """The 400 LMD records (``type`` negation/numeracy/attribution/spatial)."""
    path = bench_dir() / "lmd" / "lmd_prompts_400.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"benchmark file {path} not found; set {BENCH_ENV} to the shared/bench folder")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------
# Layouts and names
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One placed instance: what it is called, where it is, how it is described."""

    name: str
    box: Box
    phrase: str = ""


def xywh_to_xyxy(box: Sequence[float]) -> Box:
    x, y, w, h = box
    return (float(x), float(y), float(x + w), float(y + h))


def layout_items(layout: Any) -> list[Item]:
    """Accept a ScenePlan, PlanObjects, Items or (name, box[, phrase]) tuples."""
    objects = getattr(layout, "objects", layout)
    out = []
    for o in objects:
        if isinstance(o, Item):
            out.append(o)
        elif hasattr(o, "box") and hasattr(o, "name"):
            out.append(Item(o.name, tuple(o.box), getattr(o, "phrase", "") or ""))
        else:
            name, box, *rest = o
            out.append(Item(name, tuple(box), rest[0] if rest else name))
    return out


def reference_layout(record: dict) -> list[Item]:
    """The benchmark's ground-truth boxes as a layout (a sanity reference)."""
    if "obj1" in record:
        pairs = [record["obj1"], record["obj2"]]
    else:
        pairs = record["object_list"]
    return [Item(name, xywh_to_xyxy(box), name) for name, box in pairs]


def _canon(name: str) -> str:
    n = " ".join(name.lower().split())
    return ALIASES.get(n, n)


@lru_cache(maxsize=4096)
def names_match(predicted: str, category: str) -> bool:
    """Does a planned object called ``predicted`` count as ``category``?

    "Teddy bears" is a "teddy bear", "a tabby cat" is a "cat", "sofa" is a
    "couch", but a "hot dog" is not a "dog" and a "teddy bear" not a "bear".
    """
    raw = " ".join(predicted.lower().split())
    p = normalize_name(predicted).name
    if " of " in p:  # "cup of coffee" is a cup
        p = p.split(" of ")[0]
    c = singularize(" ".join(category.lower().split()))
    if not p or not c:
        return False
    if p == c or _canon(p) == _canon(c) or raw in (c + "s", c + "es"):
        return True
    if p.endswith(" " + c) and p not in MISLEADING_HEADS and p not in COCO_CATEGORIES:
        return True  # "tabby cat", "passenger train"
    if p in MISLEADING_HEADS or p in COCO_CATEGORIES:
        return False
    head = p.split()[-1]
    return p.endswith(" " + _canon(c)) or (" " in p and _canon(head) == _canon(c))  # "tv monitor" is a tv


def matching(items: Iterable[Item], category: str) -> list[Item]:
    return [it for it in items if names_match(it.name, category)]


def centre(box: Box) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def sector(subject: Box, reference: Box) -> str:
    """Where ``subject``'s centre lies seen from ``reference``'s: left/right/top/bottom.

    Ties on the diagonal go to left/right (plan-format.md: |dx| >= |dy|)."""
    (sx, sy), (rx, ry) = centre(subject), centre(reference)
    dx, dy = sx - rx, sy - ry
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


# --------------------------------------------------------------------------
# NSR-1K spatial
# --------------------------------------------------------------------------


def score_nsr_spatial(layout: Any, record: dict) -> bool:
    """The sector rule: obj1's centre seen from obj2's is in the relation's sector
    ("next to" passes on left or right). A missing object fails; with several
    candidates, the prompt passes if any distinct pair satisfies it."""
    items = layout_items(layout)
    subjects = matching(items, record["obj1"][0])
    references = matching(items, record["obj2"][0])
    wanted = {"next to": ("left", "right")}.get(record["relation"], (record["relation"],))
    return any(
        sector(s.box, r.box) in wanted for s in subjects for r in references if s is not r
    )


_IMPLIES = {  # benchmark relation -> predicates (obj1 as subject) and their mirror (obj2 as subject)
    "left": ({"left_of"}, {"right_of"}),
    "right": ({"right_of"}, {"left_of"}),
    "top": ({"above", "on"}, {"below", "under"}),
    "bottom": ({"below", "under"}, {"above", "on"}),
    "next to": ({"next_to", "left_of", "right_of"}, {"next_to", "left_of", "right_of"}),
}


def score_nsr_spatial_graph(plan: Any, record: dict) -> bool:
    """Planner-only check (no boxes): does the plan state relations between an obj1 and an
    obj2 instance that imply the benchmark's relation? A chain counts for the directional
    relations ("a cat on a blanket on a bed" puts the cat on top of the bed), not for "next to".
    Separates planning errors from geometry errors."""
    import networkx as nx

    names = {o.id: o.name for o in plan.objects}
    forward, mirror = _IMPLIES[record["relation"]]
    a, b = record["obj1"][0], record["obj2"][0]
    g = nx.DiGraph()
    for r in plan.relations:
        if r.predicate in forward:
            g.add_edge(r.subject, r.object)
        if r.predicate in mirror:
            g.add_edge(r.object, r.subject)
    starts = [n for n in g if names_match(names.get(n, ""), a)]
    ends = {n for n in g if names_match(names.get(n, ""), b)}
    if record["relation"] == "next to":
        return any(e in ends for s in starts for e in g.successors(s))
    return any(ends & nx.descendants(g, s) for s in starts)


# --------------------------------------------------------------------------
# NSR-1K counting
# --------------------------------------------------------------------------


@dataclass
class CountingScore:
    """Predicted vs expected counts per category of one prompt."""

    predicted: dict[str, int]
    expected: dict[str, int]
    subtype: str
    correct: bool
    comparison: str | None = None  # "more", "less", "equal" for the comparison sub-type
    matched: int = field(init=False)

    def __post_init__(self) -> None:
        self.matched = sum(min(self.predicted[c], n) for c, n in self.expected.items())


def comparison_kind(prompt: str) -> str | None:
    p = prompt.lower()
    if re.search(r"\b(more|greater|larger)\b", p):
        return "more"
    if re.search(r"\b(less|fewer|smaller)\b", p):
        return "less"
    if re.search(r"\b(equal|same)\b", p):
        return "equal"
    return None


def count_categories(layout: Any, categories: Iterable[str]) -> dict[str, int]:
    """Number of items naming each category (an item counts for its best match only:
    an exact name beats an alias or head-noun match)."""
    items = layout_items(layout)
    cats = list(categories)
    counts = {c: 0 for c in cats}
    for it in items:
        hits = [c for c in cats if names_match(it.name, c)]
        if not hits:
            continue
        exact = [c for c in hits if normalize_name(it.name).name == singularize(c.lower())]
        counts[(exact or hits)[0]] += 1
    return counts


def score_nsr_counting(layout: Any, record: dict) -> CountingScore:
    """Counts per category of ``num_object``; objects of other categories are ignored
    (prompts mention scenery). ``comparison`` prompts ("two cats with a few
    chairs, more cats than chairs") are correct when the stated count is exact
    and the other category is present and obeys the comparison."""
    expected = {c: n for c, n in record["num_object"]}
    predicted = count_categories(layout, expected)
    subtype = record.get("sub-type", "")
    kind = None
    if subtype == "comparison" and len(expected) == 2:
        kind = comparison_kind(record["prompt"])
        (first, n_first), (second, _) = record["num_object"][0], record["num_object"][1]
        p1, p2 = predicted[first], predicted[second]
        ok_rel = {"more": 1 <= p2 < p1, "less": p2 > p1, "equal": p2 == p1}.get(kind or "", False)
        correct = p1 == n_first and p2 >= 1 and ok_rel
    else:
        correct = all(predicted[c] == n for c, n in expected.items())
    return CountingScore(predicted, expected, subtype, correct, kind)


def aggregate_counting(scores: Sequence[CountingScore]) -> dict[str, float]:
    """Precision and recall (micro: matched / predicted, matched / expected, over
    non-comparison prompts) and exact accuracy over all prompts, in percent."""
    counted = [s for s in scores if s.subtype != "comparison"]
    matched = sum(s.matched for s in counted)
    pred = sum(sum(s.predicted.values()) for s in counted)
    exp = sum(sum(s.expected.values()) for s in counted)
    comp = [s for s in scores if s.subtype == "comparison"]
    return {
        "precision": 100.0 * matched / pred if pred else 0.0,
        "recall": 100.0 * matched / exp if exp else 0.0,
        "accuracy": 100.0 * sum(s.correct for s in scores) / len(scores) if scores else 0.0,
        "accuracy_counted": 100.0 * sum(s.correct for s in counted) / len(counted) if counted else 0.0,
        "accuracy_comparison": 100.0 * sum(s.correct for s in comp) / len(comp) if comp else 0.0,
        "n": float(len(scores)),
    }


# --------------------------------------------------------------------------
# LMD-400
# --------------------------------------------------------------------------


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word.lower())}\b", text.lower()) is not None


def score_lmd(layout: Any, record: dict) -> bool:
    """LMD's layout rules: negation - no box names the object; numeracy - the
    number of boxes naming it equals ``count``; attribution - each (colour, noun)
    has a box naming the noun whose phrase contains the colour; spatial - the
    first object's centre is left of / above the second's per the stated sides."""
    items = layout_items(layout)
    kind = record["type"]
    if kind == "negation":
        return not matching(items, record["object"])
    if kind == "numeracy":
        return len(matching(items, record["object"])) == int(record["count"])
    if kind == "attribution":
        return all(
            any(_has_word(f"{it.phrase} {it.name}", colour) for it in matching(items, noun))
            for colour, noun in record["objects"]
        )
    if kind == "spatial":
        (a, side_a), (b, _) = record["objects"][0], record["objects"][1]
        first, second = matching(items, a), matching(items, b)
        axis = 0 if side_a in ("left", "right") else 1
        before = side_a in ("left", "top")
        for s in first:
            for r in second:
                if s is r:
                    continue
                cs, cr = centre(s.box)[axis], centre(r.box)[axis]
                if (cs < cr) if before else (cs > cr):
                    return True
        return False
    raise ValueError(f"unknown LMD record type {kind!r}")


# --------------------------------------------------------------------------
# GenEval (metadata only: objects, counts, colours, positions at the layout level)
# --------------------------------------------------------------------------

GENEVAL_POSITION_MARGIN = 0.1  # the README's rule: centres apart by more than 0.1 x the two boxes' extents


def load_geneval() -> list[dict]:
    """GenEval's 553 records (``tag``, ``include`` [{class, count, color?, position?}], ``exclude``?, ``prompt``)."""
    path = bench_dir() / "geneval" / "evaluation_metadata.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"benchmark file {path} not found; set {BENCH_ENV} to the shared/bench folder")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def geneval_position_holds(relation: str, subject: Box, reference: Box) -> bool:
    """GenEval's position rule as the bench README states it for layouts: ``right of`` holds when
    the subject's centre x exceeds the reference's by more than 0.1 x the sum of the two widths
    (heights for ``above`` / ``below``; y grows downwards)."""
    (sx, sy), (rx, ry) = centre(subject), centre(reference)
    horizontal = relation in ("left of", "right of")
    extent = (subject[2] - subject[0] + reference[2] - reference[0]) if horizontal else \
        (subject[3] - subject[1] + reference[3] - reference[1])
    need = GENEVAL_POSITION_MARGIN * extent
    offset = sx - rx if horizontal else sy - ry
    if relation in ("right of", "below"):
        return offset > need
    if relation in ("left of", "above"):
        return offset < -need
    raise ValueError(f"unknown GenEval position {relation!r}")


@dataclass
class GenevalScore:
    """One GenEval record at the layout level: each part, and whether all of them hold."""

    tag: str
    objects: bool  # every class named is in the layout
    counts: bool  # at least ``count`` of each (and fewer than an ``exclude`` count)
    colours: bool | None  # enough of each coloured class carry the colour in their phrase (None: no colour asked)
    position: bool | None  # every pair obeys the position rule (None: no position asked)

    @property
    def correct(self) -> bool:
        return self.objects and self.counts and self.colours is not False and self.position is not False


def score_geneval(layout: Any, record: dict) -> GenevalScore:
    """GenEval's checks on a layout instead of detections: a class is present when items name it
    (``names_match``), a colour when the item's phrase or name contains the colour word, a position
    by ``geneval_position_holds`` for every (object, reference) pair."""
    items = layout_items(layout)
    include = record["include"]
    found = [matching(items, inc["class"]) for inc in include]
    counts = all(len(f) >= inc["count"] for f, inc in zip(found, include)) and all(
        len(matching(items, ex["class"])) < ex["count"] for ex in record.get("exclude", []))
    coloured = [(f, inc) for f, inc in zip(found, include) if "color" in inc]
    colours = all(sum(_has_word(f"{it.phrase} {it.name}", inc["color"]) for it in f) >= inc["count"]
                  for f, inc in coloured) if coloured else None
    placed = [(f, inc) for f, inc in zip(found, include) if "position" in inc]
    position = None
    if placed:
        position = all(bool(f) and bool(found[inc["position"][1]]) and all(
            geneval_position_holds(inc["position"][0], s.box, r.box)
            for s in f for r in found[inc["position"][1]] if s is not r) for f, inc in placed)
    return GenevalScore(record["tag"], all(found), counts, colours, position)
