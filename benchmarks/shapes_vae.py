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
from pathlib import Path

from benchmarks.protocol import provenance, write_result

RESULTS = Path(__file__).resolve().parent / "results"


def found(images, objects) -> list[tuple[str, bool]]:
    """(shape, found?) for each of the scenes' objects ("red circle") in ``images`` (N, H, W, 3) uint8: each
    image detected once, whatever shares are read from it."""
    from plan_and_render.scoring.shapes import detect, find

    out = []
    for image, phrases in zip(images, objects):
        dets = detect(image)
        for colour, shape in (ph.split() for ph in phrases):
            out.append((shape, find(dets, shape, colour) is not None))
    return out


def share(hits: list[tuple[str, bool]], shape: str | None = None) -> float:
    """The share of ``hits`` found (only ``shape``'s when given)."""
    picked = [hit for s, hit in hits if shape is None or s == shape]
    return sum(picked) / max(1, len(picked))


def found_share(images, objects, shape: str | None = None) -> float:
    """Share of the scenes' objects (only ``shape``'s when given) the detector finds in ``images``."""
    return share(found(images, objects), shape)


def main(argv: list[str] | None = None) -> dict:
    import torch

    from plan_and_render.scoring.shapes import SHAPES
    from tools.shapes.train import generate
    from tools.shapes.train_mmdit import latent_shape, load_vae
    from tools.shapes.train_vae import reconstruct, to_pixels, to_uint8

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
    scenes = torch.from_numpy(images)
    x, rec = to_pixels(scenes), reconstruct(vae, scenes, batch=50)
    channels, side = latent_shape(vae)
    hits = found(to_uint8(rec), objects)
    row = {"l1": round(float((rec - x).abs().mean()), 4), "found_original": round(found_share(to_uint8(x), objects), 4),
           "found_reconstructed": round(share(hits), 4), "latent": f"{channels} x {side} x {side}",
           "found_reconstructed_by_shape": {sh: round(share(hits, sh), 4) for sh in SHAPES}}
    print(f"{'latent':>10} {'L1':>7} {'found, originals':>17} {'found, reconstructed':>21}  "
          + " ".join(f"{sh:>8}" for sh in SHAPES))
    print(f"{row['latent']:>10} {row['l1']:>7.4f} {row['found_original']:>17.1%} {row['found_reconstructed']:>21.1%}  "
          + " ".join(f"{v:>8.1%}" for v in row["found_reconstructed_by_shape"].values()))
    result = {"vae": a.vae, "scenes": a.scenes, "scene_seeds": f"{a.seed * 10**7} .. {a.seed * 10**7 + a.scenes - 1}",
              "row": row, **provenance("benchmarks.shapes_vae", argv, a.threads)}
    write_result(result, a.out)
    return result


if __name__ == "__main__":
    main()
