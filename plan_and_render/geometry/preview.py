"""A layout preview PNG: the canvas at its aspect ratio with every box outlined
and labelled in its own colour, so a plan can be judged before rendering. A plan
with regions or depths also gets a faint grid of the canvas thirds (what a
region means) and each box's region / depth next to its id."""

from __future__ import annotations

import colorsys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..scene import ScenePlan

BACKDROP = (245, 245, 242)
GRID = (205, 205, 200)  # the thirds lines: visible, fainter than any box


def colours(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-separated hues (golden-ratio steps), dark enough for white text."""
    out = []
    for k in range(n):
        h = (0.03 + k * 0.618034) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.78 if k % 2 == 0 else 0.62)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def save_preview(plan: ScenePlan, path: str | Path, long_side: int = 512) -> Path:
    """Draw ``plan``'s boxes (labelled with ids) on a canvas-shaped image; return the path."""
    W, H = plan.canvas.width, plan.canvas.height
    k = long_side / max(W, H)
    w, h = max(1, round(W * k)), max(1, round(H * k))
    img = Image.new("RGB", (w, h), BACKDROP)
    draw = ImageDraw.Draw(img, "RGBA")
    font = _font(max(10, long_side // 36))
    if any(o.region or o.depth for o in plan.objects):
        for k in (1, 2):
            draw.line((k * w / 3, 0, k * w / 3, h), fill=GRID, width=1)
            draw.line((0, k * h / 3, w, k * h / 3), fill=GRID, width=1)
    if plan.background:
        draw.text((6, h - 6), f"background: {plan.background}", fill=(90, 90, 90), font=font, anchor="lb")
    for obj, colour in zip(plan.objects, colours(len(plan.objects))):
        x0, y0, x1, y1 = obj.box
        rect = (x0 * w, y0 * h, x1 * w - 1, y1 * h - 1)
        draw.rectangle(rect, fill=(*colour, 45), outline=colour, width=max(2, long_side // 170))
        label = " ".join([obj.id, *(v.replace("_", " ") for v in (obj.region, obj.depth) if v)])
        tb = draw.textbbox((rect[0] + 4, rect[1] + 3), label, font=font)
        draw.rectangle((tb[0] - 3, tb[1] - 2, tb[2] + 3, tb[3] + 2), fill=colour)
        draw.text((rect[0] + 4, rect[1] + 3), label, fill=(255, 255, 255), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
