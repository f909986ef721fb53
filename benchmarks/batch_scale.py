"""Planning and bookkeeping at scale: 100,000 prompts through ``batch --dry-run`` with the rules planner.

    OMP_NUM_THREADS=1 python3 -m benchmarks.batch_scale --prompts 100000

Runs the command as a separate process and samples its resident memory (RSS) every second, with the
journal's size as the progress, so "memory stays flat" is a measured curve, not a claim; CPU time is
reported beside the wall clock (on a shared machine the two differ). Then checks
the index (one record per prompt, input order) and times a second run of the same command, which has
nothing left to do (the resume path: scan and merge only).
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

import numpy as np

from benchmarks.protocol import machine, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
COLOURS = "red blue green yellow black white gray brown orange purple".split()
NOUNS = "cat dog vase table ball box apple tree house car bird chair cup book lamp clock".split()
RELATIONS = ("to the left of", "to the right of", "above", "below", "next to", "on", "under", "near")
COUNTS = ("two", "three", "four")


def make_prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` varied prompts: two related objects, sometimes a count or a third object."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        c1, c2 = rng.choice(COLOURS, 2)
        n1, n2 = rng.choice(NOUNS, 2, replace=False)
        p = f"a {c1} {n1} {rng.choice(RELATIONS)} a {c2} {n2}"
        if rng.random() < 0.3:
            p = f"{rng.choice(COUNTS)} {rng.choice(NOUNS)}s and " + p
        out.append(p)
    return out


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_sampled(cmd: list[str], journal: Path, interval: float = 1.0) -> tuple[float, float, list[dict], str]:
    """Run ``cmd``; every ``interval`` s record (seconds, RSS MiB of it and its children, journal bytes).
    Returns (wall seconds, CPU seconds, samples, stderr)."""
    import psutil

    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ps, samples = psutil.Process(proc.pid), []
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
        except psutil.Error:
            break
        size = journal.stat().st_size if journal.exists() else 0
        samples.append({"t": round(time.perf_counter() - t0, 1), "rss_mib": round(rss / 2**20, 1), "journal": size})
        time.sleep(interval)
    err = proc.stderr.read()
    if proc.wait():
        raise SystemExit(err[-2000:])
    return time.perf_counter() - t0, children_cpu() - c0, samples, err


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--out", default=str(RESULTS / "batch_scale.json"))
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="batch-scale-"))
    prompts = make_prompts(a.prompts)
    (work / "prompts.txt").write_text("\n".join(prompts) + "\n")
    cmd = [sys.executable, "-m", "plan_and_render", "batch", str(work / "prompts.txt"), "--out", str(work / "batch"),
           "--planner", "rules", "--dry-run"]
    seconds, cpu, samples, log = run_sampled(cmd, work / "batch" / "index.rank0.jsonl")
    resume_s, resume_cpu, _, _ = run_sampled(cmd, work / "batch" / "index.rank0.jsonl")

    ids, statuses = [], {}
    with open(work / "batch" / "index.jsonl", "rb") as f:
        for line in f:
            r = json.loads(line)
            ids.append(r["id"])
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    final = max(s["journal"] for s in samples) or 1
    planning = [s for s in samples if 0 < s["journal"] < final]  # while records were being written
    at = {f"{q}%": next((s["rss_mib"] for s in planning if s["journal"] >= q / 100 * final), None) for q in (10, 50, 90)}
    result = {
        "prompts": a.prompts, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
        "prompts_per_s": round(a.prompts / seconds, 1), "resume_seconds": round(resume_s, 1),
        "resume_cpu_seconds": round(resume_cpu, 1), "records": len(ids), "unique_ids": len(set(ids)),
        "in_order": ids == sorted(ids), "statuses": statuses,
        "index_mib": round((work / "batch" / "index.jsonl").stat().st_size / 2**20, 1),
        "rss_mib_peak": max(s["rss_mib"] for s in samples), "rss_mib_at_progress": at,
        "rss_mib_planning_min_max": [min(s["rss_mib"] for s in planning), max(s["rss_mib"] for s in planning)]
        if planning else None,
        "samples": samples[:: max(1, len(samples) // 200)],
        "command": "OMP_NUM_THREADS=1 python3 -m benchmarks.batch_scale " + " ".join(argv if argv is not None else sys.argv[1:]),
        "batch_command": f"plan-and-render batch PROMPTS.txt --out DIR --planner rules --dry-run ({a.prompts} prompts)",
        "machine": machine(), "date": time.strftime("%Y-%m-%d"), "log_tail": log.strip().splitlines()[-3:],
    }
    print(f"{a.prompts} prompts planned in {seconds:.0f} s ({cpu:.0f} s CPU, {result['prompts_per_s']} /s); resume "
          f"(nothing to do) {resume_s:.0f} s ({resume_cpu:.0f} s CPU); {len(ids)} records, {len(set(ids))} unique, in order: {result['in_order']}")
    print(f"RSS MiB at 10/50/90 % of the records: {at}; while planning {result['rss_mib_planning_min_max']}; "
          f"peak {result['rss_mib_peak']}")
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
