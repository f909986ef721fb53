"""Where a UNet teacher's velocity is nearer the truth than the MMDiT's: the evidence for ``TEACHER_SPAN``.

    python3 -m benchmarks.teacher_span --scenes 64 --threads 2

On held-out shapes scenes (seeds the training never drew), each clean latent is noised to flow time t
with its own noise; the MMDiT's EMA weights (``--model``) and the teacher UNet (``--teacher``, read as
``tools.shapes.train_mmdit.Teacher`` reads it, the span ignored) each predict v, and both are compared
with the plain target eps - x0 (mean squared error). ``--teacher`` is used for the flow times where its
error is the lower one (``TEACHER_SPAN``). Prints a table and writes benchmarks/results/teacher_span.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.protocol import provenance, write_result

RESULTS = Path(__file__).resolve().parent / "results"
TIMES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def main(argv: list[str] | None = None) -> dict:
    import torch

    from tools.shapes import train_mmdit as T

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/shapes-mmdit")
    ap.add_argument("--teacher", default="models/shapes-tiny")
    ap.add_argument("--scenes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=7, help="scene seeds seed * 10^7 .. (the models trained on seed 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "teacher_span.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    record = json.loads((Path(a.model) / "training.json").read_text())
    if record["config"].get("vae"):
        ap.error(f"{a.model} denoises a learned latent; the teacher speaks the pixel latent only")
    p = {**T.PRESETS["cpu"], **record["config"], "n_scenes": a.scenes, "n_wide": 0, "teacher": a.teacher}
    p.pop("init", None)
    tr = T.Trainer(p, seed=a.seed)
    T.warm_start(tr, a.model)
    models = tr.ema or tr.models
    for m in models:
        m.eval()
    data, g = tr.square, torch.Generator().manual_seed(0)
    x0 = T.to_latents(data.images)
    with torch.no_grad():
        seq, pooled = tr.embed(models, data.ids)  # the same captions at every flow time
    rows = []
    for t0 in TIMES:
        noise = torch.randn(a.scenes, 4, 32, 32, generator=g)
        t = torch.full((a.scenes,), t0)
        xt, true = (1 - t0) * x0 + t0 * noise, noise - x0
        with torch.no_grad():
            v = models[0](xt, encoder_hidden_states=seq, pooled_projections=pooled, timestep=t * 1000).sample.float()
            teacher = tr.teacher.velocity(xt, t, data.teacher_ids, torch.full_like(true, float("nan")), span=(0.0, 1.0))
        mmdit, taught = float((v - true).pow(2).mean()), float((teacher - true).pow(2).mean())  # NaN: beyond its levels
        rows.append({"t": t0, "mmdit": round(mmdit, 4), "teacher": round(taught, 4),
                     "nearer": "teacher" if taught < mmdit else "MMDiT"})
    print(f"{'t':>5} {'MMDiT':>8} {'teacher':>8}  nearer")
    for r in rows:
        print(f"{r['t']:>5} {r['mmdit']:>8.4f} {r['teacher']:>8.4f}  {r['nearer']}")
    result = {"model": a.model, "teacher": a.teacher, "scenes": a.scenes,
              "scene_seeds": f"{a.seed * 10**7} .. {a.seed * 10**7 + a.scenes - 1}", "span_used": list(T.TEACHER_SPAN),
              "rows": rows, **provenance("benchmarks.teacher_span", argv, a.threads)}
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
