"""Boxes as masks at any resolution (previews, checks, tools).

The binary rectangle covers every cell the box touches:
``mask[floor(y0*H):ceil(y1*H), floor(x0*W):ceil(x1*W)] = 1`` (never empty). The renderer's
guidance masks follow the published methods' own rules instead (``int()`` edges, label maps:
``plan_and_render.renderer.masks``, docs/guidance.md).
Ellipses keep the pixels whose centres fall inside the ellipse inscribed in the
box. Soft masks fall off smoothly across the shape's edge (0.5 on the edge), so
losses that compare attention with a target do not punish a sharp cut.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

SOFT_SHARE = 0.25  # soft falloff half-width: this share of the box's smaller side (at least one pixel)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in pixels, shapes (H, 1) and (1, W)."""
    return (np.arange(height, dtype=np.float32)[:, None] + 0.5), (np.arange(width, dtype=np.float32)[None, :] + 0.5)


def _signed_distance(box: Sequence[float], height: int, width: int, shape: str) -> np.ndarray:
    """Approximate signed distance in pixels to the shape's edge (negative inside)."""
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1e-6), max((y1 - y0) / 2, 1e-6)
    ys, xs = _grid(height, width)
    if shape == "rect":
        qx, qy = np.abs(xs - cx) - a, np.abs(ys - cy) - b
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0)
    rho = np.sqrt(((xs - cx) / a) ** 2 + ((ys - cy) / b) ** 2)
    return (rho - 1.0) * min(a, b)


def box_mask(box: Sequence[float], height: int, width: int, shape: str = "rect", soft: bool = False) -> np.ndarray:
    """(height, width) float32 mask of a normalised box; ``shape`` is "rect" or "ellipse"."""
    if shape not in ("rect", "ellipse"):
        raise ValueError(f"shape must be 'rect' or 'ellipse', not {shape!r}")
    if height < 1 or width < 1:
        raise ValueError("mask height and width must be positive")
    x0, y0, x1, y1 = box
    if soft:
        r = max(1.0, SOFT_SHARE * min((x1 - x0) * width, (y1 - y0) * height))
        t = np.clip((r - _signed_distance(box, height, width, shape)) / (2 * r), 0.0, 1.0)
        return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep
    r0, c0 = min(math.floor(y0 * height), height - 1), min(math.floor(x0 * width), width - 1)
    r1, c1 = max(math.ceil(y1 * height), r0 + 1), max(math.ceil(x1 * width), c0 + 1)
    mask = np.zeros((height, width), dtype=np.float32)
    if shape == "rect":
        mask[r0:r1, c0:c1] = 1.0
        return mask
    mask[_signed_distance(box, height, width, "ellipse") <= 0] = 1.0
    cy, cx = min(int((y0 + y1) / 2 * height), height - 1), min(int((x0 + x1) / 2 * width), width - 1)
    mask[cy, cx] = 1.0  # a tiny ellipse still marks its centre cell
    return mask
