"""Scene graph (groups with counts) -> plan instances (one entry per instance).

Group relations expand to every instance pair: "three birds above a boat"
becomes bird-1/2/3 above boat-1, so the geometry and the checker see the
same instance-level relations the plan stores.
"""

from __future__ import annotations

import re
from collections import defaultdict

from ..scene import GraphObject, PlanObject, PlanRelation, SceneGraph


def slug(name: str) -> str:
    """``teddy bear`` -> ``teddy_bear`` (ids keep to [a-z0-9_])."""
    s = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return s or "object"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def phrase_for(obj: GraphObject) -> str:
    """``a red apple``: the text the renderer grounds in the instance's box."""
    words = " ".join([*obj.attributes, obj.name]).strip()
    return f"{article(words)} {words}"


def instance_ids(graph: SceneGraph) -> dict[str, list[str]]:
    """Group id -> instance ids, numbered per name across groups (ball-1, ball-2...)."""
    counters: dict[str, int] = defaultdict(int)
    out: dict[str, list[str]] = {}
    for obj in graph.objects:
        base = slug(obj.name)
        ids = []
        for _ in range(obj.count):
            counters[base] += 1
            ids.append(f"{base}-{counters[base]}")
        out[obj.id] = ids
    return out


def expand(graph: SceneGraph) -> tuple[list[PlanObject], list[PlanRelation]]:
    """Instances (box still the whole canvas) and instance-level relations.
    Each instance keeps its group's size, region and depth."""
    ids = instance_ids(graph)
    objects = [
        PlanObject(id=iid, name=o.name, phrase=phrase_for(o), attributes=list(o.attributes), size=o.size, group=o.id,
                   region=o.region, depth=o.depth)
        for o in graph.objects
        for iid in ids[o.id]
    ]
    relations: list[PlanRelation] = []
    for r in graph.relations:
        subjects, refs = ids.get(r.subject, []), ids.get(r.object, [])
        if r.predicate == "between":
            refs2 = ids.get(r.object2 or "", [])
            pairs = [(a, b) for a in refs for b in refs2 if a != b]
            if r.object == r.object2:  # "between two dogs": each unordered pair once
                pairs = [(a, b) for a, b in pairs if a < b]
            for s in subjects:
                for a, b in pairs:
                    if s not in (a, b):
                        relations.append(PlanRelation(subject=s, predicate="between", object=a, object2=b))
            continue
        for s in subjects:
            for t in refs:
                if s != t:
                    relations.append(PlanRelation(subject=s, predicate=r.predicate, object=t))
    return objects, relations
