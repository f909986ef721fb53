"""The geometry stage: relations -> boxes that satisfy them, masks, previews, a checker.

    from plan_and_render.geometry import solve, check_plan, relation_holds, box_mask, save_preview

``solve`` places every instance of a plan (``Layout.boxes``, ``Layout.warnings``);
``relation_holds`` / ``check_plan`` are plan-format.md's semantics, used by the
solver, the tests and the benchmarks alike; ``box_mask`` turns a box into a
binary or soft mask at any resolution; ``save_preview`` draws a plan's boxes.
"""

from .check import (
    OVERLAP_BOUND, Violation, check_plan, check_relations, overlap_fraction, overlap_violations, region_holds,
    relation_holds,
)
from .masks import box_mask
from .preview import save_preview
from .sizes import SizePrior, prior_size
from .solver import Layout, solve

__all__ = [
    "solve", "Layout", "relation_holds", "region_holds", "check_plan", "check_relations", "Violation", "overlap_fraction",
    "overlap_violations", "OVERLAP_BOUND", "box_mask", "save_preview", "prior_size", "SizePrior",
]
