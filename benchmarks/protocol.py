"""Image-level benchmark protocols in one command: a named prompt set from ``shared/bench`` goes through
``batch --score`` and each image is scored by the benchmark's own rules with the detector you give.

    python3 -m benchmarks.protocol --set shapes --model models/shapes-tiny --detector shapes --limit 20 --steps 20
    python3 -m benchmarks.protocol --set lmd --model stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --planner local --detector owlvit:google/owlvit-base-patch32           # LMD's protocol (GPU, weights)
    torchrun --nproc_per_node 8 -m benchmarks.protocol --set geneval-position ...   # split over 8 GPUs

Sets and their rules (docs/batch.md, "Benchmark protocols"):

* ``lmd`` - LMD's 400 prompts (``lmd/lmd_prompts_400.jsonl``), one image each, seed = record index.
  Queries "a photo of a <noun>" (attribution: "a photo of a <colour> <noun>"), score > 0.15, class-aware
  NMS 0.15 (OWL-ViT in the paper). Negation: nothing found; numeracy: exactly ``count`` boxes;
  attribution: both coloured objects found; spatial: the best boxes' centres in the stated order.
  Reported image accuracy: SD 1.5 36.8 %, LMD+ (GPT-4) 86.3 %.
* ``geneval-position`` / ``geneval-counting`` - GenEval's metadata (``geneval/evaluation_metadata.jsonl``),
  four images per prompt. Boxes above 0.3 (counting 0.9), at most 16 per class, no NMS; each ``include``
  needs ``count`` boxes, ``position`` holds for every pair when the centre offset beyond 0.1 x the summed
  box sizes points the stated way; an ``exclude`` fails at ``count`` boxes. GenEval uses Mask2Former.
* ``t2i-spatial`` - T2I-CompBench's 2D spatial val prompts (``t2i-compbench/spatial_val.txt``). The two
  nouns around the relation phrase, their best boxes; score = 0.25 x each found box's score + half the
  position score (1 when the centres point the stated way with IoU < 0.1, 0.1/IoU when they overlap;
  "next to" / "near" within 150/512 of the image), 0 below 0.5. T2I-CompBench uses UniDet.
* ``shapes`` - ShapesBench prompts for the offline demo model; the batch's own plan scores.

The published numbers need the published models and detectors (weights from a hub, a GPU); here every
set runs with any local detector folder, and ``shapes`` runs offline on the CPU. Results: a table, and
JSON in benchmarks/results/protocol_<set>.json (command, machine, threads, date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.bench_data import bench_dir, load_lmd
from benchmarks.planner import spread
from plan_and_render.scoring import Detection, box_iou

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _best(found: list[Detection], query: int) -> Detection | None:
    return next((d for d in found if d.query == query), None)  # detections come best first


# --------------------------------------------------------------------------
# LMD
# --------------------------------------------------------------------------


def lmd_queries(meta: dict) -> list[str]:
    if meta["type"] in ("negation", "numeracy"):
        return [_a(meta["object"])]
    if meta["type"] == "attribution":
        return [_a(f"{colour} {noun}") for colour, noun in meta["objects"]]
    return [_a(noun) for noun, _side in meta["objects"]]


def lmd_correct(meta: dict, found: list[Detection]) -> bool:
    """LMD's image rule for one record, given the detections of ``lmd_queries(meta)``."""
    kind = meta["type"]
    if kind in ("negation", "numeracy"):
        return sum(d.query == 0 for d in found) == int(meta["count"])
    if kind == "attribution":
        return all(any(d.query == q for d in found) for q in range(len(meta["objects"])))
    first, second = _best(found, 0), _best(found, 1)
    if first is None or second is None:
        return False
    side = meta["objects"][0][1]
    (x1, y1), (x2, y2) = _centre(first.box), _centre(second.box)
    return {"left": x1 < x2, "right": x1 > x2, "top": y1 < y2, "bottom": y1 > y2}[side]


def lmd_summary(rows: list[dict]) -> dict:
    out = {}
    for kind in ("negation", "numeracy", "attribution", "spatial"):
        got = [r["correct"] for r in rows if r["meta"]["type"] == kind]
        out[kind] = {"accuracy": 100 * float(np.mean(got)) if got else None, "n": len(got)}
    out["overall"] = {"accuracy": 100 * float(np.mean([r["correct"] for r in rows])) if rows else None, "n": len(rows)}
    return out


# --------------------------------------------------------------------------
# GenEval
# --------------------------------------------------------------------------

GENEVAL_MAX_OBJECTS = 16
GENEVAL_POSITION = 0.1


def geneval_relations(a, b) -> set[str]:
    """Where box ``a`` is relative to box ``b``: the centre offset shrunk by 0.1 x the summed box sizes
    on each axis, then a direction counts when it carries more than half of the (unshrunk) offset."""
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    size = np.array([a[2] - a[0] + b[2] - b[0], a[3] - a[1] + b[3] - b[1]])
    offset = np.array([ax - bx, ay - by])
    revised = np.maximum(np.abs(offset) - GENEVAL_POSITION * size, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    return {name for name, ok in (("left of", dx < -0.5), ("right of", dx > 0.5), ("above", dy < -0.5),
                                  ("below", dy > 0.5)) if ok}


def geneval_queries(meta: dict) -> list[str]:
    classes = [c["class"] for c in meta.get("include", []) + meta.get("exclude", [])]
    return [_a(c) for c in dict.fromkeys(classes)]


def geneval_correct(meta: dict, found: list[Detection]) -> bool:
    """GenEval's rule (colour attributes aside: the position and counting tags have none)."""
    classes = list(dict.fromkeys(c["class"] for c in meta.get("include", []) + meta.get("exclude", [])))
    boxes = {c: [d.box for d in found if d.query == i][:GENEVAL_MAX_OBJECTS] for i, c in enumerate(classes)}
    groups: list[list | None] = []
    ok = True
    for req in meta.get("include", []):
        mine = boxes[req["class"]][:req["count"]]
        matched = len(mine) >= req["count"]
        if matched and "position" in req:
            relation, target = req["position"]
            others = groups[target]
            matched = others is not None and all(relation in geneval_relations(a, b) for a in mine for b in others)
        groups.append(mine if matched else None)
        ok = ok and matched
    return ok and all(len(boxes[req["class"]]) < req["count"] for req in meta.get("exclude", []))


def geneval_summary(rows: list[dict]) -> dict:
    return {"accuracy": 100 * float(np.mean([r["correct"] for r in rows])) if rows else None, "images": len(rows),
            "prompts": len({r["id"] for r in rows})}


# --------------------------------------------------------------------------
# T2I-CompBench 2D spatial
# --------------------------------------------------------------------------

T2I_RELATIONS = ("on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of",
                 "on the top of", "on top of")
T2I_NEAR = 150 / 512  # the UniDet script's 150 pixels on 512-pixel images


def t2i_parse(prompt: str) -> dict:
    """The relation phrase and the nouns before and after it ("a giraffe next to a lamp")."""
    relation = next((r for r in T2I_RELATIONS if f" {r} " in f" {prompt} "), None)
    if relation is None:
        return {"relation": None, "objects": []}
    left, right = prompt.split(relation, 1)
    nouns = [re.findall(r"[a-z]+", side.lower())[-1:] for side in (left, right)]
    return {"relation": relation, "objects": [n[0] for n in nouns if n]}


def t2i_position(relation: str, a, b) -> float:
    """The UniDet script's position score of box ``a`` (first object) against ``b``."""
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    dx, dy = bx - ax, by - ay
    iou = box_iou(a, b)
    if relation in ("next to", "on side of", "near"):
        return 1.0 if abs(dx) < T2I_NEAR or abs(dy) < T2I_NEAR else T2I_NEAR / max(abs(dx), abs(dy))
    along, across, sign = {"on the left of": (dx, dy, 1), "on the right of": (dx, dy, -1),
                           "on the top of": (dy, dx, 1), "on the bottom of": (dy, dx, -1)}.get(relation, (0, 0, 0))
    if sign == 0 or sign * along <= 0 or abs(along) <= abs(across):
        return 0.0
    return 1.0 if iou < 0.1 else 0.1 / iou


def t2i_queries(meta: dict) -> list[str]:
    return [_a(n) for n in meta["objects"]]


def t2i_score(meta: dict, found: list[Detection]) -> float:
    if len(meta["objects"]) != 2:
        return 0.0
    first, second = _best(found, 0), _best(found, 1)
    if first and second:
        score = 0.25 * first.score + 0.25 * second.score + t2i_position(meta["relation"], first.box, second.box) / 2
    else:
        score = 0.25 * (first or second).score if (first or second) else 0.0
    return round(score, 4) if score >= 0.5 else 0.0


def t2i_summary(rows: list[dict]) -> dict:
    return {"score": float(np.mean([r["score"] for r in rows])) if rows else None, "images": len(rows)}


# --------------------------------------------------------------------------
# the sets
# --------------------------------------------------------------------------


@dataclass
class ProtocolSet:
    records: Callable[[], list[dict]]  # {"prompt", "meta"}
    queries: Callable[[dict], list[str]] | None  # None: the batch's own plan scores are the metric
    judge: Callable[[dict, list[Detection]], Any] | None
    summary: Callable[[list[dict]], dict] | None
    failed: dict | None = None  # what an image that was never made scores
    images: int = 1
    threshold: float | None = None
    nms: float | None = None
    reported: str = ""


def _lines(rel: str) -> list[str]:
    return [x.strip() for x in (bench_dir() / rel).read_text().splitlines() if x.strip()]


def _geneval(tag: str) -> list[dict]:
    rows = [json.loads(x) for x in _lines("geneval/evaluation_metadata.jsonl")]
    return [{"prompt": r["prompt"], "meta": r} for r in rows if r["tag"] == tag]


def _shapes(limit: int | None) -> list[dict]:
    from benchmarks.shapes import make_specs, spec_prompt

    return [{"prompt": spec_prompt(s), "meta": {}} for s in make_specs(limit or 100, seed=0)]


SETS: dict[str, ProtocolSet] = {
    "lmd": ProtocolSet(lambda: [{"prompt": r["prompt"], "meta": r} for r in load_lmd()], lmd_queries,
                       lambda m, f: {"correct": lmd_correct(m, f)}, lmd_summary, {"correct": False}, 1, 0.15, 0.15,
                       "SD 1.5 36.8 %, LMD+ (GPT-4) 86.3 % (OWL-ViT)"),
    "geneval-position": ProtocolSet(lambda: _geneval("position"), geneval_queries,
                                    lambda m, f: {"correct": geneval_correct(m, f)}, geneval_summary, {"correct": False}, 4, 0.3, 1.0,
                                    "GenEval position (Mask2Former)"),
    "geneval-counting": ProtocolSet(lambda: _geneval("counting"), geneval_queries,
                                    lambda m, f: {"correct": geneval_correct(m, f)}, geneval_summary, {"correct": False}, 4, 0.9, 1.0,
                                    "GenEval counting (Mask2Former)"),
    "t2i-spatial": ProtocolSet(lambda: [{"prompt": p, "meta": t2i_parse(p)} for p in _lines("t2i-compbench/spatial_val.txt")],
                               t2i_queries, lambda m, f: {"score": t2i_score(m, f)}, t2i_summary, {"score": 0.0}, 1, None, 0.15,
                               "T2I-CompBench 2D spatial (UniDet)"),
    "shapes": ProtocolSet(lambda: [], None, None, None, None, 1, None, None, "ShapesBench prompts, the batch's plan scores"),
}


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


def write_prompts(path: Path, rows: list[dict], images: int) -> Path:
    """The set as a batch's JSONL: one line per record, seed = its position, the record as ``meta``."""
    with open(path, "w", encoding="utf-8") as f:
        for k, r in enumerate(rows):
            f.write(json.dumps({"id": f"{k:04d}", "prompt": r["prompt"], "seed": k, "num_images": images,
                                "meta": r["meta"]}) + "\n")
    return path


def judge_batch(folder: Path, spec: ProtocolSet, detector) -> list[dict]:
    """Every image of a finished batch through the set's own rule (failed prompts count as wrong)."""
    from PIL import Image

    from plan_and_render.app.batch_index import BatchIndex

    rows = []
    for record in BatchIndex(folder).records():
        meta = record.get("meta") or {}
        paths = record.get("images") or [None] * (record.get("request") or {}).get("num_images", 1)
        for path in paths:
            if path is None:  # the prompt failed (plan or render): its images count as wrong
                rows.append({"id": record["id"], "meta": meta, "failed": True, **spec.failed})
                continue
            with Image.open(folder / path) as im:
                found = detector.detect(im.convert("RGB"), spec.queries(meta))
            rows.append({"id": record["id"], "meta": meta, **spec.judge(meta, found)})
    return rows


def write_result(result: dict, out: str | Path) -> None:
    """Write a benchmark's results JSON (its folder made if need be) and say where."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


def provenance(module: str, argv: list[str] | None, threads: int) -> dict:
    """How a CPU measurement was made: its command line (``argv``, else this process's), threads, machine, date."""
    args = argv if argv is not None else sys.argv[1:]
    return {"command": " ".join([f"python3 -m {module}", *args]), "threads": threads,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d")}


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "gpu": gpu, "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def main(argv: list[str] | None = None) -> dict | None:
    from plan_and_render.app.batch_render import run_batch
    from plan_and_render.renderer.settings import RenderSettings
    from plan_and_render.scoring import get_detector

    ap = argparse.ArgumentParser(description="Run a benchmark's image protocol: batch --score, then its own rules")
    ap.add_argument("--set", required=True, choices=sorted(SETS))
    ap.add_argument("--model", default=str(ROOT / "models" / "shapes-tiny"))
    ap.add_argument("--detector", default="shapes", help="shapes, owlvit:M, owlv2:M, grounding-dino:M")
    ap.add_argument("--planner", default="rules")
    ap.add_argument("--limit", type=int, help="records spread evenly over the set (default: all)")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--method", default=None)
    ap.add_argument("--num-images", type=int, help="images per prompt (default: the protocol's)")
    ap.add_argument("--threshold", type=float, help="detector score threshold (default: the protocol's)")
    ap.add_argument("--nms", type=float, help="class-aware NMS IoU (default: the protocol's)")
    ap.add_argument("--out", help="batch folder (default: outputs/protocol-<set>)")
    ap.add_argument("--results", help="JSON results (default: benchmarks/results/protocol_<set>.json)")
    a = ap.parse_args(argv)
    spec = SETS[a.set]
    rows = _shapes(a.limit) if a.set == "shapes" else spread(spec.records(), a.limit)
    out = Path(a.out or f"outputs/protocol-{a.set}")
    out.mkdir(parents=True, exist_ok=True)
    prompts = write_prompts(out / "prompts.jsonl", rows, a.num_images or spec.images)
    threshold = spec.threshold if a.threshold is None else a.threshold
    nms = spec.nms if a.nms is None else a.nms
    settings = RenderSettings(**{k: v for k, v in (("steps", a.steps), ("method", a.method)) if v is not None})

    t0 = time.perf_counter()
    report = run_batch(prompts, out, planner=a.planner, model=a.model, settings=settings, detector=a.detector,
                       threshold=threshold, nms=nms)
    if report.summary is None:  # not the main process: the main one judges and reports
        return None
    batch_s = time.perf_counter() - t0
    metrics = (spec.summary(judge_batch(out, spec, get_detector(a.detector, threshold=threshold, nms=nms)))
               if spec.queries else {})
    plan_scores = next(iter(report.summary.scores.values()), {})
    result = {"set": a.set, "metrics": metrics, "plan_scores": plan_scores, "reported": spec.reported,
              "config": {"model": a.model, "detector": a.detector, "planner": a.planner, "threshold": threshold,
                         "nms": nms, "images_per_prompt": a.num_images or spec.images, "steps": a.steps,
                         "method": a.method, "records": len(rows), "batch_folder": str(out),
                         "batch_s": round(batch_s, 1), "processes": report.processes,
                         "command": " ".join(["python3 -m benchmarks.protocol", *(argv if argv is not None else sys.argv[1:])]),
                         "machine": machine(), "date": time.strftime("%Y-%m-%d")}}
    print_table(result)
    path = Path(a.results) if a.results else RESULTS / f"protocol_{a.set}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return result


def print_table(result: dict) -> None:
    print(f"{result['set']}: {result['config']['records']} prompt(s), detector {result['config']['detector']}; "
          f"reported: {result['reported']}")
    for name, value in result["metrics"].items():
        print(f"  {name:14s} {json.dumps(value)}")
    ps = result["plan_scores"]
    if ps:
        keys = ("presence", "count_acc", "box_iou", "relation_acc", "region_acc", "all_ok")
        print("  plan scores    " + "  ".join(f"{k} {'-' if ps.get(k) is None else f'{ps[k]:.3f}'}" for k in keys))


if __name__ == "__main__":
    main()
