"""A sequence of chat edits on one layout, with undo/redo, rendered with the same seed after each turn.

    python examples/chat_edits.py             # offline: rules planner parses the edits, tiny model renders
    python examples/chat_edits.py --dry-run   # layout previews only

Interactive form: ``plan-and-render chat "a red circle to the left of a blue square" --planner rules``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import plan_and_render as par

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "models" / "shapes-tiny"

EDITS = [
    "add a green triangle above the square",
    "move the circle down a bit",
    "make the triangle bigger",
    "move it",  # ambiguous: the session asks a question instead of guessing
    "undo",
    "redo",
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="a red circle to the left of a blue square")
    ap.add_argument("--model", default=str(TINY))
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--out", default="outputs/example-chat")
    ap.add_argument("--store", default=None, help="SQLite file to persist the session (default: memory only)")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)

    try:
        session = par.Session(args.prompt, planner="rules", canvas={"width": 64, "height": 64}, seed=0,
                              model=args.model, store=args.store)
        par.save_preview(session.plan, out / "turn-0-layout.png")
        for i, instruction in enumerate(EDITS, 1):
            if instruction in ("undo", "redo"):
                result = getattr(session, instruction)()
            else:
                result = session.edit(instruction)
            print(f"[{i}] {instruction!r:42s} -> {result}")
            par.save_preview(session.plan, out / f"turn-{i}-layout.png")
            if not args.dry_run and result.ok:
                session.render(out_dir=out, steps=args.steps)  # the session seed: unchanged parts stay similar
    except par.PlanAndRenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"final objects: {[o.id for o in session.plan.objects]}; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
