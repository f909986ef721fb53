"""An exact detector for the shapes world: colour segmentation + shape descriptors.

Why exact: the palette is known and backgrounds are grey-ish, so a pixel
belongs to an object when it is saturated, and its nearest palette colour names
it. Each connected region of one colour is then classified by three
scale- and stretch-invariant numbers: hole share (ring), solidity = area /
convex-hull area (star), and fill = area / box area (square 1, circle pi/4,
triangle 1/2). On generated scenes this recovers every box and mask exactly;
on model samples it tolerates soft edges and speckles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from .data import COLOURS, RECIPE, shape_mask, tight_box

MIN_SATURATION = 60  # palette colours have >= 140, backgrounds <= ~25
MAX_COLOUR_DIST = 110.0


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
    ys, xs = np.nonzero(mask)
    pts = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(float)
    try:
        return float(ConvexHull(pts).volume)
    except (QhullError, ValueError):
        return float(mask.sum())


def describe(mask: np.ndarray) -> dict:
    """Hole share, solidity and fill of one region (all in [0, 1])."""
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
    h, w = image.shape[:2]
    labels = colour_labels(image, colours)
    names = list(colours)
    out: list[Detection] = []
    for ci, name in enumerate(names):
        comp, n = ndimage.label(labels == ci, structure=np.ones((3, 3)))  # 8-connected: star tips
        for k in range(1, n + 1):
            m = comp == k
            area = int(m.sum())
            if area < max(4, min_area * h * w):
                continue
            d = describe(m)
            out.append(Detection(classify(d), name, tight_box(m), m, area, d))
    return sorted(out, key=lambda d: -d.area)


# ---------------------------------------------------------------------------
# scoring against targets
# ---------------------------------------------------------------------------

def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def target_mask(shape: str, box, h: int, w: int) -> np.ndarray:
    """The ideal mask of ``shape`` filling a normalised target box."""
    return shape_mask(shape, (box[0] * w, box[1] * h, box[2] * w, box[3] * h), h, w,
                      RECIPE["ring_inner"], RECIPE["star_inner"])


def find(detections: list[Detection], shape: str, colour: str) -> Detection | None:
    """The largest region of that colour classified as that shape (position is not consulted)."""
    return next((d for d in detections if d.colour == colour and d.shape == shape), None)


def relation_holds(predicate: str, s, o) -> bool | None:
    """plan-format.md geometry semantics on two normalised boxes; None for predicates without a 2D test."""
    dx = (s[0] + s[2] - o[0] - o[2]) / 2
    dy = (s[1] + s[3] - o[1] - o[3]) / 2
    if predicate in ("left_of", "right_of"):
        return abs(dx) >= abs(dy) and (dx < 0 if predicate == "left_of" else dx > 0)
    if predicate in ("above", "below"):
        return abs(dy) > abs(dx) and (dy < 0 if predicate == "above" else dy > 0)
    if predicate == "next_to":
        gap = max(o[0] - s[2], s[0] - o[2])
        return abs(dx) >= abs(dy) and gap <= min(s[2] - s[0], o[2] - o[0])
    if predicate == "near":
        gap = max(o[0] - s[2], s[0] - o[2], o[1] - s[3], s[1] - o[3])
        return gap <= min(s[2] - s[0], o[2] - o[0], s[3] - s[1], o[3] - o[1])
    return None
