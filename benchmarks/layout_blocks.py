"""Which joint blocks of an MMDiT carry layout: attention mass inside each object's true box, per block.

    python3 -m benchmarks.layout_blocks --model models/shapes-mmdit --scenes 16 --threads 1

On training-world scenes (``tools.shapes.data.make_scene``; seeds far from the training range) with
known boxes, the clean latent is noised to flow level s, one conditional pass reads every block's
image-query x text-key attention (``joint_attention``: the losses' token axis), and for each block
the in-box share of every object's words (``losses.in_box_share``: attention mass inside its box)
is compared with chance, the box's share of the patch grid. A block whose share is well above
chance knows where the objects are; those are the blocks a model folder names in its
``guidance.json`` (``"layout_blocks": [...]``, read by ``loading.folder_layout_blocks``).
Prints a table (block x noise level: share / chance) and writes benchmarks/results/NAME.json.
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

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = (0.9, 0.7, 0.5, 0.3)


def scene_plan(scene, size: int = 64):
    """The scene as a plan: each object its own group (two triangles of different colours stay apart)."""
    from plan_and_render.scene import ScenePlan

    objs = [dict(id=f"{o.colour}_{o.shape}_{k}", name=o.shape, phrase=o.phrase, group=f"{o.colour} {o.shape} {k}",
                 box=tuple(o.box)) for k, o in enumerate(scene.objects)]
    return ScenePlan(prompt=scene.caption, canvas={"width": size, "height": size}, objects=objs)


def measure_scene(pipe, scene, seed: int, levels=LEVELS) -> dict:
    """{s: {"share": (blocks, objects) in-box shares, "chance": (objects,) box areas on the grid}}."""
    import torch

    from plan_and_render.renderer import guidance
    from plan_and_render.renderer import joint_attention as J
    from plan_and_render.renderer.schedulers import flow_scale
    from plan_and_render.renderer.tokens import joint_tokens
    from tools.shapes.train_mmdit import scene_latents

    plan = scene_plan(scene)
    jt = joint_tokens(plan, plan.prompt, pipe.text_parts())
    layout, _ = guidance.build_layout(plan, None, jt.text, jt.length, token_map=jt)
    cond, _ = pipe.encode_text(layout.text, "")
    x0 = scene_latents(pipe.vae.float(), scene.image[None]).to(pipe.dtype)
    lat_hw = tuple(x0.shape[-2:])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(pipe.dtype)
    n_blocks = len(J.joint_modules(pipe.transformer))
    out = {}
    for s in levels:
        z, r = (1 - s) * x0 + s * eps, flow_scale(s)
        t = torch.tensor(s * 1000.0)
        shares = []
        for k in range(n_blocks):
            att = J.JointAttention(pipe.transformer, [k], jt.order, jt.length)
            g = guidance.Guider([], pipe.transformer, layout, 1, lat_hw, 1, n_ctx=jt.length, attention=att)
            try:
                m = g.measure(z / r, t, lambda x, tt: pipe.velocity(x * r, tt, cond))
            finally:
                g.close()
            shares.append([m[f"in_box:{i}"] for i in layout.ids])
        h, w = g.grid
        chance = g.masks.group_masks(h, w, "cpu").flatten(1).float().mean(1)  # (objects,) as in_box reads them
        out[s] = {"share": np.array(shares), "chance": chance.numpy()}
    return out


def main(argv: list[str] | None = None) -> dict:
    import torch

    from plan_and_render.renderer import load_pipeline
    from tools.shapes.data import make_scene

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/shapes-mmdit")
    ap.add_argument("--scenes", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=900_000_000, help="scene seeds (training used 0 .. 19999)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "layout_blocks_mmdit.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    pipe = load_pipeline(a.model, device="cpu")
    scenes = [make_scene(a.first_seed + i, size=32) for i in range(a.scenes)]
    runs = [measure_scene(pipe, sc, a.first_seed + i) for i, sc in enumerate(scenes)]
    table = {}
    for s in LEVELS:
        share = np.concatenate([r[s]["share"] for r in runs], 1)  # (blocks, all objects)
        chance = np.concatenate([r[s]["chance"] for r in runs])
        table[str(s)] = {"share": share.mean(1).round(4).tolist(), "chance": round(float(chance.mean()), 4),
                         "ratio": (share.mean(1) / chance.mean()).round(3).tolist()}
    n_blocks = len(table[str(LEVELS[0])]["share"])
    print("in-box share / chance per block (rows) and flow noise level s (columns)")
    print("block " + " ".join(f"s={s:<6}" for s in LEVELS))
    for k in range(n_blocks):
        print(f"{k:5d} " + " ".join(f"{table[str(s)]['ratio'][k]:<8.2f}" for s in LEVELS))
    result = {"model": a.model, "scenes": a.scenes, "scene_seeds": f"{a.first_seed} .. {a.first_seed + a.scenes - 1}",
              "levels": list(LEVELS), "per_level": table,
              "command": " ".join(["python3 -m benchmarks.layout_blocks",
                                   *(argv if argv is not None else sys.argv[1:])]),
              "threads": a.threads, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d")}
    Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
