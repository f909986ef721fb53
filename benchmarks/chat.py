"""Chat edits benchmark: random edit sessions with the rules planner, checked against the geometry.

    python -m benchmarks.chat [--sessions 40] [--turns 12] [--seed 0]

For every session: plan a prompt (rules), then apply random instructions built
from templates over the objects currently in the scene (move, resize, add,
remove, swap, change, relate, region, depth, background, undo, redo, and
ambiguous ones). After
each applied edit it checks:

* untouched boxes: objects the edit did not touch kept their boxes exactly
  (the only allowed exception is the noted "also moved X to make room");
* relations: ``check_plan`` violations of the new plan, regions and depths
  included (should be 0: a relation either holds, was updated, or was dropped
  with a note);
* outcome rates: applied / asked a question / refused (unknown object,
  impossible layout) and the time per edit (parse + apply) and per stored turn.

Prints a table and writes ``benchmarks/results/chat.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from plan_and_render.errors import PlanAndRenderError
from plan_and_render.geometry import check_plan

PROMPTS = [
    "a gray cat to the left of a blue vase on a wooden table",
    "two dogs next to a red car",
    "a lamp above a desk and a chair to the right of the desk",
    "three apples on a plate",
    "a bird flying over a boat on a lake",
    "a teddy bear between two pillows on a bed",
    "a bicycle in front of a house with a tree behind it",
    "a clock above a sofa and a plant in the corner",
]
DIRS = ["left", "right", "up", "down"]
AMOUNTS = ["", " a bit", " a lot", " all the way"]
COLOURS = ["red", "black", "white", "green", "golden"]
NEW = ["dog", "ball", "cup", "bird", "book", "lamp", "cat"]
RELS = ["behind", "in front of", "to the left of", "to the right of", "next to", "above", "on", "near"]
REGIONS = ["the top right corner", "the top left corner", "the bottom left corner", "the bottom right corner"]
DEPTHS = ["the foreground", "the background", "the distance"]


def _refs(plan) -> list[str]:
    """Ways to name objects: the id, or the name when it is unique (else the name, which may be ambiguous)."""
    out = []
    for o in plan.objects:
        out += [o.id, f"the {o.name}"]
    return out


def instruction(rng: random.Random, plan) -> str:
    refs = _refs(plan) or ["the cat"]
    a = rng.choice(refs)
    b = rng.choice(refs)
    kind = rng.choices(["move", "resize", "add", "remove", "swap", "colour", "relate", "rel_move", "background",
                        "undo", "redo", "ambiguous", "region", "depth"],
                       weights=[5, 3, 3, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 1])[0]
    if kind == "region":
        return f"move {a} to {rng.choice(REGIONS)}"
    if kind == "depth":
        return f"put {a} in {rng.choice(DEPTHS)}"
    if kind == "move":
        return f"move {a} {rng.choice(DIRS)}{rng.choice(AMOUNTS)}"
    if kind == "resize":
        return f"make {a} {rng.choice(['bigger', 'smaller', 'a bit bigger', 'much smaller', 'twice as big'])}"
    if kind == "add":
        return f"add a {rng.choice(COLOURS)} {rng.choice(NEW)} {rng.choice(RELS)} {a}"
    if kind == "remove":
        return f"remove {a}"
    if kind == "swap":
        return f"swap {a} and {b}"
    if kind == "colour":
        return f"make {a} {rng.choice(COLOURS)}"
    if kind == "relate":
        return f"{a} should be {rng.choice(RELS)} {b}"
    if kind == "rel_move":
        return f"put {a} {rng.choice(RELS)} {b}"
    if kind == "background":
        return f"change the background to {rng.choice(['a beach', 'a kitchen', 'a snowy forest'])}"
    if kind in ("undo", "redo"):
        return kind
    return rng.choice(["move it", "make it bigger", "put it there"])


def run(sessions: int, turns: int, seed: int) -> dict:
    from plan_and_render.app.session import Session

    rng = random.Random(seed)
    counts = {"applied": 0, "question": 0, "refused": 0}
    edit_ms: list[float] = []
    untouched_broken = relation_violations = made_room = 0
    checked = 0
    with tempfile.TemporaryDirectory() as tmp:
        t_store: list[float] = []
        for i in range(sessions):
            s = Session(PROMPTS[i % len(PROMPTS)], planner="rules", seed=i, store=Path(tmp) / "bench.db")
            for _ in range(turns):
                before = s.plan
                text = instruction(rng, before)
                t0 = time.perf_counter()
                try:
                    script = s.parse(text)
                except PlanAndRenderError:  # unknown object: refused before anything is applied
                    counts["refused"] += 1
                    continue
                t1 = time.perf_counter()
                r = s.edit(text, ops=script)
                t2 = time.perf_counter()
                edit_ms.append((t1 - t0) * 1000)
                t_store.append((t2 - t1) * 1000)
                if r.error:
                    counts["refused"] += 1
                    continue
                if r.question:
                    counts["question"] += 1
                    continue
                counts["applied"] += 1
                if any(o["op"] in ("undo", "redo") for o in r.ops):
                    continue
                checked += 1
                touched = set(s.history[-1].meta.get("targets", []))
                made_room += any("to make room" in n for n in r.notes)
                after = {o.id: o.box for o in s.plan.objects}
                moved_anyway = [o.id for o in before.objects
                                if o.id in after and o.id not in touched and tuple(after[o.id]) != tuple(o.box)]
                untouched_broken += bool(moved_anyway)
                relation_violations += len(check_plan(s.plan))
    n = sum(counts.values())
    return {
        "sessions": sessions, "turns_per_session": turns, "seed": seed, "instructions": n,
        "applied": counts["applied"], "questions": counts["question"], "refused": counts["refused"],
        "edits_checked": checked,
        "edits_moving_untouched_objects": untouched_broken,
        "edits_that_freed_neighbours": made_room,
        "relation_violations_after_edits": relation_violations,
        "parse_ms_median": round(statistics.median(edit_ms), 2),
        "apply_and_store_ms_median": round(statistics.median(t_store), 2),
        "apply_and_store_ms_p90": round(sorted(t_store)[int(0.9 * len(t_store))], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=40)
    ap.add_argument("--turns", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = run(args.sessions, args.turns, args.seed)
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    out = Path(__file__).resolve().parent / "results" / "chat.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
