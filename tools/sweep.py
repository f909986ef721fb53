"""Choose the step of the single Attend-and-Excite refinement (Grimal et al.) on a validation set.

The step-selection paper finds one refinement of L_CN + L_IoU at a well-chosen
step as good as several, and picks the step with a small validation sweep over
steps 0, 2, ..., 24 (of 50). ``refine_step_sweep`` runs that sweep: every plan is
rendered with ``excite`` refined at each candidate step (same seeds), plus a
``none`` baseline, and each candidate gets the mean of what the renders report:
``cn_iou`` (L_CN + L_IoU over the score window, lower is better), the mean
attention-in-box score, and whatever an optional ``score_fn(image, plan)``
returns (e.g. the shapes detector's presence). CLI: ``benchmarks/renderer_sweep.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence

DEFAULT_STEPS = tuple(range(0, 25, 2))


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if x == x]  # drop NaN
    return sum(xs) / len(xs) if xs else math.nan


def _summarise(results: list) -> dict:
    rows = {"cn_iou": _mean([r.losses.get("cn_iou", math.nan) for r, _ in results]),
            "in_box": _mean([_mean(list(r.scores.values())) for r, _ in results]),
            "seconds": _mean([r.timings["total_s"] for r, _ in results])}
    extra = [e for _, e in results if e]
    for k in (extra[0] if extra else {}):
        rows[k] = _mean([float(e[k]) for e in extra])
    return rows


def refine_step_sweep(pipe, plans: Iterable, candidates: Iterable[int] = DEFAULT_STEPS, per_step: bool = False,
                      steps: int = 50, seed: int = 0, options: dict | None = None,
                      score_fn: Callable | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Render ``plans`` with ``excite`` refined at each candidate step (50-step units).

    options: extra ExciteConfig fields (e.g. {"refine_iters": 20}). Plan k uses seed ``seed + k``.
    Returns {"baseline": row, "candidates": {step: row}, "best": step with the lowest cn_iou, ...};
    a row holds the means described in the module docstring.
    """
    plans = list(plans)

    def run(method: str, opts: dict | None) -> list:
        out = []
        for k, plan in enumerate(plans):
            r = pipe(plan, method=method, seed=seed + k, steps=steps, progress=False, method_options=opts)
            out.append((r, score_fn(r.images[0], plan) if score_fn else None))
        return out

    t0 = time.perf_counter()
    baseline = _summarise(run("none", None))
    log(f"none: {baseline}")
    rows: dict[int, dict] = {}
    for c in candidates:
        opts = {"excite": {**(options or {}), "refine_step": int(c), "per_step": per_step}}
        rows[int(c)] = _summarise(run("excite", opts))
        log(f"refine at {c}: {rows[int(c)]}")
    best = min(rows, key=lambda c: rows[c]["cn_iou"]) if rows else None
    return {"baseline": baseline, "candidates": rows, "best": best, "per_step": per_step, "steps": steps,
            "plans": len(plans), "seconds": time.perf_counter() - t0}
