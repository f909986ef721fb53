"""Validation sweep for the step of excite's single refinement (Grimal et al.): steps 0, 2, ..., 24.

    python3 -m benchmarks.renderer_sweep                         # shapes model, 8 held-out scenes, 25 steps
    python3 -m benchmarks.renderer_sweep --per-step              # with per-step guidance as well
    python3 -m benchmarks.renderer_sweep --model tiny --plans 2  # random tiny model (smoke run)

The default model is the project's trained shapes model (models/shapes-tiny);
validation plans are shapes-world scenes from seeds the model never saw in
training (its training used seeds 0..119999), captioned without positions,
each object with its true box. Reported per candidate step: cn_iou (L_CN +
L_IoU over the score window, lower is better), mean attention-in-box score,
and for the shapes model the detector's presence rate (share of objects drawn
with the right colour and shape) and the share of scenes with every object.
Prints a table and writes benchmarks/results/renderer_sweep.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

from plan_and_render.scene import Canvas, PlanObject, ScenePlan

HELD_OUT = 1_000_000  # first validation seed


def shapes_plans(n: int, size: int = 64) -> list[ScenePlan]:
    from tools.shapes.data import make_scene

    plans = []
    for k in range(n):
        sc = make_scene(HELD_OUT + k, size)
        objs = [PlanObject(id=f"{o.shape}-{i + 1}", name=o.shape, phrase=o.phrase, attributes=[o.colour],
                           box=o.box) for i, o in enumerate(sc.objects)]
        plans.append(ScenePlan(prompt=sc.caption, canvas=Canvas(width=size, height=size), objects=objs))
    return plans


def presence(image, plan) -> dict:
    import numpy as np

    from benchmarks.shapes import score_image

    objs = score_image(np.asarray(image.convert("RGB")), plan)["objects"]
    return {"presence": sum(o["present"] for o in objs) / len(objs), "all_present": float(all(o["present"] for o in objs))}


def tiny_plans(n: int) -> list[ScenePlan]:
    base = [("a red ball and a blue box", [("ball", (0.05, 0.3, 0.45, 0.8)), ("box", (0.55, 0.2, 0.95, 0.8))]),
            ("a cat next to a dog", [("cat", (0.0, 0.2, 0.5, 0.9)), ("dog", (0.5, 0.2, 1.0, 0.9))])]
    return [ScenePlan(prompt=p, canvas=Canvas(width=64, height=64),
                      objects=[PlanObject(id=f"{name}-1", name=name, phrase=f"a {name}", box=b) for name, b in objs])
            for p, objs in (base * n)[:n]]


def main(argv: list[str] | None = None) -> dict:
    import torch

    from plan_and_render.renderer import load_pipeline, pipeline_from_components
    from tools.sweep import DEFAULT_STEPS, refine_step_sweep

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT.parent / "models" / "shapes-tiny"), help="a model, or 'tiny'")
    ap.add_argument("--plans", type=int, default=8)
    ap.add_argument("--steps", type=int, default=25, help="sampling steps (candidates stay in 50-step units)")
    ap.add_argument("--candidates", type=int, nargs="+", default=list(DEFAULT_STEPS))
    ap.add_argument("--per-step", action="store_true", help="also run A&E's per-step guidance after the refinement")
    ap.add_argument("--iters", type=int, default=50, help="Adam iterations of the refinement (paper: 50)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "results" / "renderer_sweep.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.model == "tiny":
        from tools.tiny import tiny_sd_components

        pipe, plans, score = pipeline_from_components(tiny_sd_components(), device=a.device), tiny_plans(a.plans), None
    else:
        pipe, plans, score = load_pipeline(a.model, device=a.device), shapes_plans(a.plans), presence
    res = refine_step_sweep(pipe, plans, a.candidates, per_step=a.per_step, steps=a.steps,
                            options={"refine_iters": a.iters}, score_fn=score, log=lambda s: print(s, flush=True))
    res.update(model=a.model, device=a.device, iters=a.iters,
               command="python3 -m benchmarks.renderer_sweep " + " ".join(argv if argv is not None else sys.argv[1:]))
    cols = [k for k in res["baseline"] if k != "seconds"] + ["seconds"]
    print("\nrefine step (of 50) | " + " | ".join(cols))
    print(f"{'none':>19} | " + " | ".join(f"{res['baseline'][c]:.3f}" for c in cols))
    for c, row in res["candidates"].items():
        print(f"{c:>19} | " + " | ".join(f"{row[k]:.3f}" for k in cols))
    print(f"best by cn_iou: step {res['best']}")
    out = Path(a.out)
    runs = json.loads(out.read_text()) if out.exists() else {}
    runs[f"{Path(a.model).name}-{'per_step' if a.per_step else 'alone'}"] = res
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(runs, indent=2))
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
