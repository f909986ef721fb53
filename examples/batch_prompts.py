"""A batch over a prompt file: plan every line into JSONL (resumable), then render each plan.

    python examples/batch_prompts.py                       # examples/prompts.txt, offline
    python examples/batch_prompts.py --dry-run             # plans only
    python examples/batch_prompts.py --prompts my.txt --out outputs/my-batch

The planning half is ``plan-and-render plan --from-file PROMPTS.txt --out PLANS.jsonl``: run it twice and the
second run skips what is done. Error lines (e.g. a conflict) are kept in the file and skipped when rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import plan_and_render as par
from plan_and_render.app.batch import plan_batch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "shapes-tiny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", default=str(Path(__file__).with_name("prompts.txt")))
    ap.add_argument("--planner", default="rules")
    ap.add_argument("--model", default=str(TINY))
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--out", default="outputs/example-batch")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)

    try:
        stats = plan_batch(args.prompts, out / "plans.jsonl", args.planner, canvas=par.Canvas(width=64, height=64))
        print(f"planned {stats.planned}, skipped {stats.skipped} (already done), {stats.errors} error(s)")
        for i, line in enumerate((out / "plans.jsonl").read_text().splitlines()):
            record = json.loads(line)
            if "error" in record:
                print(f"{i:3d} skip  {record['prompt']!r}: {record['error']['type']}: {record['error']['message']}")
                continue
            plan = par.parse_plan(record)
            result = par.generate(plan=plan, model=args.model, steps=args.steps, seed=i, out_dir=out / f"{i:03d}",
                                  dry_run=args.dry_run, progress=False)
            scores = ", ".join(f"{k} {v:.2f}" for k, v in result.scores.items()) or "dry run"
            print(f"{i:3d} ok    {plan.prompt!r}: {scores}")
    except par.PlanAndRenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
