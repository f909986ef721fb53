"""Token positions and map losses of renderer.maploss, against hand-worked cases."""

from __future__ import annotations

import torch

from planner.scene import PlanObject
from renderer import maploss as L
from renderer.guidance import box_mask
from renderer.tiny import build_clip_tokenizer

TOK = build_clip_tokenizer(["a", "dog", "and", "red", "ball", "cat"])


def _obj(oid, name, group=None):
    return PlanObject(id=oid, name=name, phrase=f"a {name}", group=group)


def test_token_positions_multi_token_repeated_and_grouped():
    text = "a catnip and a dog and a dog"
    ids = TOK(text).input_ids
    pos, warn = L.object_token_positions(TOK, text, [_obj("catnip-1", "catnip"), _obj("dog-1", "dog", "dogA"),
                                                      _obj("dog-2", "dog", "dogB"), _obj("dog-3", "dog", "dogA")], 77)
    assert len(pos[0]) > 1 and "".join(TOK.convert_ids_to_tokens([ids[p] for p in pos[0]])) == "catnip</w>"
    assert pos[1] != pos[2] and ids[pos[1][0]] == ids[pos[2][0]]  # two different "dog" occurrences
    assert pos[3] == pos[1]  # instances of one group share tokens
    assert warn == []


def test_token_positions_truncated_object_warns():
    text = "a dog " + "and " * 80 + "a cat"
    pos, warn = L.object_token_positions(TOK, text, [_obj("dog-1", "dog"), _obj("cat-1", "cat")], 77)
    assert pos[0] == [2] and pos[1] == []
    assert len(warn) == 1 and "cat-1" in warn[0]


def test_box_mask_floor_ceil():
    m = box_mask((0.1, 0.5, 0.3, 1.0), 4, 4)
    assert m.tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]]


def test_excite_and_iou_by_hand():
    maps = torch.zeros(4, 2, 2)
    maps[1] = torch.tensor([[0.9, 0.1], [0.0, 0.0]])
    maps[2] = torch.tensor([[0.3, 0.3], [0.2, 0.2]])
    assert abs(float(L.excite_loss(maps, [[1], [2]])) - 0.7) < 1e-6  # max(1-0.9, 1-0.3)
    # min-sum 0.3+0.1 = 0.4 over total 1.0 + 1.0
    assert abs(float(L.iou_loss(maps, [[1], [2]])) - 0.2) < 1e-6


def test_sar_by_hand():
    # 2x2 grid, box = left column (pixels 0 and 2); rows of in-box pixels send 0.25 and 0.75 outside
    s = torch.tensor([[0.75, 0.25, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25],
                      [0.0, 0.5, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    m = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert abs(float(L.sar_loss(s, [m])) - 0.5) < 1e-6


def test_backward_loss_by_hand():
    probs = torch.zeros(1, 4, 3)  # 1 head, 2x2 pixels, 3 tokens
    probs[0, :, 1] = torch.tensor([0.3, 0.1, 0.0, 0.0])  # 3/4 of token 1 in the top-left pixel
    loss = L.backward_loss([(probs, 2, 2)], [[1]], [(0.0, 0.0, 0.5, 0.5)])
    assert abs(float(loss) - 0.0625) < 1e-6  # (1 - 0.75)^2


def test_car_loss_by_hand():
    maps = torch.zeros(3, 2, 2)
    maps[1] = torch.tensor([[0.05, 0.0], [0.0, 0.5]])  # object A token: weak in its box, strong elsewhere
    maps[2] = torch.tensor([[0.0, 0.0], [0.0, 0.3]])  # object B token: fine in its box
    ma = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mb = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    loss, min_in = L.car_loss(maps, [[1], [2]], [ma, mb], i50=30)
    # A: 6*(1-0.05) + 4*0.5 (inside B's box, > 0.15) + 1*max outside all boxes (0)/2 ; B: nothing (m_in 0.3, late step)
    assert abs(float(loss) - (6 * 0.95 + 4 * 0.5) / 2) < 1e-5
    assert abs(min_in - 0.05) < 1e-6
