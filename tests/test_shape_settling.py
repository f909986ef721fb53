"""benchmarks.shape_settling: clean estimates along an Euler path, when a reading settles, the summary,
and a real run on the shipped MMDiT whose last reading is the image a plain render draws."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import shape_settling as ss

MODEL = "models/shapes-mmdit-latent"


@settings(deadline=None)  # the first example pays for torch's warm-up
@given(st.integers(2, 30), st.integers(0, 2**16))
def test_on_a_straight_flow_every_step_estimates_the_clean_latent_exactly(n, seed):
    g = torch.Generator().manual_seed(seed)
    # float64: in float32 a step's difference of latents loses digits that 1 / (s_i+1 - s_i) then multiplies
    x0, eps = (torch.randn(1, 4, 3, 3, generator=g, dtype=torch.float64) for _ in range(2))
    sigmas = [*np.linspace(1.0, 1 / n, n).tolist(), 0.0]
    latents = [(1 - s) * x0 + s * eps for s in sigmas]  # the Euler path of the constant velocity eps - x0
    for est in ss.x0_estimates(latents, sigmas):
        assert torch.allclose(est, x0, atol=1e-9)
    assert len(ss.x0_estimates(latents, sigmas)) == n


@pytest.mark.parametrize("readings,step", [(["circle", "square", "circle", "square", "square"], 3),
                                           (["square", "square"], 0), (["circle", "circle", "square"], 2),
                                           (["star", "nothing"], 1)])
def test_a_reading_settles_at_the_first_step_from_which_it_stays(readings, step):
    assert ss.settled_from(readings) == step


def test_the_summary_by_hand():
    sigmas = [1.0, 0.6, 0.3, 0.1]
    recs = [{"shape": "square", "readings": ["circle", "square", "square", "square"], "sigmas": sigmas,
             "settled_from": 1},
            {"shape": "square", "readings": ["circle", "circle", "square", "circle"], "sigmas": sigmas,
             "settled_from": 3}]
    s = ss.summarise(recs)["square"]
    assert s["per_step"] == [0.0, 0.5, 1.0, 0.5] and (s["final"], s["best"], s["best_sigma"]) == (0.5, 1.0, 0.3)
    assert s["settled_sigma_median"] == pytest.approx((0.6 + 0.1) / 2) and s["lost_late"] == 1


def test_a_real_run_reads_every_step_and_ends_on_the_image_a_plain_render_draws(tmp_path):
    from plan_and_render.app import api
    from plan_and_render.scoring.shapes import detect

    out = tmp_path / "s.json"
    res = ss.main(["--model", MODEL, "--shapes", "square", "--colours", "red", "--seeds", "1", "--out", str(out)])
    rec = res["records"][0]
    pipe = api.get_pipeline(MODEL)
    plan = api.plan("a red square", "rules", width=64, height=64, for_model=MODEL)
    image = np.asarray(pipe(plan, method="none", seed=0, width=64, height=64, progress=False).images[0].convert("RGB"))
    assert len(rec["readings"]) == pipe.resolve(plan).steps == len(rec["sigmas"])
    assert rec["readings"][-1] == next(d.shape or "nothing" for d in detect(image) if d.colour == "red")
    assert rec["sigmas"] == sorted(rec["sigmas"], reverse=True) and json.loads(out.read_text())["summary"]["square"]


@pytest.mark.parametrize("argv,says", [(["--shapes", "hexagon"], "shapes come from"),
                                       (["--colours", "pink"], "shapes come from"), (["--seeds", "0"], "shapes come from"),
                                       (["--model", "no/such/folder"], "model not found"),
                                       (["--model", "models/shapes-tiny"], "is a sd model")])
def test_bad_arguments_are_one_usage_line(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        ss.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err and "Traceback" not in err
