"""What does ``batch`` cost over rendering the same prompts one by one? (target: at most 1.1x)

    OMP_NUM_THREADS=1 python3 -m benchmarks.batch_overhead --prompts 100 --steps 10

Singles: each prompt through ``api.generate`` (what ``plan-and-render "PROMPT"`` does: plan, preview,
render, write the run folder) in this process, the pipeline loaded beforehand - the loading is left out
of their sum, which is the fairest case for them. Batch, twice over the same prompts: ``plan-and-render
batch`` as a fresh process, timed whole (start-up, imports, its one model load, planning, rendering,
contact sheets, index, summary), and ``run_batch`` in this process on the loaded pipeline (the
bookkeeping alone). The singles run in two halves around the batches, so a change in the shared
machine's speed falls on both sides. On a shared machine the wall clock also counts other people's
work, so CPU time (user + system, of this process or of the batch's) is reported beside it, and both
sides' pure render time (``render_s``, the sampling loop and decode), so the overhead can be read apart
from the machine's pace.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.protocol import machine, write_result
from benchmarks.shapes import make_specs, spec_prompt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def singles(prompts: list[str], model: str, steps: int, out: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, render seconds) of one generate() per prompt on the warm pipeline."""
    from plan_and_render.app import api

    wall = cpu = render = 0.0
    for k, p in enumerate(prompts):
        t0, c0 = time.perf_counter(), time.process_time()
        result = api.generate(p, planner="rules", model=model, steps=steps, out_dir=out / f"{k:04d}", progress=False)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        render += result.timings["render_s"]
    return wall, cpu, render


def children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--model", default=str(ROOT / "models" / "shapes-tiny"))
    ap.add_argument("--out", default=str(RESULTS / "batch_overhead.json"))
    a = ap.parse_args(argv)
    import torch

    from plan_and_render.app import api
    from plan_and_render.app.batch_render import run_batch

    torch.set_num_threads(1)
    prompts = [spec_prompt(s) for s in make_specs(a.prompts, seed=0)]
    work = Path(tempfile.mkdtemp(prefix="batch-overhead-"))
    (work / "prompts.txt").write_text("\n".join(prompts) + "\n")
    t0 = time.perf_counter()
    api.get_pipeline(a.model)
    load_s = time.perf_counter() - t0
    half = len(prompts) // 2

    first = singles(prompts[:half], a.model, a.steps, work / "single")
    cmd = [sys.executable, "-m", "plan_and_render", "batch", str(work / "prompts.txt"), "--out", str(work / "batch"),
           "--planner", "rules", "--model", a.model, "--steps", str(a.steps)]
    t0, c0 = time.perf_counter(), children_cpu()
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    batch_s, batch_cpu = time.perf_counter() - t0, children_cpu() - c0
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    t0, c0 = time.perf_counter(), time.process_time()
    run_batch(work / "prompts.txt", work / "batch-warm", planner="rules", model=a.model, steps=a.steps)
    warm_s, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
    second = singles(prompts[half:], a.model, a.steps, work / "single")

    records = [json.loads(x) for x in (work / "batch" / "index.jsonl").read_text().splitlines()]
    warm = [json.loads(x) for x in (work / "batch-warm" / "index.jsonl").read_text().splitlines()]
    batch_render = sum(r["timings"].get("render_s", 0) for r in records)
    warm_render = sum(r["timings"].get("render_s", 0) for r in warm)
    single_wall, single_cpu, single_render = (first[k] + second[k] for k in range(3))
    result = {
        "prompts": len(prompts), "steps": a.steps, "ok": sum(r["status"] == "ok" for r in records),
        "single_sum_s": round(single_wall, 2), "single_render_s": round(single_render, 2),
        "single_model_load_s": round(load_s, 2), "batch_s": round(batch_s, 2), "batch_render_s": round(batch_render, 2),
        "batch_warm_s": round(warm_s, 2), "batch_warm_render_s": round(warm_render, 2),
        "single_cpu_s": round(single_cpu, 2), "batch_cpu_s": round(batch_cpu, 2), "batch_warm_cpu_s": round(warm_cpu, 2),
        "ratio": round(batch_s / single_wall, 4), "ratio_warm": round(warm_s / single_wall, 4),
        "ratio_cpu": round(batch_cpu / single_cpu, 4), "ratio_warm_cpu": round(warm_cpu / single_cpu, 4),
        "ratio_of_render_work": round(batch_render / single_render, 4),
        "batch_overhead_s": round(batch_s - batch_render, 2), "single_overhead_s": round(single_wall - single_render, 2),
        "target": "batch_s <= 1.1 x single_sum_s (ratio: the whole batch command, start-up and model load "
                  "included; ratio_warm: run_batch in this process on the loaded pipeline, like the singles)",
        "command": "OMP_NUM_THREADS=1 python3 -m benchmarks.batch_overhead " + " ".join(argv if argv is not None else sys.argv[1:]),
        "batch_command": " ".join(["plan-and-render", *cmd[3:]]).replace(str(work), "$WORK"),
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }
    print(f"{'':24s}{'wall s':>10s}{'CPU s':>10s}{'render s':>10s}{'other s':>10s}")
    for name, wall, cpu, render in (("singles (sum, warm)", single_wall, single_cpu, single_render),
                                    ("batch (whole command)", batch_s, batch_cpu, batch_render),
                                    ("batch (warm, run_batch)", warm_s, warm_cpu, warm_render)):
        print(f"{name:24s}{wall:10.1f}{cpu:10.1f}{render:10.1f}{wall - render:10.1f}")
    print(f"batch / singles, wall: {result['ratio']:.3f} whole command, {result['ratio_warm']:.3f} warm; CPU: "
          f"{result['ratio_cpu']:.3f}, {result['ratio_warm_cpu']:.3f} (target <= 1.1); singles' model load "
          f"{load_s:.1f} s not counted")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
