"""Peak GPU memory of each guidance method, estimated without a GPU (fake tensors).

    python3 -m benchmarks.memory --suite sd35_medium flux1_dev     # bf16, 1024 px, 28 steps
    python3 -m benchmarks.memory --suite sd15 sdxl --keep-maps     # fp16; beside the GPU-measured peaks
    python3 -m benchmarks.memory --suite sd35_medium --methods refocus --keep-maps   # without recomputed maps
    python3 -m benchmarks.memory --suite flux1_dev --methods none refocus --memory low  # blocks recomputed too

The real pipeline renders on FakeTensors (``torch._subclasses``): tensors with a shape, a dtype and
a device but no data, so every operator of a render - the text encoders, each sampling step with its
guidance iterations and backward passes, the VAE decode - runs as it would, and a 12 B-parameter
FLUX.1-dev renders 1024 px in about three minutes a method on one CPU thread. A dispatch mode
(``LiveBytes``) adds up the bytes of every tensor storage alive after each operator, which is what
torch's allocator holds; its peak plus the weights is the estimate of ``torch.cuda.max_memory_allocated``
that benchmarks/renderer.py measures on a GPU. Values being absent, every read of one (a loss for an
early-stop test, a score) reads zero, so the estimate is of the worst case (no early stops), as the GPU
benchmark's default.

Left out: kernels' own workspaces (cuBLAS, attention), the allocator's rounding and cached blocks,
and the CUDA context. The sd15 / sdxl runs with ``--keep-maps`` (the renderer as the GPU run had it)
print the peaks that run measured, which include all of these, to show how close the estimate comes.

With ``model`` offload only the part that runs is on the GPU (``renderer/offload.py``): the text
encoders, then the transformer, then the VAE; the estimate for it is the largest of the three
phases' weights plus what is alive during that phase.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorConverter, FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from plan_and_render.renderer import attention, pipeline_from_components
from plan_and_render.renderer.settings import MEMORY
from plan_and_render.scene import ScenePlan

from .renderer import CONFIGS, METHODS, PLAN, ROOT, TRANSFORMER_SUITES, full_components, suite_dtype

GIB = 2**30
SUITES = ("sd15", "sdxl", *TRANSFORMER_SUITES)


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created under it and still alive: now, at most, and at most within
    each phase (``phase``: set by the pipeline's ``placed`` blocks). Host reads of fake values give 0.
    ``known`` tensors (the weights) are counted apart: views of them (a transposed weight) add nothing."""

    def __init__(self, known=()) -> None:
        super().__init__()
        self.now = self.peak = 0
        self.phase, self.phase_peak = "setup", {}
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        for t in known:
            self._seen[t.untyped_storage()] = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and isinstance(args[0], FakeTensor):
            return zero_of(args[0].dtype)
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._count(t.untyped_storage())
        self.peak = max(self.peak, self.now)
        self.phase_peak[self.phase] = max(self.phase_peak.get(self.phase, 0), self.now)
        return out

    def _count(self, storage) -> None:
        if storage not in self._seen:
            n = self._seen[storage] = storage.nbytes()
            self.now += n
            weakref.finalize(storage, self._free, n)

    def _free(self, n: int) -> None:
        self.now -= n

    @contextlib.contextmanager
    def entered(self, phase: str):
        """``phase`` for the block's duration; what it holds when it starts counts toward its peak."""
        before, self.phase = self.phase, phase
        self.phase_peak[phase] = max(self.phase_peak.get(phase, 0), self.now)
        try:
            yield
        finally:
            self.phase = before


def zero_of(dtype: torch.dtype):
    return False if dtype == torch.bool else 0.0 if dtype.is_floating_point else 0


@contextlib.contextmanager
def host_reads_as_zeros():
    """``tolist()`` and ``numpy()`` of a fake tensor: zeros of its shape (they are not operators)."""
    tolist, to_numpy = torch.Tensor.tolist, torch.Tensor.numpy

    def fake_tolist(t):
        return np.zeros(tuple(t.shape)).tolist() if isinstance(t, FakeTensor) else tolist(t)

    def fake_numpy(t, *a, **k):
        if isinstance(t, FakeTensor):
            return np.zeros(tuple(t.shape), dtype=torch.empty(0, dtype=t.dtype).numpy().dtype)
        return to_numpy(t, *a, **k)

    torch.Tensor.tolist, torch.Tensor.numpy = fake_tolist, fake_numpy
    try:
        yield
    finally:
        torch.Tensor.tolist, torch.Tensor.numpy = tolist, to_numpy


def fake_pipeline(suite: str, configs: Path = CONFIGS):
    """The suite's pipeline built on the meta device (published sizes, nothing allocated), then every
    weight made a fake CPU tensor, so the pipeline runs. Returns (pipeline, weight bytes per part)."""
    dtype = suite_dtype(suite, "cuda")  # what a GPU run renders in
    pipe = pipeline_from_components(full_components(suite, "meta", dtype, configs), device="meta", dtype=dtype)
    mode, convert, made = FakeTensorMode(allow_non_fake_inputs=True), FakeTensorConverter(), {}

    def fake(t: torch.Tensor, param: bool) -> torch.Tensor:  # one fake per tensor: tied weights stay tied
        if id(t) not in made:
            f = convert.from_meta_and_device(mode, t, torch.device("cpu"))
            made[id(t)] = torch.nn.Parameter(f, requires_grad=False) if param else f
        return made[id(t)]

    weights = {}
    for name, module in pipe.modules().items():
        for m in module.modules():
            for table, param in ((m._parameters, True), (m._buffers, False)):
                for k, t in table.items():
                    if t is not None:
                        table[k] = fake(t, param)
        weights[name] = weight_bytes(module)
    return pipe, weights


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers (a tied weight once)."""
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


PHASE_PARTS = {"encode": ("text_encoder", "text_encoder_2", "text_encoder_3"), "loop": ("transformer", "unet"),
               "decode": ("vae",)}


def phase_of(names) -> str:
    return next(p for p, parts in PHASE_PARTS.items() if set(names) & set(parts))


def estimate(pipe, weights: dict, method: str, size: int, steps: int, **settings) -> dict:
    """One worst-case render of ``method`` at ``size`` px (and render ``settings``): GiB of weights, of the
    peak (weights + the most alive at once), of the peak with model offload, and of what is alive at most
    per phase."""
    plan = ScenePlan(canvas={"width": size, "height": size}, **PLAN)
    live = LiveBytes(t for m in pipe.modules().values() for t in [*m.parameters(), *m.buffers()])
    if hasattr(pipe, "placed"):
        pipe.placed = lambda *names: live.entered(phase_of(names))
    loop_peak = {}

    def at_step(i, t, z):  # the GPU benchmark's loop peak: all that was alive at once up to the last step
        if i == steps - 1:
            loop_peak["bytes"] = live.peak

    with host_reads_as_zeros(), live:
        pipe(plan, method=method, steps=steps, progress=False, early_stop=False, callback=at_step, **settings)
    total = sum(weights.values())
    phases = {p: n for p, n in live.phase_peak.items() if p != "setup"}
    row = {"weights_gib": total / GIB, "peak_gib": (total + live.peak) / GIB,
           "loop_peak_gib": (total + loop_peak["bytes"]) / GIB,
           "alive_gib": {p: n / GIB for p, n in phases.items()}}
    if hasattr(pipe, "placed"):
        row["model_offload_peak_gib"] = max(sum(weights.get(k, 0) for k in PHASE_PARTS[p]) + n
                                            for p, n in phases.items()) / GIB
    return row


def run_suite(suite: str, methods: list[str], size: int | None = None, steps: int | None = None,
              configs: Path = CONFIGS, **settings) -> dict:
    size = size or (512 if suite == "sd15" else 1024)
    steps = steps or (28 if suite in TRANSFORMER_SUITES else 50)
    pipe, weights = fake_pipeline(suite, configs)
    rows = {m: estimate(pipe, weights, m, size, steps, **settings) for m in methods}
    for r in rows.values():
        r["peak_x"], r["loop_peak_x"] = (r[k] / rows["none"][k] for k in ("peak_gib", "loop_peak_gib"))
    return {"suite": suite, "dtype": str(suite_dtype(suite, "cuda")), "size": size, "steps": steps,
            "worst_case": True, "recomputed_maps": attention.RECOMPUTE, **settings,
            "weights_gib": {k: v / GIB for k, v in weights.items()}, "methods": rows}


def measured_peaks(suite: str, path: Path = ROOT / "results" / "renderer_gpu.json") -> dict:
    """The GPU-measured (peak, loop peak) of each method for ``suite``, where a GPU run recorded them."""
    runs = json.loads(path.read_text()) if path.exists() else {}
    return {m: (r["peak_gib"], r["loop_peak_gib"]) for m, r in runs.get(f"{suite}-gpu", {}).get("methods", {}).items()}


def table(res: dict) -> str:
    """The run as text; the GPU-measured peaks beside it when the maps were kept, as in the GPU run."""
    gpu = {} if res.get("recomputed_maps", True) else measured_peaks(res["suite"])
    lines = [f"\n{res['suite']} ({res['dtype']}, {res['size']} px, {res['steps']} steps, worst case): "
             f"weights {sum(res['weights_gib'].values()):.2f} GiB",
             f"{'method':<13}{'peak GiB':>10}{'x none':>8}{'loop peak':>11}{'x none':>8}{'offload':>9}"
             f"{'GPU: peak':>11}{'loop peak':>11}"]
    for m, r in res["methods"].items():
        off = r.get("model_offload_peak_gib")
        measured = "".join(f"{x:>11.2f}" for x in gpu.get(m, ()))
        lines.append(f"{m:<13}{r['peak_gib']:>10.2f}{r['peak_x']:>8.2f}{r['loop_peak_gib']:>11.2f}"
                     f"{r['loop_peak_x']:>8.2f}{'' if off is None else f'{off:.2f}':>9}{measured}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", nargs="+", default=list(TRANSFORMER_SUITES), choices=SUITES)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--size", type=int, default=None, help="image side (default 512 for sd15, else 1024)")
    ap.add_argument("--steps", type=int, default=None, help="default 28 for SD 3.5 / FLUX, 50 for the UNets")
    ap.add_argument("--keep-maps", action="store_true", help="keep every captured layer's maps for the backward "
                    "pass instead of recomputing them (the renderer before recomputation; for comparison)")
    ap.add_argument("--memory", choices=MEMORY, default=None,
                    help="the render setting (low: SD 3 / FLUX recompute the blocks without layout in the backward)")
    ap.add_argument("--out", default=str(ROOT / "results" / "memory_estimate.json"))
    args = ap.parse_args(argv)
    attention.RECOMPUTE = not args.keep_maps
    methods = ["none"] + [m for m in args.methods if m != "none"]
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    given = list(argv if argv is not None else sys.argv[1:])
    shown = [a for i, a in enumerate(given) if a != "--out" and (i == 0 or given[i - 1] != "--out")]
    command = " ".join(["python3 -m benchmarks.memory", *shown])  # where it was written is not how to make it
    results["date"] = time.strftime("%Y-%m-%d")
    results["commands"] = [c for c in results.get("commands", []) if c != command] + [command]
    for suite in args.suite:
        key = suite + ("-keep-maps" if args.keep_maps else "") + (f"-memory-{args.memory}" if args.memory else "")
        settings = {"memory": args.memory} if args.memory else {}
        results[key] = run_suite(suite, methods, args.size, args.steps, **settings)
        print(table(results[key]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
