"""How long the README's commands take, each in a fresh process as a newcomer runs them.

    python3 -m benchmarks.quickstart [--repeats 3] [--local] [--suite]   # -> benchmarks/results/quickstart.json

Times (median of ``--repeats`` runs) the plan-only command, the offline demo on models/shapes-tiny with
``OMP_NUM_THREADS=1`` and without it (the renderer's own default, ``default_threads``), and ``-n 4``; the render time per image comes
from each run's metadata.json. ``--local`` also times planning with the default local planner (its
converted model must already be in the cache); ``--suite`` times the README's test command once
(``--suite-only`` keeps the commands' figures already in the file). The machine's load average is
recorded: on a shared machine it decides the figures more than the code does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from plan_and_render.renderer.settings import default_threads

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "quickstart.json"
DEMO = "a red circle above a blue square"


def cli() -> list[str]:
    found = shutil.which("plan-and-render", path=str(Path(sys.executable).parent)) or shutil.which("plan-and-render")
    return [found] if found else [sys.executable, "-m", "plan_and_render"]


def timed(args: list[str], threads: int | None, repeats: int, out_dir: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    walls, renders = [], []
    for _ in range(repeats):
        extra = ["--out", str(out_dir)] if out_dir is not None else []
        t0 = time.perf_counter()
        proc = subprocess.run([*cli(), *args, *extra], cwd=ROOT, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}")
        if out_dir is not None:
            meta = json.loads((out_dir / "metadata.json").read_text())
            renders.append(meta["timings"]["render_s"] / max(1, len(meta["files"]["images"])))
    shown = "plan-and-render " + " ".join(a if " " not in a else f'"{a}"' for a in args)
    unset = f"unset (renders use {default_threads()} of {os.cpu_count()} cores)"
    return {"command": shown, "threads": threads or unset,
            "wall_s": round(statistics.median(walls), 2), "runs_s": [round(w, 2) for w in walls],
            "render_s_per_image": round(statistics.median(renders), 2) if renders else None}


def test_suite() -> dict:
    """The README's test command, once, on one torch thread; its summary line is kept."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        print(proc.stdout[-20000:], file=sys.stderr)  # the failures, before the figure
    summary = (proc.stdout.strip().splitlines() or ["?"])[-1].strip("= ")
    return {"command": "python3 -m pytest -q", "threads": 1, "wall_s": round(wall, 1), "runs_s": [round(wall, 1)],
            "render_s_per_image": None, "result": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--local", action="store_true", help="also time the default local planner (model cached)")
    ap.add_argument("--suite", action="store_true", help="also time python3 -m pytest -q (once)")
    ap.add_argument("--suite-only", action="store_true", help="time the test suite; keep the other figures")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    demo = [DEMO, "--planner", "rules", "--model", "models/shapes-tiny", "--steps", "25"]
    runs = []
    if args.suite_only:
        runs = [r for r in json.loads(args.out.read_text())["runs"] if "pytest" not in r["command"]]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            runs.append(timed(["plan", DEMO, "--planner", "rules"], None, args.repeats, None))
            runs.append(timed(demo, 1, args.repeats, out))
            runs.append(timed(demo, None, args.repeats, out))
            runs.append(timed([*demo, "-n", "4"], 1, args.repeats, out))
            if args.local:
                runs.append(timed(["plan", DEMO], 1, args.repeats, None))
    if args.suite or args.suite_only:
        runs.append(test_suite())
    for r in runs:
        per_image = r["render_s_per_image"] or "-"
        print(f"{r['wall_s']:7.1f} s  {per_image:>6} s/image  threads {r['threads']}: {r['command']}")
    result = {"command": "python3 -m benchmarks.quickstart" + (" --local" if args.local else "")
              + (" --suite" if args.suite or args.suite_only else "")
              + (f" --repeats {args.repeats}" if args.repeats != 3 else ""),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
              "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 1), "runs": runs}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
