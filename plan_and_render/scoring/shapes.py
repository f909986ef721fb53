"""The shapes world's exact detector: colour segmentation + shape descriptors.

The shapes world (``tools.shapes``: 1-4 coloured shapes on a grey-ish background) is what the shipped
demo model ``models/shapes-tiny`` draws, so its images can be scored without a neural detector - offline
and exactly. Why exact: the palette is known and backgrounds are grey-ish, so a pixel belongs to an
object when it is saturated, and its nearest palette colour names it. Each connected region of one
colour is then classified by three scale- and stretch-invariant numbers: hole share (ring),
solidity = area / convex-hull area (star), and fill = area / box area (square 1, circle pi/4, triangle
1/2). On generated scenes this recovers every box and mask exactly; on model samples it tolerates soft
edges and speckles.

The palette and the shape masks live here (the data generator in ``tools.shapes.data`` draws with
them), so what is drawn and what is detected cannot drift apart. ``ShapesDetector`` answers text
queries ("a red circle") for ``plan_and_render.scoring``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..vocab import singularize
from .detection import Detection as QueryDetection

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 220, 30),
    "green": (30, 170, 50),
    "blue": (30, 80, 230),
    "purple": (140, 40, 190),
}
RING_INNER = 0.55  # inner radius of a ring, as a share of the outer
STAR_INNER = 0.45  # inner radius of a star's notches, as a share of the tips'

MIN_SATURATION = 60  # palette colours have >= 140, backgrounds <= ~25
MAX_COLOUR_DIST = 110.0


# ---------------------------------------------------------------------------
# shape masks: each shape fills its box (mild stretching is allowed)
# ---------------------------------------------------------------------------

def _star_inside(u: np.ndarray, v: np.ndarray, inner: float) -> np.ndarray:
    """5-pointed star, outer radius 1, apex up, in star coordinates."""
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u) + math.pi / 2  # 0 at the top point (v < 0 is up)
    step = 2 * math.pi / 5
    a = np.mod(theta, step)
    a = np.where(a > step / 2, step - a, a)  # fold onto the outer->inner edge
    half = step / 2
    r_edge = inner * math.sin(half) / (np.sin(a) + inner * np.sin(half - a))
    return rho <= r_edge


def shape_mask(shape: str, box_px: tuple[float, float, float, float], h: int, w: int,
               ring_inner: float = RING_INNER, star_inner: float = STAR_INNER) -> np.ndarray:
    """Boolean (h, w) mask of ``shape`` stretched to fill ``box_px`` (pixel units, pixel centres sampled)."""
    x0, y0, x1, y1 = box_px
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    u = (xs - (x0 + x1) / 2) / ((x1 - x0) / 2)
    v = (ys - (y0 + y1) / 2) / ((y1 - y0) / 2)
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= ring_inner ** 2)
    if shape == "square":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "triangle":  # apex at the top, base at the bottom
        return (v <= 1) & (np.abs(u) <= (v + 1) / 2)
    if shape == "star":  # map the box onto the star's own extent
        sx, top = math.sin(2 * math.pi / 5), -1.0
        bottom = math.cos(math.pi / 5)
        return _star_inside(u * sx, top + (v + 1) / 2 * (bottom - top), star_inner)
    raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Normalised box around the True pixels (pixel edges, so a full-canvas mask is [0, 0, 1, 1])."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


def target_mask(shape: str, box, h: int, w: int) -> np.ndarray:
    """The ideal mask of ``shape`` filling a normalised target box."""
    return shape_mask(shape, (box[0] * w, box[1] * h, box[2] * w, box[3] * h), h, w)


# ---------------------------------------------------------------------------
# the detector
# ---------------------------------------------------------------------------

@dataclass
class Detection:
    shape: str | None  # None: a coloured blob that fits no shape
    colour: str
    box: tuple[float, float, float, float]  # normalised, tight
    mask: np.ndarray  # (H, W) bool
    area: int
    descriptors: dict


def colour_labels(image: np.ndarray, colours: dict = COLOURS) -> np.ndarray:
    """(H, W) int: palette index of each saturated pixel near a palette colour, -1 elsewhere."""
    img = image.astype(np.float32)
    sat = img.max(-1) - img.min(-1)
    pal = np.array(list(colours.values()), np.float32)
    dist = np.linalg.norm(img[:, :, None, :] - pal[None, None], axis=-1)
    lab = dist.argmin(-1)
    ok = (sat >= MIN_SATURATION) & (dist.min(-1) <= MAX_COLOUR_DIST)
    return np.where(ok, lab, -1)


def _hull_area(mask: np.ndarray) -> float:
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(mask)
    pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(float)
    try:
        return float(ConvexHull(pts).volume)
    except (QhullError, ValueError):
        return float(mask.sum())


def describe(mask: np.ndarray) -> dict:
    """Hole share, solidity and fill of one region (all in [0, 1])."""
    from scipy import ndimage

    filled = ndimage.binary_fill_holes(mask)
    area, farea = float(mask.sum()), float(filled.sum())
    ys, xs = np.nonzero(filled)
    box_area = float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    return {"hole": 1 - area / farea, "solidity": farea / _hull_area(filled), "fill": farea / box_area}


def classify(d: dict) -> str | None:
    """Shape name from descriptors (thresholds sit halfway between the ideal values)."""
    if d["hole"] > 0.12:
        return "ring" if d["solidity"] > 0.8 else None
    if d["solidity"] < 0.75:
        return "star"
    if d["fill"] > 0.89:
        return "square"
    if d["fill"] > 0.64:
        return "circle"
    return "triangle"


def detect(image: np.ndarray, min_area: float = 0.004, colours: dict = COLOURS) -> list[Detection]:
    """Every coloured region of at least ``min_area`` (share of the image), largest first."""
    from scipy import ndimage

    h, w = image.shape[:2]
    labels = colour_labels(image, colours)
    out: list[Detection] = []
    for ci, name in enumerate(colours):
        comp, n = ndimage.label(labels == ci, structure=np.ones((3, 3)))  # 8-connected: star tips
        for k in range(1, n + 1):
            m = comp == k
            area = int(m.sum())
            if area < max(4, min_area * h * w):
                continue
            d = describe(m)
            out.append(Detection(classify(d), name, tight_box(m), m, area, d))
    return sorted(out, key=lambda d: -d.area)


def find(detections: list[Detection], shape: str, colour: str) -> Detection | None:
    """The largest region of that colour classified as that shape (position is not consulted)."""
    return next((d for d in detections if d.colour == colour and d.shape == shape), None)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


# ---------------------------------------------------------------------------
# text queries -> detections (the interface of plan_and_render.scoring)
# ---------------------------------------------------------------------------

def parse_query(text: str) -> tuple[str, str] | None:
    """("red", "circle") for "a red circle" / "two red circles"; None when the text names no palette
    colour or no shape (the shapes world cannot contain it)."""
    words = [singularize(w) for w in re.findall(r"[a-z]+", text.lower())]
    colour = next((w for w in words if w in COLOURS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return (colour, shape) if colour and shape else None


class ShapesDetector:
    """The exact detector behind the common detector interface: every region of the queried colour and
    shape, score 1.0 (there is no doubt to threshold), largest first."""

    name = "shapes"

    def detect(self, image, queries: list[str]) -> list[QueryDetection]:
        regions = detect(np.asarray(image.convert("RGB")))
        wanted = [parse_query(q) for q in queries]
        out = []
        for region in regions:
            for qi, want in enumerate(wanted):
                if want == (region.colour, region.shape):
                    out.append(QueryDetection(qi, 1.0, tuple(float(v) for v in region.box)))
        return out

    def understands(self, query: str) -> bool:
        return parse_query(query) is not None
