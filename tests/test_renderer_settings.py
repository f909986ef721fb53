"""Render settings (plan_and_render.renderer.settings) and the method registry (plan_and_render.renderer.methods):
validation, defaults by precedence, method discovery and plugins through entry points."""

from __future__ import annotations

import math
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from plan_and_render.errors import UsageError
from plan_and_render.renderer import methods
from plan_and_render.renderer.settings import (FAMILY_DEFAULTS, MAX_IMAGES, MAX_SIDE, MIN_SIDE, RenderSettings,
                                               check_model_defaults)

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = ("backward", "excite", "rca", "refocus", "zest")


def one_line_error(**kw) -> str:
    with pytest.raises(UsageError) as e:
        RenderSettings(**kw)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------

def test_defaults_and_normalised_values():
    s = RenderSettings()
    assert (s.method, s.method_options, s.num_images, s.seed) == ("refocus", {}, 1, 0)
    assert all(getattr(s, f) is None for f in ("steps", "guidance_scale", "width", "height", "scheduler", "dtype",
                                               "device"))
    s = RenderSettings(method=" Refocus + RCA +refocus", dtype="float16", scheduler="DPM++-2M-Karras", device="CUDA:1")
    assert (s.method, s.methods, s.dtype, s.scheduler, s.device) == ("refocus+rca", ["refocus", "rca"], "fp16",
                                                                      "dpmpp_2m_karras", "cuda:1")
    assert RenderSettings(method="none").methods == [] and RenderSettings(method="none+").method == "none"
    assert RenderSettings(dtype="torch.bfloat16").dtype == "bf16"
    with pytest.raises(Exception):
        s.steps = 3  # frozen: a settings object is a value


@pytest.mark.parametrize("kw,message", [
    (dict(steps=0), "steps 0 is out of range: use 1 to 1000"),
    (dict(steps=1001), "steps 1001 is out of range: use 1 to 1000"),
    (dict(steps=2.5), "steps 2.5: input should be a valid integer"),
    (dict(guidance_scale=float("nan")), "guidance_scale must be a finite number"),
    (dict(guidance_scale=float("inf")), "guidance_scale must be a finite number"),
    (dict(guidance_scale=-0.5), "guidance_scale -0.5 is out of range: use at least 0"),
    (dict(seed=-1), "seed -1 is out of range: use 0 to 18446744073709551615"),
    (dict(seed=2**64), "out of range"),
    (dict(width=100), "width 100 is not divisible by 8; the model needs multiples of 8 (try 96 or 104)"),
    (dict(height=8), f"height 8 is out of range: use {MIN_SIDE} to {MAX_SIDE}"),
    (dict(width=MAX_SIDE + 8), "out of range"),
    (dict(num_images=0), "num_images 0 is out of range"),
    (dict(num_images=MAX_IMAGES + 1), f"use 1 to {MAX_IMAGES}"),
    (dict(method="refocus+magic"), "unknown guidance method 'refocus+magic'; choose from backward, excite, rca"),
    (dict(method=""), None), (dict(method="+"), "unknown guidance method '+'"),
    (dict(method_options={"refocus": {"scale": 3}}), "unknown option(s) scale for method 'refocus'"),
    (dict(method_options={"sparkle": {}}), "unknown method(s) sparkle in the method options"),
    (dict(method_options={"refocus": 3}), "method options must map methods to objects"),
    (dict(scheduler="ddpm"), "unknown scheduler 'ddpm'; choose from ddim, pndm, euler"),
    (dict(dtype="int8"), "unknown dtype 'int8'; use fp16, bf16 or fp32"),
    (dict(device="gpu 0"), "device 'gpu 0' is not a torch device name"),
    (dict(stepz=3), "unknown render setting 'stepz'; known: method, method_options, steps"),
])
def test_bad_settings_are_one_line_usage_errors(kw, message):
    if message is None:  # an empty method is no method, as on the command line
        assert RenderSettings(**kw).method == "none"
        return
    assert message in one_line_error(**kw)


@given(st.integers(min_value=-5, max_value=1010), st.floats(allow_nan=True, allow_infinity=True),
       st.integers(min_value=-3, max_value=2**64 + 3))
def test_numbers_in_range_pass_and_the_rest_are_refused(steps, scale, seed):
    ok = 1 <= steps <= 1000 and math.isfinite(scale) and scale >= 0 and 0 <= seed <= 2**64 - 1
    if ok:
        s = RenderSettings(steps=steps, guidance_scale=scale, seed=seed)
        assert (s.steps, s.guidance_scale, s.seed) == (steps, scale, seed)
    else:
        msg = one_line_error(steps=steps, guidance_scale=scale, seed=seed)
        assert msg.split()[0] in ("steps", "guidance_scale", "seed")


@given(st.integers(min_value=-20, max_value=4200))
def test_sides_are_multiples_of_8_in_range(side):
    if side % 8 == 0 and MIN_SIDE <= side <= MAX_SIDE:
        assert RenderSettings(width=side, height=side).width == side
    else:
        assert one_line_error(width=side).startswith(f"width {side} ")


@given(st.lists(st.sampled_from([*BUILTIN, "none"]), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_method_spelling_normalises_and_is_stable(names, rnd):
    spec = " + ".join(n.upper() if rnd.random() < 0.5 else n for n in names)
    s = RenderSettings(method=spec)
    want = [n for n in dict.fromkeys(names) if n != "none"]
    assert s.methods == want and s.method == ("+".join(want) or "none")
    assert RenderSettings(method=s.method) == s  # normalising twice changes nothing


# ---------------------------------------------------------------------------
# defaults: explicit > model folder > family
# ---------------------------------------------------------------------------

def test_resolved_takes_explicit_then_folder_then_family():
    assert FAMILY_DEFAULTS["sd"]["guidance_scale"] == 7.5 and FAMILY_DEFAULTS["sdxl"]["guidance_scale"] == 5.0
    bare = RenderSettings()
    assert (bare.resolved("sd").steps, bare.resolved("sd").guidance_scale) == (50, 7.5)
    assert bare.resolved("sdxl").guidance_scale == 5.0
    assert bare.resolved("sdxl", {"guidance_scale": 4.0, "steps": 30}).guidance_scale == 4.0
    mine = RenderSettings(guidance_scale=9.0, method_options={"refocus": {"loss_scale": 3.0}})
    r = mine.resolved("sdxl", {"guidance_scale": 4.0, "steps": 30},
                      {"refocus": {"temperature": 1.0, "loss_scale": 7.0}, "zest": {"tau": 0.4}})
    assert (r.guidance_scale, r.steps) == (9.0, 30)
    assert r.method_options == {"refocus": {"temperature": 1.0, "loss_scale": 3.0}, "zest": {"tau": 0.4}}
    assert r.resolved("sd") == r  # resolving resolved settings changes nothing
    assert (bare.resolved("sd3").steps, bare.resolved("sd3").guidance_scale) == (28, 7.0)
    assert (bare.resolved("flux").steps, bare.resolved("flux").guidance_scale) == (28, 3.5)
    assert (bare.resolved("flux-schnell").steps, bare.resolved("flux-schnell").guidance_scale) == (4, 0.0)
    with pytest.raises(KeyError):
        bare.resolved("no-such-family")


def test_build_applies_keyword_overrides_once():
    s = RenderSettings(method="zest", steps=4)
    assert RenderSettings.build(s) is s and RenderSettings.build() == RenderSettings()
    t = RenderSettings.build(s, steps=6, seed=2)
    assert (t.method, t.steps, t.seed) == ("zest", 6, 2) and s.steps == 4
    with pytest.raises(UsageError, match="settings must be a RenderSettings, not str"):
        RenderSettings.build("zest")
    with pytest.raises(UsageError, match="steps 0 is out of range"):
        RenderSettings.build(s, steps=0)


def test_model_folder_may_set_model_dependent_settings_only():
    assert check_model_defaults({"guidance_scale": 4, "steps": 20}) == {"guidance_scale": 4.0, "steps": 20}
    with pytest.raises(UsageError, match="a model folder cannot set seed"):
        check_model_defaults({"seed": 1})
    with pytest.raises(UsageError, match="guidance_scale -1 is out of range"):
        check_model_defaults({"guidance_scale": -1})
    with pytest.raises(UsageError, match="must be an object"):
        check_model_defaults([1])


def test_settings_and_method_names_need_no_torch():
    code = ("import sys; import plan_and_render.renderer as r; "
            "s = r.RenderSettings(method='refocus+rca', steps=3, width=64); "
            "print(r.available_methods(), s.resolved('sdxl').guidance_scale, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.split("\n")[0].endswith(" 5.0 False"), out.stderr
    assert "'backward', 'excite', 'rca', 'refocus', 'zest', 'none'" in out.stdout


# ---------------------------------------------------------------------------
# the method registry
# ---------------------------------------------------------------------------

def test_builtin_methods_are_the_modules_of_the_folder():
    files = sorted(p.stem for p in (ROOT / "renderer" / "methods").glob("*.py") if not p.stem.startswith("_"))
    assert methods.builtin_methods() == tuple(files) == BUILTIN
    for name in BUILTIN:
        cls = methods.method_class(name)
        assert issubclass(cls, methods.GuidanceMethod) and cls.name == name
        assert methods.config_for(name) == cls.config_class()
    # the gradient steps run refocus, then excite, then backward whatever order a render names them in
    order = sorted(BUILTIN, key=lambda n: methods.method_class(n).order)
    assert order.index("refocus") < order.index("excite") < order.index("backward")
    assert methods.parse_method("Backward+REFOCUS + none") == ["backward", "refocus"]


PLUGIN = '''
from dataclasses import dataclass

from plan_and_render.renderer.methods import GuidanceMethod


@dataclass(frozen=True)
class SparkleConfig:
    amount: float = 0.5


class Sparkle(GuidanceMethod):
    """Adds ``amount`` to the latent after every scheduler step (a visible, checkable effect)."""

    name, config_class = "sparkle", SparkleConfig

    def __init__(self, config, guider):
        super().__init__(config, guider)
        self.steps_seen = 0

    def after_step(self, i, latents):
        self.steps_seen += 1
        return latents + self.config.amount

    def report(self):
        return {"sparkle_steps": float(self.steps_seen)}


class NotAMethod:
    name = "broken"
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Fake entry points of another package: sparkle (a method), broken (not one), refocus (a taken name)."""
    (tmp_path / "sparkle_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    group = methods.ENTRY_POINT_GROUP
    fake = [metadata.EntryPoint(name="sparkle", value="sparkle_plugin:Sparkle", group=group),
            metadata.EntryPoint(name="broken", value="sparkle_plugin:NotAMethod", group=group),
            metadata.EntryPoint(name="refocus", value="sparkle_plugin:Sparkle", group=group)]
    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points", lambda **kw: fake if kw.get("group") == group else real(**kw))
    methods._plugins.cache_clear()
    methods.method_class.cache_clear()
    yield
    methods._plugins.cache_clear()
    methods.method_class.cache_clear()


def test_a_plugin_method_registers_through_an_entry_point(plugins, tiny_pipe, two_plan, torch_one_thread):
    assert methods.available_methods() == (*BUILTIN, "broken", "sparkle", "none")
    assert methods.method_class("refocus").__module__ == "plan_and_render.renderer.methods.refocus"  # not taken over
    with pytest.raises(UsageError, match="'broken' from sparkle_plugin:NotAMethod is not a GuidanceMethod"):
        methods.method_class("broken")
    s = RenderSettings(method="refocus+Sparkle", method_options={"sparkle": {"amount": 0.0}})
    assert s.methods == ["refocus", "sparkle"]
    with pytest.raises(UsageError, match="unknown option.*amout.*known: amount"):
        RenderSettings(method="sparkle", method_options={"sparkle": {"amout": 1}})

    none = tiny_pipe(two_plan, method="none", steps=3, progress=False)
    zero = tiny_pipe(two_plan, method="sparkle", steps=3, progress=False, method_options={"sparkle": {"amount": 0.0}})
    some = tiny_pipe(two_plan, method="sparkle", steps=3, progress=False)
    assert np.array_equal(np.asarray(zero.images[0]), np.asarray(none.images[0]))
    assert not np.array_equal(np.asarray(some.images[0]), np.asarray(none.images[0]))
    assert some.losses["sparkle_steps"] == 3.0 and some.config["methods"] == {"sparkle": {"amount": 0.5}}
    both = tiny_pipe(two_plan, s, steps=3, progress=False)
    alone = tiny_pipe(two_plan, method="refocus", steps=3, progress=False)
    assert np.array_equal(np.asarray(both.images[0]), np.asarray(alone.images[0])) and both.passes == alone.passes


# ---------------------------------------------------------------------------
# CPU threads: the setting, its default on a shared machine, and its use during a render
# ---------------------------------------------------------------------------

@given(st.integers(min_value=1, max_value=256))
def test_default_threads_is_half_the_usable_cores_at_most_4(cores):
    from unittest import mock

    from plan_and_render.renderer import settings as S

    with mock.patch.dict(S.os.environ, {}, clear=False), \
            mock.patch.object(S.os, "sched_getaffinity", lambda pid: set(range(cores)), create=True):
        S.os.environ.pop(S.THREADS_ENV, None)
        n = S.default_threads()
    assert n == {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3}.get(cores, 4)


def test_the_environment_variable_sets_the_default_and_bad_values_are_one_line(monkeypatch):
    from plan_and_render.renderer.settings import THREADS_ENV, default_threads

    monkeypatch.setenv(THREADS_ENV, " 3 ")
    assert default_threads() == 3
    for bad in ("0", "two", "-1", "1.5", "5000"):
        monkeypatch.setenv(THREADS_ENV, bad)
        with pytest.raises(UsageError, match=f"{THREADS_ENV}='{re_escape(bad)}': give a whole number of threads"):
            default_threads()
    assert "threads 0 is out of range: use 1 to 1024" in one_line_error(threads=0)
    assert "threads must be a number" in one_line_error(threads="2")
    assert RenderSettings(threads=2).threads == 2 and RenderSettings().threads is None


def re_escape(text: str) -> str:
    import re

    return re.escape(text.strip())


def test_a_render_runs_on_its_threads_records_them_and_restores_torchs(tiny_pipe, two_plan, monkeypatch):
    import torch

    from plan_and_render.renderer.settings import THREADS_ENV

    seen: list[int] = []
    torch.set_num_threads(1)
    res = tiny_pipe(two_plan, method="none", steps=2, threads=2, progress=False,
                    callback=lambda i, t, x: seen.append(torch.get_num_threads()))
    assert seen == [2, 2] and res.settings.threads == 2 and res.config["threads"] == 2
    assert torch.get_num_threads() == 1  # restored
    monkeypatch.setenv(THREADS_ENV, "3")
    res = tiny_pipe(two_plan, method="none", steps=1, progress=False,
                    callback=lambda i, t, x: seen.append(torch.get_num_threads()))
    assert seen[-1] == 3 and res.settings.threads == 3 and torch.get_num_threads() == 1
    monkeypatch.setenv(THREADS_ENV, "many")  # a bad environment is a usage error before anything runs
    with pytest.raises(UsageError, match="PLAN_AND_RENDER_THREADS='many'"):
        tiny_pipe(two_plan, method="none", steps=1, progress=False)
    assert torch.get_num_threads() == 1


def test_threads_is_an_option_of_the_render_commands():
    from click.testing import CliRunner

    from plan_and_render.app.cli import cli
    from plan_and_render.app.options import render_settings

    for command in (["generate"], ["chat"], ["batch"]):
        out = CliRunner().invoke(cli, [*command, "--help"])
        assert "--threads" in out.output, command
    assert render_settings({"threads": 2, "steps": None}).threads == 2
    with pytest.raises(UsageError, match="--threads 0 is out of range"):
        render_settings({"threads": 0})
