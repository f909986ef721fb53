"""Object boxes -> masks at attention-map resolution, built once per render, by the official rules.

Two kinds, as the official code of each method builds them (docs/guidance.md):

- **box masks** (refocus, backward guidance, scores): ``mask[int(y0*H):int(y1*H), int(x0*W):int(x1*W)] = 1``,
  truncation on both edges (Attention Refocusing ``loss.py``, layout-guidance ``utils.py``); the setting
  ``box_cells: "nearest"`` rounds each edge instead (a named deviation, for coarse maps: ``box_cells``);
- **label maps** (RCA, ZestGuide): the boxes painted into one label per *image pixel* (back to front:
  background objects, then the others, then foreground ones, each in plan order), then resized to the
  layer's grid - nearest for RCA (FreestyleNet's ``attention_FLIS.py``), area for ZestGuide's
  targets (``zestguide_stbl14.py``). Where boxes overlap, the pixel belongs to the front object only.

Boxes smaller than about 2x2 cells of the layout-level map cannot be steered (users of the published
methods report this), so they are enlarged around their centre for guidance, and the render says so
in its warnings; after that no box mask is empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .settings import BOX_CELLS

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


def box_cells(box: Box, h: int, w: int, rounding: str = "truncate") -> tuple[slice, slice]:
    """(rows, columns) of an h x w grid a box covers. "truncate": ``int()`` of each edge (the official
    rule), which shifts a box up and left by up to one cell - nothing on a 64x64 map, an eighth of the
    image on an 8x8 one; "nearest" (a named deviation): each edge to its nearest cell boundary."""
    x0, y0, x1, y1 = box
    if rounding == "nearest":
        return (slice(int(y0 * h + 0.5), int(y1 * h + 0.5)), slice(int(x0 * w + 0.5), int(x1 * w + 0.5)))
    return slice(int(y0 * h), int(y1 * h)), slice(int(x0 * w), int(x1 * w))


class MaskSet:
    """Masks of a layout's objects, cached per resolution and device.

    boxes: one per object; group_of: per object the index of its group (instances of one group
    share their words, so token-level targets use the union of the group's boxes).
    grid: the layout-level map size (h, w) that decides which boxes are too small.
    image_hw: the image's size in pixels, where label maps are painted; order: object indices back
    to front (default: plan order).
    """

    def __init__(self, boxes: Sequence[Box], group_of: Sequence[int], grid: tuple[int, int],
                 ids: Sequence[str] = (), min_cells: float = MIN_CELLS, image_hw: tuple[int, int] | None = None,
                 order: Sequence[int] | None = None, rounding: str = "truncate") -> None:
        if rounding not in BOX_CELLS:
            raise ValueError(f"rounding must be one of {', '.join(BOX_CELLS)}, not {rounding!r}")
        self.rounding = rounding
        h, w = grid
        self.boxes: list[Box] = [enlarge_box(tuple(b), h, w, min_cells) for b in boxes]
        self.group_of = list(group_of)
        self.image_hw = image_hw or (8 * h, 8 * w)
        self.order = list(order) if order is not None else list(range(len(self.boxes)))
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

    def _cached(self, key: tuple, make) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _union_by_group(self, m: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(m)
        for g in set(self.group_of):
            idx = [k for k, gg in enumerate(self.group_of) if gg == g]
            out[idx] = m[idx].amax(0)
        return out

    # -- box masks ----------------------------------------------------------------
    def masks(self, h: int, w: int, device=None) -> torch.Tensor:
        """(K, h, w) float32, one binary box mask per object (``box_cells``)."""
        def make() -> torch.Tensor:
            m = torch.zeros(len(self.boxes), h, w)
            for k, b in enumerate(self.boxes):
                m[(k, *box_cells(b, h, w, self.rounding))] = 1.0
            return m.to(device)

        return self._cached(("obj", h, w, str(device)), make)

    def group_masks(self, h: int, w: int, device=None) -> torch.Tensor:
        """(K, h, w): for each object, the union of the box masks of its group's instances."""
        return self._cached(("group", h, w, str(device)), lambda: self._union_by_group(self.masks(h, w, device)))

    # -- label maps ---------------------------------------------------------------
    def label_map(self) -> torch.Tensor:
        """(H, W) long at image resolution: the index of the front object at each pixel, -1 for none."""
        def make() -> torch.Tensor:
            H, W = self.image_hw
            lab = torch.full((H, W), -1, dtype=torch.long)
            for k in self.order:
                lab[box_cells(self.boxes[k], H, W, self.rounding)] = k
            return lab

        return self._cached(("labels",), make)

    def label_masks(self, h: int, w: int, device=None) -> torch.Tensor:
        """(K, h, w) binary: the label map nearest-resized to h x w, one mask per object (FreestyleNet)."""
        def make() -> torch.Tensor:
            if not self.boxes:
                return torch.zeros(0, h, w, device=device)
            lab = F.interpolate(self.label_map()[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
            return torch.stack([lab == k for k in range(len(self.boxes))]).float().to(device)

        return self._cached(("label", h, w, str(device)), make)

    def area_masks(self, h: int, w: int, device=None) -> torch.Tensor:
        """(K, h, w) in [0, 1]: for each object, its group's region of the label map area-resized to
        h x w (ZestGuide's targets: the share of each cell's pixels the group owns)."""
        def make() -> torch.Tensor:
            if not self.boxes:
                return torch.zeros(0, h, w, device=device)
            lab = self.label_map()
            full = self._union_by_group(torch.stack([lab == k for k in range(len(self.boxes))]).float())
            return F.interpolate(full[None], size=(h, w), mode="area")[0].to(device)

        return self._cached(("area", h, w, str(device)), make)
