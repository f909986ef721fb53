"""Two processes under torchrun on the CPU (gloo): every prompt exactly once, also after a crashed rank.

    OMP_NUM_THREADS=1 python3 -m benchmarks.batch_distributed --prompts 12 --steps 2

1. A clean run: ``torchrun --standalone --nproc_per_node 2 -m plan_and_render batch ...`` from scratch,
   and the same under ``accelerate launch --multi_gpu --num_processes 2`` (which starts torchrun's
   workers; on a machine without GPUs they talk over gloo like torchrun's).
2. A crash: the same into a new folder, and once rank 1 has finished a prompt, SIGKILL on rank 1's
   process (torchrun then stops rank 0 too); then the same command again, which must finish the batch.
Each time the merged index.jsonl must hold every prompt exactly once, all rendered, no journal left.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.protocol import machine, write_result
from benchmarks.shapes import make_specs, spec_prompt

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def batch_args(prompts: Path, out: Path, model: str, steps: int) -> list[str]:
    return ["-m", "plan_and_render", "batch", str(prompts), "--out", str(out), "--planner", "rules", "--model", model,
            "--steps", str(steps)]


def torchrun(prompts: Path, out: Path, model: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            *batch_args(prompts, out, model, steps)]


def accelerate_launch(prompts: Path, out: Path, model: str, steps: int) -> list[str]:
    """accelerate's multi-process launcher (it starts torchrun's workers; gloo on a CPU-only machine)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            *batch_args(prompts, out, model, steps)]


def check(out: Path, n: int) -> dict:
    """Exactly-once facts about a finished batch folder."""
    records = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in records]
    want = [f"{k:06d}" for k in range(1, n + 1)]
    return {"records": len(records), "duplicates": len(ids) - len(set(ids)), "missing": len(set(want) - set(ids)),
            "in_order": ids == want, "ok": sum(r["status"] == "ok" for r in records),
            "by_rank": {str(k): sum(r["rank"] == k for r in records) for k in (0, 1)},
            "journals_left": len(list(out.glob("index.rank*.jsonl"))),
            "exactly_once": ids == want and all(r["status"] == "ok" for r in records)}


def crash_rank_1(cmd: list[str], out: Path) -> dict:
    """Start ``cmd``, SIGKILL rank 1's process after its first finished prompt; what was left behind."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal, deadline, killed = out / "index.rank1.jsonl", time.time() + 600, None
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and b'"status":"ok"' in journal.read_bytes():
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if child.environ().get("RANK") == "1" and "plan_and_render" in " ".join(child.cmdline()):
                        child.send_signal(signal.SIGKILL)
                        killed = child.pid
                except psutil.Error:
                    pass
            break
        time.sleep(0.05)
    proc.wait()
    lines = [json.loads(x) for p in out.glob("index.rank*.jsonl") for x in p.read_bytes().split(b"\n")[:-1]]
    return {"killed_pid": killed, "torchrun_exit": proc.returncode,
            "ok_before_rerun": len({r["id"] for r in lines if r["status"] == "ok"})}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / "models" / "shapes-tiny"))
    ap.add_argument("--out", default=str(RESULTS / "batch_distributed.json"))
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="batch-dist-"))
    prompts = work / "prompts.txt"
    prompts.write_text("\n".join(spec_prompt(s) for s in make_specs(a.prompts, seed=0)) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    t0 = time.perf_counter()
    clean = subprocess.run(torchrun(prompts, work / "clean", a.model, a.steps), cwd=ROOT, env=env, capture_output=True,
                           text=True)
    clean_s = time.perf_counter() - t0
    if clean.returncode:
        raise SystemExit(clean.stderr[-2000:])
    launched = subprocess.run(accelerate_launch(prompts, work / "accelerate", a.model, a.steps), cwd=ROOT, env=env,
                              capture_output=True, text=True)
    if launched.returncode:
        raise SystemExit(launched.stderr[-2000:])
    crash = crash_rank_1(torchrun(prompts, work / "crash", a.model, a.steps), work / "crash")
    rerun = subprocess.run(torchrun(prompts, work / "crash", a.model, a.steps), cwd=ROOT, env=env, capture_output=True,
                           text=True)
    if rerun.returncode:
        raise SystemExit(rerun.stderr[-2000:])
    result = {"prompts": a.prompts, "steps": a.steps, "clean": {**check(work / "clean", a.prompts), "seconds": round(clean_s, 1)},
              "accelerate_launch": check(work / "accelerate", a.prompts),
              "crash": crash, "after_rerun": check(work / "crash", a.prompts),
              "rerun_summary": next((x for x in rerun.stderr.splitlines() if "this run" in x), ""),
              "command": "OMP_NUM_THREADS=1 python3 -m benchmarks.batch_distributed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "batch_command": "torchrun --standalone --nproc_per_node 2 -m plan_and_render batch PROMPTS.txt --out DIR "
                               f"--planner rules --model models/shapes-tiny --steps {a.steps}",
              "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    for name in ("clean", "accelerate_launch", "after_rerun"):
        r = result[name]
        print(f"{name:18s} records {r['records']}, duplicates {r['duplicates']}, missing {r['missing']}, "
              f"by rank {r['by_rank']}, exactly once: {r['exactly_once']}")
    print(f"crash: rank 1 killed (pid {crash['killed_pid']}), torchrun exit {crash['torchrun_exit']}, "
          f"{crash['ok_before_rerun']} prompt(s) done before the rerun; rerun: {result['rerun_summary']}")
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
