"""When along the sampling path does a flow model decide which shape it draws?

    OMP_NUM_THREADS=1 python3 -m benchmarks.shape_settling --model models/shapes-mmdit-latent

Why: the MMDiT shapes model draws half its squares as rounded or tabbed blobs the detector reads as
circles (``benchmarks.shape_words``). Whether that is decided early (the coarse form, high noise) or late
(the corners, low noise) says which lever could help: the sampler's last steps, or training at the
low-noise end (``train_mmdit --t-location``). One shape per prompt ("a red square"), no guidance
(``method none``), the folder's other defaults; at every step the model's estimate of the clean latent,

    x0_i = z_i - s_i v_i,   v_i = (z_{i+1} - z_i) / (s_{i+1} - s_i)

(exact for the Euler sampler without guidance, which moves z by (s_{i+1} - s_i) v_i), is decoded and read
by the exact detector like a final image (the largest region of the asked colour). Prints, per shape,
how often the final image and the best step's estimate show it, the noise level from which the final
reading holds (median over renders), and how many renders showed the asked shape at some step below
noise 0.5 and lost it by the end; writes benchmarks/results/shape_settling.json.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch

from benchmarks.protocol import provenance, write_result
from benchmarks.shape_words import NOTHING
from plan_and_render.scoring.shapes import COLOURS, SHAPES, detect

RESULTS = Path(__file__).resolve().parent / "results"


def x0_estimates(latents: list[torch.Tensor], sigmas: list[float]) -> list[torch.Tensor]:
    """The clean-latent estimate at each step from the latents before every step and after the last
    (n + 1 of them) and the sampler's noise levels (n + 1, ending at 0)."""
    out = []
    for i in range(len(latents) - 1):
        v = (latents[i + 1] - latents[i]) / (sigmas[i + 1] - sigmas[i])
        out.append(latents[i] - sigmas[i] * v)
    return out


def settled_from(readings: list[str]) -> int:
    """The first step from which every reading equals the last one (0: decided from the start)."""
    final = readings[-1]
    return max((i + 1 for i, r in enumerate(readings) if r != final), default=0)


def reading(image: np.ndarray, colour: str) -> str:
    """The shape of the largest region of ``colour`` (``NOTHING`` when there is none or it has no shape)."""
    return next((d.shape or NOTHING for d in detect(image) if d.colour == colour), NOTHING)


def trajectory(pipe, plan, colour: str, seed: int, size: int) -> tuple[list[str], list[float]]:
    """The detector's reading of every step's clean estimate (the last is the image itself), and the
    noise level of each step."""
    lat_hw = (size // pipe.vae_scale_factor,) * 2
    sched = pipe.make_scheduler(None)  # the schedule the render's own (fresh) scheduler will have
    pipe.set_timesteps(sched, pipe.resolve(plan).steps, lat_hw)
    sigmas = [float(s) for s in sched.sigmas]
    latents = [pipe.initial_latent([seed], lat_hw)]  # the callback reports the latent after each step
    pipe(plan, method="none", seed=seed, width=size, height=size, progress=False,
         callback=lambda i, t, z: latents.append(z.detach().clone()))
    images = [np.asarray(pipe.decode(x)[0].convert("RGB")) for x in x0_estimates(latents, sigmas)]
    return [reading(im, colour) for im in images], sigmas[:-1]


def summarise(records: list[dict]) -> dict:
    """Per shape: final and best-step shares drawn as asked, median noise level from which the final reading
    holds, and renders that showed the asked shape below noise 0.5 and lost it."""
    out = {}
    for shape in sorted({r["shape"] for r in records}, key=SHAPES.index):
        rs = [r for r in records if r["shape"] == shape]
        steps = len(rs[0]["readings"])
        per_step = [sum(r["readings"][i] == shape for r in rs) / len(rs) for i in range(steps)]
        best = max(range(steps), key=lambda i: (per_step[i], i))
        out[shape] = {"renders": len(rs), "final": per_step[-1], "per_step": per_step, "best_step": best,
                      "best": per_step[best], "best_sigma": rs[0]["sigmas"][best],
                      "settled_sigma_median": statistics.median(r["sigmas"][r["settled_from"]] for r in rs),
                      "lost_late": sum(r["readings"][-1] != shape and any(
                          g == shape for g, s in zip(r["readings"], r["sigmas"]) if s < 0.5) for r in rs)}
    return out


def print_table(summary: dict, log=print) -> None:
    log(f"{'shape':9s} {'renders':>7s} {'final':>6s} {'best step':>10s} {'at noise':>9s} {'settled at':>11s} "
        f"{'lost late':>9s}")
    for shape, s in summary.items():
        log(f"{shape:9s} {s['renders']:7d} {s['final']:6.0%} {s['best']:10.0%} {s['best_sigma']:9.2f} "
            f"{s['settled_sigma_median']:11.2f} {s['lost_late']:9d}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="The step at which a flow model's shapes are decided")
    ap.add_argument("--model", default="models/shapes-mmdit-latent")
    ap.add_argument("--shapes", default="square,ring,triangle", help="comma-separated, of " + ",".join(SHAPES))
    ap.add_argument("--colours", default=",".join(COLOURS), help="comma-separated palette colours")
    ap.add_argument("--seeds", type=int, default=3, help="render seeds 0..N-1 per shape and colour")
    ap.add_argument("--out", default=str(RESULTS / "shape_settling.json"))
    a = ap.parse_args(argv)
    shapes, colours = a.shapes.split(","), a.colours.split(",")
    if not set(shapes) <= set(SHAPES) or not set(colours) <= set(COLOURS) or a.seeds < 1:
        ap.error(f"shapes come from {', '.join(SHAPES)}, colours from {', '.join(COLOURS)}, seeds >= 1")
    from plan_and_render.app import api
    from plan_and_render.errors import PlanAndRenderError

    try:
        pipe, size = api.get_pipeline(a.model), api.native_size(a.model) or 64
    except PlanAndRenderError as e:  # a missing or broken model: one line, as the CLI says it
        ap.error(str(e).splitlines()[0])
    if pipe.family not in ("sd3", "flux"):
        ap.error(f"{a.model} is a {pipe.family} model; the clean estimate here is a flow model's (sd3, flux)")
    records = []
    for shape in shapes:
        for colour in colours:
            plan = api.plan(f"a {colour} {shape}", "rules", width=size, height=size, for_model=a.model)
            for seed in range(a.seeds):
                readings, sigmas = trajectory(pipe, plan, colour, seed, size)
                records.append({"shape": shape, "colour": colour, "seed": seed, "readings": readings,
                                "sigmas": sigmas, "settled_from": settled_from(readings)})
                print(shape, colour, seed, " ".join(g[:2] for g in readings), flush=True)
    summary = summarise(records)
    print_table(summary)
    result = {"config": {**provenance("benchmarks.shape_settling", argv, torch.get_num_threads()),
                         "model": a.model, "method": "none", "size": size},
              "summary": summary, "records": records}
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
