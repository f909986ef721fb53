"""Scoring: does an image show what its plan asked for? Detectors, and the rules that compare.

    from plan_and_render.scoring import get_detector, score_images
    detector = get_detector("shapes")                      # or "owlv2:google/owlv2-base-patch16-ensemble"
    scores = score_images(result.images, plan, detector)   # presence, counts, box IoU, relations, regions

Detectors (``get_detector(spec)``): ``shapes`` - the shapes world's exact detector, offline, for the
shipped demo model; ``owlvit:SRC``, ``owlv2:SRC``, ``grounding-dino:SRC`` - open-vocabulary detectors
through transformers, SRC a local folder or a hub id in the Hugging Face cache. Each answers text
queries with normalised boxes (``detection.Detection``). ``score`` holds the rules (docs/batch.md).
Importing this package does not import torch or transformers; a detector loads them when built.
"""

from __future__ import annotations

from ..errors import UsageError
from .detection import Detection, Detector, box_iou, class_aware_nms
from .score import Aggregate, query_of, score_image, score_images

__all__ = ["Aggregate", "Detection", "Detector", "box_iou", "class_aware_nms", "clear_cache", "get_detector",
           "parse_spec", "query_of", "score_image", "score_images"]

_CACHE: dict[tuple, Detector] = {}


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"owlv2:PATH"`` -> ("owlv2", "PATH"); ``"shapes"`` -> ("shapes", None); UsageError for anything else."""
    from .open_vocab import FAMILIES

    family, _, source = str(spec).strip().partition(":")
    family = family.lower().replace("_", "-")
    if family == "shapes" and not source:
        return family, None
    if family in FAMILIES and source:
        return family, source
    if family in FAMILIES:
        raise UsageError(f"detector {spec!r} needs a model: {family}:FOLDER or {family}:HUB_ID")
    raise UsageError(f"unknown detector {spec!r}; use shapes, {', '.join(f + ':MODEL' for f in FAMILIES)}")


def get_detector(spec: str, threshold: float | None = None, nms: float | None = None,
                 device: str | None = None) -> Detector:
    """The detector a spec names, built once and reused. ``threshold`` / ``nms`` (open-vocabulary only):
    the score a box needs and the IoU above which class-aware NMS drops a weaker box of the same query."""
    family, source = parse_spec(spec)
    for name, v in (("threshold", threshold), ("nms", nms)):
        if v is not None and not 0 <= v <= 1:
            raise UsageError(f"detector {name} {v} is out of range: use 0 to 1")
    key = (family, source, threshold, nms, device)
    if key not in _CACHE:
        if family == "shapes":
            from .shapes import ShapesDetector

            _CACHE[key] = ShapesDetector()
        else:
            from .open_vocab import OpenVocabDetector

            _CACHE[key] = OpenVocabDetector(family, source, threshold, nms, device)
    return _CACHE[key]


def clear_cache() -> None:
    """Forget loaded detectors."""
    _CACHE.clear()
