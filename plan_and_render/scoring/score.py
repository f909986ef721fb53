"""Score an image against its plan with a detector, and aggregate scores over a prompt set.

The rules (docs/batch.md, "Scoring"; LMD's image protocol generalised to any plan):

* every object is asked for by its phrase ("a red apple"); objects with one phrase form a group;
* **count**: a group is right when the detector finds exactly as many boxes as the plan has instances;
* **presence** and **box IoU**: the group's planned boxes are matched one-to-one to its detected boxes
  (Hungarian matching on IoU, score breaking ties); an object is present when it got a detection, its
  box IoU is that detection's IoU with the planned box (0 when absent);
* **relations** and **regions** are plan-format.md's geometry semantics (``plan_and_render.geometry``)
  evaluated on the matched detected boxes; a relation or region of an absent object fails;
* an image is **all right** when every object is present, every count right, and every relation and
  region holds.

Set-level numbers are micro averages (objects, groups, relations, regions pooled over all images) plus
the share of images that are all right; ``Aggregate`` adds image records one at a time, so scoring a
large batch keeps memory flat.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..geometry.check import region_holds, relation_holds
from ..scene import ScenePlan, relation_text
from .detection import Detection, Detector, box_iou


def query_of(obj) -> str:
    """What an object is asked for by: its phrase (article + attributes + noun), else its name."""
    return " ".join((obj.phrase or f"a {obj.name}").split())


def _match(planned: list, found: list[Detection]) -> dict[str, Detection]:
    """Object id -> its detection: one-to-one, maximising IoU with the planned boxes (score breaks ties)."""
    from scipy.optimize import linear_sum_assignment

    if not planned or not found:
        return {}
    gain = np.array([[box_iou(o.box, d.box) + 1e-6 * d.score for d in found] for o in planned])
    rows, cols = linear_sum_assignment(-gain)
    return {planned[r].id: found[c] for r, c in zip(rows, cols)}


def score_image(image, plan: ScenePlan, detector: Detector) -> dict[str, Any]:
    """One image's scores against its plan (see the module docstring): objects, counts, relations,
    regions, the detections themselves and a summary line."""
    groups: dict[str, list] = defaultdict(list)
    for o in plan.objects:
        groups[query_of(o)].append(o)
    queries = list(groups)
    detections = detector.detect(image, queries)
    by_query: dict[int, list[Detection]] = defaultdict(list)
    for d in detections:
        by_query[d.query].append(d)

    matched: dict[str, Detection] = {}
    counts = []
    for qi, q in enumerate(queries):
        matched.update(_match(groups[q], by_query[qi]))
        counts.append({"query": q, "planned": len(groups[q]), "detected": len(by_query[qi]),
                       "ok": len(groups[q]) == len(by_query[qi])})
    objects = [{"id": o.id, "query": query_of(o), "present": o.id in matched,
                "box_iou": round(box_iou(o.box, matched[o.id].box), 4) if o.id in matched else 0.0,
                "box": [round(v, 4) for v in matched[o.id].box] if o.id in matched else None}
               for o in plan.objects]
    boxes = {oid: d.box for oid, d in matched.items()}
    relations = []
    for r in plan.relations:
        ids = [i for i in (r.subject, r.object, r.object2) if i is not None]
        holds = all(i in boxes for i in ids) and relation_holds(
            r.predicate, boxes[r.subject], boxes[r.object], boxes[r.object2] if r.object2 else None)
        relations.append({"relation": relation_text(r), "holds": bool(holds)})
    regions = [{"id": o.id, "region": o.region, "holds": o.id in boxes and region_holds(o.region, boxes[o.id])}
               for o in plan.objects if o.region]
    record = {"objects": objects, "counts": counts, "relations": relations, "regions": regions,
              "detections": [dict(d.to_json(), query=queries[d.query]) for d in detections]}
    record["summary"] = _summary(record)
    return record


def _mean(values: list) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _summary(record: dict) -> dict[str, Any]:
    objs, counts, rels, regs = (record[k] for k in ("objects", "counts", "relations", "regions"))
    return {"presence": _mean([o["present"] for o in objs]), "count_ok": all(c["ok"] for c in counts),
            "box_iou": _mean([o["box_iou"] for o in objs]), "relations": _mean([r["holds"] for r in rels]),
            "regions": _mean([r["holds"] for r in regs]),
            "all_ok": all(o["present"] for o in objs) and all(c["ok"] for c in counts)
            and all(r["holds"] for r in rels) and all(r["holds"] for r in regs)}


def score_images(images: list, plan: ScenePlan, detector: Detector) -> dict[str, Any]:
    """A prompt's images against its plan: ``{"detector", "images": [per image], "summary"}``, the summary
    being this prompt's aggregate (the same numbers as for a whole set)."""
    per_image = [score_image(img, plan, detector) for img in images]
    agg = Aggregate()
    agg.add_prompt({"images": per_image})
    return {"detector": detector.name, "images": per_image, "summary": agg.result()}


@dataclass
class Aggregate:
    """Micro averages over image records, added one at a time (a running tally, nothing kept)."""

    images: int = 0
    prompts: int = 0
    tally: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0.0, 0]))

    def _count(self, key: str, values: Iterable[float]) -> None:
        for v in values:
            self.tally[key][0] += float(v)
            self.tally[key][1] += 1

    def add(self, image_record: dict) -> None:
        self.images += 1
        objs = image_record["objects"]
        self._count("presence", (o["present"] for o in objs))
        self._count("box_iou", (o["box_iou"] for o in objs))
        self._count("box_iou_found", (o["box_iou"] for o in objs if o["present"]))
        self._count("count_acc", (c["ok"] for c in image_record["counts"]))
        self._count("relation_acc", (r["holds"] for r in image_record["relations"]))
        self._count("region_acc", (r["holds"] for r in image_record["regions"]))
        self._count("all_ok", [image_record["summary"]["all_ok"]])

    def add_prompt(self, prompt_scores: dict) -> None:
        self.prompts += 1
        for rec in prompt_scores["images"]:
            self.add(rec)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"images": self.images, "prompts": self.prompts}
        for key in ("presence", "count_acc", "box_iou", "box_iou_found", "relation_acc", "region_acc", "all_ok"):
            total, n = self.tally.get(key, (0.0, 0))
            out[key] = round(total / n, 4) if n else None
            out[f"n_{key}"] = n
        return out
