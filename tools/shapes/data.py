"""Synthetic "shapes world": 1-4 coloured shapes on a plain or lightly textured background.

Why a synthetic world: no Stable Diffusion weights can be downloaded here, so
the project trains its own tiny text-to-image model on scenes whose content
can be checked exactly. Captions name colours and shapes but never positions
("a red circle and a blue square", objects in random order), so the model can
only learn *what* to draw from text; *where* must come from layout guidance.

Every scene is a pure function of its seed (``make_scene(seed)``), and each
object comes with its ground-truth box (normalised, tight around the drawn
pixels) and mask. The palette and the shape masks are the runtime detector's
(``plan_and_render.scoring.shapes``), so drawing and detecting share one definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from plan_and_render.scoring.shapes import COLOURS, RING_INNER, SHAPES, STAR_INNER, shape_mask, tight_box

TEXTURES: tuple[str, ...] = ("plain", "noise", "gradient", "stripes")
POSITION_WORDS = frozenset(
    "left right above below under over on top bottom behind front inside between near next beside center "
    "centre middle corner upper lower".split()
)
# Data recipe defaults (recorded next to trained weights). Sides are shares of the canvas's height.
# ``repeat_share``: share of scenes in which one (colour, shape) pair is drawn 2..``max_repeat`` times (the
# caption then names it that many times, "a blue star, a red circle and a blue star", the way the renderer's
# ``encode: objects`` writes a count). 0 keeps the first model's recipe, seed for seed.
# ``repeat_row``: share of those scenes in which the copies stand side by side, one size, ``min_gap`` to
# twice that apart (a row, a quarter of the time a column) - how the geometry lays out "two blue stars".
# 0 keeps the repeat recipe's scenes seed for seed.
RECIPE = dict(min_objects=1, max_objects=4, min_side=0.22, max_side=0.5, max_aspect=1.35, min_gap=0.03,
              ring_inner=RING_INNER, star_inner=STAR_INNER, shapes=list(SHAPES), colours=dict(COLOURS), textures=list(TEXTURES),
              repeat_share=0.0, max_repeat=3, repeat_row=0.0)


@dataclass
class ShapeObject:
    shape: str
    colour: str
    box: tuple[float, float, float, float]  # normalised [x0, y0, x1, y1], tight around the drawn pixels

    @property
    def phrase(self) -> str:
        return phrase(self.colour, self.shape)


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    caption: str
    objects: list[ShapeObject]
    masks: np.ndarray  # (N, H, W) bool, one per object, in ``objects`` order
    background: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------
# backgrounds (the shapes themselves: plan_and_render.scoring.shapes.shape_mask)
# ---------------------------------------------------------------------------

def background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, dict]:
    """A low-saturation (grey-ish) background, plain or lightly textured; float (h, w, 3)."""
    dark = rng.random() < 0.25
    level = rng.uniform(25, 70) if dark else rng.uniform(170, 245)
    tint = rng.uniform(-10, 10, size=3)
    img = np.broadcast_to(level + tint, (h, w, 3)).astype(np.float64).copy()
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    if texture == "noise":
        img += rng.normal(0, 4, size=(h, w, 1))
    elif texture == "gradient":
        ang = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w] / max(h, w) - 0.5
        img += (12 * (np.cos(ang) * xs + np.sin(ang) * ys))[..., None]
    elif texture == "stripes":
        period = rng.uniform(6, 14) * max(h, w) / 64
        ang = rng.choice([0.0, math.pi / 2, math.pi / 4])
        ys, xs = np.mgrid[0:h, 0:w]
        img += (5 * np.sign(np.sin(2 * math.pi * (np.cos(ang) * xs + np.sin(ang) * ys) / period)))[..., None]
    return img, {"level": round(float(level), 2), "texture": str(texture), "dark": bool(dark)}


# ---------------------------------------------------------------------------
# layout + caption
# ---------------------------------------------------------------------------

def _overlaps(a, b, gap: float) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def sample_objects(rng: np.random.Generator, n: int | None = None, recipe: dict = RECIPE,
                   ratio: float = 1.0) -> list[tuple[str, str, tuple]]:
    """(shape, colour, box) triples with non-overlapping boxes on a canvas ``ratio`` (width / height) wide.

    Pairs are distinct, except in the ``repeat_share`` of scenes where one pair repeats (see RECIPE)."""
    n = int(rng.integers(recipe["min_objects"], recipe["max_objects"] + 1)) if n is None else n
    pairs = [(s, c) for s in recipe["shapes"] for c in recipe["colours"]]
    chosen = [pairs[i] for i in rng.choice(len(pairs), size=n, replace=False)]
    out: list[tuple[str, str, tuple]] = []
    if recipe.get("repeat_share", 0.0) > 0 and rng.random() < recipe["repeat_share"]:
        times = int(rng.integers(2, recipe["max_repeat"] + 1))
        chosen = [chosen[0]] * times + chosen[1:max(1, recipe["max_objects"] - times + 1)]
        if recipe.get("repeat_row", 0.0) > 0 and rng.random() < recipe["repeat_row"]:
            out = [(*chosen[0], box) for box in _row_boxes(rng, times, recipe, ratio)]
    for shape, colour in chosen[len(out):]:
        for attempt in range(200):
            shrink = 0.9 ** (attempt // 50)  # crowded scenes: try smaller shapes
            side = rng.uniform(recipe["min_side"], recipe["max_side"]) * shrink
            aspect = math.exp(rng.uniform(-1, 1) * math.log(recipe["max_aspect"]))
            bw, bh = min(side * math.sqrt(aspect) / ratio, 0.95), min(side / math.sqrt(aspect), 0.95)
            x0, y0 = rng.uniform(0.02, 0.98 - bw), rng.uniform(0.02, 0.98 - bh)
            box = (x0, y0, x0 + bw, y0 + bh)
            if not any(_overlaps(box, b, recipe["min_gap"]) for _, _, b in out):
                out.append((shape, colour, box))
                break
    return out


def _row_boxes(rng: np.random.Generator, times: int, recipe: dict, ratio: float) -> list[tuple]:
    """``times`` boxes of one size in a row (or, a quarter of the time, a column), ``min_gap`` to twice
    that apart, at a random place; listed in random order (caption order carries no position)."""
    side = rng.uniform(recipe["min_side"], recipe["max_side"])
    aspect = math.exp(rng.uniform(-1, 1) * math.log(recipe["max_aspect"]))
    bw, bh = side * math.sqrt(aspect) / ratio, side / math.sqrt(aspect)
    gap = rng.uniform(1, 2) * recipe["min_gap"]
    step_x, step_y = (0.0, bh + gap) if rng.random() < 0.25 else (bw + gap, 0.0)
    span_w, span_h = bw + (times - 1) * step_x, bh + (times - 1) * step_y
    fit = min(1.0, 0.95 / span_w, 0.95 / span_h)  # a row too long for the canvas: smaller shapes
    bw, bh, step_x, step_y, span_w, span_h = (v * fit for v in (bw, bh, step_x, step_y, span_w, span_h))
    x0, y0 = rng.uniform(0.02, 0.98 - span_w), rng.uniform(0.02, 0.98 - span_h)
    boxes = [(x0 + k * step_x, y0 + k * step_y, x0 + k * step_x + bw, y0 + k * step_y + bh) for k in range(times)]
    return [boxes[i] for i in rng.permutation(times)]


def phrase(colour: str, shape: str) -> str:
    """'a red circle', 'an orange star' (the same article rule as the planner's phrases)."""
    return f"{'an' if colour[:1] in 'aeiou' else 'a'} {colour} {shape}"


def caption(objects: list[tuple[str, str]] | list[ShapeObject]) -> str:
    """'a red circle', 'a red circle and a blue square', 'a red circle, a blue square and a green star'."""
    phrases = [o.phrase if isinstance(o, ShapeObject) else phrase(o[1], o[0]) for o in objects]
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def draw(objects: list[tuple[str, str, tuple]], size: int, rng: np.random.Generator,
         recipe: dict = RECIPE, width: int | None = None) -> Scene:
    """Rasterise (shape, colour, normalised box) triples over a sampled background, ``size`` high and
    ``width`` (default ``size``) wide."""
    h, w = size, width or size
    img, bg = background(rng, h, w)
    masks, objs = [], []
    for shape, colour, box in objects:
        px = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
        m = shape_mask(shape, px, h, w, recipe["ring_inner"], recipe["star_inner"])
        if not m.any():
            continue
        img[m] = recipe["colours"][colour]
        masks.append(m)
        objs.append(ShapeObject(shape, colour, tight_box(m)))
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    order = rng.permutation(len(objs))  # caption order carries no position information
    cap = caption([objs[i] for i in order])
    stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    return Scene(image, cap, objs, stack, bg)


def make_scene(seed: int, size: int = 64, n_objects: int | None = None, recipe: dict = RECIPE,
               width: int | None = None) -> Scene:
    """The scene for ``seed``: same seed, same image, caption, boxes and masks (``width``: a wide canvas)."""
    rng = np.random.default_rng(seed)  # layout draws come first, so the layout does not depend on size
    return draw(sample_objects(rng, n_objects, recipe, (width or size) / size), size, rng, recipe, width)


def vocabulary(recipe: dict = RECIPE) -> list[str]:
    """Words the tokenizer keeps whole: caption words plus the relation words benchmark prompts use."""
    extra = "a an and the of to left right above below next near between".split()
    return [*extra, *recipe["shapes"], *recipe["colours"]]
