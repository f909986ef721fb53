"""benchmarks/renderer.py's SD 3.5 Medium and FLUX.1-dev suites: the published configs build models of the
published sizes (counted on the meta device, nothing allocated), and the same code times every method
when the configs are shrunk to run on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import renderer as bench

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def billions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e9


@pytest.mark.parametrize("suite, transformer, t5", [("sd35_medium", 2.24, 4.76), ("flux1_dev", 11.90, 4.76)])
def test_published_configs_build_models_of_the_published_size(suite, transformer, t5):
    comps = bench.full_components(suite, "meta", torch.bfloat16)
    # SD 3.5 Medium: 2.24 B parameters + a 384 x 384 x 1536 position table (0.23 B, a buffer) = the 2.5 B
    # of its model card; FLUX.1-dev: 12 B; T5-XXL's encoder: 4.7 B
    assert billions(comps["transformer"]) == pytest.approx(transformer, abs=0.01)
    assert billions(comps["text_encoder_3" if suite == "sd35_medium" else "text_encoder_2"]) == pytest.approx(t5, abs=0.01)
    assert next(comps["transformer"].parameters()).dtype == torch.bfloat16
    assert next(comps["vae"].parameters()).dtype == torch.float32
    if suite == "sd35_medium":
        assert comps["transformer"].pos_embed.pos_embed.numel() == 384 * 384 * 1536
        assert comps["scheduler"].config.shift == 3.0 and not comps["scheduler"].config.use_dynamic_shifting
    else:
        assert comps["transformer"].config.guidance_embeds and comps["scheduler"].config.use_dynamic_shifting


@pytest.mark.parametrize("suite", bench.TRANSFORMER_SUITES)
def test_the_transformer_suites_time_every_method_against_none(suite, tmp_path):
    published = json.loads((bench.CONFIGS / f"{suite}.json").read_text())
    (tmp_path / f"{suite}.json").write_text(json.dumps(bench.shrink(published)))
    res = bench.run_suite(suite, "cpu", 2, ["none", "refocus", "rca"], size=64, configs=tmp_path)
    rows = res["methods"]
    assert list(rows) == ["none", "refocus", "rca"] and rows["none"]["time_x"] == 1.0
    assert "refocus" in rows["refocus"]["losses"] and "refocus" not in rows["none"]["losses"]  # its loss, its steps
    assert res["dtype"] == "torch.float32" and res["offload"] == "none" and res["size"] == 64
    assert bench.suite_dtype(suite, "cuda") == torch.bfloat16 and bench.suite_dtype("sdxl", "cuda") == torch.float16


def test_the_transformer_suites_run_with_memory_low(tmp_path):
    published = json.loads((bench.CONFIGS / "flux1_dev.json").read_text())
    (tmp_path / "flux1_dev.json").write_text(json.dumps(bench.shrink(published)))
    speed, low = (bench.run_suite("flux1_dev", "cpu", 2, ["none", "refocus"], size=64, configs=tmp_path, memory=m)
                  for m in (None, "low"))
    assert (speed["memory"], low["memory"]) == ("speed", "low")  # the same gradients: tests/test_memory_estimate.py
    assert "refocus" in low["methods"]["refocus"]["losses"] and low["methods"]["none"]["time_x"] == 1.0
