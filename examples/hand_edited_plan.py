"""A hand-edited plan: plan a prompt, edit the JSON (here: move one box), check it, render it.

    python examples/hand_edited_plan.py            # offline, tiny model
    python examples/hand_edited_plan.py --dry-run  # no rendering

From the shell the same is:

    plan-and-render plan "a red circle above a blue square" --planner rules --json --width 64 --height 64 > plan.json
    $EDITOR plan.json                                   # move a box, change a phrase...
    plan-and-render --plan plan.json --model models/shapes-tiny   # warns about relations the edit broke
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import plan_and_render as par

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "shapes-tiny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="a red circle above a blue square")
    ap.add_argument("--model", default=str(TINY))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default="outputs/example-edited")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    try:
        # 1. a plan as JSON, exactly what `plan-and-render plan --json` prints
        plan = par.plan(args.prompt, planner="rules", width=64, height=64)
        original = out / "original-plan.json"
        original.write_text(plan.to_json())

        # 2. the "hand edit": move the circle to the bottom-right corner (this breaks "circle above square")
        data = json.loads(original.read_text())
        circle = next(o for o in data["objects"] if o["name"] == "circle")
        circle["box"] = [0.6, 0.6, 0.95, 0.95]
        circle["phrase"] = "a big red circle"
        edited = out / "edited-plan.json"
        edited.write_text(json.dumps(data, indent=2))

        # 3. check it: the same checker the CLI's --plan uses; violations are warnings, not errors
        for line in par.check(par.load_plan(edited)):
            print(f"warning: {line}")

        # 4. render the edited plan as given (boxes are not re-solved)
        result = par.generate(plan=edited, model=args.model, steps=args.steps, out_dir=out / "run",
                              dry_run=args.dry_run)
    except par.PlanAndRenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"scores: {result.scores or '(dry run)'}")
    print(f"wrote {result.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
