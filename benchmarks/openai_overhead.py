"""Client-side cost and fidelity of the ``openai:<model>`` backend, without a model.

    python3 -m benchmarks.openai_overhead [--limit 200] [--out benchmarks/results/openai_overhead.json]

A fake OpenAI-compatible server on 127.0.0.1 (tools/fake_openai.py) answers
every request with the rules parser's scene graph of the prompt, so what is
measured is only what this project adds around a hosted model: building the
request (system prompt, few-shot turns, schema), HTTP, instructor's parsing and
validation. For each instructor mode it reports the cold start (first request:
importing the planner, openai and instructor, in a fresh interpreter), the
median warm seconds per prompt, and the share of prompts whose graph came back
identical to the one the "model" sent.
Model time is not included: that depends entirely on the server and model.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.bench_data import load_lmd, load_nsr_counting, load_nsr_spatial
from tools.fake_openai import FakeOpenAI, rules_model
from plan_and_render.planner.backends import get_planner
from plan_and_render.planner.backends.openai_backend import MODES
from plan_and_render.planner.backends.rules import parse
from plan_and_render.errors import PlanAndRenderError


def prompts(limit: int) -> list[str]:
    """``limit`` prompts spread over NSR-1K spatial, NSR-1K counting and LMD."""
    pools = [[r["prompt"] for r in load()] for load in (load_nsr_spatial, load_nsr_counting, load_lmd)]
    per = max(1, limit // len(pools))
    picked = [pool[int(i * len(pool) / per)] for pool in pools for i in range(min(per, len(pool)))]
    return picked[:limit]


def cold_start(url: str, mode: str) -> float:
    """Seconds from importing the planner to the first graph, in a fresh interpreter."""
    code = ("import time; t = time.perf_counter(); from plan_and_render.planner.backends import get_planner; "
            f"get_planner('openai:fake', base_url={url!r}, mode={mode!r}).graph('a cat to the left of a dog'); "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.split()[-1])


def run_mode(mode: str, texts: list[str]) -> dict:
    with FakeOpenAI() as fake:
        fake.script = [rules_model]
        cold = cold_start(fake.url, mode)
        planner = get_planner("openai:fake", base_url=fake.url, mode=mode)
        planner.graph("a cat to the left of a dog")  # warm up this process
        warm, same, errors = [], 0, 0
        for text in texts:
            try:
                expected = parse(text)
            except PlanAndRenderError:
                continue  # the stand-in model itself refuses this prompt
            t = time.perf_counter()
            try:
                got = planner.graph(text)
            except PlanAndRenderError:
                errors += 1
                continue
            warm.append(time.perf_counter() - t)
            same += got == expected
    n = len(warm) + errors
    return {"mode": mode, "prompts": n, "identical": same / n if n else 0.0, "errors": errors,
            "cold_s": round(cold, 3), "median_warm_s": round(statistics.median(warm), 4) if warm else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=200, help="prompts per mode, spread over the three sets")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--out", default="benchmarks/results/openai_overhead.json")
    args = ap.parse_args()
    texts = prompts(args.limit)
    rows = [run_mode(mode, texts) for mode in args.modes.split(",")]
    print(f"{'mode':<12} {'prompts':>7} {'identical':>9} {'errors':>6} {'cold s':>7} {'warm s/prompt':>13}")
    for r in rows:
        print(f"{r['mode']:<12} {r['prompts']:>7} {100 * r['identical']:>8.1f}% {r['errors']:>6} "
              f"{r['cold_s']:>7.2f} {r['median_warm_s']:>13.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
            "note": "fake server answering with the rules graph; model time excluded"}
    out.write_text(json.dumps({**meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
