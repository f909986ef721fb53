"""The demo as a user meets it: do prompts typed the way people type them come out right?

    OMP_NUM_THREADS=1 python3 -m benchmarks.demo                    # the 30 reported prompts, default method and none
    OMP_NUM_THREADS=1 python3 -m benchmarks.demo --split tune --methods refocus --guidance-json variant.json
    OMP_NUM_THREADS=1 python3 -m benchmarks.demo --split tune --methods refocus --seeds 0-5   # 60 renders

Prompts: ``benchmarks/data/demo_prompts.jsonl``, written (with what each should show) before anything
was rendered: 2-4 shapes of the shapes world, colours of its palette, left of / right of / above /
below, counts up to 3, absolute regions ("in the top left corner"), some on a wide 128x64 canvas
(twice the model's 64 px width: the model draws shapes at its own scale, so a 512 px canvas would
hold specks). ``split`` "report" (30 prompts, the figures) or "tune" (10 prompts, the only ones any
setting was chosen on).

Each prompt goes through the command line in this process - ``plan-and-render PROMPT --planner rules
--model MODEL [--width 128 --height 64] --method M`` via click's runner - so it takes exactly the
CLI's path and defaults (the model folder's guidance.json included); only the pipeline cache is
shared between prompts. ``--guidance-json FILE`` renders with a variant of the model folder (its
parts linked, that guidance.json written beside them) to measure a folder option.

Scored by the exact shapes detector (``plan_and_render.scoring.shapes``): a prompt *follows* when
every object is found in its colour and shape as many times as asked, and every relation (all
instance pairs) and region holds on the detected boxes (plan-format.md's sector and thirds rules).
A failure is named: missing (colour and shape nowhere together), count, relation, region. Beside it,
the colour level (``colour_follows``, a diagnostic, not the figure): the same checks on each object's
colour whatever shape was drawn, for prompts whose objects all differ in colour - a layout that holds
there and fails above is a drawing the detector does not recognise.
``--seeds 0-5`` renders every prompt once per render seed and pools the renders: one seed's 10 or 30
renders put a share within about +-15 to 30 points (``follows_interval``, Wilson's 95 % interval,
treating renders as independent - repeats of one prompt are not, so the true spread is a little wider),
so a setting is chosen on several seeds or not at all.
Prints a table, writes benchmarks/results/demo.json and a contact sheet of the first method's
images (docs/images/demo_contact_sheet.png).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from plan_and_render.app.output import contact_sheet
from plan_and_render.errors import PlanAndRenderError
from plan_and_render.geometry import region_holds, relation_holds
from plan_and_render.renderer.folder import guidance_json
from plan_and_render.renderer.settings import DEFAULT_METHOD
from plan_and_render.scoring.shapes import detect

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "benchmarks" / "data" / "demo_prompts.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
SHEET = ROOT / "docs" / "images" / "demo_contact_sheet.png"


def load_prompts(split: str, path: Path = PROMPTS) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if split == "all" or r["split"] == split]


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------

def score(image: np.ndarray, expected: dict) -> dict:
    """Whether ``image`` follows the prompt ``expected`` describes, and the first reason when it does not;
    ``colour_follows``: the same reading with shapes ignored (``colour_level``)."""
    dets = [d for d in detect(image) if d.shape is not None]
    found = {_key(o): [d.box for d in dets if (d.colour, d.shape) == (o["colour"], o["shape"])]
             for o in expected["objects"]}
    problems = _problems(found, expected, dets)
    kinds = sorted({p.split()[0] for p in problems})
    return {"follows": not problems, "problems": problems, "kinds": kinds,
            "colour_follows": colour_level(dets, expected),
            "objects_right": sum(len(found[_key(o)]) == o["count"] for o in expected["objects"]),
            "objects": len(expected["objects"]),
            "detected": [f"{d.colour} {d.shape}" for d in dets]}


def colour_level(dets, expected: dict) -> bool | None:
    """Whether the layout holds whatever shapes were drawn: each object's boxes are the regions of its colour
    that have a shape, counts, relations and regions checked on them. Why: it tells a layout that went wrong
    from a drawing the detector does not recognise (a square with a tab, read as a circle). None when two
    objects of the prompt share a colour (which region is which is then undefined)."""
    colours = [o["colour"] for o in expected["objects"]]
    if len(set(colours)) < len(colours):
        return None
    found = {_key(o): [d.box for d in dets if d.colour == o["colour"]] for o in expected["objects"]}
    return not _problems(found, expected, dets)


def _key(o: dict) -> str:
    return f"{o['colour']} {o['shape']}"


def _problems(found: dict[str, list], expected: dict, dets) -> list[str]:
    """Every way the boxes ``found`` for each object miss the prompt: missing, count, relation, region."""
    problems = []
    for o in expected["objects"]:
        key, boxes = _key(o), found[_key(o)]
        if not boxes:
            problems.append(f"missing {key}" + _instead(dets, o))
        elif len(boxes) != o["count"]:
            problems.append(f"count {key}: {len(boxes)} of {o['count']}")
    for s, predicate, o in expected["relations"]:
        if found[s] and found[o] and not all(relation_holds(predicate, a, b) for a in found[s] for b in found[o]):
            problems.append(f"relation {s} {predicate} {o}")
    for key, region in expected["regions"].items():
        if found[key] and not all(region_holds(region, b) for b in found[key]):
            problems.append(f"region {key} {region}")
    return problems


def _instead(dets, o) -> str:
    """What stands where the object should: its shape in another colour, or its colour as another shape."""
    shapes = sorted({d.colour for d in dets if d.shape == o["shape"]})
    colours = sorted({d.shape for d in dets if d.colour == o["colour"]})
    if shapes:
        return f" (the {o['shape']} is {'/'.join(shapes)})"
    if colours:
        return f" ({o['colour']} drawn as {'/'.join(colours)})"
    return ""


def summarise(records: list[dict]) -> dict:
    """Shares over the renders (one per prompt, or one per prompt and seed with ``--seeds``)."""
    n = len(records)
    kinds = {k: sum(k in r["kinds"] for r in records) for k in ("missing", "count", "relation", "region")}
    colour = [r["colour_follows"] for r in records if r.get("colour_follows") is not None]
    follows = sum(r["follows"] for r in records)
    return {"prompts": len({r["id"] for r in records}), "renders": n, "follows": follows / n if n else 0.0,
            "follows_interval": wilson(follows, n),
            "colour_follows": sum(colour) / len(colour) if colour else None, "colour_prompts": len(colour),
            "objects_right": sum(r["objects_right"] for r in records) / max(1, sum(r["objects"] for r in records)),
            "wide_follows": _share([r for r in records if r["wide"]]),
            "square_follows": _share([r for r in records if not r["wide"]]),
            "failures_by_kind": kinds, "s_per_render": float(np.mean([r["seconds"] for r in records])) if n else 0.0}


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson's 95 % interval [low, high] of a share k / n: how far a figure from n renders can sit from
    what the settings do. Why Wilson: near 0 or 1 and at n = 10 the normal approximation leaves [0, 1]."""
    if n == 0:
        return [0.0, 1.0]
    p, q = k / n, z * z / n
    centre, half = (p + q / 2) / (1 + q), z * math.sqrt(p * (1 - p) / n + q / (4 * n)) / (1 + q)
    # at k = 0 or k = n the bound is exactly 0 or 1; set it, so rounding cannot leave the share outside
    return [0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half]


def parse_seeds(text: str) -> list[int]:
    """"0-5" -> [0, 1, 2, 3, 4, 5]; "0,2,7" -> [0, 2, 7]; anything else is argparse's usage error (exit 2)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"seeds are a range or a list of distinct seeds, e.g. 0-5 or 0,2,7; "
                                         f"not {text!r}")
    return seeds


def _share(records: list[dict]) -> float | None:
    return sum(r["follows"] for r in records) / len(records) if records else None


# ---------------------------------------------------------------------------
# rendering through the CLI
# ---------------------------------------------------------------------------

def variant_folder(model: Path, guidance_json: Path, into: Path) -> Path:
    """A copy of the model folder made of links to its parts, with another guidance.json."""
    into.mkdir(parents=True, exist_ok=True)
    for part in model.iterdir():
        if part.name != "guidance.json":
            (into / part.name).symlink_to(part.resolve())
    shutil.copyfile(guidance_json, into / "guidance.json")
    return into


def cli_args(row: dict, model: str, method: str, out: Path, extra: list[str]) -> list[str]:
    size = ["--width", str(row["width"]), "--height", str(row["height"])] if "width" in row else []
    return [row["prompt"], "--planner", "rules", "--model", model, *size, "--method", method, "--out", str(out), *extra]


def seed_label(record: dict) -> str:
    """" s3" for a render made with ``--seeds``, "" for one made with the CLI's own seed."""
    return f" s{record['seed']}" if "seed" in record else ""


def render_one(row: dict, model: str, method: str, seed: int | None, work: Path, extra: list[str]) -> dict:
    """``render_row`` with ``--seed seed`` (None: the CLI's default seed), into its own folder under ``work``."""
    if seed is None:
        return render_row(row, model, method, work / method / row["id"], extra)
    return {**render_row(row, model, method, work / method / f"s{seed}" / row["id"], [*extra, "--seed", str(seed)]),
            "seed": seed}


def render_row(row: dict, model: str, method: str, out: Path, extra: list[str]) -> dict:
    from click.testing import CliRunner

    from plan_and_render.app.cli import cli

    t0 = time.perf_counter()
    result = CliRunner().invoke(cli, cli_args(row, model, method, out, extra))
    seconds = time.perf_counter() - t0
    base = {"id": row["id"], "prompt": row["prompt"], "method": method, "wide": "width" in row, "seconds": seconds}
    if result.exit_code != 0 or not (out / "image.png").is_file():
        why = str(result.exception or result.output).splitlines()[0] if (result.exception or result.output) else "?"
        return {**base, "follows": False, "problems": [f"error {why}"], "kinds": ["error"], "objects_right": 0,
                "objects": len(row["objects"]), "detected": [], "image": None}
    meta = json.loads((out / "metadata.json").read_text())
    image = np.asarray(Image.open(out / "image.png").convert("RGB"))
    return {**base, **score(image, row), "image": str(out / "image.png"), "encoded": meta["render_config"]["prompt"],
            "settings": {k: meta["settings"].get(k) for k in ("steps", "guidance_scale", "threads", "scheduler")},
            "boxes": {o["id"]: o["box"] for o in json.loads((out / "plan.json").read_text())["objects"]}}


def follows_label(r: dict) -> str:
    return f"{r['id']} {'follows' if r['follows'] else 'fails: ' + r['kinds'][0]}"


def sheet(records: list[dict], path: Path, tile_h: int = 128, label=follows_label) -> None:
    """The images side by side at ``tile_h`` px high (nearest-neighbour: pixels stay pixels), each on a tile
    as wide as the widest, captioned by ``label(record)`` (the prompt id and whether it follows)."""
    tiles, labels = [], []
    width = 2 * tile_h
    for r in records:
        if r["image"] is None:
            continue
        img = Image.open(r["image"]).convert("RGB")
        img = img.resize((img.width * tile_h // img.height, tile_h), Image.NEAREST)
        tile = Image.new("RGB", (width, tile_h), "white")
        tile.paste(img, ((width - img.width) // 2, 0))
        tiles.append(tile)
        labels.append(label(r))
    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, labels, columns=5).save(path)


def print_table(summary: dict, per_prompt: dict[str, list[dict]], log=print) -> None:
    log(f"{'method':10s} {'renders':>7s} {'follows':>8s} {'95 % interval':>14s} {'objects':>8s} {'square':>7s} "
        f"{'wide':>6s} {'missing':>8s} {'count':>6s} {'relation':>9s} {'region':>7s} {'s/render':>9s} {'colour':>7s}")
    for m, s in summary.items():
        k = s["failures_by_kind"]
        wide = "-" if s["wide_follows"] is None else f"{s['wide_follows']:.0%}"
        lo, hi = s["follows_interval"]
        log(f"{m:10s} {s['renders']:7d} {s['follows']:8.0%} {f'{lo:.0%}-{hi:.0%}':>14s} {s['objects_right']:8.0%} "
            f"{s['square_follows'] or 0:7.0%} "
            f"{wide:>6s} {k['missing']:8d} {k['count']:6d} {k['relation']:9d} {k['region']:7d} {s['s_per_render']:9.1f} "
            f"{'-' if s.get('colour_follows') is None else format(s['colour_follows'], '.0%'):>7s}")
    methods = list(per_prompt)
    log("")
    log(f"{'id':4s} " + " ".join(f"{m[:10]:10s}" for m in methods) + "  prompt / first problem of the first method")
    for i, r in enumerate(per_prompt[methods[0]]):
        marks = " ".join(f"{'yes' if per_prompt[m][i]['follows'] else 'no':10s}" for m in methods)
        why = f"  [{r['problems'][0]}]" if r["problems"] else ""
        log(f"{r['id']:4s}{seed_label(r)} {marks}  {r['prompt']}{why}")


def _shown(path: str) -> str:
    """A path inside the checkout as a relative one (results stay machine-free)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="User-style prompts through the CLI's defaults, scored exactly")
    ap.add_argument("--model", default="models/shapes-tiny")
    ap.add_argument("--split", choices=["report", "tune", "all"], default="report")
    ap.add_argument("--methods", default=f"{DEFAULT_METHOD},none", help="comma-separated; the first one's images "
                    "make the contact sheet")
    ap.add_argument("--guidance-json", default=None, help="render with this guidance.json in place of the model "
                    "folder's (a linked copy of the folder)")
    ap.add_argument("--limit", type=int, default=0, help="first N prompts only (0: all)")
    ap.add_argument("--out", default=str(RESULTS / "demo.json"))
    ap.add_argument("--sheet", default=str(SHEET), help="contact sheet PNG ('' for none)")
    ap.add_argument("--seeds", type=parse_seeds, default=None, help="render every prompt with each of these seeds "
                    "(0-5 or 0,2,7) and pool the renders; default: the CLI's own seed, one render a prompt")
    ap.add_argument("extra", nargs="*", help="more CLI options after --, e.g. -- --steps 25")
    a = ap.parse_args(argv)
    if not (Path(a.model) / "model_index.json").is_file():
        ap.error(f"not a model folder: {a.model}")  # before any render, not after them all
    try:
        guidance = json.loads(Path(a.guidance_json).read_text()) if a.guidance_json else guidance_json(a.model)
    except (OSError, ValueError, PlanAndRenderError) as e:
        ap.error(f"--guidance-json {a.guidance_json}: {e}" if a.guidance_json else str(e))

    rows = load_prompts(a.split)[: a.limit or None]
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    work = Path(tempfile.mkdtemp(prefix="demo-bench-"))
    model = Path(a.model)
    if a.guidance_json:
        model = variant_folder(model.resolve(), Path(a.guidance_json), work / "model")
    per: dict[str, list[dict]] = {}
    try:
        for m in methods:
            per[m] = []
            for seed in a.seeds or [None]:
                for row in rows:
                    rec = render_one(row, str(model), m, seed, work, a.extra)
                    per[m].append(rec)
                    print(f"{m:8s} {row['id']}{seed_label(rec)} {'yes' if rec['follows'] else 'no '} "
                          f"{rec['seconds']:5.1f}s {'; '.join(rec['problems'])}", flush=True)
        summary = {m: summarise(recs) for m, recs in per.items()}
        print_table(summary, per)
        if a.sheet:
            sheet(per[methods[0]][: len(rows)], Path(a.sheet))  # the first seed's renders
    finally:
        for rec in (r for recs in per.values() for r in recs):
            rec.pop("image")  # pixels: in the contact sheet, not in the results JSON
        shutil.rmtree(work, ignore_errors=True)
    threads = next((r["settings"]["threads"] for recs in per.values() for r in recs if "settings" in r), None)
    config = {"command": "python3 -m benchmarks.demo " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "cli": "plan-and-render PROMPT --planner rules --model MODEL [--width 128 --height 64] --method M",
              "model": a.model, "guidance_json": guidance, "split": a.split, "methods": methods, "seeds": a.seeds,
              "default_method": DEFAULT_METHOD, "threads": threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
              "prompts_file": str(PROMPTS.relative_to(ROOT)), "sheet": _shown(a.sheet) if a.sheet else None}
    result = {"config": config, "summary": summary, "records": per}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
