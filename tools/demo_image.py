"""The README's picture: a real render of the shipped shapes model beside the layout it was asked for.

    python3 -m tools.demo_image [--out docs/images/demo.png] [--prompt P] [--seed 0] [--steps 25]

Makes what the README's offline demo command makes (rules planner, models/shapes-tiny, refocus,
25 steps, seed 0, the model's guidance scale) and writes the layout preview and the image - enlarged
without smoothing, so its 64x64 pixels stay visible - side by side, each captioned.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

import plan_and_render as par
from plan_and_render.app.output import atomic_save_image, contact_sheet

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle above a blue square"
SIDE = 256


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "demo.png")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--guidance-scale", type=float, default=None, help="default: the model's")
    args = ap.parse_args(argv)
    result = par.generate(args.prompt, planner="rules", model=ROOT / "models" / "shapes-tiny", seed=args.seed,
                          steps=args.steps, guidance_scale=args.guidance_scale, progress=False)
    layout_file = args.out.with_suffix(".layout.png")
    par.save_preview(result.plan, layout_file)
    with Image.open(layout_file) as im:
        layout = im.convert("RGB").resize((SIDE, SIDE))
    layout_file.unlink()
    image = result.image.resize((SIDE, SIDE), Image.NEAREST)
    sheet = contact_sheet([layout, image], labels=["the plan (layout.png)", "the image (image.png)"], columns=2)
    atomic_save_image(sheet, args.out)
    scores = ", ".join(f"{k} {v:.2f}" for k, v in result.scores.items())
    print(f"{args.out}: {args.prompt!r}, seed {args.seed}, {args.steps} steps, guidance scale "
          f"{result.metadata['guidance_scale']}; attention in box: {scores}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
