"""Renderer cost per guidance method, relative to `none` in the same run.

    python3 benchmarks/renderer.py --suite tiny                      # CPU, tiny random model
    python3 benchmarks/renderer.py --suite sd15 sdxl --device cuda   # full-size random UNets (GPU)

Full-size suites build SD 1.5 / SDXL components with random weights from the
published configs in benchmarks/configs/*.json (timing and memory do not depend
on weight values). The gradient methods' early-stop tests are disabled
(``--worst-case``, default on) so every scheduled iteration runs: random weights
would otherwise stop or continue arbitrarily, and the figure is an upper bound.
Peak memory is torch's peak allocated (GPU) or peak RSS growth (CPU, coarse).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from planner.scene import ScenePlan  # noqa: E402
from renderer import guidance, pipeline_from_components  # noqa: E402
from renderer.tiny import build_clip_tokenizer, sd_scheduler, tiny_sd_components  # noqa: E402

METHODS = ["none", "refocus", "zest", "excite", "rca", "backward", "refocus+rca"]
PLAN = dict(prompt="a red ball to the left of a blue box on a wooden table",
            objects=[dict(id="ball-1", name="ball", phrase="a red ball", box=(0.05, 0.3, 0.45, 0.75)),
                     dict(id="box-1", name="box", phrase="a blue box", box=(0.55, 0.2, 0.95, 0.75)),
                     dict(id="table-1", name="table", phrase="a wooden table", box=(0.0, 0.65, 1.0, 1.0))])


def full_components(name: str, device: str, dtype: torch.dtype) -> dict:
    """Random-weight components of published size, built directly on the device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = json.loads((ROOT / "configs" / f"{name}.json").read_text())
    with torch.device(device):
        comps = {
            "unet": UNet2DConditionModel(**cfg["unet"]).to(dtype).eval(),
            "vae": AutoencoderKL(**cfg["vae"]).eval(),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])).to(dtype).eval(),
        }
        if "text_encoder_2" in cfg:
            comps["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"])).to(dtype).eval()
            comps["tokenizer_2"] = build_clip_tokenizer()
    comps["tokenizer"] = build_clip_tokenizer()
    comps["scheduler"] = sd_scheduler()
    return comps


def peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_suite(suite: str, device: str, steps: int, methods: list[str]) -> dict:
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    if suite == "tiny":
        pipe, size = pipeline_from_components(tiny_sd_components(), device=device, dtype=dtype), 64
    else:
        pipe = pipeline_from_components(full_components(suite, device, dtype), device=device, dtype=dtype)
        size = 512 if suite == "sd15" else 1024
    plan = ScenePlan(canvas={"width": size, "height": size}, **PLAN)
    pipe(plan, method="refocus", steps=2, progress=False)  # warm-up (kernels, allocator)
    rows = {}
    for m in methods:
        peak_reset(device)
        loop_peak = {}

        def cb(i, t, lat):
            if i == steps - 1:
                loop_peak["gib"] = peak_gib(device)

        t0 = time.perf_counter()
        r = pipe(plan, method=m, steps=steps, progress=False, callback=cb)
        wall = time.perf_counter() - t0
        rows[m] = {"wall_s": wall, "loop_s": r.timings["loop_s"], "peak_gib": peak_gib(device),
                   "loop_peak_gib": loop_peak.get("gib", float("nan")), "scores": r.scores}
    base = rows["none"]
    for r in rows.values():
        r["time_x"] = r["wall_s"] / base["wall_s"]
        r["peak_x"] = r["peak_gib"] / base["peak_gib"]
        r["loop_peak_x"] = r["loop_peak_gib"] / base["loop_peak_gib"]
    dev_name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    return {"suite": suite, "device": dev_name, "dtype": str(dtype), "size": size, "steps": steps,
            "worst_case": guidance.StepPlan.keep_going is _always, "methods": rows}


def _always(self, loss, stats, it):  # every scheduled iteration runs
    return True


def table(res: dict) -> str:
    lines = [f"\n{res['suite']} on {res['device']} ({res['dtype']}, {res['size']}px, {res['steps']} steps)",
             f"{'method':<13}{'wall s':>9}{'x none':>8}{'peak GiB':>10}{'x none':>8}{'loop peak':>11}{'x none':>8}"]
    for m, r in res["methods"].items():
        lines.append(f"{m:<13}{r['wall_s']:>9.2f}{r['time_x']:>8.2f}{r['peak_gib']:>10.2f}{r['peak_x']:>8.2f}"
                     f"{r['loop_peak_gib']:>11.2f}{r['loop_peak_x']:>8.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", nargs="+", default=["tiny"], choices=["tiny", "sd15", "sdxl"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="default: 20 for tiny, 50 otherwise")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--no-worst-case", action="store_true", help="keep the methods' early-stop tests")
    ap.add_argument("--out", default=str(ROOT / "results" / "renderer.json"))
    args = ap.parse_args()
    if not args.no_worst_case:
        guidance.StepPlan.keep_going = _always
    methods = ["none"] + [m for m in args.methods if m != "none"]
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for s in args.suite:
        steps = args.steps or (20 if s == "tiny" else 50)
        res = run_suite(s, args.device, steps, methods)
        print(table(res), flush=True)
        results[f"{s}-{'gpu' if args.device.startswith('cuda') else 'cpu'}"] = res
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
