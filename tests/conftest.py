"""Shared fixtures. Renderer: tiny random SD 1.x / SDXL pipelines, a two-object plan, one torch thread."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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


def write_plugin(folder: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None) -> Path:
    """What ``pip install`` leaves for a plugin package: ``<dist>-0.1.dist-info`` (METADATA and
    entry_points.txt declaring ``entry_points`` in the planner group) plus the modules' sources."""
    from plan_and_render.planner import ENTRY_POINT_GROUP

    info = folder / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{ENTRY_POINT_GROUP}]", *(f"{name} = {target}" for name, target in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in (modules or {}).items():
        (folder / f"{name}.py").write_text(source)
    return folder


@pytest.fixture
def planner_plugins(tmp_path_factory, monkeypatch):
    """Install planner backends as a plugin package would: ``install({"prefix": "module:Class"}, {module: source})``
    writes a distribution into a fresh folder (not the test's tmp_path) and puts it on sys.path for this test;
    returns the folder."""

    def install(entry_points: dict[str, str], modules: dict[str, str] | None = None) -> Path:
        folder = tmp_path_factory.mktemp("planner-plugins")
        write_plugin(folder, f"test-planners-{folder.name}", entry_points, modules)
        monkeypatch.syspath_prepend(str(folder))
        return folder

    return install


TEST_CACHE_ENV = "PLAN_AND_RENDER_TEST_CACHE"


@pytest.fixture(scope="session")
def gemma_cache(request) -> Path:
    """The model cache of the slow smoke tests that load the bundled Gemma 3 270M (the ``local`` planner):
    ``$PLAN_AND_RENDER_TEST_CACHE``, else ``.cache/test-models`` in the checkout (git ignores it) - never
    the user's home folder. Its first use converts the model there (1.1 GB, one to three minutes), and
    says so, once, with the folder; later runs reuse it. See docs/development.md."""
    from plan_and_render.planner.backends import gguf_cache

    folder = Path(os.environ.get(TEST_CACHE_ENV) or Path(__file__).resolve().parents[1] / ".cache" / "test-models")
    folder = folder.expanduser().resolve()
    patch = pytest.MonkeyPatch()
    patch.setenv("PLAN_AND_RENDER_CACHE", str(folder))
    ready = any(gguf_cache.is_complete(p) for p in (folder / "models").glob("gemma*"))
    what = ("using the converted Gemma 3 270M in" if ready else
            "converting the bundled Gemma 3 270M (1.1 GB, one to three minutes) into")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even while output is captured
            reporter.ensure_newline()
            reporter.write_line(f"slow smoke tests: {what} {folder} (choose the folder with {TEST_CACHE_ENV}=DIR)")
    yield folder
    patch.undo()


@pytest.fixture
def run_cli(capsys):
    """The CLI run in-process through main's routing: ``run_cli(*argv) -> (exit code, stdout, stderr)``."""
    from plan_and_render.app import cli

    def run(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exc:
            cli.main(list(argv))
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    return run


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def ctrl_c_child():
    """``preexec_fn`` for a child process a test sends Ctrl-C: a child started from a background job
    (``pytest ... &`` in a script) inherits an ignored SIGINT and would never see it."""
    return _default_sigint
