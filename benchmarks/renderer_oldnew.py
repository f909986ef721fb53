"""The renderer before this cleanup (commit c34befe) against the current one, same process, interleaved.

    python3 benchmarks/renderer_oldnew.py --suite tiny --methods none refocus zest excite rca backward refocus+rca
    python3 benchmarks/renderer_oldnew.py --suite sd15 --size 128 --steps 10 --repeats 2 --methods none refocus rca refocus+rca

The old renderer is read from git into a temporary package ``renderer_old``; both
pipelines share one set of random-weight components; every method runs worst
case (all scheduled iterations); time is the process's CPU time on one thread
(steadier than wall time on a shared machine), median over ``--repeats``.
Writes the table into benchmarks/results/renderer.json under "<suite>-cpu-old-vs-new".
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
OLD = "c34befe"
FILES = ("__init__", "attention", "guidance", "loading", "maploss", "pipeline_sd", "pipeline_sdxl", "tiny", "tokens")


def old_package() -> Path:
    """renderer/ at commit OLD as a package named renderer_old in a temporary folder."""
    d = Path(tempfile.mkdtemp()) / "renderer_old"
    d.mkdir()
    for f in FILES:
        src = subprocess.run(["git", "show", f"{OLD}:renderer/{f}.py"], cwd=ROOT.parent, check=True,
                             capture_output=True, text=True).stdout
        (d / f"{f}.py").write_text(src.replace("from renderer.", "from renderer_old."))
    return d.parent


def main() -> None:
    import torch

    from benchmarks.renderer import PLAN, full_components
    from planner.scene import ScenePlan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="tiny", choices=["tiny", "sd15", "sdxl"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", nargs="+", default=["none", "refocus", "rca", "refocus+rca"])
    ap.add_argument("--out", default=str(ROOT / "results" / "renderer.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(old_package()))
    plan = ScenePlan(canvas={"width": a.size, "height": a.size}, **PLAN)
    if a.suite == "tiny":
        from renderer.tiny import tiny_sd_components

        comps = tiny_sd_components()
    else:
        torch.manual_seed(0)
        comps = full_components(a.suite, "cpu", torch.float32)
    pipes = {}
    for pkg in ("renderer_old", "renderer"):
        R, G = importlib.import_module(pkg), importlib.import_module(pkg + ".guidance")
        if hasattr(G, "StepPlan"):  # the old code's stopping test
            G.StepPlan.keep_going = lambda self, loss, stats, it: True
        else:
            G.EARLY_STOP = False
        pipes[pkg] = R.pipeline_from_components(dict(comps), device="cpu", dtype=torch.float32)
        pipes[pkg](plan, method="refocus", steps=2, progress=False)  # warm-up
    times = {(k, m): [] for k in pipes for m in a.methods}
    for r in range(a.repeats):
        for m in a.methods:
            for k, p in pipes.items():
                t0 = time.process_time()
                p(plan, method=m, steps=a.steps, progress=False)
                times[(k, m)].append(time.process_time() - t0)
        print(f"repeat {r} done", flush=True)
    res = {}
    for k in pipes:
        base = statistics.median(times[(k, "none")])
        res[k] = {m: {"cpu_s": statistics.median(times[(k, m)]), "x_none": statistics.median(times[(k, m)]) / base,
                      "runs_cpu_s": times[(k, m)]} for m in a.methods}
    print(f"\n{a.suite} {a.size}px {a.steps} steps, CPU 1 thread, process CPU time, median of {a.repeats}, worst case")
    print(f"{'method':<13}{'old s':>8}{'old x':>7}{'new s':>8}{'new x':>7}")
    for m in a.methods:
        o, n = res["renderer_old"][m], res["renderer"][m]
        print(f"{m:<13}{o['cpu_s']:>8.2f}{o['x_none']:>7.2f}{n['cpu_s']:>8.2f}{n['x_none']:>7.2f}")
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results[f"{a.suite}-cpu-old-vs-new"] = {"args": vars(a), "old_commit": OLD, "old": res["renderer_old"],
                                            "new": res["renderer"]}
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
