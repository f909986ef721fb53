"""The tables of docs/benchmarks.md (and docs/renderer.md, docs/mmdit-shapes.md, docs/batch.md, README.md),
generated from benchmarks/results/*.json.

    python3 -m benchmarks.report            # rewrite the tables on every page of PAGES
    python3 -m benchmarks.report --check    # exit 1 if the committed tables differ from the JSON

Each table sits between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; everything outside the
markers is prose and stays as written. NAME is a results file's stem (``shapes`` for shapes.json) and picks
the function below that turns that file into a table. A figure is written by the benchmark that measured
it and copied by this script, never typed by hand; tests/test_docs.py checks the committed page is what
this script makes from the committed JSON, so a new result is one command away from the docs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

from benchmarks.demo import wilson  # a share's 95 % interval
from benchmarks.shapes import summarise  # ShapesBench's own scoring, for tables that rescore common prompts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# the pages with generated tables
PAGES = (ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "renderer.md", ROOT / "docs" / "mmdit-shapes.md",
         ROOT / "docs" / "batch.md", ROOT / "README.md")
MARKER = re.compile(r"(<!-- report:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)", re.S)


# --------------------------------------------------------------------------
# small formatting helpers: a missing figure is "-", never a crash
# --------------------------------------------------------------------------


def get(data: Any, *path: str | int, default: Any = None) -> Any:
    for key in path:
        try:
            data = data[key]
        except (KeyError, IndexError, TypeError):
            return default
    return data


def num(value: Any, digits: int = 1, scale: float = 1.0, suffix: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN: nothing to show
        return "-"
    return f"{value * scale:,.{digits}f}{suffix}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def source(data: dict, name: str, *commands: str | None) -> str:
    """The line under a table: the command(s) that wrote the file, and when or where if recorded."""
    cmds = [c.strip() for c in commands if c and c.strip()] or [f"(see benchmarks/results/{name}.json)"]
    when = get(data, "measured_on") or get(data, "date") or get(data, "machine")
    tail = f"; {when}" if when else ""
    return f"\nFrom `benchmarks/results/{name}.json`: " + "; ".join(f"`{c}`" for c in cmds) + f"{tail}.\n"


# --------------------------------------------------------------------------
# one function per results file
# --------------------------------------------------------------------------


def planner(d: dict) -> str:
    """One row per backend: the layout benchmarks, the free-form sets (share of prompts fully right), timings.
    Cold start: fresh processes' median when measured (for ``local``: a plain prompt / one whose readings the
    model weighs), else in-process."""
    rows = []
    backends = get(d, "backends", default={})
    for name, b in backends.items():
        c = get(b, "nsr_counting", default={})
        cold = num(get(b, "cold_start_process_s", default=get(b, "cold_start_s")), 2)
        if get(b, "cold_start_with_model_s") is not None:
            cold += f" / {num(get(b, 'cold_start_with_model_s'), 1)}"
        rows.append([f"`{name}`", num(get(b, "nsr_spatial", "accuracy")),
                     f"{num(get(c, 'precision'))} / {num(get(c, 'recall'))} / {num(get(c, 'accuracy'))}",
                     num(get(b, "lmd", "accuracy")), num(get(b, "geneval", "accuracy")),
                     num(get(b, "freeform", "accuracy")) + _n(b, "freeform"),
                     num(get(b, "freeform_heldout", "accuracy")) + _n(b, "freeform_heldout"),
                     num(get(b, "freeform_heldout2", "accuracy")) + _n(b, "freeform_heldout2"),
                     num(get(b, "median_s_per_prompt"), 4), cold, str(get(b, "measured_on") or "-")])
    commands = dict.fromkeys(get(b, "command") for b in backends.values())
    return table(["planner", "NSR-1K spatial %", "counting P / R / exact acc %", "LMD-400 %", "GenEval %",
                  "free-form %", "held-out %", "held-out 2 %", "median s / prompt (warm)", "cold start s", "measured"],
                 rows) + source({}, "planner", *commands)


def _n(b: dict, name: str) -> str:
    """" (n=40)" when a set was scored on fewer prompts than it holds (``--limit``)."""
    from benchmarks.freeform import load_freeform

    n = get(b, name, "n")
    return f" (n={n})" if n is not None and n < len(load_freeform(name)) else ""


def planner_cold_idle(d: dict) -> str:
    rows = [[f"`{name}`", num(get(b, "cold_start_process_s"), 2),
             ", ".join(num(x, 2) for x in get(b, "cold_start_process_runs", default=[])) or "-",
             num(get(b, "cold_start_with_model_s"), 1), num(get(b, "median_s_per_prompt"), 3),
             str(get(b, "measured_on") or "-")]
            for name, b in get(d, "backends", default={}).items() if "cold_start_process_s" in b]
    first = next(iter(get(d, "backends", default={}).values()), {})
    return table(["planner", "cold start s (median of fresh processes)", "each run s",
                  "first plan that loads the model s", "median s / prompt", "measured"], rows) + \
        source({}, "planner_cold_idle", get(first, "command"))


def geometry(d: dict) -> str:
    lmd = get(d, "lmd", default={})
    scores = table(["set", "score"], [
        [f"NSR-1K spatial val ({get(d, 'nsr_spatial', 'n', default='-')})",
         num(get(d, "nsr_spatial", "accuracy"), suffix=" %")],
        [f"NSR-1K counting val ({get(d, 'nsr_counting', 'n', default='-')}) precision / recall / accuracy",
         " / ".join(num(get(d, "nsr_counting", k)) for k in ("precision", "recall", "accuracy")) + " %"],
        *[[f"LMD-400 {kind} ({get(v, 'n', default='-')})", num(get(v, "accuracy"), suffix=" %")]
          for kind, v in lmd.items()],
    ])
    timing = table(["plans", "CPU median ms (wall)", "CPU p99 ms (wall)", "LP repair"], [
        [f"{label}: {get(d, key, 'plans', default='-')}",
         f"{num(get(d, key, 'cpu_median_ms'), 2)} ({num(get(d, key, 'wall_median_ms'), 2)})",
         f"{num(get(d, key, 'cpu_p99_ms'), 2)} ({num(get(d, key, 'wall_p99_ms'), 2)})",
         num(get(d, key, "repaired_share"), 1, 100, " %")]
        for label, key in (("benchmark plans", "benchmark_timing"), ("random scenes", "random_timing"))])
    load = get(d, "load_average_1min")
    note = f"\nCPU time of the process; wall-clock time in brackets (load average {num(load, 1)} during the run).\n" \
        if load is not None else ""
    return scores + "\n" + timing + note + source(d, "geometry", (get(d, "command") or "").strip())


def chat(d: dict) -> str:
    def n(key: str) -> str:
        return str(get(d, key, default="-"))

    rows = [["instructions", f"{n('instructions')}: {n('applied')} applied, {n('questions')} answered with a "
                             f"question, {n('refused')} refused"],
            ["edits where an object the edit did not touch moved",
             f"{n('edits_moving_untouched_objects')} of {n('edits_checked')} checked"],
            ["relations violated after an edit", n("relation_violations_after_edits")],
            ["edits that moved a related object to make room", f"{n('edits_that_freed_neighbours')} of {n('edits_checked')}"],
            ["rules parse time, median", num(get(d, "parse_ms_median"), 2, suffix=" ms")],
            ["apply + geometry + SQLite commit, median / p90",
             f"{num(get(d, 'apply_and_store_ms_median'), 1)} / {num(get(d, 'apply_and_store_ms_p90'), 1)} ms"]]
    return table(["figure", "value"], rows) + source(d, "chat", get(d, "command") or "python3 -m benchmarks.chat")


def openai_overhead(d: dict) -> str:
    rows = [[f"`{get(r, 'mode')}`", str(get(r, "prompts", default="-")), num(get(r, "identical"), 0, 100, " %"),
             str(get(r, "errors", default="-")), num(get(r, "median_warm_s"), 1, 1000, " ms"),
             num(get(r, "cold_s"), 2, suffix=" s")]
            for r in get(d, "results", default=[])]
    return table(["mode", "prompts", "graphs back identical", "errors", "median per prompt", "cold start"], rows) + \
        source(d, "openai_overhead", get(d, "command") or "python3 -m benchmarks.openai_overhead --limit 150")


def renderer(d: dict) -> str:
    out = []
    for key in ("sd15-gpu", "sdxl-gpu"):
        run = get(d, key)
        if not run:
            continue
        rows = [[f"`{m}`", num(get(r, "time_x"), 2), num(get(r, "wall_s"), 2), num(get(r, "peak_gib"), 2),
                 num(get(r, "loop_peak_x"), 2)] for m, r in get(run, "methods", default={}).items()]
        out.append(f"**{get(run, 'suite', default=key)}, {get(run, 'size', default='-')} px, "
                   f"{get(run, 'steps', default='-')} steps, {get(run, 'dtype', default='-')}, "
                   f"{get(run, 'device', default='-')}** ({get(run, 'measured_by', default='')})\n\n" +
                   table(["method", "time x none", "wall s", "peak GiB", "sampling-loop peak x none"], rows))
    tiny = get(d, "tiny-cpu")
    if tiny:
        methods = get(tiny, "methods", default={})
        out.append(f"**tiny random SD, {get(tiny, 'size', default='-')} px, {get(tiny, 'steps', default='-')} steps, "
                   f"{get(tiny, 'device', default='-')}** (CPU time, worst case)\n\n" +
                   table(["", *(f"`{m}`" for m in methods)],
                         [["CPU time x none", *(num(get(r, "time_x"), 2) for r in methods.values())]]))
    notes = get(d, "_notes")
    return "\n".join(out) + (f"\n{notes}\n" if isinstance(notes, str) else "") + \
        source({}, "renderer", "python3 -m benchmarks.renderer --suite tiny",
               "python3 -m benchmarks.renderer --suite sd15 sdxl --device cuda")


def memory_estimate(d: dict) -> str:
    """benchmarks.memory: per suite and method, the estimated peak (and with model offload); the runs with
    ``--keep-maps`` (the renderer the GPU measured) beside the GPU-measured peaks (renderer_gpu.json)."""
    gpu = json.loads((RESULTS / "renderer_gpu.json").read_text()) if (RESULTS / "renderer_gpu.json").is_file() else {}
    rows = []
    for run in d.values():
        if not isinstance(run, dict) or "methods" not in run:
            continue
        kept = run.get("recomputed_maps") is False  # the renderer as the GPU run had it
        measured = get(gpu, f"{run['suite']}-gpu", "methods", default={}) if kept else {}
        label = f"{run['suite']}, {get(run, 'size')} px" + (", maps kept" if kept else "") \
            + (f", memory {run['memory']}" if "memory" in run else "")
        for i, (m, r) in enumerate(run["methods"].items()):
            rows.append([label if i == 0 else "", f"`{m}`", num(get(r, "peak_gib"), 2), num(get(r, "peak_x"), 2),
                         num(get(r, "loop_peak_gib"), 2), num(get(r, "loop_peak_x"), 2),
                         num(get(r, "model_offload_peak_gib"), 2),
                         num(get(measured, m, "peak_gib"), 2), num(get(measured, m, "loop_peak_gib"), 2)])
    return table(["suite", "method", "peak GiB", "x none", "loop peak GiB", "x none", "model offload: peak GiB",
                  "GPU-measured peak", "GPU loop peak"], rows) + \
        source(d, "memory_estimate", *(get(d, "commands") or ["python3 -m benchmarks.memory"]))


def _shapes_rows(summary: dict, passes: bool = False, colour: bool = False) -> list[list[str]]:
    rows = []
    for m, s in summary.items():
        row = [f"`{m}`", num(get(s, "presence"), 1, 100), num(get(s, "all_present"), 0, 100), num(get(s, "box_iou"), 3),
               num(get(s, "box_iou_gt_0.5"), 1, 100), num(get(s, "mask_iou"), 3), num(get(s, "relation_acc"), 1, 100),
               num(get(s, "attn_in_box"), 2), num(get(s, "s_per_image"), 2)]
        if passes:
            row += [num(get(s, "fwd_per_image"), 1), num(get(s, "bwd_per_image"), 1)]
        if colour:
            row += [num(get(s, "colour_box_iou"), 3), num(get(s, "colour_relation_acc"), 1, 100)]
        rows.append(row)
    return rows


SHAPES_HEADER = ["method", "presence %", "all present %", "box IoU", "box IoU > 0.5 %", "mask IoU",
                 "relations hold %", "attention in box", "s / image"]


def shapes(d: dict, name: str = "shapes", colour: bool = False) -> str:
    """A ShapesBench table; ``colour`` adds the colour-level layout columns (for models that draw blobs)."""
    c = get(d, "config", default={})
    head = (f"`{get(c, 'model', default='-')}`: {get(c, 'prompts_scored', default='-')} prompts, "
            f"{get(c, 'steps', default='-')} steps, guidance scale {get(c, 'guidance_scale', default='-')}, "
            f"{get(c, 'device', default='-')}, render seed = {get(c, 'render_seeds', default='-')}\n\n")
    header = SHAPES_HEADER + (["colour box IoU", "colour relations hold %"] if colour else [])
    return head + table(header, _shapes_rows(get(d, "summary", default={}), colour=colour)) + \
        source({}, name, *get(c, "commands", default=[]))


SHAPES_MODELS = {"shapes": "shapes-tiny", "shapes_plain": "shapes-plain"}  # results file -> model, as columns
SHAPES_METHODS = ("none", "refocus", "rca", "backward", "zest", "excite", "refocus+rca")


def shapes_models(files: dict[str, dict]) -> str:
    """Box IoU / relations that hold / prompts with every object present, per method, for each model with the
    official settings (a ``:official`` row, else the untagged one when the folder chooses nothing) and with the
    folder's ``guidance.json`` (the untagged row, where an ``:official`` one differs from it), on the prompts
    every file scored: the files may hold different numbers of prompts; the seeds are the prompt indices."""
    runs = {f: get(d, "records", default={}) for f, d in files.items() if d}
    common = set.intersection(*({r["index"] for recs in v.values() for r in recs} for v in runs.values()))
    header, cols = ["method"], []
    for f, model in SHAPES_MODELS.items():
        if f not in runs:
            continue
        cols.append((f, "official"))
        header += [f"{model} official: box IoU", "relations %", "all present %"]
        if any(k.endswith(":official") for k in runs[f]):
            cols.append((f, "tuned"))
            header += [f"{model} tuned: box IoU", "relations %", "all present %"]
    rows = []
    for m in SHAPES_METHODS:
        row = [f"`{m}`"]
        for f, kind in cols:
            tuned = m + ":official" in runs[f]
            if kind == "tuned" and not tuned:
                row += ["(official)"] * 3  # the folder's guidance.json chooses nothing for this method
                continue
            name = m + ":official" if kind == "official" and tuned else m
            s = summarise([r for r in runs[f].get(name, []) if r["index"] in common]) if name in runs[f] else {}
            row += [num(get(s, "box_iou"), 3), num(get(s, "relation_acc"), 1, 100), num(get(s, "all_present"), 0, 100)]
        rows.append(row)
    steps = sorted({str(get(d, "config", "steps")) for d in files.values()})
    return (f"The {len(common)} prompts every run scored (render seed = prompt index), {'/'.join(steps)} steps; "
            "official = the renderer's defaults (`--method-options '{}'`), tuned = the model folder's "
            "`guidance.json`; (official): the folder chooses nothing for that method.\n\n" + table(header, rows) +
            "\nFrom " + " and ".join(f"`benchmarks/results/{f}.json`" for f in runs) +
            "; the commands are under the per-model tables.\n")


def layout_blocks_mmdit(d: dict, name: str = "layout_blocks_mmdit") -> str:
    """benchmarks.layout_blocks: in-box share / chance per joint block (rows) and flow noise level (columns)."""
    levels = get(d, "levels", default=[])
    ratios = [get(d, "per_level", str(s), "ratio", default=[]) for s in levels]
    rows = [[str(k), *(num(get(r, k), 2) for r in ratios)] for k in range(max((len(r) for r in ratios), default=0))]
    return table(["block", *(f"s = {s}" for s in levels)], rows) + source(d, name, get(d, "command"))


def teacher_span(d: dict) -> str:
    """benchmarks.teacher_span: each model's error against eps - x0 per flow time, and which is nearer."""
    rows = [[str(get(r, "t")), num(get(r, "mmdit"), 4), num(get(r, "teacher"), 4), get(r, "nearer", default="-")]
            for r in get(d, "rows", default=[])]
    return table(["flow time t", "MMDiT (mean squared error)", "teacher", "nearer the truth"], rows) + \
        source(d, "teacher_span", get(d, "command"))


def shape_words(d: dict) -> str:
    """benchmarks.shape_words: per model, the share of one-shape prompts drawn as the named shape, per shape."""
    from plan_and_render.scoring.shapes import SHAPES

    rows = [[f"`{get(m, 'model')}`", *(num(get(m, "summary", "per_shape", s), 0, 100, " %") for s in SHAPES),
             num(get(m, "summary", "drawn_as_asked"), 0, 100, " %"),
             ", ".join(f"{a} as {b} {n}" for a, row in get(m, "summary", "confusion", default={}).items()
                       for b, n in row.items() if a != b and n) or "-"]
             for m in get(d, "models", default=[])]
    return table(["model", *SHAPES, "all", "drawn instead (times)"], rows) + source(d, "shape_words", get(d, "command"))


def shape_settling(d: dict) -> str:
    """benchmarks.shape_settling: per shape, drawn as asked at the end and at the best step's clean estimate,
    the noise level from which the final reading holds, renders that had the shape late and lost it."""
    rows = [[shape, str(get(s, "renders")), num(get(s, "final"), 0, 100, " %"),
             f"{num(get(s, 'best'), 0, 100, ' %')} (noise {num(get(s, 'best_sigma'), 2)})",
             num(get(s, "settled_sigma_median"), 2), str(get(s, "lost_late"))]
            for shape, s in get(d, "summary", default={}).items()]
    return table(["shape", "renders", "drawn as asked", "best step's estimate", "settled from noise (median)",
                  "had it below noise 0.5, lost it"], rows) + \
        source(get(d, "config", default={}), "shape_settling", get(d, "config", "command"))


def mmdit_align_runs(d: dict) -> str:
    """The learned-latent MMDiT trained on, plain vs --align: flow loss, one-shape prompts, the tune prompts."""
    def pair(r, key):
        return " / ".join(num(get(r, "tune", m, key), 0, 100, " %") for m in ("refocus", "none"))

    def run_name(folder: str) -> str:  # ".../D/model" -> "D", ".../BF" -> "BF"
        parts = folder.rstrip("/").split("/")
        return parts[-2] if parts[-1] == "model" else parts[-1]

    rows = [["start (`BF`)", "-", "-", "-", num(get(d, "start", "shape_words", "drawn_as_asked"), 0, 100, " %"), "-", "-"]]
    rows += [[f"`{name}`", f"`{run_name(get(r, 'init'))}`" if get(r, "init") else "-",
              num(get(r, "align_weight"), 1) if get(r, "align_weight") else "-",
              f"{get(r, 'steps', default='-'):,} ({num(get(r, 'train_s'), 0, 1 / 60)} min), "
              f"{num(get(r, 'eval_loss', 'start'), 4)} -> {num(get(r, 'eval_loss', 'end'), 4)}",
              num(get(r, "shape_words", "drawn_as_asked"), 0, 100, " %"), pair(r, "follows"), pair(r, "objects_right")]
             for name, r in get(d, "runs", default={}).items()]
    return table(["run", "from", "`--align`", "steps, held-out flow loss", "one shape drawn as asked",
                  "tune follows, `refocus` / `none`", "objects right, `refocus` / `none`"], rows) + \
        source(d, "mmdit_align_runs", *(get(r, "command") for r in get(d, "runs", default={}).values()))


def _of(records: list, wide: bool) -> str:
    """"7 / 24": how many of the square (or wide) prompts' records follow."""
    mine = [r for r in records if bool(get(r, "wide")) == wide]
    return f"{sum(bool(get(r, 'follows')) for r in mine)} / {len(mine)}" if mine else "-"


def demo(d: dict, name: str = "demo") -> str:
    """One row per method of a ``benchmarks.demo`` run: follows (with Wilson's 95 % interval: the noise of
    30 renders), objects right, square and wide prompts, failures by kind, the colour level, seconds per
    render. The first method is the folder's default."""
    rows = []
    for i, (method, s) in enumerate(get(d, "summary", default={}).items()):
        n, fails = get(s, "renders", default=get(s, "prompts", default=0)), get(s, "failures_by_kind", default={})
        follows = round(get(s, "follows", default=0) * n)
        low, high = wilson(follows, n)
        row_name = f"`{method}`" + (" (the default)" if i == 0 else "")
        cell = f"**{follows} / {n} ({num(get(s, 'follows'), 0, 100, ' %')})**" if i == 0 else f"{follows} / {n}"
        colour_n = get(s, "colour_prompts", default=0)
        colour = f"{round(get(s, 'colour_follows', default=0) * colour_n)} / {colour_n} " \
                 f"({num(get(s, 'colour_follows'), 0, 100, ' %')})" if colour_n else "-"
        rows.append([row_name, cell, f"{low * 100:.0f}-{high * 100:.0f} %", num(get(s, "objects_right"), 0, 100, " %"),
                     _of(get(d, "records", method, default=[]), False), _of(get(d, "records", method, default=[]), True),
                     " / ".join(str(get(fails, k, default="-")) for k in ("missing", "count", "relation", "region")),
                     colour, num(get(s, "s_per_render"), 1)])
    return table(["method", "follows", "95 % interval", "objects right", "square prompts", "wide prompts",
                  "failures (missing / count / relation / region)", "colour level", "s / render"], rows) + \
        source(d, name, get(d, "config", "command"))


def _followed(variant: dict) -> str:
    """"9 / 30" from a variant over three seeds (``follows_of_30``) or "19 / 60" over six (``follows_of_60``)."""
    for renders in (30, 60):
        if f"follows_of_{renders}" in variant:
            return f"{variant[f'follows_of_{renders}']} / {renders}"
    return "-"


def mmdit_latent_tuning(d: dict) -> str:
    """Guidance variants on the learned-latent MMDiT: the tune prompts over three seeds, `refocus`."""
    rows = [[get(v, "label", default=k), _followed(v), num(get(v, "objects_right"), 0, 100, " %")]
            for k, v in get(d, "variants", default={}).items()]
    return table(["variant (`refocus` unless it names a method; 10 tune prompts x 3 render seeds, or 6 where it "
                  "says so)", "followed", "objects right"], rows) + \
        source(d, "mmdit_latent_tuning", get(d, "config", "command"))


def shapes_passes(d: dict) -> str:
    c = get(d, "config", default={})
    head = f"{get(c, 'prompts_scored', default='-')} prompts, {get(c, 'steps', default='-')} steps\n\n"
    return head + table([*SHAPES_HEADER, "extra forwards / image", "extra backwards / image"],
                        _shapes_rows(get(d, "summary", default={}), passes=True)) + \
        source({}, "shapes_passes", *get(c, "commands", default=[]))


def renderer_sweep(d: dict) -> str:
    out = []
    for name, run in d.items():
        base = get(run, "baseline", default={})
        rows = [["none (no refinement)", num(get(base, "cn_iou"), 3), num(get(base, "in_box"), 3),
                 num(get(base, "presence"), 0, 100), num(get(base, "seconds"), 2)]]
        rows += [[f"step {step}", num(get(c, "cn_iou"), 3), num(get(c, "in_box"), 3), num(get(c, "presence"), 0, 100),
                  num(get(c, "seconds"), 2)] for step, c in get(run, "candidates", default={}).items()]
        out.append(f"**{name}**: {get(run, 'plans', default='-')} plans, {get(run, 'steps', default='-')} steps, "
                   f"lowest L_CN + L_IoU at step {get(run, 'best', default='-')}\n\n" +
                   table(["refinement", "L_CN + L_IoU", "in box", "presence %", "s / image"], rows) +
                   source({}, "renderer_sweep", get(run, "command")))
    return "\n".join(out)


def quickstart(d: dict) -> str:
    rows = [[f"`{get(r, 'command')}`" + (f" ({get(r, 'result')})" if get(r, "result") else ""),
             str(get(r, "threads", default="-")), num(get(r, "wall_s"), 1, suffix=" s"),
             num(get(r, "render_s_per_image"), 1, suffix=" s") if get(r, "render_s_per_image") is not None else "-"]
            for r in get(d, "runs", default=[])]
    load = get(d, "load_average_1min")
    return table(["command (a fresh process each)", "OMP_NUM_THREADS", "wall time", "render per image"], rows) + \
        source(d, "quickstart", get(d, "command")) + \
        (f"Load average (1 min) {num(load, 1)} on {get(d, 'cpus', default='-')} CPUs at the end of the run.\n"
         if load else "")


def batch_overhead(d: dict) -> str:
    rows = [["the `batch` command (start-up and model load included)", num(get(d, "batch_s"), 1, suffix=" s"),
             num(get(d, "ratio"), 3, suffix="x"), num(get(d, "ratio_cpu"), 3, suffix="x")],
            ["`run_batch` in a process with the pipeline loaded", num(get(d, "batch_warm_s"), 1, suffix=" s"),
             num(get(d, "ratio_warm"), 3, suffix="x"), num(get(d, "ratio_warm_cpu"), 3, suffix="x")]]
    return (f"{get(d, 'prompts')} prompts, {get(d, 'steps')} steps each; the single renders took "
            f"{num(get(d, 'single_sum_s'), 1)} s in all (target: batch at most 1.1x that).\n\n" +
            table(["run", "wall time", "vs the singles (wall)", "vs the singles (CPU)"], rows) +
            source(d, "batch_overhead", get(d, "command")))


def batch_scale(d: dict) -> str:
    at = get(d, "rss_mib_at_progress", default={})
    rows = [[f"{get(d, 'prompts'):,}", num(get(d, "seconds"), 0, suffix=" s"), num(get(d, "prompts_per_s"), 1),
             num(get(d, "resume_seconds"), 0, suffix=" s"), " / ".join(num(v, 0) for v in at.values()),
             num(get(d, "rss_mib_peak"), 0), f"{get(d, 'unique_ids'):,} of {get(d, 'records'):,}"]]
    return (table(["prompts", "planned in", "prompts / s", "resume (nothing to do)",
                   "RSS MiB at 10 / 50 / 90 %", "peak RSS MiB", "unique records"], rows) +
            source(d, "batch_scale", get(d, "command")))


def batch_distributed(d: dict) -> str:
    runs = {"torchrun, clean": "clean", "accelerate launch": "accelerate_launch",
            "torchrun, rank 1 killed, then the rerun": "after_rerun"}
    rows = [[name, str(get(d, key, "records")), str(get(d, key, "duplicates")), str(get(d, key, "missing")),
             ", ".join(f"{k}: {v}" for k, v in get(d, key, "by_rank", default={}).items()),
             "yes" if get(d, key, "exactly_once") else "no"] for name, key in runs.items()]
    return (f"2 CPU processes (gloo), {get(d, 'prompts')} prompts, {get(d, 'steps')} steps.\n\n" +
            table(["run", "records", "duplicates", "missing", "by rank", "every prompt once"], rows) +
            source(d, "batch_distributed", get(d, "command")))


TABLES: dict[str, Callable[[dict], str]] = {
    "quickstart": quickstart, "planner": planner, "planner_cold_idle": planner_cold_idle, "geometry": geometry,
    "chat": chat, "openai_overhead": openai_overhead, "renderer": renderer, "shapes": shapes,
    "shapes_plain": lambda d: shapes(d, "shapes_plain"), "shapes_passes": shapes_passes,
    "renderer_sweep": renderer_sweep, "shapes_mmdit": lambda d: shapes(d, "shapes_mmdit", colour=True),
    "layout_blocks_mmdit": layout_blocks_mmdit,
    "layout_blocks_mmdit_latent": lambda d: layout_blocks_mmdit(d, "layout_blocks_mmdit_latent"),
    "teacher_span": teacher_span, "shape_words": shape_words, "shape_settling": shape_settling,
    "mmdit_align_runs": mmdit_align_runs,
    "mmdit_latent_tuning": mmdit_latent_tuning,
    "demo_mmdit_latent": lambda d: demo(d, "demo_mmdit_latent"),
    "demo_mmdit_latent_seeds": lambda d: demo(d, "demo_mmdit_latent_seeds"),
    "demo_tiny_seeds": lambda d: demo(d, "demo_tiny_seeds"),
    "shapes_mmdit_latent": lambda d: shapes(d, "shapes_mmdit_latent", colour=True),
    "batch_overhead": batch_overhead, "batch_scale": batch_scale, "batch_distributed": batch_distributed,
    "memory_estimate": memory_estimate,
}
COMBINED: dict[str, tuple[tuple[str, ...], Callable[[dict[str, dict]], str]]] = {
    "shapes_models": (tuple(SHAPES_MODELS), shapes_models),  # a table drawn from several results files
}


# --------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------


def render_table(name: str, results: Path = RESULTS) -> str:
    if name in COMBINED:
        names, make = COMBINED[name]
        files = {n: json.loads((results / f"{n}.json").read_text()) for n in names if (results / f"{n}.json").is_file()}
        return make(files) if files else f"(no {', '.join(f'`benchmarks/results/{n}.json`' for n in names)} yet)\n"
    path = results / f"{name}.json"
    if name not in TABLES:
        raise SystemExit(f"docs/benchmarks.md has a marker for {name!r}, but benchmarks.report has no table for it")
    if not path.is_file():
        return f"(no `benchmarks/results/{name}.json` yet)\n"
    return TABLES[name](json.loads(path.read_text()))


def render_doc(text: str, results: Path = RESULTS) -> str:
    """``text`` with every marked table regenerated from ``results``."""
    return MARKER.sub(lambda m: m.group(1) + "\n" + render_table(m.group("name"), results) + "\n" + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a page is not up to date")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    stale = []
    for page in PAGES:
        old = page.read_text()
        new = render_doc(old, args.results)
        if new != old:
            stale.append(page)
            if not args.check:
                page.write_text(new)
        names = [m.group("name") for m in MARKER.finditer(new)]
        print(f"{page.relative_to(ROOT)}: {len(names)} table(s): {', '.join(names)}")
    if args.check and stale:
        print(f"out of date: {', '.join(str(p.relative_to(ROOT)) for p in stale)}; run python3 -m benchmarks.report",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
