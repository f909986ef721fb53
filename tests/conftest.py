"""Shared fixtures. Renderer: tiny random SD 1.x / SDXL pipelines, a two-object plan, one torch thread."""

from __future__ import annotations

import pytest

from plan_and_render.scene import ScenePlan


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a test module on one torch thread, then restore the setting.

    The tiny models are far too small to gain from intra-op threads, and on a shared
    2-core machine a second spinning thread made renders up to 8x slower.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_pipe():
    from plan_and_render.renderer import pipeline_from_components
    from tools.tiny import tiny_sd_components

    return pipeline_from_components(tiny_sd_components(), device="cpu")


@pytest.fixture(scope="session")
def tiny_xl_pipe():
    from plan_and_render.renderer import pipeline_from_components
    from tools.tiny import tiny_sdxl_components

    return pipeline_from_components(tiny_sdxl_components(), device="cpu")


@pytest.fixture
def two_plan() -> ScenePlan:
    return ScenePlan(prompt="a red ball to the left of a blue box", canvas={"width": 64, "height": 64},
                     objects=[dict(id="ball-1", name="ball", phrase="a red ball", box=(0.05, 0.3, 0.45, 0.8)),
                              dict(id="box-1", name="box", phrase="a blue box", box=(0.55, 0.2, 0.95, 0.8))])
