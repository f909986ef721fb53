"""Renderer cost per guidance method, relative to `none` in the same run.

    python3 -m benchmarks.renderer --suite tiny                      # CPU, tiny random model
    python3 -m benchmarks.renderer --suite sd15 sdxl --device cuda   # full-size random UNets (GPU)
    python3 -m benchmarks.renderer --suite sd35_medium flux1_dev --device cuda   # SD 3.5 Medium / FLUX.1-dev, bf16
    python3 -m benchmarks.renderer --suite flux1_dev --device cuda --offload model   # what a 24 GB card needs
    python3 -m benchmarks.renderer --suite sd15 --size 128 --steps 10 --methods none refocus rca
                                                                     # SD 1.5-sized UNet on the CPU, small
    python3 -m benchmarks.renderer --suite tiny --scheduler euler    # another sampler (default: the model's)

Full-size suites build SD 1.5 / SDXL / SD 3.5 Medium / FLUX.1-dev components
with random weights from the published configs in benchmarks/configs/*.json
(timing and memory do not depend on weight values): UNets in fp16, the
transformers (with their CLIP and T5-XXL encoders) in bf16, at 1024 px and
28 steps unless told otherwise. The gradient methods' early-stop tests are disabled
(``--worst-case``, default on) so every scheduled iteration runs: random weights
would otherwise stop or continue arbitrarily, and the figure is an upper bound.
Peak memory is torch's peak allocated (GPU); on the CPU it is the process's
peak RSS, which only grows, so CPU memory ratios are not meaningful.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent

from plan_and_render.scene import ScenePlan
from plan_and_render.renderer import attention, pipeline_from_components
from plan_and_render.renderer.settings import MEMORY
from tools.tiny import build_clip_tokenizer, build_t5_tokenizer, sd_scheduler, tiny_sd_components

METHODS = ["none", "refocus", "zest", "excite", "rca", "backward", "refocus+rca"]
PLAN = dict(prompt="a red ball to the left of a blue box on a wooden table",
            objects=[dict(id="ball-1", name="ball", phrase="a red ball", box=(0.05, 0.3, 0.45, 0.75)),
                     dict(id="box-1", name="box", phrase="a blue box", box=(0.55, 0.2, 0.95, 0.75)),
                     dict(id="table-1", name="table", phrase="a wooden table", box=(0.0, 0.65, 1.0, 1.0))])


CONFIGS = ROOT / "configs"
TRANSFORMER_SUITES = ("sd35_medium", "flux1_dev")  # configs with a "family": bf16, 28 steps


def full_components(name: str, device: str, dtype: torch.dtype, configs: Path = CONFIGS) -> dict:
    """Random-weight components of published size, built directly on the device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = json.loads((configs / f"{name}.json").read_text())
    if "family" in cfg:
        return transformer_components(cfg, device, dtype)
    cast = torch.nn.Module.to  # diffusers' own ``to`` warns about fp32-only modules these models do not have
    with torch.device(device):
        comps = {
            "unet": cast(UNet2DConditionModel(**cfg["unet"]), dtype).eval(),
            "vae": AutoencoderKL(**cfg["vae"]).eval(),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])).to(dtype).eval(),
        }
        if "text_encoder_2" in cfg:
            comps["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"])).to(dtype).eval()
            comps["tokenizer_2"] = build_clip_tokenizer()
    comps["tokenizer"] = build_clip_tokenizer()
    comps["scheduler"] = sd_scheduler()
    return comps


def transformer_components(cfg: dict, device: str, dtype: torch.dtype) -> dict:
    """An SD 3 / 3.5 or FLUX.1 pipeline's parts from one config file (``"family"``: "sd3" or "flux"), built
    on ``device`` in ``dtype`` (the VAE in fp32, as the pipelines keep it); the tokenizers are the tiny
    ones (the prompt's few words: their ids lie within the real vocabularies, so cost is the real one)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    sd3 = cfg["family"] == "sd3"
    cast = torch.nn.Module.to
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)  # weights are made in the target dtype: no fp32 copy of 12 B parameters
        with torch.device(device):
            comps = {"transformer": (SD3Transformer2DModel if sd3 else FluxTransformer2DModel)(**cfg["transformer"]),
                     "text_encoder": (CLIPTextModelWithProjection if sd3 else CLIPTextModel)(
                         CLIPTextConfig(**cfg["text_encoder"]))}
            if sd3:
                comps["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"]))
            comps["text_encoder_3" if sd3 else "text_encoder_2"] = T5EncoderModel(
                T5Config(**cfg["text_encoder_3" if sd3 else "text_encoder_2"]))
    finally:
        torch.set_default_dtype(default)
    with torch.device(device):
        comps["vae"] = cast(AutoencoderKL(**cfg["vae"]), torch.float32)
    for m in comps.values():
        m.eval().requires_grad_(False)
    t5 = build_t5_tokenizer(model_max_length=cfg["t5_max_length"])
    comps.update(tokenizer=build_clip_tokenizer(), scheduler=FlowMatchEulerDiscreteScheduler(**cfg["scheduler"]))
    if sd3:
        comps.update(tokenizer_2=build_clip_tokenizer(), tokenizer_3=t5)
    else:
        comps["tokenizer_2"] = t5
    return comps


def shrink(cfg: dict) -> dict:
    """A transformer suite's config at toy sizes with the same structure (dual attention, QK norm, guidance
    embedding, 16 latent channels): what the tests run on the CPU through the code a GPU run takes."""
    small = json.loads(json.dumps(cfg))
    small["transformer"].update(num_layers=2, attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32)
    if cfg["family"] == "sd3":
        small["transformer"].update(sample_size=32, caption_projection_dim=16, pooled_projection_dim=32,
                                    pos_embed_max_size=32, dual_attention_layers=[0])
    else:
        small["transformer"].update(num_single_layers=1, pooled_projection_dim=16, axes_dims_rope=[2, 2, 4])
    clip = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
    for key in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if key in small and "d_model" in small[key]:
            small[key].update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1)
        elif key in small:
            small[key].update(clip)
    small["vae"].update(block_out_channels=[8, 8], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1, norm_num_groups=4, sample_size=64)
    small["t5_max_length"] = 32
    return small


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


def suite_dtype(suite: str, device: str) -> torch.dtype:
    """fp32 on the CPU; on a GPU bf16 for the transformers (as SD 3.5 and FLUX ship), fp16 for the UNets."""
    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if suite in TRANSFORMER_SUITES else torch.float16


def run_suite(suite: str, device: str, steps: int, methods: list[str], size: int | None = None,
              early_stop: bool = False, scheduler: str | None = None, offload: str | None = None,
              configs: Path = CONFIGS, memory: str | None = None) -> dict:
    dtype = suite_dtype(suite, device)
    if suite == "tiny":
        pipe, size = pipeline_from_components(tiny_sd_components(), device=device, dtype=dtype), size or 64
    else:
        built_on = "cpu" if offload else device  # offloaded weights live on the CPU between uses
        pipe = pipeline_from_components(full_components(suite, built_on, dtype, configs), device=device, dtype=dtype,
                                        offload=offload)
        size = size or (512 if suite == "sd15" else 1024)
    plan = ScenePlan(canvas={"width": size, "height": size}, **PLAN)
    pipe(plan, method="refocus", steps=2, progress=False, early_stop=early_stop,
         scheduler=scheduler)  # warm-up (kernels, allocator)
    rows = {}
    for m in methods:
        peak_reset(device)
        loop_peak = {}

        def cb(i, t, lat):
            if i == steps - 1:
                loop_peak["gib"] = peak_gib(device)

        t0, c0 = time.perf_counter(), time.process_time()
        r = pipe(plan, method=m, steps=steps, progress=False, callback=cb, early_stop=early_stop, scheduler=scheduler,
                 memory=memory)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows[m] = {"wall_s": wall, "cpu_s": cpu, "loop_s": r.timings["loop_s"], "peak_gib": peak_gib(device),
                   "loop_peak_gib": loop_peak.get("gib", float("nan")), "scores": r.scores, "losses": r.losses}
    base = rows["none"]
    # on a (shared) CPU the process's CPU time is the steadier measure; on a GPU, wall time
    clock = "wall_s" if device.startswith("cuda") else "cpu_s"
    for r in rows.values():
        r["time_x"] = r[clock] / base[clock]
        r["peak_x"] = r["peak_gib"] / base["peak_gib"]
        r["loop_peak_x"] = r["loop_peak_gib"] / base["loop_peak_gib"]
    dev_name = torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({torch.get_num_threads()} threads)"
    return {"suite": suite, "device": dev_name, "dtype": str(dtype), "size": size, "steps": steps, "clock": clock,
            "scheduler": scheduler or "the model's own", "offload": offload or "none", "memory": memory or "speed",
            "worst_case": not early_stop, "measured_by": "this code (renderer after the cleanup session)",
            "methods": rows}


def count_ops(suite: str, steps: int, methods: list[str], size: int | None = None, early_stop: bool = False) -> dict:
    """Aten operators and host reads of tensor values per render, on the CPU.

    A device-independent proxy for the launch overhead a GPU pays: every operator is a kernel
    launch there, and every host read (``.item()``, ``float()``, ``int()``, ``.tolist()``) of a
    tensor on the GPU waits for its queue to drain (reads of the scheduler's CPU-side tables are
    counted too, so the figure is an upper bound).
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops = self.syncs = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            self.syncs += func.overloadpacket.__name__ == "_local_scalar_dense"
            return func(*args, **(kwargs or {}))

        def __enter__(self):
            real, me = torch.Tensor.tolist, self
            self._real = real

            def tolist(t):  # not an aten operator, so count it here (one read however long)
                me.syncs += 1
                return real(t)

            torch.Tensor.tolist = tolist
            return super().__enter__()

        def __exit__(self, *exc):
            torch.Tensor.tolist = self._real
            return super().__exit__(*exc)

    if suite == "tiny":
        pipe, size = pipeline_from_components(tiny_sd_components(), device="cpu"), size or 64
    else:
        pipe, size = pipeline_from_components(full_components(suite, "cpu", torch.float32), device="cpu"), size or 128
    plan = ScenePlan(canvas={"width": size, "height": size}, **PLAN)
    rows = {}
    for m in methods:
        c = Count()
        with c:
            pipe(plan, method=m, steps=steps, progress=False, early_stop=early_stop)
        rows[m] = {"ops": c.ops, "syncs": c.syncs}
    for r in rows.values():
        r["extra_ops"], r["extra_syncs"] = r["ops"] - rows["none"]["ops"], r["syncs"] - rows["none"]["syncs"]
    print(f"\n{suite} {size}px {steps} steps: aten operators and host reads of tensor values per render")
    print(f"{'method':<13}{'ops':>9}{'extra':>9}{'reads':>8}{'extra':>8}")
    for m, r in rows.items():
        print(f"{m:<13}{r['ops']:>9}{r['extra_ops']:>9}{r['syncs']:>8}{r['extra_syncs']:>8}")
    return {"suite": suite, "size": size, "steps": steps, "worst_case": not early_stop, "methods": rows}


def table(res: dict) -> str:
    clock = res.get("clock", "wall_s")
    lines = [f"\n{res['suite']} on {res['device']} ({res['dtype']}, {res['size']}px, {res['steps']} steps, "
             f"{res.get('scheduler')}, offload {res.get('offload', 'none')}; x none from {clock})",
             f"{'method':<13}{'wall s':>9}{'cpu s':>9}{'x none':>8}{'peak GiB':>10}{'x none':>8}{'loop peak':>11}{'x none':>8}"]
    for m, r in res["methods"].items():
        lines.append(f"{m:<13}{r['wall_s']:>9.2f}{r.get('cpu_s', float('nan')):>9.2f}{r['time_x']:>8.2f}"
                     f"{r['peak_gib']:>10.2f}{r['peak_x']:>8.2f}{r['loop_peak_gib']:>11.2f}{r['loop_peak_x']:>8.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", nargs="+", default=["tiny"], choices=["tiny", "sd15", "sdxl", *TRANSFORMER_SUITES])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=None, help="default: 20 for tiny, 28 for SD 3.5 / FLUX, 50 otherwise")
    ap.add_argument("--offload", choices=["model", "sequential"], default=None,
                    help="keep weights on the CPU between uses (SD 3.5 / FLUX): what a 24 GB card needs")
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--size", type=int, default=None, help="image side (default 64 tiny, 512 sd15, 1024 sdxl)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the tiny model gains nothing "
                    "from more, and a shared machine loses a lot)")
    ap.add_argument("--no-worst-case", action="store_true", help="keep the methods' early-stop tests")
    ap.add_argument("--count-ops", action="store_true", help="count operators and host reads instead of timing")
    ap.add_argument("--memory", choices=MEMORY, default=None,
                    help="the render setting (low: SD 3 / FLUX recompute the blocks without layout in the backward)")
    ap.add_argument("--keep-maps", action="store_true", help="keep every captured layer's attention maps for the "
                    "backward pass instead of recomputing them (the renderer before recomputation; for comparison)")
    ap.add_argument("--scheduler", default=None, help="sampler: ddim, pndm, euler, euler_a, dpmpp_2m, "
                    "dpmpp_2m_karras, unipc (default: the model's own)")
    ap.add_argument("--out", default=str(ROOT / "results" / "renderer.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    attention.RECOMPUTE = not args.keep_maps
    methods = ["none"] + [m for m in args.methods if m != "none"]
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    for s in args.suite:
        steps = args.steps or (20 if s == "tiny" else 28 if s in TRANSFORMER_SUITES else 50)
        if args.count_ops:
            results[f"{s}-ops"] = count_ops(s, steps, methods, args.size, early_stop=args.no_worst_case)
            out.write_text(json.dumps(results, indent=2))
            continue
        res = run_suite(s, args.device, steps, methods, args.size, early_stop=args.no_worst_case,
                        scheduler=args.scheduler, offload=args.offload, memory=args.memory)
        print(table(res), flush=True)
        key = f"{s}-{'gpu' if args.device.startswith('cuda') else 'cpu'}" + (f"-{args.size}" if args.size else "") \
            + (f"-{args.scheduler}" if args.scheduler else "") + (f"-offload-{args.offload}" if args.offload else "") \
            + ("-keep-maps" if args.keep_maps else "") + (f"-memory-{args.memory}" if args.memory else "")
        results[key] = res
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
