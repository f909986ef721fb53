"""Score planner backends on layout benchmarks (no images): NSR-1K spatial and
counting (val), LMD-400, GenEval's metadata (553 prompts: objects, counts,
colours, positions) and the free-form sets written for this project
(``benchmarks/freeform.py``: prompts as people type them, and two held-out sets),
with warm and cold timings.

    python3 -m benchmarks.planner --planner rules --planner local [--limit N] [--no-model-only] \
        [--sets spatial,counting,lmd,geneval,freeform,freeform_heldout,freeform_heldout2] [--out benchmarks/results/planner.json]

``local`` is also scored as ``local (model only)``: the model's own graph for each prompt (one
generation per prompt; ``--no-model-only`` skips it, ``--opt crosscheck=false --limit N`` runs
it alone on N prompts per set).

Each prompt goes through ``plan_and_render.planner.plan.make_plan`` - backend, normalisation,
checks and the geometry stage - so the boxes scored are the ones the renderer
would get. A prompt that raises counts as a failure, not a crash. Results for
each backend are merged into the JSON file, so backends can be run separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path


from benchmarks.bench_data import (
    aggregate_counting,
    load_geneval,
    load_lmd,
    load_nsr_counting,
    load_nsr_spatial,
    score_geneval,
    score_lmd,
    score_nsr_counting,
    score_nsr_spatial,
    score_nsr_spatial_graph,
)
from benchmarks.freeform import load_freeform, score_freeform, summarise
from plan_and_render.errors import PlanAndRenderError
from plan_and_render.scene import ScenePlan

SETS = ("spatial", "counting", "lmd", "geneval", "freeform", "freeform_heldout", "freeform_heldout2")
REPORTED = {  # layout-level figures the benchmark README quotes (GPT-4 with LayoutGPT / LMD)
    "spatial": "GPT-4 91.6",
    "counting": "GPT-4 acc 78.1",
    "lmd": "GPT-4 100",
}
LOADERS = {"spatial": lambda: load_nsr_spatial("val"), "counting": lambda: load_nsr_counting("val"),
           "lmd": load_lmd, "geneval": load_geneval, "freeform": lambda: load_freeform("freeform"),
           "freeform_heldout": lambda: load_freeform("freeform_heldout"),
           "freeform_heldout2": lambda: load_freeform("freeform_heldout2")}


def spread(records: list, limit: int | None) -> list:
    """``limit`` records evenly spread over the set (the files are sorted by kind)."""
    if not limit or limit >= len(records):
        return records
    step = len(records) / limit
    return [records[int(i * step)] for i in range(limit)]


def geometry_available() -> bool:
    try:
        from plan_and_render.geometry import solve  # noqa: F401
    except ImportError:
        return False
    return True


def plan_without_geometry(prompt: str, backend, seed: int = 0) -> ScenePlan:
    """make_plan's steps minus geometry: every box is the whole canvas. Used only
    while the geometry stage is missing, so counts and names can still be scored."""
    from plan_and_render.planner.expand import expand
    from plan_and_render.planner.graph import check_graph
    from plan_and_render.planner.normalize import normalize_graph
    from plan_and_render.planner.plan import validate_prompt

    prompt = validate_prompt(prompt)
    graph, warnings = normalize_graph(backend.graph(prompt), prompt)
    check_graph(graph)
    objects, relations = expand(graph)
    return ScenePlan(prompt=prompt, objects=objects, relations=relations, negative_prompt=", ".join(graph.excluded) or None,
                     background=graph.background, warnings=warnings)


class Runner:
    """Plans each distinct prompt once per backend and keeps timings and errors."""

    def __init__(self, spec: str, options: dict, seed: int, geometry: bool = True, backend=None):
        from plan_and_render.planner.backends import get_planner
        from plan_and_render.planner.plan import make_plan

        self.spec, self.seed, self.geometry = spec, seed, geometry
        self._make_plan = make_plan if geometry else (lambda p, planner, seed: plan_without_geometry(p, planner, seed))
        self.cache: dict[str, ScenePlan | PlanAndRenderError | Exception] = {}
        self.times: list[float] = []
        self.errors: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}
        t0 = time.perf_counter()
        self.backend = backend if backend is not None else get_planner(spec, **options)
        self.construct_s = time.perf_counter() - t0
        self.cold_start_s: float | None = None

    def plan(self, prompt: str) -> ScenePlan | None:
        if prompt not in self.cache:
            t0 = time.perf_counter()
            try:
                result: ScenePlan | Exception = self._make_plan(prompt, planner=self.backend, seed=self.seed)
            except PlanAndRenderError as e:
                result = e
            except Exception as e:  # a bug, but one prompt must not stop the benchmark
                result = e
            dt = time.perf_counter() - t0
            if self.cold_start_s is None:
                self.cold_start_s = self.construct_s + dt
            else:
                self.times.append(dt)
            if isinstance(result, Exception):
                kind = result.type if isinstance(result, PlanAndRenderError) else f"crash:{type(result).__name__}"
                self.errors[kind] += 1
                self.error_examples.setdefault(kind, f"{prompt!r}: {result}"[:300])
            self.cache[prompt] = result
        result = self.cache[prompt]
        return result if isinstance(result, ScenePlan) else None


def run_spatial(r: Runner, records: list[dict], geometry: bool = True) -> dict:
    """Sector rule on the boxes (needs geometry) and, always, the planner-only
    check that the plan states a relation implying the benchmark's."""
    passed, stated, by_rel = 0, 0, Counter()
    totals = Counter(rec["relation"] for rec in records)
    for rec in records:
        plan = r.plan(rec["prompt"])
        ok = plan is not None and geometry and score_nsr_spatial(plan, rec)
        stated += plan is not None and score_nsr_spatial_graph(plan, rec)
        passed += ok
        by_rel[rec["relation"]] += ok
    out = {
        "accuracy": 100.0 * passed / len(records) if geometry else None,
        "relation_stated": 100.0 * stated / len(records),
        "n": len(records),
    }
    if geometry:
        out["by_relation"] = {k: round(100.0 * by_rel[k] / n, 1) for k, n in sorted(totals.items())}
    return out


def run_counting(r: Runner, records: list[dict]) -> dict:
    scores = []
    for rec in records:
        plan = r.plan(rec["prompt"])
        scores.append(score_nsr_counting(plan.objects if plan is not None else [], rec))
    return {k: (round(v, 2) if k != "n" else int(v)) for k, v in aggregate_counting(scores).items()}


def run_lmd(r: Runner, records: list[dict]) -> dict:
    passed, by_type, totals = 0, Counter(), Counter(rec["type"] for rec in records)
    for rec in records:
        plan = r.plan(rec["prompt"])
        ok = plan is not None and score_lmd(plan, rec)
        passed += ok
        by_type[rec["type"]] += ok
    return {
        "accuracy": 100.0 * passed / len(records),
        "n": len(records),
        "by_type": {k: round(100.0 * by_type[k] / n, 1) for k, n in sorted(totals.items())},
    }


def run_geneval(r: Runner, records: list[dict]) -> dict:
    """GenEval's checks on the plans' boxes: share of prompts fully right, per tag, and per part
    (objects, counts, colours, positions) over the prompts that ask for it."""
    scores = []
    for rec in records:
        plan = r.plan(rec["prompt"])
        scores.append(score_geneval(plan.objects if plan is not None else [], rec))
    tags = sorted({s.tag for s in scores})

    def share(values: list[bool]) -> float | None:
        return round(100.0 * sum(values) / len(values), 1) if values else None

    return {
        "accuracy": 100.0 * sum(s.correct for s in scores) / len(scores) if scores else 0.0,
        "n": len(scores),
        "by_tag": {t: share([s.correct for s in scores if s.tag == t]) for t in tags},
        "parts": {part: share([getattr(s, part) for s in scores if getattr(s, part) is not None])
                  for part in ("objects", "counts", "colours", "position")},
    }


def run_freeform(r: Runner, records: list[dict]) -> dict:
    """Share of prompts fully right (objects, counts, colours, regions and depths, relations),
    per part and per tag, with the failing prompts' problems."""
    return summarise([score_freeform(r.plan(rec["prompt"]), rec) for rec in records])


AMBIGUOUS = "a vase on a table, a cat next to it"  # two readings of "it": local's model weighs them

_COLD = """
import json, sys
from plan_and_render.planner.backends import get_planner
from plan_and_render.planner.plan import make_plan
make_plan(sys.argv[3], planner=get_planner(sys.argv[1], **json.loads(sys.argv[2])))
"""


def cold_start_runs(spec: str, options: dict, runs: int, prompt: str = "a cat to the left of a dog") -> list[float]:
    """Wall-clock seconds from starting a fresh Python to its first plan, ``runs`` times.

    Unlike ``cold_start_s`` (measured inside this process, after other backends
    ran), this is what a user waits for ``plan-and-render plan`` with caches
    built. A failing run is left out (the in-process run reports the error)."""
    import subprocess

    out = []
    for _ in range(max(0, runs)):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _COLD, spec, json.dumps(options), prompt],
                              capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode == 0:
            out.append(time.perf_counter() - t0)
    return out


def compare_with_rules(runner: Runner, sets: list[str], limit: int | None, seed: int) -> dict:
    """Per set, on how many prompts the backend's plan passes where the rules
    parser's fails ("helped") and the reverse ("hurt") - what a cross-checked
    planner adds to the parser it checks against."""
    rules = Runner("rules", {}, seed, runner.geometry)
    out: dict = {}
    for name in sets:
        helped = hurt = changed = 0
        for rec in spread(LOADERS[name](), limit):
            a, b = runner.plan(rec["prompt"]), rules.plan(rec["prompt"])
            ok_a, ok_b = _passes(name, a, rec, runner.geometry), _passes(name, b, rec, runner.geometry)
            helped += ok_a and not ok_b
            hurt += ok_b and not ok_a
            changed += (a.model_dump(exclude={"warnings"}) if a else None) != \
                (b.model_dump(exclude={"warnings"}) if b else None)
        out[name] = {"plans_differ": changed, "helped": helped, "hurt": hurt}
    return out


def _passes(name: str, plan: ScenePlan | None, rec: dict, geometry: bool) -> bool:
    if name == "geneval":
        return plan is not None and score_geneval(plan, rec).correct
    if name.startswith("freeform"):
        return score_freeform(plan, rec).correct
    if name == "counting":
        return bool(score_nsr_counting(plan.objects if plan is not None else [], rec).correct)
    if name == "spatial":
        return plan is not None and (score_nsr_spatial(plan, rec) if geometry else score_nsr_spatial_graph(plan, rec))
    return plan is not None and (geometry or rec["type"] != "spatial") and bool(score_lmd(plan, rec))


def benchmark(spec: str, sets: list[str], limit: int | None, seed: int, options: dict, runner=None) -> dict:
    geometry = geometry_available()
    runner = runner or Runner(spec, options, seed, geometry)
    out: dict = {"geometry": geometry}
    if not geometry:
        print("warning: plan_and_render.geometry.solve is missing: boxes are placeholders; box-level spatial scores "
              "are skipped (the relation_stated check still runs)",
              file=sys.stderr)
    if "spatial" in sets:
        out["nsr_spatial"] = run_spatial(runner, spread(load_nsr_spatial("val"), limit), geometry)
    if "counting" in sets:
        out["nsr_counting"] = run_counting(runner, spread(load_nsr_counting("val"), limit))
    if "lmd" in sets:
        records = spread(load_lmd(), limit)
        out["lmd"] = run_lmd(runner, records if geometry else [r for r in records if r["type"] != "spatial"])
    if "geneval" in sets:
        out["geneval"] = run_geneval(runner, spread(load_geneval(), limit))
    for name in ("freeform", "freeform_heldout", "freeform_heldout2"):
        if name in sets:
            out[name] = run_freeform(runner, spread(LOADERS[name](), limit))
    out["prompts_planned"] = len(runner.cache)
    out["median_s_per_prompt"] = statistics.median(runner.times) if runner.times else None
    out["mean_s_per_prompt"] = statistics.fmean(runner.times) if runner.times else None
    out["cold_start_s"] = runner.cold_start_s
    out["construct_s"] = runner.construct_s
    out["errors"] = dict(runner.errors)
    out["error_examples"] = runner.error_examples
    return out


def counting_observer(counts: Counter):
    """An ``on_prompt`` observer for the ``local`` planner: counts its per-prompt reports into ``counts``
    (prompts planned, model failures, prompts where the cross-check took something from the model)."""

    def observe(report) -> None:
        counts.update(prompts=1, model_failed=int(report.model_failed), model_used=int(report.model_added > 0))

    return observe


def _parse_options(pairs: list[str]) -> dict:
    opts: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for cast in (int, float):
            try:
                opts[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            opts[key] = {"true": True, "false": False}.get(value.lower(), value)
    return opts


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Planner benchmarks (layout level, %)")
    for col in ("backend", "spatial (stated)", "count P/R/acc", "LMD", "GenEval", "free-form", "held-out", "held-out 2",
                "s/prompt",
                "cold s*", "errors"):
        table.add_column(col, justify="right" if col != "backend" else "left")
    for spec, res in results.items():
        sp, ct, lmd, ge = res.get("nsr_spatial"), res.get("nsr_counting"), res.get("lmd"), res.get("geneval")
        table.add_row(
            spec,
            (f"{sp['accuracy']:.1f}" if sp["accuracy"] is not None else "-") + f" ({sp['relation_stated']:.1f})"
            if sp else "-",
            f"{ct['precision']:.1f}/{ct['recall']:.1f}/{ct['accuracy']:.1f}" if ct else "-",
            f"{lmd['accuracy']:.1f}" if lmd else "-",
            f"{ge['accuracy']:.1f}" if ge else "-",
            *(f"{res[k]['accuracy']:.1f}" if res.get(k) else "-" for k in ("freeform", "freeform_heldout", "freeform_heldout2")),
            f"{res['median_s_per_prompt']:.4f}" if res.get("median_s_per_prompt") is not None else "-",
            (f"{res['cold_start_process_s']:.2f}" if res.get("cold_start_process_s") is not None else
             f"{res['cold_start_s']:.2f}" if res.get("cold_start_s") is not None else "-")
            + (f" / {res['cold_start_with_model_s']:.1f}" if res.get("cold_start_with_model_s") else ""),
            ", ".join(f"{k} {v}" for k, v in res.get("errors", {}).items()) or "0",
        )
    console = Console(width=max(Console().width, 110))
    console.print(table)
    console.print(f"reported references: {REPORTED}")
    console.print("* cold s: median of fresh processes (Python start -> first plan) when measured, else in-process; "
                  f"local: plain prompt / a prompt whose readings the model weighs ({AMBIGUOUS!r})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--planner", action="append", help="backend spec (repeatable): rules, local, openai:MODEL, ...")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {','.join(SETS)}")
    ap.add_argument("--limit", type=int, default=None, help="at most N records per set, evenly spread")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="planner constructor option")
    ap.add_argument("--out", default="benchmarks/results/planner.json")
    ap.add_argument("--cold-runs", type=int, default=3,
                    help="fresh processes that time Python start -> first plan (median reported; 0 = skip)")
    ap.add_argument("--no-model-only", action="store_true",
                    help="for local: skip scoring the model's own graphs (it generates one per prompt: slow on a CPU)")
    args = ap.parse_args(argv)
    specs = args.planner or ["rules"]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = set(sets) - set(SETS)
    if unknown:
        print(f"error: unknown set(s) {sorted(unknown)}; choose from {SETS}", file=sys.stderr)
        return 2
    options = _parse_options(args.opt)

    results: dict = {}
    cold = {spec: cold_start_runs(spec, options, args.cold_runs) for spec in specs}  # before anything is warm
    # ``local`` loads its model only for a prompt the parser reads several ways: time such a prompt too
    cold_model = {spec: cold_start_runs(spec, options, args.cold_runs, AMBIGUOUS) for spec in specs
                  if spec.partition(":")[0] == "local"}
    for spec in specs:
        counts: Counter = Counter(prompts=0, model_failed=0, model_used=0)
        observed = {"on_prompt": counting_observer(counts)} if spec.partition(":")[0] == "local" else {}
        try:
            runner = Runner(spec, {**options, **observed}, args.seed, geometry_available())
            results[spec] = benchmark(spec, sets, args.limit, args.seed, options, runner)
        except PlanAndRenderError as e:  # the backend itself could not be built
            print(f"error: {spec}: {e}", file=sys.stderr)
            results[spec] = {"error": e.record()["error"]}
            continue
        if cold[spec]:
            results[spec]["cold_start_process_s"] = statistics.median(cold[spec])
            results[spec]["cold_start_process_runs"] = [round(x, 2) for x in cold[spec]]
        if cold_model.get(spec):
            results[spec]["cold_start_with_model_s"] = statistics.median(cold_model[spec])
            results[spec]["cold_start_with_model_prompt"] = AMBIGUOUS
        if not hasattr(runner.backend, "model_only"):
            continue
        results[spec]["planner_stats"] = dict(counts)
        results[spec]["vs_rules"] = compare_with_rules(runner, sets, args.limit, args.seed)
        if not args.no_model_only and runner.backend.crosscheck:  # local: the model's own graphs too
            view = Runner(f"{spec} (model only)", {}, args.seed, geometry_available(), runner.backend.model_only())
            res = benchmark(view.spec, sets, args.limit, args.seed, {}, view)
            # the view's timings are its own generations (``local`` only scores readings); its start is local's
            res["cold_start_s"] = res["construct_s"] = None
            results[view.spec] = res
    if options.get("crosscheck") is False:  # local answering with the model's own graphs: name it so
        results = {(f"{k} (model only)" if k.partition(":")[0] == "local" else k): v for k, v in results.items()}
    print_table({k: v for k, v in results.items() if "error" not in v})

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(out.read_text()) if out.exists() else {}
    data.setdefault("backends", {})
    command = "python3 -m benchmarks.planner " + " ".join(argv if argv is not None else sys.argv[1:])
    for spec, res in results.items():
        res["limit"], res["seed"], res["command"] = args.limit, args.seed, command
        res["measured_on"] = f"{platform.node()} {platform.machine()} {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        res["threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
        data["backends"][spec] = res
    out.write_text(json.dumps(data, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
