"""How much of a shapes scene survives the learned autoencoder: the ceiling of any model drawing through it.

    python3 -m benchmarks.shapes_vae --vae models/shapes-mmdit/vae --scenes 200

Held-out scenes (seeds the autoencoder never trained on) go through encode (the posterior's mean) and
decode; the exact shapes detector (``plan_and_render.scoring.shapes``, the one every benchmark scores
with) then looks for each object's colour and shape in the original 64x64 render and in the
reconstruction. A diffusion model in this latent cannot score above what the reconstructions score.
Prints a table and writes benchmarks/results/shapes_vae.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def found_share(images, objects) -> float:
    """Share of the scenes' objects ("red circle") the detector finds in ``images`` (N, H, W, 3) uint8."""
    from plan_and_render.scoring.shapes import detect, find

    hits = total = 0
    for image, phrases in zip(images, objects):
        dets = detect(image)
        for ph in phrases:
            colour, shape = ph.split()
            hits += find(dets, shape, colour) is not None
            total += 1
    return hits / max(1, total)


def main(argv: list[str] | None = None) -> dict:
    import torch

    from tools.shapes.train import generate
    from tools.shapes.train_mmdit import load_vae
    from tools.shapes.train_vae import to_pixels

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="models/shapes-mmdit/vae", help="an AutoencoderKL folder (tools.shapes.train_vae)")
    ap.add_argument("--scenes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7, help="scene seeds seed * 10^7 .. (the autoencoder trained on 0 and 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS / "shapes_vae.json"))
    a = ap.parse_args(argv)
    if not (Path(a.vae) / "config.json").is_file():
        ap.error(f"--vae {a.vae!r} is not an AutoencoderKL folder (no config.json in it)")
    torch.set_num_threads(a.threads)
    images, _, objects, _ = generate(a.scenes, a.seed * 10**7, 32)
    vae = load_vae(a.vae)
    x = to_pixels(torch.from_numpy(images))
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(x[i:i + 50]).latent_dist.mean).sample for i in range(0, len(x), 50)])
    to_uint8 = lambda t: ((t.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()  # noqa: E731
    cfg = vae.config
    row = {"l1": round(float((rec - x).abs().mean()), 4), "found_original": round(found_share(to_uint8(x), objects), 4),
           "found_reconstructed": round(found_share(to_uint8(rec), objects), 4),
           "latent": f"{cfg.latent_channels} x {64 // 2 ** (len(cfg.block_out_channels) - 1)} x "
                     f"{64 // 2 ** (len(cfg.block_out_channels) - 1)}"}
    print(f"{'latent':>10} {'L1':>7} {'found, originals':>17} {'found, reconstructed':>21}")
    print(f"{row['latent']:>10} {row['l1']:>7.4f} {row['found_original']:>17.1%} {row['found_reconstructed']:>21.1%}")
    result = {"vae": a.vae, "scenes": a.scenes, "scene_seeds": f"{a.seed * 10**7} .. {a.seed * 10**7 + a.scenes - 1}",
              "row": row, "command": " ".join(["python3 -m benchmarks.shapes_vae", *(argv if argv is not None else sys.argv[1:])]),
              "threads": a.threads, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "date": time.strftime("%Y-%m-%d")}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
