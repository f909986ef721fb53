"""The shapes world's exact detector now lives in the runtime (``plan_and_render.scoring.shapes``), where
``plan-and-render batch --score shapes`` uses it; this module re-exports it for the tools and benchmarks
that import it from here, and keeps ``relation_holds``, the benchmark's four-sector relation test.
"""

from __future__ import annotations

from plan_and_render.scoring.detection import box_iou
from plan_and_render.scoring.shapes import (
    Detection, classify, colour_labels, describe, detect, find, mask_iou, target_mask,
)

__all__ = ["Detection", "box_iou", "classify", "colour_labels", "describe", "detect", "find", "mask_iou",
           "relation_holds", "target_mask"]


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
