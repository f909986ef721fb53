"""What every detector returns, and the two box operations the protocols share (IoU, class-aware NMS).

A detector answers text queries: ``detect(image, ["a red circle", "a blue square"])`` gives
``Detection(query, score, box)`` records, ``query`` being the index of the query the box answers
and ``box`` normalised ``(x0, y0, x1, y1)`` with the origin top-left (the plan's convention), best
score first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    query: int  # index into the queries asked
    score: float
    box: Box  # normalised x0, y0, x1, y1

    def to_json(self) -> dict:
        return {"query": self.query, "score": round(self.score, 4), "box": [round(v, 4) for v in self.box]}


class Detector(Protocol):
    name: str

    def detect(self, image, queries: list[str]) -> list[Detection]:
        """Boxes answering ``queries`` in a PIL image, best score first."""


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def class_aware_nms(detections: list[Detection], iou: float) -> list[Detection]:
    """Greedy non-maximum suppression within each query: a box is dropped when it overlaps a better box
    of the same query by more than ``iou`` (LMD's protocol: 0.15). ``iou >= 1`` keeps everything."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if iou >= 1 or all(k.query != d.query or box_iou(k.box, d.box) <= iou for k in kept):
            kept.append(d)
    return kept


def clip_box(box: Sequence[float], width: float, height: float) -> Box:
    """Pixel box -> normalised box inside the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (float(np.clip(x0 / width, 0, 1)), float(np.clip(y0 / height, 0, 1)),
            float(np.clip(x1 / width, 0, 1)), float(np.clip(y1 / height, 0, 1)))
