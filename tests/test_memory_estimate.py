"""benchmarks/memory.py: the GPU memory estimate made with fake tensors. Its byte counting by hand, and a
fake render of a small SD 3.5-shaped model counts the bytes a real render of it allocates (to a kilobyte)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from benchmarks import memory as M
from benchmarks import renderer as bench
from plan_and_render.renderer import joint_attention as J, pipeline_from_components

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_live_bytes_counts_each_storage_once_while_it_lives():
    weight = torch.ones(500)
    live = M.LiveBytes(known=[weight])
    with live:
        a = torch.zeros(1000)  # 4,000 bytes
        view = a.view(10, 100)  # the same storage: nothing
        b = a * 2  # 4,000 more
        assert live.now == 8000
        del b
        c = weight[:100] + 1  # a view of a known tensor adds nothing; the sum adds 400 bytes
        assert (view.shape, live.now, live.peak) == ((10, 100), 4400, 8000)
        with live.entered("loop"):
            d = torch.empty(250, dtype=torch.float16)  # 500 bytes
        assert live.phase_peak == {"setup": 8000, "loop": 4900} and live.phase == "setup"
    assert c.sum() == 200 and d.numel() == 250


def test_host_reads_of_fake_values_read_zero():
    with FakeTensorMode():
        x = torch.empty(2, 3)
        flag = torch.empty((), dtype=torch.bool)
    with M.host_reads_as_zeros(), M.LiveBytes():
        assert float(x.sum()) == 0.0 and bool(flag) is False
        assert x.tolist() == [[0.0] * 3] * 2 and x.numpy().shape == (2, 3)
    assert torch.tensor([1.5]).tolist() == [1.5]  # real tensors read their values, and the patch is gone


@pytest.fixture(scope="module")
def small_sd35(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    published = json.loads((bench.CONFIGS / "sd35_medium.json").read_text())
    (folder / "sd35_medium.json").write_text(json.dumps(bench.shrink(published)))
    return folder


@pytest.mark.parametrize("method", ["none", "refocus", "zest", "rca"])
def test_a_fake_render_counts_what_a_real_render_allocates(small_sd35, method):
    fake, fake_weights = M.fake_pipeline("sd35_medium", small_sd35)
    comps = bench.full_components("sd35_medium", "cpu", torch.bfloat16, small_sd35)
    real = pipeline_from_components(comps, device="cpu", dtype=torch.bfloat16)
    real_weights = {name: M.weight_bytes(m) for name, m in real.modules().items()}
    assert real_weights == fake_weights
    estimated = M.estimate(fake, fake_weights, method, 64, 3)
    measured = M.estimate(real, real_weights, method, 64, 3)
    # the same to a kilobyte: a few small real tensors (index lists the code builds) become fake copies
    kib = 2**10 / M.GIB
    for key in ("peak_gib", "loop_peak_gib", "model_offload_peak_gib"):
        assert estimated[key] == pytest.approx(measured[key], abs=kib)
    for phase, alive in measured["alive_gib"].items():
        assert estimated["alive_gib"][phase] == pytest.approx(alive, abs=kib)
    assert set(estimated["alive_gib"]) == {"encode", "loop", "decode"}
    assert estimated["weights_gib"] < estimated["loop_peak_gib"] <= estimated["peak_gib"]
    # with model offload only one part is on the device at a time: less than all of them, more than the transformer
    assert fake_weights["transformer"] / M.GIB < estimated["model_offload_peak_gib"] < estimated["peak_gib"]


def test_guidance_that_keeps_a_graph_needs_more_memory_than_none(small_sd35):
    rows = M.run_suite("sd35_medium", ["none", "refocus", "rca"], size=64, steps=2, configs=small_sd35)["methods"]
    assert rows["none"]["peak_x"] == rows["none"]["loop_peak_x"] == 1.0
    assert rows["refocus"]["loop_peak_x"] > 1.0  # the graph of a conditional pass, kept for its backward
    assert rows["rca"]["loop_peak_x"] > 1.0  # its masks (at toy sizes they weigh as much as the model's states)


@pytest.fixture(scope="module")
def tiny_pipes(torch_one_thread):
    from tools.tiny import tiny_flux_components, tiny_sd3_components, tiny_sd_components

    makers = {"sd": tiny_sd_components, "sd3": tiny_sd3_components, "flux": tiny_flux_components}
    return {name: pipeline_from_components(make(), device="cpu") for name, make in makers.items()}


@pytest.mark.parametrize("family", ["sd", "sd3", "flux"])
@pytest.mark.parametrize("method", ["refocus", "backward", "excite", "zest"])
def test_recomputing_the_maps_in_the_backward_pass_changes_no_gradient(tiny_pipes, two_plan, family, method,
                                                                       monkeypatch):
    from plan_and_render.renderer import attention

    def render(recompute: bool, piece_bytes: int = attention.CHUNK_BYTES):
        monkeypatch.setattr(attention, "RECOMPUTE", recompute)
        monkeypatch.setattr(attention, "CHUNK_BYTES", piece_bytes)
        res = tiny_pipes[family](two_plan, method=method, steps=3, seed=2, progress=False, early_stop=False)
        return np.asarray(res.images[0]), res.losses

    kept_image, kept_losses = render(False)
    image, losses = render(True)  # each tiny layer's maps in one piece: the very same numbers
    assert np.array_equal(image, kept_image) and losses == kept_losses
    # one query row a piece: the matmuls see other shapes, so the sums round differently (1e-7), nothing more
    image, losses = render(True, 1)
    assert np.abs(image.astype(int) - kept_image).max() <= 1 and losses == pytest.approx(kept_losses, rel=1e-5)


def test_recomputing_the_maps_lowers_the_estimated_peak(small_sd35, monkeypatch):
    from plan_and_render.renderer import attention

    pipe, weights = M.fake_pipeline("sd35_medium", small_sd35)
    monkeypatch.setattr(attention, "RECOMPUTE", False)
    kept = M.estimate(pipe, weights, "refocus", 64, 2)
    monkeypatch.setattr(attention, "RECOMPUTE", True)
    recomputed = M.estimate(pipe, weights, "refocus", 64, 2)
    assert recomputed["loop_peak_gib"] < kept["loop_peak_gib"]


@pytest.mark.parametrize("family", ["sd3", "flux"])
@pytest.mark.parametrize("method", ["refocus", "zest", "refocus+rca"])
def test_low_memory_recomputes_the_blocks_without_layout_and_changes_nothing(tiny_pipes, two_plan, family, method,
                                                                              monkeypatch):
    from torch.utils import checkpoint as C

    pipe, blocks = tiny_pipes[family], []
    real = C.checkpoint

    def counted(fn, *args, **kwargs):  # which transformer blocks went through a checkpoint
        blocks.append(getattr(fn, "__self__", None))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(C, "checkpoint", counted)
    fast = pipe(two_plan, method=method, steps=3, seed=2, progress=False, early_stop=False)
    recomputed_blocks = [b for b in blocks if b is not None]
    low = pipe(two_plan, method=method, steps=3, seed=2, progress=False, early_stop=False, memory="low")
    assert np.array_equal(np.asarray(low.images[0]), np.asarray(fast.images[0])) and low.losses == fast.losses
    mods = J.joint_modules(pipe.transformer)
    every = [*pipe.transformer.transformer_blocks, *getattr(pipe.transformer, "single_transformer_blocks", [])]
    layout = {every[k] for k in J.default_layout_blocks(len(mods))}  # blocks 1 and 2 of the tiny models' 4
    ran = {b for b in blocks if b is not None}
    assert not recomputed_blocks and ran and not ran & layout  # only with memory low, never a layout block
    assert every[0] in ran and low.config["memory"] == "low" and fast.config["memory"] == "speed"
    assert all("forward" not in b.__dict__ for b in every)  # the blocks' own forward again


def test_low_memory_lowers_the_estimated_peak(small_sd35):
    pipe, weights = M.fake_pipeline("sd35_medium", small_sd35)
    pipe.layout_blocks = [1]  # of the shrunk model's 2: block 0 may be recomputed
    speed = M.estimate(pipe, weights, "refocus", 64, 2)
    low = M.estimate(pipe, weights, "refocus", 64, 2, memory="low")
    assert low["loop_peak_gib"] < speed["loop_peak_gib"]
