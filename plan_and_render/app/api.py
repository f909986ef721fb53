"""The Python API: plan, render, generate - one call per stage, or all three.

    import plan_and_render as par
    plan = par.plan("a gray cat to the left of a blue vase", planner="rules")
    result = par.render(plan, model="models/shapes-tiny", width=64, height=64, steps=10)
    result = par.generate("a red circle above a blue square", planner="rules",
                          model="models/shapes-tiny", out_dir="outputs/demo")
    result.images[0]; result.scores; result.save("elsewhere/")

Planners and diffusion pipelines are loaded once and kept (planners keyed by their spec
and options here, pipelines in the renderer's one cache), so calling these in a loop or a
notebook does not reload models. Render settings are ``RenderSettings`` (or its fields as
keywords), checked once before anything loads. Every failure is a
``plan_and_render.errors.PlanAndRenderError`` with a one-line message.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import ValidationError

from .. import renderer
from ..errors import ModelUnavailableError, PlanAndRenderError, UsageError
from ..renderer.settings import DEFAULT_METHOD, RenderSettings
from ..scene import Canvas, ScenePlan, first_error

from . import output

if TYPE_CHECKING:  # torch-heavy imports stay lazy: planning must not pay for them
    from PIL.Image import Image

    from plan_and_render.planner import Planner
    from plan_and_render.renderer import LayoutPipeline, RenderResult

DEFAULT_PLANNER = "local"
DEFAULT_MODEL = renderer.DEFAULT_MODEL
DEFAULT_SIZE = 512
DEMO_MODEL_HINT = ("or try the offline demo model shipped in the project checkout: "
                   "--model models/shapes-tiny")

Event = Callable[[str, dict], None]

# --------------------------------------------------------------------------
# Caches: one planner per (spec, options) here; pipelines in the renderer's cache
# --------------------------------------------------------------------------

_PLANNERS: dict[tuple, "Planner"] = {}


def _options_key(options: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in options.items() if v is not None))


def get_planner(spec: str = DEFAULT_PLANNER, **options: Any) -> "Planner":
    """The planner backend a spec names (``rules``, ``local``, ``openai:MODEL``...), built once and reused."""
    from plan_and_render.planner import get_planner as build

    options = {k: v for k, v in options.items() if v is not None}
    key = (spec, _options_key(options))
    if key not in _PLANNERS:
        _PLANNERS[key] = build(spec, **options)
    return _PLANNERS[key]


def get_pipeline(model: str | Path = DEFAULT_MODEL, device: str | None = None,
                 dtype: str | None = None, offload: str | None = None) -> "LayoutPipeline":
    """A loaded diffusion pipeline (hub id, diffusers folder or one file) from the renderer's cache:
    loaded once per (model, device, dtype) for this API and ``plan_and_render.renderer`` alike.

    Raises ``ModelUnavailableError`` when the weights cannot be found (naming the shipped demo model).
    """
    try:
        return renderer.get_pipeline(model, device, dtype, offload)
    except ModelUnavailableError as e:
        if "shapes-tiny" in str(model):
            raise
        raise ModelUnavailableError(f"{e.message}; {DEMO_MODEL_HINT}") from None


def clear_cache() -> None:
    """Forget loaded planners and pipelines (frees their memory once nothing else holds them)."""
    _PLANNERS.clear()
    renderer.clear_cache()


# --------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------


def make_canvas(width: int | None = None, height: int | None = None, canvas: Canvas | dict | None = None,
                default: int = DEFAULT_SIZE) -> Canvas:
    """A Canvas from explicit sides (else ``canvas``, else ``default`` square); UsageError when out of range."""
    base = Canvas.model_validate(canvas) if canvas is not None else None
    w = width if width is not None else (base.width if base else default)
    h = height if height is not None else (base.height if base else default)
    meta = Canvas.model_fields["width"].metadata
    lo = next(m.ge for m in meta if hasattr(m, "ge"))
    hi = next(m.le for m in meta if hasattr(m, "le"))
    for name, v in (("width", w), ("height", h)):
        if not isinstance(v, int) or not lo <= v <= hi:
            raise UsageError(f"{name} {v} is out of range: use {lo} to {hi} pixels")
    return Canvas(width=w, height=h)


def check_render_size(width: int | None, height: int | None) -> None:
    """Sides the diffusion model can take (``RenderSettings``'s rule: multiples of 8 in range)."""
    RenderSettings(width=width, height=height)


def native_size(model: str | Path) -> int | None:
    """The square side a local diffusers folder was trained at (UNet sample size x VAE factor), else None.

    Reads two small config files, never weights; hub ids and single files give None.
    """
    folder = Path(model).expanduser()
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_plan(data: str | bytes | dict, source: str = "plan") -> ScenePlan:
    """A ScenePlan from JSON text or a dict; every way it can be wrong is one ``UsageError`` line.

    The checks themselves are ``ScenePlan``'s (plan-format.md, "Validation"); this
    only decodes the JSON and words the first problem for the file it came from.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"{source} is not valid JSON ({e.msg if hasattr(e, 'msg') else e} at line "
                             f"{getattr(e, 'lineno', '?')}); expected a scene plan as in plan-format.md") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source} must be a JSON object (a scene plan), not {type(data).__name__}")
    if "error" in data and "objects" not in data:
        err = data.get("error") or {}
        raise UsageError(f"{source} is an error record, not a plan: {err.get('message', err)}")
    try:
        return ScenePlan.model_validate(data)
    except ValidationError as e:
        raise UsageError(f"{source} is not a valid scene plan: {first_error(e)}") from None


def load_plan(path: str | Path) -> ScenePlan:
    """Read and validate a plan JSON file (e.g. one written by ``plan --json`` and edited by hand)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"plan file {str(path)!r} does not exist") from None
    except OSError as e:
        raise UsageError(f"cannot read plan file {str(path)!r}: {e.strerror or e}") from None
    return parse_plan(text, source=f"plan file {str(path)!r}")


def check(plan: ScenePlan) -> list[str]:
    """The relations a plan violates, as readable lines (empty when all hold).

    Uses the geometry stage's checker, the same one tests and benchmarks use.
    """
    try:
        from plan_and_render.geometry import check_plan
    except ImportError:  # geometry not installed: nothing to check against
        return []
    return [f"relation '{v.relation}' does not hold: {v.reason}" for v in check_plan(plan)]


# --------------------------------------------------------------------------
# Stage 1: plan
# --------------------------------------------------------------------------


def plan(prompt: str, planner: "str | Planner" = DEFAULT_PLANNER, *, canvas: Canvas | dict | None = None,
         width: int | None = None, height: int | None = None, seed: int = 0, **planner_options: Any) -> ScenePlan:
    """Prompt -> ScenePlan (objects with boxes satisfying the prompt's relations).

    ``planner`` is a spec (``"local"``, ``"rules"``, ``"openai:gpt-4o-mini"``, ``"hf:PATH"``, ``"gguf:FILE"``)
    or a built backend; ``planner_options`` go to its constructor (``retries``, ``timeout``, ``base_url``,
    ``device``). ``seed`` varies the layout; the relations hold for every seed.
    """
    from plan_and_render.planner import make_plan

    backend = get_planner(planner, **planner_options) if isinstance(planner, str) else planner
    return make_plan(prompt, backend, canvas=make_canvas(width, height, canvas), seed=seed)


plan_prompt = plan  # ``generate`` takes a ``plan`` argument; this name reaches the function from inside it


def save_preview(plan: ScenePlan, path: str | Path) -> Path:
    """Write the layout preview PNG (labelled boxes) atomically."""
    from plan_and_render.geometry import save_preview as draw

    path = Path(path)
    with output.atomic_path(path) as tmp:
        draw(plan, tmp)
    return path


# --------------------------------------------------------------------------
# Stage 2: render
# --------------------------------------------------------------------------


def render(plan: ScenePlan, model: str | Path = DEFAULT_MODEL, settings: RenderSettings | None = None, *,
           progress: bool = True, callback: Callable | None = None, **overrides: Any) -> "RenderResult":
    """Render a plan with attention guidance; returns ``RenderResult(images, scores, timings, warnings, config,
    settings)``.

    ``settings`` is a ``RenderSettings``; its fields may also be given (or overridden) as keywords: ``method``
    (refocus, zest, excite, rca, backward, none, or a ``+`` combination), ``seed``, ``steps``,
    ``guidance_scale``, ``num_images``, ``width``/``height`` (default: the plan's canvas; multiples of 8),
    ``method_options``, ``device``, ``dtype``. Unset steps and guidance scale are the model's (SD 7.5, SDXL
    5.0). ``scores`` are each object's share of attention inside its box over the last guided steps. Bad
    settings fail before anything loads; the pipeline is loaded on first use and then reused.
    """
    settings = RenderSettings.build(settings, **overrides)
    t0 = time.perf_counter()
    pipe = get_pipeline(model, settings.device, settings.dtype, settings.offload)
    load_s = time.perf_counter() - t0
    result = pipe(plan, settings, callback=callback, progress=progress)
    result.timings = {"load_s": load_s, **result.timings}
    return result


# --------------------------------------------------------------------------
# Stage 3: everything, with a run folder
# --------------------------------------------------------------------------


@dataclass
class Result:
    """What ``generate`` produced. ``images`` is empty for a dry run; ``out_dir`` is None until saved."""

    plan: ScenePlan
    images: list["Image"] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def image(self) -> "Image | None":
        """The first image (None for a dry run)."""
        return self.images[0] if self.images else None

    def save(self, out_dir: str | Path) -> Path:
        """Write plan.json, layout.png, the images and metadata.json into ``out_dir``; return it."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        output.atomic_write(out / "plan.json", self.plan.to_json() + "\n")
        files: dict[str, Any] = {"plan": "plan.json", "layout": None, "images": []}
        try:
            save_preview(self.plan, out / "layout.png")
            files["layout"] = "layout.png"
        except ImportError:
            pass
        names = output.image_names(len(self.images)) if self.images else []
        for img, name in zip(self.images, names):
            output.atomic_save_image(img, out / name)
        files["images"] = names
        self.metadata = {**self.metadata, "files": files}
        output.atomic_write_json(out / "metadata.json", self.metadata)
        self.out_dir = out
        return out

    def _repr_png_(self) -> bytes | None:  # notebooks show the first image
        if not self.images:
            return None
        import io

        buf = io.BytesIO()
        self.images[0].save(buf, format="PNG")
        return buf.getvalue()


class _RunFolder:
    """Writes one run's files as soon as each exists, and keeps metadata.json current."""

    def __init__(self, out_dir: Path | None, metadata: dict[str, Any]):
        self.dir = out_dir
        self.metadata = metadata
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def update(self, **fields: Any) -> None:
        self.metadata.update(fields)
        self.metadata["timings"] = {k: round(v, 4) for k, v in self.metadata["timings"].items()}
        if self.dir is not None:
            output.atomic_write_json(self.dir / "metadata.json", self.metadata)

    def write_plan(self, plan: ScenePlan) -> None:
        if self.dir is None:
            return
        output.atomic_write(self.dir / "plan.json", plan.to_json() + "\n")
        self.metadata["files"]["plan"] = "plan.json"
        try:
            save_preview(plan, self.dir / "layout.png")
            self.metadata["files"]["layout"] = "layout.png"
        except ImportError:
            self.metadata["warnings"].append("layout preview skipped: the geometry stage is not installed")

    def write_images(self, images: list) -> None:
        if self.dir is None:
            return
        names = output.image_names(len(images))
        for img, name in zip(images, names):
            output.atomic_save_image(img, self.dir / name)
        self.metadata["files"]["images"] = names


def _emit(on_event: Event | None, name: str, **data: Any) -> None:
    if on_event is not None:
        on_event(name, data)


def generate(prompt: str | None = None, *, plan: ScenePlan | str | Path | None = None,
             planner: "str | Planner" = DEFAULT_PLANNER, model: str | Path = DEFAULT_MODEL,
             settings: RenderSettings | None = None, out_dir: str | Path | None = None, dry_run: bool = False,
             progress: bool = True, on_event: Event | None = None, planner_options: dict | None = None,
             **options: Any) -> Result:
    """Prompt -> plan -> layout preview -> image(s), optionally written to ``out_dir`` as they are made.

    Render settings: ``settings`` (a ``RenderSettings``) and/or its fields as keywords (``method``, ``seed``,
    ``steps``, ``guidance_scale``, ``num_images``, ``width``, ``height``, ``method_options``, ``device``,
    ``dtype``); ``seed`` also varies the layout. ``planner_options`` go to the planner's constructor
    (``retries``, ``timeout``, ``base_url``, ``device``); other keywords that are not render settings are
    taken as planner options too. Give ``plan`` (a ScenePlan or a JSON file) instead of ``prompt`` to render
    a given, e.g. hand-edited, plan; the relations it violates become warnings. Size: ``width``/``height``
    when given; otherwise a new plan's canvas is the model's native size for a local diffusers folder (64
    for models/shapes-tiny), else 512, and a given plan renders at its own canvas. ``dry_run`` stops after
    the plan and preview. With ``out_dir``, plan.json and layout.png are written before rendering starts,
    so they survive a missing model (``ModelUnavailableError`` is raised once ``metadata.json`` records it)
    and Ctrl-C; metadata.json holds the settings used (``"settings"``, resolved once rendered).
    ``on_event(name, data)`` is called at each stage (planned, rendering, rendered) for progress displays.
    """
    t_start = time.perf_counter()
    if (prompt is None) == (plan is None):
        raise UsageError("give either a prompt or a plan to render, not both" if prompt is not None
                         else "give a prompt (or a plan file) to render")
    fields = RenderSettings.model_fields
    settings = RenderSettings.build(settings, **{k: v for k, v in options.items() if k in fields})
    planner_options = {**(planner_options or {}), **{k: v for k, v in options.items() if k not in fields}}
    width, height, seed = settings.width, settings.height, settings.seed

    spec = planner if isinstance(planner, str) else getattr(planner, "name", type(planner).__name__)
    metadata: dict[str, Any] = {
        "prompt": prompt, "status": "planning", "created": output.utc_now(),
        "planner": spec if plan is None else None,
        "planner_options": output.public_options(planner_options) if plan is None else {},
        "plan_source": (str(plan) if isinstance(plan, (str, Path)) else "given") if plan is not None else None,
        "model": str(model), **_top_level(settings), "settings": settings.model_dump(mode="json"),
        "dry_run": dry_run, "scores": {}, "timings": {}, "warnings": [], "violations": [], "error": None,
        "files": {"plan": None, "layout": None, "images": []}, "versions": output.package_versions(),
    }
    run = _RunFolder(Path(out_dir) if out_dir is not None else None, metadata)
    timings: dict[str, float] = {}
    try:
        # 1. the plan: made here, or given and checked
        t0 = time.perf_counter()
        if plan is None:
            side = native_size(model) or DEFAULT_SIZE
            the_plan = plan_prompt(prompt, planner, canvas=make_canvas(width, height, default=side), seed=seed,
                                   **planner_options)
        else:
            the_plan = load_plan(plan) if isinstance(plan, (str, Path)) else parse_plan(plan.model_dump())
            if width is not None or height is not None:
                the_plan.canvas = make_canvas(width, height, the_plan.canvas)
            metadata["violations"] = check(the_plan)
        timings["plan_s"] = time.perf_counter() - t0
        metadata["prompt"] = the_plan.prompt
        metadata["warnings"] = [*the_plan.warnings, *metadata["violations"]]
        metadata["width"], metadata["height"] = the_plan.canvas.width, the_plan.canvas.height

        t0 = time.perf_counter()
        run.write_plan(the_plan)
        timings["preview_s"] = time.perf_counter() - t0
        run.update(status="dry_run" if dry_run else "planned", timings=dict(timings))
        _emit(on_event, "planned", plan=the_plan, out_dir=run.dir, warnings=list(metadata["warnings"]),
              files=dict(metadata["files"]))
        result = Result(plan=the_plan, out_dir=run.dir, metadata=metadata, timings=timings,
                        warnings=list(metadata["warnings"]))
        if dry_run:
            timings["total_s"] = time.perf_counter() - t_start
            run.update(timings=dict(timings))
            return result

        # 2. the image(s)
        _emit(on_event, "rendering", model=str(model), method=settings.method, steps=settings.steps)
        run.update(status="rendering")
        rendered = render(the_plan, model, settings, progress=progress)
        timings.update({k: float(v) for k, v in rendered.timings.items() if k != "total_s"})
        timings["render_s"] = float(rendered.timings.get("total_s", 0.0))
        _emit(on_event, "rendered", scores=dict(rendered.scores))

        t0 = time.perf_counter()
        run.write_images(rendered.images)
        timings["save_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - t_start
        cfg = rendered.config
        metadata["warnings"] += rendered.warnings
        run.update(status="ok", scores={k: round(float(v), 4) for k, v in rendered.scores.items()},
                   timings=dict(timings), **_top_level(rendered.settings),
                   settings=rendered.settings.model_dump(mode="json"), render_config=_jsonable(cfg))
        result.images, result.scores, result.timings = list(rendered.images), dict(rendered.scores), timings
        result.warnings = list(metadata["warnings"])
        return result
    except PlanAndRenderError as e:
        timings["total_s"] = time.perf_counter() - t_start
        run.update(status="error", error=e.record()["error"], timings=dict(timings))
        raise
    except KeyboardInterrupt:
        timings["total_s"] = time.perf_counter() - t_start
        run.update(status="interrupted", timings=dict(timings))
        raise
    except Exception as e:
        timings["total_s"] = time.perf_counter() - t_start
        run.update(status="error", error={"type": "unexpected", "message": f"{type(e).__name__}: {e}"},
                   timings=dict(timings))
        raise


def _top_level(settings: RenderSettings) -> dict[str, Any]:
    """The settings metadata.json has always carried at its top level (readers of older runs rely on them)."""
    keys = ("method", "seed", "steps", "guidance_scale", "num_images", "width", "height", "device", "dtype")
    return {k: getattr(settings, k) for k in keys}


def _jsonable(obj: Any) -> Any:
    """Render configs hold dataclasses and tuples; keep what JSON can say."""
    return json.loads(json.dumps(obj, default=lambda o: getattr(o, "__dict__", str(o))))
