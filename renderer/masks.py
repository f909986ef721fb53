"""Object boxes -> masks at attention-map resolution, built once per render.

The mask rule is the project's one rule, ``plan_and_render.geometry.box_mask`` (binary
rectangle: rows floor(y0*H)..ceil(y1*H), columns likewise - guidance.md); it is
imported when the first mask is built, so ``import renderer`` stays cheap.
Boxes smaller than about 2x2 cells of the layout-level map cannot be steered
(users of the published methods report this), so they are enlarged around their
centre for guidance, and the render says so in its warnings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Box = tuple[float, float, float, float]
MIN_CELLS = 2.0


def enlarge_box(box: Box, h: int, w: int, min_cells: float = MIN_CELLS) -> Box:
    """``box`` grown around its centre to at least ``min_cells`` cells of an h x w grid per side
    (never beyond the image; a side already large enough is kept)."""
    x0, y0, x1, y1 = box

    def grow(a: float, b: float, cells: int) -> tuple[float, float]:
        need = min(1.0, min_cells / cells)
        if b - a >= need:
            return a, b
        c = (a + b) / 2
        lo = min(max(0.0, c - need / 2), 1.0 - need)
        return lo, lo + need

    x0, x1 = grow(x0, x1, w)
    y0, y1 = grow(y0, y1, h)
    return x0, y0, x1, y1


class MaskSet:
    """Masks of a layout's objects, cached per resolution and device.

    boxes: one per object; group_of: per object the index of its group (instances of one group
    share their words, so token-level targets use the union of the group's boxes).
    grid: the layout-level map size (h, w) that decides which boxes are too small.
    """

    def __init__(self, boxes: Sequence[Box], group_of: Sequence[int], grid: tuple[int, int],
                 ids: Sequence[str] = (), min_cells: float = MIN_CELLS) -> None:
        h, w = grid
        self.boxes: list[Box] = [enlarge_box(tuple(b), h, w, min_cells) for b in boxes]
        self.group_of = list(group_of)
        self.warnings: list[str] = []
        for i, (old, new) in enumerate(zip(boxes, self.boxes)):
            if tuple(old) != new:
                name = repr(ids[i]) if i < len(ids) else str(i)
                self.warnings.append(
                    f"object {name}: its box covers {(old[2] - old[0]) * w:.1f}x{(old[3] - old[1]) * h:.1f} cells of "
                    f"the {w}x{h} attention map; enlarged to {min_cells:g}x{min_cells:g} cells for guidance "
                    f"(smaller boxes cannot be steered)")
        self._cache: dict[tuple, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.boxes)

    def masks(self, h: int, w: int, device=None) -> torch.Tensor:
        """(K, h, w) float32, one binary mask per object."""
        key = ("obj", h, w, str(device))
        if key not in self._cache:
            from plan_and_render.geometry import box_mask

            m = [torch.from_numpy(box_mask(b, h, w)) for b in self.boxes]
            t = torch.stack(m) if m else torch.zeros(0, h, w)
            self._cache[key] = t.float().to(device)
        return self._cache[key]

    def group_masks(self, h: int, w: int, device=None) -> torch.Tensor:
        """(K, h, w): for each object, the union of the masks of its group's instances."""
        key = ("group", h, w, str(device))
        if key not in self._cache:
            m = self.masks(h, w, device)
            out = torch.zeros_like(m)
            for g in set(self.group_of):
                idx = [k for k, gg in enumerate(self.group_of) if gg == g]
                out[idx] = m[idx].amax(0)
            self._cache[key] = out
        return self._cache[key]
