"""ShapesBench: does layout guidance put each shape in its planned box?

    python3 -m benchmarks.shapes --model models/shapes-tiny --limit 100 --steps 25 --threads 1

Prompts: two to four distinct coloured shapes joined by left_of / right_of /
above / below relations ("a red circle to the left of a blue square"), built as
scene graphs and placed by the geometry stage (``plan_and_render.planner.plan.plan_from_graph``
with the shape world's size prior, see ``make_plan``; a grid fallback when the
geometry module is not there). Every method renders every prompt on the same
seed (seed = prompt index). The model is conditioned on the position-free
caption ("a red circle and a blue square") it was trained on, so placement can
only come from guidance; ``--text prompt`` feeds the full relation prompt instead.

Scores from the exact detector (plan_and_render.scoring.shapes): presence
(right colour AND shape found anywhere), box IoU and mask IoU with the target
(0 when absent), relation accuracy on the detected boxes (plan-format.md
sector rule), plus the renderer's own attention-in-box share. Prints a table,
writes benchmarks/results/shapes.json and a PNG grid (target layout, then each
method). Method hyperparameters: the model folder's ``guidance.json`` (for the
shipped model: chosen on the held-out prompt set ``--seed 1``, see
``tools.shapes.model.GUIDANCE``), ``--method-options '{}'`` for the
published ones; ``--tag`` names a variant's rows. The results files keep one convention that
``benchmarks.report``'s two-model table reads: untagged rows run the folder's ``guidance.json``
(what a user of that folder gets), ``:official`` rows the official settings (``--method-options '{}'``)
where the folder chooses something for that method, and one model per file (``shapes.json``:
shapes-tiny, ``shapes_plain.json``: shapes-plain). ``--shard`` + ``--merge``
let methods (and, with ``--skip``, parts of the prompt set) run in separate processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from plan_and_render.scoring.detection import box_iou
from plan_and_render.scoring.shapes import COLOURS, SHAPES, detect, find, mask_iou, target_mask
from tools.shapes.data import caption, draw, phrase
from tools.shapes.detect import relation_holds

PREDICATES = ("left_of", "right_of", "above", "below")
WORDS = {"left_of": "to the left of", "right_of": "to the right of", "above": "above", "below": "below"}
RESULTS = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------
# prompts and plans
# ---------------------------------------------------------------------------

def make_specs(n: int, seed: int = 0) -> list[dict]:
    """n prompt specs: 2-4 distinct (colour, shape) objects, a chain of directional relations."""
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for s in SHAPES for c in COLOURS]
    specs = []
    for i in range(n):
        k = int(rng.choice([2, 2, 3, 3, 4]))
        objs = [pairs[j] for j in rng.choice(len(pairs), size=k, replace=False)]
        rels = [(a, str(rng.choice(PREDICATES)), a - 1) for a in range(1, k)]
        specs.append({"objects": objs, "relations": rels})
    return specs


def spec_prompt(spec: dict) -> str:
    """'a red circle to the left of a blue square and a green star above the blue square'."""
    objs = spec["objects"]
    parts = []
    for s, p, o in spec["relations"]:
        ref = phrase(*objs[o]) if not parts else "the " + " ".join(objs[o])
        parts.append(f"{phrase(*objs[s])} {WORDS[p]} {ref}")
    return " and ".join(parts)


def _fallback_boxes(spec: dict, seed: int) -> dict[int, tuple]:
    """Boxes on a jittered grid satisfying every relation, no overlaps; used without plan_and_render.geometry."""
    rng = np.random.default_rng(seed)
    k = len(spec["objects"])
    n = 3 if k <= 3 else 4
    cell = 1.0 / n
    parent = {s: (p, o) for s, p, o in spec["relations"]}
    for _ in range(1000):
        boxes: dict[int, tuple] = {}
        used: set[tuple[int, int]] = set()
        for i in range(k):
            cells = [(cx, cy) for cx in range(n) for cy in range(n) if (cx, cy) not in used]
            rng.shuffle(cells)
            for cx, cy in cells:
                side = cell * rng.uniform(0.78, 0.9)
                x0 = cx * cell + rng.uniform(0, cell - side)
                y0 = cy * cell + rng.uniform(0, cell - side)
                box = (x0, y0, x0 + side, y0 + side)
                if i not in parent or relation_holds(parent[i][0], box, boxes[parent[i][1]]):
                    boxes[i] = box
                    used.add((cx, cy))
                    break
            if i not in boxes:
                break
        if len(boxes) == k:
            return boxes
    raise RuntimeError(f"fallback layout failed for {spec}")


def make_plan(spec: dict, seed: int):
    """(ScenePlan on a 64x64 canvas, geometry source).

    The geometry stage places the boxes (``plan_and_render.planner.plan.plan_from_graph``), with one change of prior:
    its real-world size table would make a "ring" a finger ring (a 5-pixel box) and a "star" a
    sticker, so the layout is solved with every object named "shape" (the default, medium prior;
    in this world all shapes are drawn at one scale) and the real names are put back.
    """
    from plan_and_render.scene import Canvas, GraphObject, GraphRelation, PlanObject, PlanRelation, ScenePlan, SceneGraph

    prompt = spec_prompt(spec)
    ids = [f"{c}_{s}" for c, s in spec["objects"]]
    graph = SceneGraph(objects=[GraphObject(id=ids[i], name=s, attributes=[c]) for i, (c, s) in enumerate(spec["objects"])],
                       relations=[GraphRelation(subject=ids[s], predicate=p, object=ids[o]) for s, p, o in spec["relations"]])
    try:
        from plan_and_render.geometry import solve
        from plan_and_render.planner.plan import plan_from_graph

        plan = plan_from_graph(prompt, graph, Canvas(width=64, height=64), seed=seed)
        neutral = [o.model_copy(update={"name": "shape"}) for o in plan.objects]
        layout = solve(neutral, plan.relations, plan.canvas, seed=seed)
        objs = [o.model_copy(update={"box": tuple(layout.boxes[o.id])}) for o in plan.objects]
        return plan.model_copy(update={"objects": objs, "warnings": list(layout.warnings)}), "geometry"
    except ImportError:
        boxes = _fallback_boxes(spec, seed)
        objs = [PlanObject(id=f"{s}-{i + 1}", name=s, phrase=phrase(c, s), attributes=[c], box=boxes[i], group=ids[i])
                for i, (c, s) in enumerate(spec["objects"])]
        rels = [PlanRelation(subject=objs[s].id, predicate=p, object=objs[o].id) for s, p, o in spec["relations"]]
        return ScenePlan(prompt=prompt, canvas=Canvas(width=64, height=64), objects=objs, relations=rels), "fallback"


def colour_shape(obj) -> tuple[str, str]:
    colour = next(a for a in obj.attributes if a in COLOURS)
    return colour, obj.name


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------

def score_image(image: np.ndarray, plan, attn: dict | None = None) -> dict:
    """Per-object presence / box IoU / mask IoU and per-relation truth, from the exact detector.

    ``attn``: the renderer's per-object attention-in-box share (RenderResult.scores), kept as a diagnostic.
    Colour-level layout (``colour_box_iou``, ``colour_holds``) reads the largest region of an object's colour
    whatever its shape, for objects whose colour no other object of the prompt has (None for the rest):
    where a model draws blobs rather than shapes, it says whether guidance still put each object where planned.
    """
    h, w = image.shape[:2]
    dets = detect(image)
    colours = [colour_shape(o)[0] for o in plan.objects]
    unique = {o.id for o, c in zip(plan.objects, colours) if colours.count(c) == 1}  # read at the colour level
    found, by_colour, objs = {}, {}, []
    for o in plan.objects:
        colour, shape = colour_shape(o)
        d = find(dets, shape, colour)
        found[o.id] = d
        cd = by_colour[o.id] = next((x for x in dets if x.colour == colour), None) if o.id in unique else None
        objs.append({"id": o.id, "present": d is not None,
                     "colour_present": any(x.colour == colour for x in dets),
                     "box_iou": box_iou(d.box, o.box) if d else 0.0,
                     "colour_box_iou": (box_iou(cd.box, o.box) if cd else 0.0) if o.id in unique else None,
                     "mask_iou": mask_iou(d.mask, target_mask(shape, o.box, h, w)) if d else 0.0,
                     "box": [round(v, 4) for v in d.box] if d else None,
                     "attn_in_box": round(float((attn or {}).get(o.id, float("nan"))), 4)})
    rels = []
    for r in plan.relations:
        s, o = found.get(r.subject), found.get(r.object)
        ok = bool(s and o and relation_holds(r.predicate, s.box, o.box))
        cs, co = by_colour.get(r.subject), by_colour.get(r.object)
        both = r.subject in unique and r.object in unique
        rels.append({"relation": str(r), "holds": ok,
                     "colour_holds": bool(cs and co and relation_holds(r.predicate, cs.box, co.box)) if both else None})
    return {"objects": objs, "relations": rels}


def _nanmean(values: list) -> float:
    """Mean of the values that are numbers (None and NaN left out); NaN when none is."""
    kept = [float(v) for v in values if v is not None and not np.isnan(float(v))]
    return float(np.mean(kept)) if kept else float("nan")


def summarise(records: list[dict]) -> dict:
    objs = [o for r in records for o in r["objects"]]
    rels = [x for r in records for x in r["relations"]]
    present = [o for o in objs if o["present"]]
    return {
        "prompts": len(records), "objects": len(objs), "relations": len(rels),
        "presence": float(np.mean([o["present"] for o in objs])) if objs else 0.0,
        "colour_presence": float(np.mean([o["colour_present"] for o in objs])) if objs else 0.0,
        "all_present": float(np.mean([all(o["present"] for o in r["objects"]) for r in records])) if records else 0.0,
        "box_iou": float(np.mean([o["box_iou"] for o in objs])) if objs else 0.0,
        "box_iou_found": float(np.mean([o["box_iou"] for o in present])) if present else 0.0,
        "mask_iou": float(np.mean([o["mask_iou"] for o in objs])) if objs else 0.0,
        "box_iou_gt_0.5": float(np.mean([o["box_iou"] > 0.5 for o in objs])) if objs else 0.0,
        "relation_acc": float(np.mean([x["holds"] for x in rels])) if rels else 0.0,
        "colour_box_iou": _nanmean([o.get("colour_box_iou", np.nan) for o in objs]),
        "colour_relation_acc": _nanmean([x.get("colour_holds") for x in rels]),
        "attn_in_box": _nanmean([o.get("attn_in_box", np.nan) for o in objs]) if objs else 0.0,
        "s_per_image": float(np.mean([r["seconds"] for r in records])) if records else 0.0,
        # extra UNet passes guidance took per image (the stopping tests end many early)
        "fwd_per_image": float(np.mean([r.get("passes", {}).get("forward", np.nan) for r in records])) if records else 0.0,
        "bwd_per_image": float(np.mean([r.get("passes", {}).get("backward", np.nan) for r in records])) if records else 0.0,
    }


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------

def run_method(pipe, method: str, items: list[dict], steps: int, text: str, guidance_scale: float,
               time_budget: float, examples: int, log, options: dict | None = None,
               scheduler: str | None = None) -> tuple[list[dict], list[np.ndarray]]:
    import torch

    records, images = [], []
    t_start = time.perf_counter()
    for it in items:
        if time_budget and time.perf_counter() - t_start > time_budget:
            log(f"{method}: time budget reached after {len(records)} prompts")
            break
        plan = it["plan"]
        render_plan = plan.model_copy(update={"prompt": it["caption"] if text == "caption" else plan.prompt})
        t0 = time.perf_counter()
        res = pipe(render_plan, method=method, seed=it["seed"], steps=steps, guidance_scale=guidance_scale,
                   progress=False, method_options=options or None, scheduler=scheduler,
                   threads=torch.get_num_threads(), encode="prompt")  # the text is chosen above (--text)
        img = np.asarray(res.images[0].convert("RGB"))
        rec = {"index": it["index"], "seed": it["seed"], **score_image(img, plan, res.scores),
               "seconds": time.perf_counter() - t0, "passes": dict(res.passes)}
        records.append(rec)
        if len(images) < examples:
            images.append(img)
    return records, images


def target_image(plan, size: int = 64) -> np.ndarray:
    """The plan drawn by the data generator: each shape filling its target box."""
    objs = [(colour_shape(o)[1], colour_shape(o)[0], tuple(o.box)) for o in plan.objects]
    return draw(objs, size, np.random.default_rng(0)).image


def save_grid(path: Path, targets: list[np.ndarray], rows: dict[str, list[np.ndarray]], captions: list[str]) -> None:
    """Columns: target, then one per method; one row per example prompt; 2x upscaled."""
    from PIL import Image, ImageDraw

    cols = ["target", *rows]
    n = min([len(targets), *(len(v) for v in rows.values())])
    cell, pad, head, side = 128, 4, 14, 0
    grid = Image.new("RGB", (len(cols) * (cell + pad) + pad, head + n * (cell + pad + 12) + pad), "white")
    d = ImageDraw.Draw(grid)
    for j, name in enumerate(cols):
        d.text((pad + j * (cell + pad) + 2, 2), name, fill="black")
    for i in range(n):
        y = head + i * (cell + pad + 12)
        d.text((pad, y), captions[i][:120], fill="black")
        for j, name in enumerate(cols):
            img = targets[i] if name == "target" else rows[name][i]
            grid.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (pad + j * (cell + pad) + side, y + 12))
    grid.save(path)


def print_table(summary: dict, log=print) -> None:
    keys = ["presence", "colour_presence", "all_present", "box_iou", "box_iou_found", "mask_iou", "box_iou_gt_0.5",
            "relation_acc", "colour_box_iou", "colour_relation_acc", "attn_in_box", "s_per_image", "fwd_per_image",
            "bwd_per_image"]
    log(f"{'method':18s} {'prompts':>7s} " + " ".join(f"{k:>15s}" for k in keys))
    for m, s in summary.items():
        log(f"{m:18s} {s['prompts']:7d} " + " ".join(f"{s.get(k, float('nan')):15.3f}" for k in keys))


def merge(paths: list[str], out_json: Path, grid: Path | None, log=print) -> dict:
    """Combine shard files; methods are compared on the prompts every method finished."""
    shards = [json.loads(Path(p).read_text()) for p in paths]
    per: dict[str, list] = {}
    for s in shards:  # a method's prompts may be split over shards (``--skip``)
        for m, recs in s["records"].items():
            per.setdefault(m, []).extend(recs)
    order = ["none", "refocus", "zest", "excite", "rca", "backward"]

    def rank(name: str) -> tuple[int, str]:  # "refocus+rca:published" sorts with refocus
        first = name.split(":")[0].split("+")[0]
        return (order.index(first) if first in order else 99, name)

    per = dict(sorted(per.items(), key=lambda kv: rank(kv[0])))
    common = set.intersection(*({r["index"] for r in recs} for recs in per.values()))
    per = {m: [r for r in recs if r["index"] in common] for m, recs in per.items()}
    summary = {m: summarise(recs) for m, recs in per.items()}
    cfg = {**shards[0]["config"], "methods": list(per), "prompts_scored": len(common),
           "method_options": {k: v for s in shards for k, v in s["config"].get("method_options", {}).items()},
           "scheduler": {k: v for s in shards for k, v in s["config"].get("scheduler", {}).items()},
           "commands": [s["config"]["command"] for s in shards]}
    cfg.pop("command", None)
    result = {"config": cfg, "summary": summary, "records": per}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    print_table(summary, log)
    if grid is not None:
        ex: dict[str, list] = {}
        for s in shards:  # each method's examples from its first shard: the prompts of shards[0]'s targets
            for m in s["examples"]:
                ex.setdefault(m, [np.array(a, dtype=np.uint8) for a in s["examples"][m]])
        ex = {m: ex[m] for m in per if m in ex}  # the table's order
        save_grid(grid, [np.array(a, dtype=np.uint8) for a in shards[0]["targets"]], ex, shards[0]["captions"])
    return result


def main(argv: list[str] | None = None) -> dict:
    from plan_and_render.renderer import available_methods, load_pipeline

    ap = argparse.ArgumentParser(description="ShapesBench: layout control of the shapes model per guidance method")
    ap.add_argument("--model", default=str(ROOT / "models" / "shapes-tiny"))
    ap.add_argument("--limit", type=int, default=100, help="number of prompts (>= 100 for the full benchmark)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--methods", default=",".join(available_methods()), help="comma-separated, e.g. none,refocus,refocus+rca")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--guidance-scale", type=float, default=7.5)
    ap.add_argument("--text", choices=["caption", "prompt"], default="caption")
    ap.add_argument("--seed", type=int, default=0, help="prompt-set seed (render seeds are the prompt indices)")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds per method; 0 = no limit")
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--out", default=str(RESULTS / "shapes.json"))
    ap.add_argument("--grid", default=str(RESULTS / "shapes_grid.png"))
    ap.add_argument("--shard", default=None, help="write a shard file (for --merge) instead of the results")
    ap.add_argument("--merge", nargs="+", default=None, help="shard files to combine")
    ap.add_argument("--method-options", default=None,
                    help="JSON of per-method hyperparameters (default: the model folder's guidance.json; "
                         "'{}' = the renderer's published defaults)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the renderer's, "
                    "$PLAN_AND_RENDER_THREADS or half the cores, at most 4)")
    ap.add_argument("--scheduler", default=None, help="sampler (ddim, euler, ...; default: the model's own)")
    ap.add_argument("--tag", default=None, help="suffix for the method names in the results, e.g. ':published'")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N prompts (another shard has them)")
    a = ap.parse_args(argv)
    if a.merge:
        return merge(a.merge, Path(a.out), Path(a.grid) if a.grid else None)

    import torch

    from plan_and_render.renderer import folder_defaults
    from plan_and_render.renderer.settings import default_threads

    torch.set_num_threads(a.threads or default_threads())  # every render keeps it (run_method passes it on)

    options = json.loads(a.method_options) if a.method_options is not None else folder_defaults(a.model)[1]
    tag = a.tag or ""
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    per_method = {m: {k: v for k, v in options.items() if k in m.split("+")} for m in methods}
    specs = make_specs(a.limit, a.seed)
    items, sources = [], set()
    for i, spec in enumerate(specs):
        plan, src = make_plan(spec, seed=i)
        sources.add(src)
        objs = [colour_shape(o) for o in plan.objects]
        items.append({"index": i, "seed": i, "plan": plan, "caption": caption([(s, c) for c, s in objs])})
    items = items[a.skip:]
    pipe = load_pipeline(a.model, device=a.device, dtype=a.dtype)
    pipe.method_defaults = {}  # exactly ``options``, as recorded
    records, examples = {}, {}
    for m in methods:
        key = m + tag
        records[key], examples[key] = run_method(pipe, m, items, a.steps, a.text, a.guidance_scale, a.time_budget,
                                                 a.examples, lambda s: print(s, flush=True), per_method[m], a.scheduler)
        print(f"{key}: {len(records[key])} prompts, {summarise(records[key])['box_iou']:.3f} box IoU", flush=True)
    model = Path(a.model).resolve()
    shown = str(model.relative_to(ROOT)) if model.is_relative_to(ROOT) else a.model  # results stay machine-free
    config = {"model": shown, "steps": a.steps, "guidance_scale": a.guidance_scale, "text": a.text,
              "prompt_seed": a.seed, "render_seeds": "prompt index", "device": str(pipe.device),
              "dtype": str(pipe.dtype), "geometry": sorted(sources), "canvas": [64, 64],
              "method_options": {m + tag: o for m, o in per_method.items()},
              "scheduler": {m + tag: a.scheduler or "model's own" for m in methods},
              "command": " ".join(["python3 -m benchmarks.shapes", *(argv if argv is not None else sys.argv[1:])]),
              "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d")}
    shard = {"config": config, "records": records, "examples": {m: [e.tolist() for e in v] for m, v in examples.items()},
             "targets": [target_image(it["plan"]).tolist() for it in items[:a.examples]],
             "captions": [it["plan"].prompt for it in items[:a.examples]]}
    if a.shard:
        Path(a.shard).write_text(json.dumps(shard))
        return shard
    tmp = Path(a.out).with_suffix(".shard.json")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(shard))
    try:
        return merge([str(tmp)], Path(a.out), Path(a.grid) if a.grid else None)
    finally:
        tmp.unlink()


if __name__ == "__main__":
    main()
