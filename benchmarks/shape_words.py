"""Does a model draw the shape its prompt names? One shape per prompt, no layout to follow.

    OMP_NUM_THREADS=1 python3 -m benchmarks.shape_words --models models/shapes-tiny,models/shapes-mmdit

Why: on the demo prompts the MMDiT shapes model puts colours where the plan says and still fails,
because the detector does not recognise its shapes. This separates the two: "a red square" alone,
rendered without guidance (``--method none``), for every shape x ``--colours`` x ``--seeds``, each through
the CLI exactly as ``benchmarks.demo`` renders (``render_row``: the folder's defaults, ``--seed S``).
The exact detector (``plan_and_render.scoring.shapes``) then names what was drawn: the largest region
of the asked colour that has a shape, or nothing. Prints, per model, the share drawn as asked and the
confusion table (asked shape x drawn shape), writes benchmarks/results/shape_words.json and a contact
sheet per model (docs/images/shape_words_<folder name>.png; rows: shapes; each tile captioned with what was drawn).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.demo import render_row, sheet
from benchmarks.protocol import provenance, write_result
from plan_and_render.scoring.shapes import COLOURS, SHAPES

RESULTS = Path(__file__).resolve().parent / "results"
SHEETS = RESULTS.parents[1] / "docs" / "images"
NOTHING = "nothing"


def rows(colours: list[str], seeds: int) -> list[tuple[dict, int]]:
    """(demo-style prompt row, render seed) for every shape x colour x seed, grouped by shape."""
    return [({"id": f"{shape} {colour} s{seed}", "prompt": f"a {colour} {shape}", "relations": [], "regions": {},
              "objects": [{"colour": colour, "shape": shape, "count": 1}]}, seed)
            for shape in SHAPES for colour in colours for seed in range(seeds)]


def drawn(detected: list[str], colour: str) -> str:
    """What the render shows in the asked colour: the shape of its largest region of that colour (the
    detector lists regions largest first, as "red circle"), or ``NOTHING``."""
    return next((d.split()[1] for d in detected if d.split()[0] == colour), NOTHING)


def confusion(records: list[dict]) -> dict[str, dict[str, int]]:
    """Asked shape -> drawn shape -> count, every shape and ``NOTHING`` present (zeros included)."""
    table = {s: dict.fromkeys((*SHAPES, NOTHING), 0) for s in SHAPES}
    for r in records:
        table[r["shape"]][r["drawn"]] += 1
    return table


def summarise(records: list[dict]) -> dict:
    """Share drawn as asked (the largest region of the colour is the asked shape), per shape and overall,
    and the share where the asked shape is anywhere in the image in that colour (``present``)."""
    by_shape = {s: [r for r in records if r["shape"] == s] for s in SHAPES}
    share = lambda rs, key: sum(key(r) for r in rs) / len(rs) if rs else 0.0  # noqa: E731
    return {"renders": len(records), "drawn_as_asked": share(records, lambda r: r["drawn"] == r["shape"]),
            "present": share(records, lambda r: f"{r['colour']} {r['shape']}" in r["detected"]),
            "per_shape": {s: share(rs, lambda r: r["drawn"] == r["shape"]) for s, rs in by_shape.items()},
            "confusion": confusion(records)}


def print_table(model: str, summary: dict, log=print) -> None:
    log(f"\n{model}: drawn as asked {summary['drawn_as_asked']:.0%} of {summary['renders']} renders "
        f"(the asked shape anywhere in its colour: {summary['present']:.0%})")
    log(f"{'asked':10s} " + " ".join(f"{s:>8s}" for s in (*SHAPES, NOTHING)) + f" {'as asked':>9s}")
    for s, row in summary["confusion"].items():
        log(f"{s:10s} " + " ".join(f"{row[d]:8d}" for d in (*SHAPES, NOTHING)) + f" {summary['per_shape'][s]:9.0%}")


def run_model(model: str, method: str, colours: list[str], seeds: int, extra: list[str], work: Path,
              sheet_path: Path | None) -> dict:
    records = []
    for row, seed in rows(colours, seeds):
        rec = render_row(row, model, method, work / row["id"].replace(" ", "_"), ["--seed", str(seed), *extra])
        shape, colour = row["objects"][0]["shape"], row["objects"][0]["colour"]
        records.append({**rec, "shape": shape, "colour": colour, "seed": seed, "drawn": drawn(rec["detected"], colour)})
        print(f"{row['id']:22s} drawn: {records[-1]['drawn']}", flush=True)
    if sheet_path is not None:
        sheet(records, sheet_path, label=lambda r: f"{r['colour']} {r['shape']} s{r['seed']}: {r['drawn']}")
    for r in records:
        r.pop("image")  # pixels: in the contact sheet, not in the results JSON
    return {"model": model, "summary": summarise(records), "records": records}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="models/shapes-tiny,models/shapes-mmdit", help="comma-separated model folders")
    ap.add_argument("--method", default="none", help="guidance method (none: the base model's own drawing)")
    ap.add_argument("--colours", default="red,blue,green", help="comma-separated palette colours")
    ap.add_argument("--seeds", type=int, default=2, help="render seeds 0 .. N-1 for each prompt")
    ap.add_argument("--out", default=str(RESULTS / "shape_words.json"))
    ap.add_argument("--sheets", default=str(SHEETS), help="folder for shape_words_<model>.png ('' for none)")
    ap.add_argument("extra", nargs="*", help="more CLI options after --, e.g. -- --steps 25")
    a = ap.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    colours = [c.strip() for c in a.colours.split(",") if c.strip()]
    missing = [m for m in models if not (Path(m) / "model_index.json").is_file()]
    unknown = [c for c in colours if c not in COLOURS]
    if missing:
        ap.error(f"not a model folder: {', '.join(missing)}")
    if unknown:
        ap.error(f"not a palette colour: {', '.join(unknown)} (the palette: {', '.join(COLOURS)})")
    if not colours or a.seeds < 1:
        ap.error("give at least one colour and seed")
    work = Path(tempfile.mkdtemp(prefix="shape-words-"))
    try:
        results = [run_model(m, a.method, colours, a.seeds, a.extra, work / str(i),
                             Path(a.sheets) / f"shape_words_{Path(m).name}.png" if a.sheets else None)
                   for i, m in enumerate(models)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        print_table(r["model"], r["summary"])
    threads = next((rec["settings"]["threads"] for r in results for rec in r["records"] if "settings" in rec), None)
    result = {"method": a.method, "colours": colours, "seeds": a.seeds, "models": results,
              **provenance("benchmarks.shape_words", argv, threads)}
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
