"""Losses (plan_and_render.renderer.losses), masks (plan_and_render.renderer.masks) and method options
(the configs of plan_and_render.renderer.methods), by hand."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from plan_and_render.errors import UsageError
from plan_and_render.renderer import attention as A
from plan_and_render.renderer import losses as L
from plan_and_render.renderer.methods import config_for
from plan_and_render.renderer.methods.excite import ExciteConfig
from plan_and_render.renderer.methods.refocus import RefocusConfig
from plan_and_render.renderer.masks import MaskSet, box_cells, enlarge_box

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny models: a second thread only spins


def close(a, b, tol=1e-5) -> bool:
    return abs(float(a) - float(b)) < tol


# ---------------------------------------------------------------------------
# map post-processing
# ---------------------------------------------------------------------------

def test_token_maps_keep_end_and_padding_in_the_softmax_by_default():
    cross = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1],
                          [0.5, 0.1, 0.3, 0.05, 0.05]])  # N = 2 pixels (1 x 2), T = 5, n_tokens = 4
    maps = L.token_maps(cross, n_tokens=4, h=1, w=2, temperature=10.0, smooth=False)
    assert maps.shape == (5, 1, 2)
    assert torch.all(maps[[0, 4]] == 0)  # official A[..., 1:-1]: only the start token and the last position go
    # pixel 0: softmax(10 * [0.2, 0.1, 0.1]) over tokens 1-3 (the end token 3 stays in)
    z0 = math.exp(2) + 2 * math.exp(1)
    assert close(maps[1, 0, 0], math.exp(2) / z0) and close(maps[3, 0, 0], math.exp(1) / z0)
    z1 = math.exp(1) + math.exp(3) + math.exp(0.5)
    assert close(maps[2, 0, 1], math.exp(3) / z1)


def test_token_maps_span_prompt_drops_start_end_and_padding():
    cross = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1],
                          [0.5, 0.1, 0.3, 0.05, 0.05]])
    maps = L.token_maps(cross, n_tokens=4, h=1, w=2, temperature=10.0, smooth=False, span="prompt")
    assert torch.all(maps[[0, 3, 4]] == 0)  # A&E's SD 2.1 branch: start, end, padding
    e = math.exp(10 * 0.1)  # pixel 0: softmax(10 * [0.2, 0.1]); pixel 1: softmax(10 * [0.1, 0.3])
    assert close(maps[1, 0, 0], math.exp(2) / (math.exp(2) + e))
    assert close(maps[2, 0, 1], math.exp(3) / (math.exp(1) + math.exp(3)))
    with pytest.raises(ValueError, match="span"):
        L.token_maps(cross, 4, 1, 2, span="words")


def test_gaussian_smooth_of_a_delta_with_reflect_padding():
    x = torch.zeros(1, 3, 3)
    x[0, 1, 1] = 1.0
    g = torch.tensor([math.exp(-1), 1.0, math.exp(-1)]) / (1 + 2 * math.exp(-1))  # official: exp(-((x)/(2*0.5))^2)
    y = L.gaussian_smooth(x)[0]
    assert close(y[1, 1], g[1] * g[1])
    assert close(y[0, 1], 2 * g[0] * g[1])  # the reflected row brings the centre in twice
    assert close(y[0, 0], 4 * g[0] * g[0])


# ---------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------

def test_car_loss_by_hand_late_step():
    maps = torch.zeros(3, 2, 2)
    maps[1] = torch.tensor([[0.05, 0.0], [0.0, 0.5]])  # object A: weak in its box, strong in B's
    maps[2] = torch.tensor([[0.0, 0.0], [0.0, 0.3]])  # object B: fine in its box
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    loss, min_in = L.car_loss(maps, [([1], [0]), ([2], [1])], masks, early=False)
    # A: 6 * (1 - 0.05) + 4 * 0.5 + 1 * max outside all boxes (0) / 2; B: m_in 0.3 >= 0.2 and late -> 0
    assert close(loss, (6 * 0.95 + 4 * 0.5) / 2)
    assert close(min_in, 0.05)


def test_car_loss_by_hand_early_step_and_a_group_of_two():
    maps = torch.zeros(3, 2, 2)
    maps[1] = torch.tensor([[0.3, 0.15], [0.12, 0.25]])  # group "a": two instances (pixels 0 and 1)
    maps[2] = torch.tensor([[0.0, 0.05], [0.0, 0.4]])  # group "b": one instance (pixel 3)
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    loss, min_in = L.car_loss(maps, [([1], [0, 1]), ([2], [2])], masks, early=True)
    # a: inside 0.3 -> (1-0.3) early, 0.15 -> (1-0.15); outside in b's box 0.25 > 0.15 -> 4*0.25;
    #    background (pixel 2) 0.12 * 2 boxes / 2
    a = (1 - 0.3) + (1 - 0.15) + 4 * 0.25 + 2 * 0.12 / 2
    # b: inside 0.4 -> (1-0.4) early; outside in a's boxes (pixel 1) 0.05 -> 0.05 early; background 0
    b = (1 - 0.4) + 0.05
    assert close(loss, (a + b) / 2)
    assert close(min_in, 0.15)
    late, _ = L.car_loss(maps, [([1], [0, 1]), ([2], [2])], masks, early=False)
    assert close(late, ((1 - 0.15) + 4 * 0.25 + 0.12) / 2)  # late: only the < 0.2 / > 0.15 terms stay


def test_car_loss_gradient_pulls_attention_into_the_box():
    maps = torch.full((2, 2, 2), 0.05, requires_grad=True)
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    loss, _ = L.car_loss(maps, [([1], [0])], masks, early=True)
    loss.backward()
    assert maps.grad[1, 0, 0] < 0  # raising the in-box value lowers the loss


def test_sar_by_hand():
    # 2x2 grid, box = left column (pixels 0 and 2); rows of in-box pixels send 0.25 and 0.75 outside
    s = torch.tensor([[0.75, 0.25, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25],
                      [0.0, 0.5, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    m = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])  # second box: everything -> 0
    assert close(L.sar_loss(s, m[:1]), 0.5)
    assert close(L.sar_loss(s, m), 0.25)  # default: divided by the number of boxes
    assert close(L.sar_loss(s, m, n_objects=1), 0.5)  # two boxes of one object: the sum over boxes / 1


def test_excite_and_iou_by_hand():
    maps = torch.zeros(5, 2, 2)
    maps[1] = torch.tensor([[0.9, 0.1], [0.0, 0.0]])
    maps[2] = torch.tensor([[0.3, 0.3], [0.2, 0.2]])
    maps[3] = torch.tensor([[0.1, 0.3], [0.2, 0.2]])
    assert close(L.excite_loss(maps, [1, 2]), 0.7)  # max(1 - 0.9, 1 - 0.3)
    assert close(L.excite_loss(maps, [1]), 0.1)
    # groups {1} and {2}: sum min = 0.3 + 0.1 = 0.4 over sum of both = 1.0 + 1.0
    assert close(L.iou_loss(maps, [[1], [2]]), 0.2)
    # group {2, 3} is the mean map [[0.2, 0.3], [0.2, 0.2]]: min with {1} sums 0.2 + 0.1 = 0.3 over 1.0 + 0.9
    assert close(L.iou_loss(maps, [[1], [2, 3]]), 0.3 / 1.9)
    assert close(L.iou_loss(maps, [[1]]), 0.0)  # one group: nothing to separate


def test_backward_loss_by_hand():
    probs = torch.zeros(2, 4, 3)  # 2 heads, 2x2 pixels, 3 tokens
    probs[0, :, 1] = torch.tensor([0.3, 0.1, 0.0, 0.0])  # head 0: 3/4 of token 1 in the top-left pixel
    probs[1, :, 1] = torch.tensor([0.1, 0.1, 0.1, 0.1])  # head 1: 1/4
    probs[:, :, 2] = torch.tensor([0.0, 0.0, 0.2, 0.2])  # token 2 entirely in the bottom row
    masks = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    loss = L.backward_loss([(probs, masks)], [[1], [2]])
    obj1 = ((1 - 0.75) ** 2 + (1 - 0.25) ** 2) / 2
    obj2 = (1 - 0.5) ** 2
    assert close(loss, (obj1 + obj2) / 2)
    # two layers: the mean over layers
    assert close(L.backward_loss([(probs, masks), (probs, torch.ones(2, 4))], [[1], [2]]), (obj1 + obj2) / 4)


def test_zest_loss_by_hand():
    z = torch.zeros(3, 4)  # 3 pixels, 4 tokens
    z[:, 1] = torch.tensor([0.08, 0.02, 0.0005])
    target = torch.tensor([[1.0, 0.0, 0.0]])
    loss = L.zest_loss(z, [[1]], target, gain=10.0, gate=0.01, gate_normalised=0.1)
    # raw A = [0.8, 0.2, 0.005]: pixel 2 gated (0.005 <= 0.01 and target 0) -> 0, clipped to 1e-3;
    # targets clipped to [1e-3, 1 - 1e-3]; the BCE averages all three pixels
    lo, hi = 1e-3, 1 - 1e-3

    def bce(p, t):
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    raw = (bce(0.8, hi) + bce(0.2, lo) + bce(lo, lo)) / 3
    an = [0.8 / (0.8 + 1e-4), 0.2 / (0.8 + 1e-4)]  # normalised pixel 2 (0.00625) gated too
    assert an[0] > hi  # the peak (0.99988) is clipped to 1 - 1e-3: no gradient there
    norm = (bce(hi, hi) + bce(an[1], lo) + bce(lo, lo)) / 3
    assert close(loss, raw + norm, 1e-5)


def test_in_box_share_by_hand():
    cross = torch.zeros(4, 3)
    cross[:, 1] = torch.tensor([0.3, 0.1, 0.0, 0.0])
    cross[:, 2] = torch.tensor([0.0, 0.2, 0.2, 0.0])
    masks = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    share = L.in_box_share(cross, [[1], [2], []], masks)
    assert close(share[0], 0.75) and close(share[1], 0.0) and torch.isnan(share[2])


# ---------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------

def test_masks_follow_the_int_rule_and_groups_share_unions():
    ms = MaskSet([(0.1, 0.5, 0.3, 1.0), (0.5, 0.0, 1.0, 0.5), (0.75, 0.75, 1.0, 1.0)], [0, 1, 1], grid=(4, 4), min_cells=0)
    m = ms.masks(4, 4)
    # columns int(0.4) = 0 .. int(1.2) = 1 (exclusive): only column 0; rows int(2.0) .. int(4.0)
    assert m[0].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    assert m[1].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    g = ms.group_masks(4, 4)
    assert torch.equal(g[0], m[0]) and torch.equal(g[1], g[2]) and torch.equal(g[1], torch.maximum(m[1], m[2]))
    assert ms.masks(4, 4) is m and ms.warnings == []  # cached per resolution; nothing enlarged at 4x4


def test_nearest_box_cells_round_each_edge_where_truncation_shifts_up_and_left():
    corner = (0.6058, 0.6058, 0.98, 0.98)  # "in the bottom right corner" on the demo's canvas
    # on an 8x8 map: int(4.85) = 4 .. int(7.84) = 7 (exclusive), cells 4-6, centre 0.69 for a box centred at 0.79
    assert box_cells(corner, 8, 8) == (slice(4, 7), slice(4, 7))
    assert box_cells(corner, 8, 8, "nearest") == (slice(5, 8), slice(5, 8))  # cells 5-7, centre 0.81
    m = MaskSet([corner], [0], grid=(8, 8), rounding="nearest").masks(8, 8)
    assert m[0, 5:, 5:].sum() == 9 and m.sum() == 9
    assert box_cells((0.02, 0.02, 0.394, 0.394), 8, 8, "nearest") == box_cells((0.02, 0.02, 0.394, 0.394), 8, 8)
    with pytest.raises(ValueError, match="rounding must be one of truncate, nearest, not 'round'"):
        MaskSet([corner], [0], grid=(8, 8), rounding="round")


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(2, 64))
def test_nearest_cells_are_centred_on_the_box_within_half_a_cell(a, b, n):
    lo, hi = enlarge_box((min(a, b), 0.0, max(a, b), 1.0), n, n)[0::2]  # at least 2 cells wide, as guidance has it
    _, cols = box_cells((lo, 0.0, hi, 1.0), n, n, "nearest")
    assert cols.stop > cols.start
    assert abs((cols.start + cols.stop) / 2 / n - (lo + hi) / 2) <= 0.5 / n + 1e-9
    _, cut = box_cells((lo, 0.0, hi, 1.0), n, n)  # truncation: off by up to a whole cell, never to the right
    assert -1.0 / n - 1e-9 <= (cut.start + cut.stop) / 2 / n - (lo + hi) / 2 <= 1e-9


def test_small_boxes_are_enlarged_with_a_warning():
    assert enlarge_box((0.5, 0.5, 0.52, 0.53), 16, 16) == pytest.approx((0.4475, 0.4525, 0.5725, 0.5775))
    assert enlarge_box((0.0, 0.0, 0.02, 0.5), 16, 16) == pytest.approx((0.0, 0.0, 0.125, 0.5))  # at the edge
    assert enlarge_box((0.9, 0.2, 1.0, 0.3), 16, 16) == pytest.approx((0.875, 0.1875, 1.0, 0.3125))
    ms = MaskSet([(0.5, 0.5, 0.52, 0.53), (0.0, 0.0, 0.5, 0.5)], [0, 1], grid=(16, 16), ids=["ant-1", "dog-1"])
    assert len(ms.warnings) == 1 and "'ant-1'" in ms.warnings[0] and "enlarged" in ms.warnings[0]
    assert float(ms.masks(16, 16)[0].sum()) >= 4  # at least 2x2 cells to steer


# ---------------------------------------------------------------------------
# RCA bias and method options
# ---------------------------------------------------------------------------

def test_rca_bias_is_cached_and_masks_only_the_conditional_rows():
    st = A.AttentionState()
    st.latent_hw = (2, 2)
    forbid = torch.zeros(4, 3, dtype=torch.bool)
    forbid[1:, 1] = True  # token 1 allowed only in pixel 0
    st.rca_masks = {(2, 2): forbid}
    st.cond_rows = slice(2, None)  # batch [uncond x2, cond x2]
    b = st.rca_bias(2, 2, 4, torch.float32, "cpu")
    assert b.shape == (4, 1, 4, 3) and st.rca_bias(2, 2, 4, torch.float32, "cpu") is b
    assert torch.all(b[:2] == 0)
    assert torch.isinf(b[2:, 0, 1:, 1]).all() and torch.all(b[2:, 0, 0] == 0) and torch.all(b[2:, 0, :, [0, 2]] == 0)
    assert st.grid(4) == (2, 2) and st.grid(1) == (1, 1)


def test_config_overrides_and_excite_step_selection():
    assert config_for("refocus") == RefocusConfig() and config_for("refocus").loss_scale == 4.0
    assert config_for("refocus", {"loss_scale": 20}).loss_scale == 20
    with pytest.raises(UsageError, match="unknown option"):
        config_for("refocus", {"loss_scal": 20})
    assert ExciteConfig().selected_step is None  # plain Attend-and-Excite
    assert ExciteConfig(refine=True, per_step=False).selected_step == 8
    assert ExciteConfig(refine=True).selected_step == 2
    c = config_for("excite", {"refine_step": 12, "per_step": False, "thresholds": [[0, 0.1]]})
    assert c.refine and c.selected_step == 12 and c.thresholds == ((0, 0.1),)
