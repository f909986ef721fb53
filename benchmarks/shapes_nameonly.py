"""Where does each shapes model read what to draw? ShapesBench's prompts rendered with `none`, with every
hidden state of the caption except the start token's and the shape names' replaced by the empty prompt's
(what shapes-tiny was trained on for 90 % of its samples). Compare with the `none` rows of
benchmarks/results/shapes.json and shapes_plain.json: the same prompts, seeds and settings.

    python3 -m benchmarks.shapes_nameonly --limit 30

Writes benchmarks/results/shapes_nameonly.json.
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

from benchmarks.shapes import RESULTS, colour_shape, make_plan, make_specs, score_image, summarise
from plan_and_render.scoring.shapes import SHAPES
from tools.shapes.data import caption


def name_only(pipe):
    """``pipe.encode_text`` with the conditional states outside the shape names set to the empty prompt's."""
    import torch

    encode = pipe.encode_text
    names = {i for w in SHAPES for i in pipe.tokenizer(w, add_special_tokens=False).input_ids}

    def encode_names(text: str, negative: str):
        cond, uncond, a, b = encode(text, negative)
        ids = pipe._tokens(pipe.tokenizer, text)[0]
        keep = torch.tensor([p == 0 or int(t) in names for p, t in enumerate(ids)], device=cond.device)
        return torch.where(keep[None, :, None], cond, encode("", "")[0]), uncond, a, b

    return encode_names


def main(argv: list[str] | None = None) -> dict:
    import torch

    from plan_and_render.renderer import load_pipeline

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="models/shapes-tiny,models/shapes-plain")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance-scale", type=float, default=4.0)
    ap.add_argument("--out", default=str(RESULTS / "shapes_nameonly.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    for model in a.models.split(","):
        pipe = load_pipeline(model, device="cpu", dtype="fp32")
        pipe.method_defaults = {}
        pipe.encode_text = name_only(pipe)
        records = []
        for i, spec in enumerate(make_specs(a.limit, 0)):
            plan = make_plan(spec, seed=i)[0]
            text = caption([(s, c) for c, s in (colour_shape(o) for o in plan.objects)])
            t0 = time.perf_counter()
            res = pipe(plan.model_copy(update={"prompt": text}), method="none", seed=i, steps=a.steps,
                       guidance_scale=a.guidance_scale, progress=False)
            img = np.asarray(res.images[0].convert("RGB"))
            records.append({"index": i, "seconds": time.perf_counter() - t0, **score_image(img, plan, res.scores)})
        s = summarise(records)
        out[model] = {k: round(s[k], 4) for k in ("prompts", "presence", "colour_presence", "all_present", "box_iou",
                                                   "relation_acc")}
        print(model, out[model], flush=True)
    result = {"name_only": out, "command": " ".join(["python3 -m benchmarks.shapes_nameonly", *(argv or sys.argv[1:])]),
              "threads": 1, "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}
    Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
