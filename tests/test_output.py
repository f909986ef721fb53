"""Run-folder helpers of plan_and_render.app.output: the contact sheet."""

from __future__ import annotations

import pytest
from PIL import Image

from plan_and_render.app.output import contact_sheet


def test_contact_sheet_places_every_image_in_a_near_square_grid():
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200)]
    tiles = [Image.new("RGB", (10, 6), c) for c in colours]
    sheet = contact_sheet(tiles, gap=2)
    assert sheet.size == (3 * 10 + 4 * 2, 2 * 6 + 3 * 2)  # 5 images -> 3 columns, 2 rows, no caption strip
    for k, c in enumerate(colours):
        r, col = divmod(k, 3)
        assert sheet.getpixel((2 + col * 12 + 5, 2 + r * 8 + 3)) == c  # each tile's centre holds its image
    assert sheet.getpixel((2 + 2 * 12 + 5, 2 + 8 + 3)) == (255, 255, 255)  # the empty sixth cell


def test_contact_sheet_captions_sit_under_the_tiles_and_sizes_follow_the_first():
    tiles = [Image.new("RGB", (32, 32), (10, 10, 10)), Image.new("RGB", (16, 16), (10, 10, 10))]
    sheet = contact_sheet(tiles, labels=["seed 0", "seed 1"], columns=2, gap=0)
    assert sheet.size == (64, 32 + 14)
    assert sheet.crop((0, 0, 64, 32)).getcolors() == [(64 * 32, (10, 10, 10))]  # pictures untouched
    caption = sheet.crop((0, 32, 32, 46))
    assert any(px != (255, 255, 255) for _, px in caption.getcolors())  # some ink in the strip
    with pytest.raises(ValueError):
        contact_sheet([])
