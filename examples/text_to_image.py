"""Text only: one prompt -> plan -> layout preview -> image, in one output folder.

    python examples/text_to_image.py                          # offline: rules planner + the shipped tiny model
    python examples/text_to_image.py --dry-run                # plan and preview only
    python examples/text_to_image.py --prompt "a cat on a sofa" --planner local \
        --model stable-diffusion-v1-5/stable-diffusion-v1-5   # real weights (in the HF cache or a local folder)

The same as ``plan-and-render "PROMPT" --planner rules --model models/shapes-tiny``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import plan_and_render as par

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "shapes-tiny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="a red circle to the left of a blue square and a yellow star below the square")
    ap.add_argument("--planner", default="rules", help="rules (no model), local (Gemma), openai:MODEL ...")
    ap.add_argument("--model", default=str(TINY))
    ap.add_argument("--method", default="refocus")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs/example-text")
    ap.add_argument("--dry-run", action="store_true", help="plan and preview only")
    args = ap.parse_args()

    try:
        result = par.generate(args.prompt, planner=args.planner, model=args.model, method=args.method,
                              steps=args.steps, seed=args.seed, out_dir=args.out, dry_run=args.dry_run)
    except par.PlanAndRenderError as e:  # one line, like the CLI
        print(f"error: {e}", file=sys.stderr)
        return 1
    for obj in result.plan.objects:
        print(f"{obj.id:12s} {obj.phrase:20s} box={tuple(round(v, 2) for v in obj.box)}"
              + (f"  attention in box {result.scores[obj.id]:.2f}" if obj.id in result.scores else ""))
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote {', '.join(sorted(p.name for p in Path(result.out_dir).iterdir()))} to {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
