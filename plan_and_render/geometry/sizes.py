"""How big each box starts: a prior table of real-world sizes, log-compressed
to canvas fractions, then adjusted by size words and by crowding.

Photos frame things: a cup is not 1/100 of an elephant on the canvas. So a
typical real width and height (metres, as seen in a photo) goes through
``canvas_fraction``, which grows with the logarithm of the size. Names not in
the table fall back on an alias, the head word ("wooden spoon" -> "spoon"),
then on a medium default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError
from ..vocab import ALIASES, singular_word

# name -> (width, height) in metres, as the thing usually appears in a photo.
# The 80 MS-COCO classes first, then common non-COCO nouns.
REAL_SIZES: dict[str, tuple[float, float]] = {
    # --- MS-COCO
    "person": (0.5, 1.7), "bicycle": (1.7, 1.0), "car": (4.2, 1.5), "motorcycle": (2.0, 1.1),
    "airplane": (30.0, 9.0), "bus": (11.0, 3.2), "train": (40.0, 4.0), "truck": (7.0, 3.2),
    "boat": (5.0, 2.0), "traffic light": (0.35, 0.9), "fire hydrant": (0.4, 0.75), "stop sign": (0.75, 0.75),
    "parking meter": (0.3, 1.4), "bench": (1.6, 0.85), "bird": (0.25, 0.2), "cat": (0.5, 0.35),
    "dog": (0.8, 0.6), "horse": (2.2, 1.7), "sheep": (1.3, 0.9), "cow": (2.2, 1.5), "elephant": (5.0, 3.2),
    "bear": (2.0, 1.3), "zebra": (2.2, 1.4), "giraffe": (2.5, 5.0), "backpack": (0.35, 0.5),
    "umbrella": (1.0, 0.9), "handbag": (0.35, 0.3), "tie": (0.1, 0.5), "suitcase": (0.45, 0.65),
    "frisbee": (0.25, 0.05), "skis": (0.2, 1.7), "snowboard": (0.3, 1.5), "sports ball": (0.22, 0.22),
    "kite": (1.0, 1.0), "baseball bat": (0.07, 0.85), "baseball glove": (0.25, 0.28), "skateboard": (0.8, 0.15),
    "surfboard": (0.55, 2.0), "tennis racket": (0.28, 0.68), "bottle": (0.08, 0.28), "wine glass": (0.08, 0.2),
    "cup": (0.09, 0.1), "fork": (0.03, 0.19), "knife": (0.03, 0.22), "spoon": (0.04, 0.17),
    "bowl": (0.18, 0.08), "banana": (0.2, 0.06), "apple": (0.08, 0.08), "sandwich": (0.15, 0.08),
    "orange": (0.08, 0.08), "broccoli": (0.15, 0.15), "carrot": (0.2, 0.04), "hot dog": (0.2, 0.06),
    "pizza": (0.35, 0.06), "donut": (0.1, 0.04), "cake": (0.25, 0.15), "chair": (0.5, 0.9),
    "couch": (2.0, 0.85), "potted plant": (0.4, 0.6), "bed": (1.6, 0.7), "dining table": (1.6, 0.75),
    "toilet": (0.4, 0.75), "tv": (1.1, 0.65), "laptop": (0.35, 0.25), "mouse": (0.07, 0.04),
    "remote": (0.05, 0.18), "keyboard": (0.45, 0.04), "cell phone": (0.07, 0.15), "microwave": (0.5, 0.3),
    "oven": (0.6, 0.9), "toaster": (0.3, 0.2), "sink": (0.6, 0.25), "refrigerator": (0.75, 1.8),
    "book": (0.16, 0.24), "clock": (0.3, 0.3), "vase": (0.15, 0.3), "scissors": (0.08, 0.2),
    "teddy bear": (0.3, 0.4), "hair drier": (0.25, 0.25), "toothbrush": (0.02, 0.19),
    # --- common other things (the fallback by word)
    "table": (1.6, 0.75), "desk": (1.4, 0.75), "shelf": (1.0, 1.5), "lamp": (0.35, 0.6), "plate": (0.26, 0.03),
    "mug": (0.09, 0.1), "glass": (0.08, 0.13), "candle": (0.06, 0.2), "pen": (0.015, 0.14),
    "pencil": (0.01, 0.18), "box": (0.4, 0.3), "ball": (0.22, 0.22), "basket": (0.4, 0.3), "bag": (0.35, 0.35),
    "hat": (0.3, 0.15), "shoe": (0.28, 0.12), "guitar": (0.4, 1.0), "piano": (1.5, 1.2), "flower": (0.1, 0.3),
    "tree": (4.0, 6.0), "house": (10.0, 7.0), "building": (20.0, 30.0), "castle": (40.0, 30.0),
    "tower": (8.0, 30.0), "bridge": (60.0, 12.0), "mountain": (3000.0, 1500.0), "hill": (300.0, 80.0),
    "moon": (3.0, 3.0), "sun": (3.0, 3.0), "cloud": (6.0, 3.0), "star": (0.5, 0.5), "rainbow": (50.0, 25.0),
    "window": (1.0, 1.2), "door": (0.9, 2.0), "fence": (3.0, 1.2), "sign": (0.6, 0.6), "mirror": (0.6, 0.9),
    "painting": (0.8, 0.6), "picture": (0.5, 0.4), "poster": (0.6, 0.9), "rug": (2.0, 0.2), "carpet": (3.0, 0.2),
    "pillow": (0.5, 0.3), "blanket": (1.5, 0.3), "cabinet": (0.8, 1.0), "dresser": (1.2, 0.9),
    "wardrobe": (1.2, 2.0), "stool": (0.4, 0.6), "sofa": (2.0, 0.85), "armchair": (0.9, 0.9),
    "fish": (0.3, 0.12), "rabbit": (0.35, 0.3), "mouse animal": (0.1, 0.05), "lion": (2.0, 1.2),
    "tiger": (2.2, 1.1), "monkey": (0.6, 0.7), "duck": (0.4, 0.35), "chicken": (0.4, 0.4), "goat": (1.2, 0.9),
    "pig": (1.4, 0.9), "deer": (1.7, 1.4), "fox": (0.9, 0.5), "wolf": (1.3, 0.8), "owl": (0.35, 0.45),
    "penguin": (0.4, 0.7), "frog": (0.1, 0.07), "turtle": (0.4, 0.2), "snake": (1.2, 0.15),
    "butterfly": (0.08, 0.06), "bee": (0.02, 0.015), "ant": (0.01, 0.005), "spider": (0.05, 0.03),
    "squirrel": (0.3, 0.25), "panda": (1.5, 1.0), "dolphin": (2.5, 0.8), "whale": (20.0, 5.0),
    "shark": (4.0, 1.2), "octopus": (1.0, 0.6), "crab": (0.25, 0.12), "dinosaur": (12.0, 5.0),
    "dragon": (10.0, 6.0), "unicorn": (2.2, 1.8), "robot": (0.8, 1.6), "astronaut": (0.7, 1.8),
    "man": (0.5, 1.75), "woman": (0.45, 1.65), "boy": (0.4, 1.3), "girl": (0.4, 1.3), "child": (0.4, 1.2),
    "baby": (0.4, 0.5), "rocket": (5.0, 40.0), "helicopter": (12.0, 4.0), "ship": (100.0, 30.0),
    "balloon": (0.3, 0.4), "hot air balloon": (15.0, 20.0), "bowl of fruit": (0.25, 0.15), "lemon": (0.07, 0.06),
    "pear": (0.08, 0.1), "strawberry": (0.03, 0.04), "tomato": (0.08, 0.07), "egg": (0.045, 0.06),
    "bread": (0.3, 0.12), "cookie": (0.08, 0.02), "pie": (0.25, 0.06), "teapot": (0.25, 0.2),
    "kettle": (0.25, 0.25), "pot": (0.3, 0.2), "pan": (0.45, 0.06), "jar": (0.1, 0.15), "can": (0.07, 0.12),
    "phone": (0.07, 0.15), "computer": (0.5, 0.45), "monitor": (0.6, 0.4), "camera": (0.13, 0.09),
    "television": (1.1, 0.65), "radio": (0.3, 0.18), "speaker": (0.25, 0.4), "headphones": (0.18, 0.2),
    "watch": (0.04, 0.05), "ring": (0.02, 0.02), "necklace": (0.15, 0.2), "glasses": (0.14, 0.05),
    "crown": (0.2, 0.15), "sword": (0.1, 1.0), "shield": (0.6, 0.8), "key": (0.06, 0.025),
    "coin": (0.025, 0.025), "wallet": (0.11, 0.09), "toy": (0.25, 0.2), "doll": (0.15, 0.35),
    "cactus": (0.5, 1.5), "palm tree": (4.0, 9.0), "christmas tree": (1.5, 2.2), "bush": (1.5, 1.0),
    "rock": (0.8, 0.5), "stone": (0.3, 0.2), "log": (2.0, 0.4), "leaf": (0.08, 0.1), "mushroom": (0.08, 0.08),
    "tent": (3.0, 1.6), "bucket": (0.3, 0.3), "barrel": (0.6, 0.9), "ladder": (0.5, 2.5), "umbrella stand": (0.3, 0.6),
    "bicycle helmet": (0.25, 0.2), "helmet": (0.25, 0.2), "scarf": (0.2, 0.6), "jacket": (0.6, 0.7),
    "shirt": (0.5, 0.7), "dress": (0.5, 1.1), "sock": (0.1, 0.25), "glove": (0.12, 0.2), "boot": (0.3, 0.35),
}

# Things that form the scene rather than sit in it: as the reference of `on` /
# `under` they may span the canvas width.
SCENE_SIZED = frozenset(
    """table dining table desk bed field road street sky floor ground grass lawn beach sand sea ocean lake
    river water snow meadow counter countertop shelf bench couch sofa rug carpet wall stage runway track
    platform pier dock tray""".replace("\n", " ").split()
) | {"dining table", "kitchen table", "coffee table", "soccer field", "football field", "tennis court"}
SCENE_REAL = (8.0, 3.0)  # the prior of a scene-sized name missing from REAL_SIZES

# Things that make up a backdrop: "in the background" they may span the canvas width and
# keep any size (plan-format.md: "mountains, sky, city"), unlike a house or a tree there.
BACKDROP = SCENE_SIZED | frozenset(
    """mountain hill sky city skyline cityscape forest woods jungle horizon sunset sunrise desert valley
    landscape countryside coast shore cliff""".split()
) | {"mountain range"}

DEFAULT_REAL = (0.5, 0.5)
MARGIN = 0.02  # boxes stay this far inside the canvas edges
FILL_LIMIT = 0.8  # no box from the prior table is longer than this share of the canvas inside the margins
SIZE_WORD_SCALE = {"tiny": 0.5, "small": 0.75, "medium": 1.0, "large": 1.3, "huge": 1.6}

MIN_CELLS = 2  # guidance.md: boxes under ~2x2 cells of a 16x16 attention map cannot be steered
ATTENTION_GRID = 16  # cells along the canvas' shorter side
TARGET_FILL = 0.28  # all non-scene boxes together cover about this share of the canvas
MAX_GROW = 1.35  # a lone object grows at most this much to fill the canvas


def lookup_real_size(name: str) -> tuple[float, float]:
    """Real (width, height) in metres for a name: table, alias, singular, head word, default."""
    n = " ".join(name.lower().split())
    for cand in (n, ALIASES.get(n, ""), " ".join(singular_word(w) for w in n.split())):
        if cand in REAL_SIZES:
            return REAL_SIZES[cand]
        if cand and ALIASES.get(cand) in REAL_SIZES:
            return REAL_SIZES[ALIASES[cand]]
    words = n.split()
    for k in range(1, len(words)):  # "wooden spoon" -> "spoon", "big red fire truck" -> "fire truck"... -> "truck"
        tail = " ".join(singular_word(w) for w in words[k:])
        if tail in REAL_SIZES:
            return REAL_SIZES[tail]
        if ALIASES.get(tail) in REAL_SIZES:
            return REAL_SIZES[ALIASES[tail]]
    if is_scene_sized(n):
        return SCENE_REAL
    return DEFAULT_REAL


def is_scene_sized(name: str) -> bool:
    n = " ".join(name.lower().split())
    return n in SCENE_SIZED or (n.split() or [""])[-1] in SCENE_SIZED


def is_backdrop(name: str) -> bool:
    """Mountains, sky, a city...: a background thing that may span the width (see ``BACKDROP``)."""
    n = " ".join(singular_word(w) for w in name.lower().split())
    return n in BACKDROP or (n.split() or [""])[-1] in BACKDROP


def canvas_fraction(metres: float) -> float:
    """Long side on a square canvas for a thing whose long side is ``metres``:
    grows with log(size), a cup about 0.2, a person about 0.45, a bus about 0.6."""
    return min(0.9, max(0.08, 0.2 + 0.075 * math.log(max(metres, 1e-3) / 0.1)))


def prior_size(name: str, size_word: str | None = None) -> tuple[float, float]:
    """(width, height) on a square canvas, before crowding and aspect ratio."""
    w, h = lookup_real_size(name)
    long_side = canvas_fraction(max(w, h)) * SIZE_WORD_SCALE.get(size_word or "medium", 1.0)
    # very flat or thin things still need some height/width to be drawn and steered
    aspect = min(max(w / h, 1 / 4), 4.0)
    return (long_side, long_side / aspect) if aspect >= 1 else (long_side * aspect, long_side)


@dataclass(frozen=True)
class SizePrior:
    """A model's own size prior, in place of the real-world table: every object starts as a square of long
    side ``side`` on a square canvas (size words and crowding still apply), whatever its name.

    For a model that draws every thing at one scale - the shapes world draws sides of 0.22-0.5 of the
    image, where the real-world table makes a "ring" a finger ring (0.08, a box the model never fills)
    and a "star" a sticker. A model folder says so in its guidance.json (``"size_prior": {"side": 0.32}``).

    ``copy_gap`` (optional): the normalised gap between the copies of a count laid out as a row or grid
    ("three circles above a ring") in place of the geometry's 0.03 (touching rows, piles, clusters and
    columns beside another thing keep their own gaps) - for a model that draws copies closer than about
    one cell of its attention grid as one merged shape, or leaves one out (the shapes world at 64 px:
    docs/renderer.md#demo-prompts).
    """

    side: float
    copy_gap: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.side, bool) or not isinstance(self.side, (int, float)) or not 0.05 <= self.side <= 0.9:
            raise UsageError(f"size_prior side must be a share of the canvas from 0.05 to 0.9, not {self.side!r}")
        gap = self.copy_gap
        if gap is not None and (isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap <= 0.3):
            raise UsageError(f"size_prior copy_gap must be a share of the canvas from 0 to 0.3, not {gap!r}")

    @classmethod
    def parse(cls, data: object) -> "SizePrior":
        """From guidance.json's ``"size_prior"`` object; one UsageError line when it is not one."""
        if not isinstance(data, dict) or "side" not in data or not set(data) <= {"side", "copy_gap"}:
            raise UsageError(f'size_prior must be an object like {{"side": 0.32}} (optionally "copy_gap"), not {data!r}')
        return cls(data["side"], data.get("copy_gap"))

    def size(self, name: str, size_word: str | None = None) -> tuple[float, float]:
        """(width, height) on a square canvas, as ``prior_size`` gives it, for any ``name``."""
        side = self.side * SIZE_WORD_SCALE.get(size_word or "medium", 1.0)
        return side, side


def min_size(width_px: int, height_px: int) -> tuple[float, float]:
    """Smallest normalised (w, h) a box may have: MIN_CELLS cells of a grid with
    ATTENTION_GRID cells along the shorter side, the same pixel size on both axes."""
    cell = min(width_px, height_px) / ATTENTION_GRID
    return MIN_CELLS * cell / width_px, MIN_CELLS * cell / height_px


def to_canvas(size: tuple[float, float], width_px: int, height_px: int) -> tuple[float, float]:
    """A square-canvas size to normalised units of a ``width x height`` canvas,
    keeping the thing's pixel aspect ratio and its area share."""
    side = math.sqrt(width_px * height_px)
    return size[0] * side / width_px, size[1] * side / height_px


def canvas_prior(name: str, size_word: str | None, width_px: int, height_px: int) -> tuple[float, float]:
    """The box an object's prior alone gives it on this canvas (normalised): the prior at the
    canvas' aspect ratio, fitted inside it (only a scene fills the canvas) and no smaller than
    the attention-grid minimum. ``depth`` is judged against it: a foreground box is larger, a
    background box smaller (plan-format.md)."""
    w, h = to_canvas(prior_size(name, size_word), width_px, height_px)
    k = min(1.0, FILL_LIMIT * (1.0 - 2 * MARGIN) / max(w, h))
    mw, mh = min_size(width_px, height_px)
    return max(w * k, mw), max(h * k, mh)


def initial_sizes(
    items: list[tuple[str, str, str | None, bool]], width_px: int, height_px: int, margin: float,
    size_prior: SizePrior | None = None,
) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Sizes for ``(id, name, size_word, spans)`` items: prior (the real-world table, or ``size_prior``),
    crowding, canvas limits, then the attention-grid minimum (with a warning per enlarged box).
    ``spans`` marks scene-sized references, which are left out of the crowding."""
    prior = size_prior.size if size_prior is not None else prior_size
    sizes = {i: to_canvas(prior(name, word), width_px, height_px) for i, name, word, _ in items}
    spans = {i for i, _, _, s in items if s}
    filled = sum(w * h for i, (w, h) in sizes.items() if i not in spans)
    grow = min(MAX_GROW, math.sqrt(TARGET_FILL / filled)) if filled > 0 else 1.0
    limit = 1.0 - 2 * margin
    mw, mh = min_size(width_px, height_px)
    out, warnings = {}, []
    for i, (w, h) in sizes.items():
        if i in spans:
            w, h = limit, min(h, 0.45)
        else:
            w, h = w * grow, h * grow
            k = min(1.0, FILL_LIMIT * limit / max(w, h))  # nothing but a scene fills the canvas
            w, h = w * k, h * k
        if w < mw - 1e-9 or h < mh - 1e-9:
            warnings.append(enlarged_warning(i, (w, h), (max(w, mw), max(h, mh)), width_px, height_px))
            w, h = max(w, mw), max(h, mh)
        out[i] = (w, h)
    return out, warnings


def enlarged_warning(oid: str, before: tuple[float, float], after: tuple[float, float], W: int, H: int) -> str:
    return (
        f"{oid}: box enlarged from {before[0] * W:.0f}x{before[1] * H:.0f} to {after[0] * W:.0f}x{after[1] * H:.0f} px "
        f"(smaller than {MIN_CELLS}x{MIN_CELLS} cells of the {ATTENTION_GRID}x{ATTENTION_GRID} attention map "
        "cannot be steered)"
    )
