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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import ValidationError

from .. import renderer
from ..errors import ModelUnavailableError, PlanAndRenderError, Terminated, UsageError
from ..renderer.folder import size_prior as folder_size_prior
from ..renderer.locate import locate_model, model_text
from ..renderer.settings import DEFAULT_METHOD, MAX_SEED, RenderSettings, check_pixels
from ..scene import MAX_PLAN_OBJECTS, Canvas, PlanRelation, ScenePlan, first_error

from . import output

if TYPE_CHECKING:  # torch-heavy imports stay lazy: planning must not pay for them
    from PIL.Image import Image

    from plan_and_render.planner import Planner
    from plan_and_render.renderer import LayoutPipeline, RenderResult

DEFAULT_PLANNER = "local"
DEFAULT_MODEL = renderer.DEFAULT_MODEL
DEFAULT_SIZE = 512
# A plan file larger than this is refused before it is read: MAX_PLAN_OBJECTS objects and their relations
# take well under a megabyte, and parsing a runaway file (600,000 objects, 50 MB) would take seconds.
MAX_PLAN_BYTES = 4_000_000


def demo_model() -> str:
    """The shipped demo model: its absolute path in a checkout (works from any folder), else the relative one."""
    shipped = Path(__file__).resolve().parents[2] / "models" / "shapes-tiny"
    return str(shipped) if (shipped / "model_index.json").is_file() else "models/shapes-tiny"


DEMO_MODEL_HINT = f"or try the offline demo model shipped in the project checkout: --model {demo_model()}"

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

    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"planner must be a spec such as 'rules', 'local' or 'openai:MODEL', not {spec!r}")
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
        raise _with_demo_hint(e, model) from None


def find_model(model: str | Path) -> str:
    """The model as ``renderer.locate_model`` finds it (an existing folder or file as an absolute path, so it
    means the same from any folder and in a stored session); "not found" names the demo model. Cheap:
    no torch, no weights - the check ``generate`` makes before a planner loads."""
    try:
        return locate_model(model)
    except ModelUnavailableError as e:
        raise _with_demo_hint(e, model) from None


def model_path(model: str | Path) -> str:
    """An existing local folder or file as its absolute path; anything else (a hub id) as given."""
    text = model_text(model)
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def _with_demo_hint(e: ModelUnavailableError, model: object) -> ModelUnavailableError:
    """Name the shipped demo model (where it really is, when the name given was meant to be it)."""
    if str(model) == demo_model():
        return e
    hint = f"the demo model is at {demo_model()}" if "shapes-tiny" in str(model) else DEMO_MODEL_HINT
    return ModelUnavailableError(f"{e.message}; {hint}")


def clear_cache() -> None:
    """Forget loaded planners and pipelines (frees their memory once nothing else holds them)."""
    _PLANNERS.clear()
    renderer.clear_cache()


# --------------------------------------------------------------------------
# Validation helpers: a wrong argument is one UsageError, before anything loads
# --------------------------------------------------------------------------


def check_seed(seed: object) -> int:
    """A seed (layouts and noise take the same range)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed must be a whole number from 0 to {MAX_SEED}, not {seed!r}")
    return seed


def check_plan_arg(plan: object, what: str = "plan") -> ScenePlan:
    if not isinstance(plan, ScenePlan):
        raise UsageError(f"{what} must be a ScenePlan (from plan_and_render.plan, load_plan or parse_plan), "
                         f"not {type(plan).__name__}")
    return plan


def check_path_arg(path: object, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise UsageError(f"{what} must be a file or folder path, not {path!r}")
    return Path(path).expanduser()


def check_prompt_arg(prompt: object) -> str:
    """The prompt as the planner will see it (``validate_prompt``), checked before any planner loads."""
    from plan_and_render.planner.plan import validate_prompt

    if not isinstance(prompt, str):
        raise UsageError(f"the prompt must be text (a str), not {type(prompt).__name__}")
    return validate_prompt(prompt)


def check_planner_arg(planner: object) -> None:
    if not isinstance(planner, str) and not callable(getattr(planner, "graph", None)):
        raise UsageError(f"planner must be a spec such as 'rules', 'local' or 'openai:MODEL', or a Planner, "
                         f"not {planner!r}")


def make_canvas(width: int | None = None, height: int | None = None, canvas: Canvas | dict | None = None,
                default: int = DEFAULT_SIZE) -> Canvas:
    """A Canvas from explicit sides (else ``canvas``, else ``default`` square); UsageError when out of range."""
    try:
        base = Canvas.model_validate(canvas) if canvas is not None else None
    except ValidationError as e:
        raise UsageError(f"canvas {canvas!r} is not valid: {first_error(e)}") from None
    w = width if width is not None else (base.width if base else default)
    h = height if height is not None else (base.height if base else default)
    meta = Canvas.model_fields["width"].metadata
    lo = next(m.ge for m in meta if hasattr(m, "ge"))
    hi = next(m.le for m in meta if hasattr(m, "le"))
    for name, v in (("width", w), ("height", h)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise UsageError(f"{name} {v} is out of range: use {lo} to {hi} pixels")
    return Canvas(width=w, height=h)


def check_render_size(width: int | None, height: int | None) -> None:
    """Sides the diffusion model can take (``RenderSettings``'s rule: multiples of 8 in range)."""
    RenderSettings(width=width, height=height)


def native_size(model: str | Path) -> int | None:
    """The square side a local diffusers folder was trained at (UNet's or SD 3 transformer's sample size x
    VAE factor), else None.

    Reads two small config files, never weights; hub ids and single files give None.
    """
    folder = Path(model).expanduser()
    try:
        part = "unet" if (folder / "unet").is_dir() else "transformer"
        unet = json.loads((folder / part / "config.json").read_text())
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
        except RecursionError:
            raise UsageError(f"{source} is nested too deeply to be a scene plan (see plan-format.md)") from None
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
    path = check_path_arg(path, "the plan file")
    try:
        size = path.stat().st_size
        if size > MAX_PLAN_BYTES:
            raise UsageError(f"plan file {str(path)!r} has {size / 1e6:.1f} MB; a scene plan (at most "
                             f"{MAX_PLAN_OBJECTS} objects) is never more than {MAX_PLAN_BYTES / 1e6:.0f} MB")
        text = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"plan file {str(path)!r} does not exist") from None
    except OSError as e:
        raise UsageError(f"cannot read plan file {str(path)!r}: {e.strerror or e}") from None
    return parse_plan(text, source=f"plan file {str(path)!r}")


def check(plan: ScenePlan) -> list[str]:
    """The relations, regions and depths a plan violates, as readable lines (empty when all hold).

    Uses the geometry stage's checker, the same one tests and benchmarks use.
    """
    check_plan_arg(plan)
    try:
        from plan_and_render.geometry import check_plan
    except ImportError:  # geometry not installed: nothing to check against
        return []
    return [f"{'relation ' if isinstance(v.relation, PlanRelation) else ''}'{v.relation}' does not hold: {v.reason}"
            for v in check_plan(plan)]


# --------------------------------------------------------------------------
# Stage 1: plan
# --------------------------------------------------------------------------


def plan(prompt: str, planner: "str | Planner" = DEFAULT_PLANNER, *, canvas: Canvas | dict | None = None,
         width: int | None = None, height: int | None = None, seed: int = 0, for_model: str | Path | None = None,
         **planner_options: Any) -> ScenePlan:
    """Prompt -> ScenePlan (objects with boxes satisfying the prompt's relations).

    ``planner`` is a spec (``"local"``, ``"rules"``, ``"openai:gpt-4o-mini"``, ``"hf:PATH"``, ``"gguf:FILE"``)
    or a built backend; ``planner_options`` go to its constructor (``retries``, ``timeout``, ``base_url``,
    ``device``). ``seed`` varies the layout; the relations hold for every seed. ``for_model``: the
    diffusion model the plan is for; a local folder whose guidance.json has a ``"size_prior"`` sizes the
    boxes as that model draws things (docs/renderer.md, "Model folders"); otherwise real-world sizes.
    """
    from plan_and_render.planner import make_plan

    prompt = check_prompt_arg(prompt)  # every argument is checked before a language model loads
    the_canvas, seed = make_canvas(width, height, canvas), check_seed(seed)
    check_planner_arg(planner)
    backend = get_planner(planner, **planner_options) if isinstance(planner, str) else planner
    return make_plan(prompt, backend, canvas=the_canvas, seed=seed, size_prior=folder_size_prior(for_model))


plan_prompt = plan  # ``generate`` takes a ``plan`` argument; this name reaches the function from inside it


def save_preview(plan: ScenePlan, path: str | Path) -> Path:
    """Write the layout preview PNG (labelled boxes) atomically."""
    from plan_and_render.geometry import save_preview as draw

    check_plan_arg(plan)
    path = check_path_arg(path, "the preview path")
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
    check_plan_arg(plan)
    if callback is not None and not callable(callback):
        raise UsageError(f"callback must be a function callback(step, timestep, latents), not {callback!r}")
    settings = RenderSettings.build(settings, **overrides)
    check_pixels(settings.width or plan.canvas.width, settings.height or plan.canvas.height, settings.num_images)
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
    seeds: list[int] = field(default_factory=list)  # each image's noise seed
    image_scores: list[dict[str, float]] = field(default_factory=list)  # ``scores`` of each image

    @property
    def image(self) -> "Image | None":
        """The first image (None for a dry run)."""
        return self.images[0] if self.images else None

    def save(self, out_dir: str | Path) -> Path:
        """Write plan.json, layout.png, the images (and their contact sheet) and metadata.json into ``out_dir``,
        which becomes this result's own (``output.claim_run_dir``: an earlier run's files are removed); return it."""
        out = output.claim_run_dir(check_path_arg(out_dir, "out_dir"))
        output.atomic_write(out / "plan.json", self.plan.to_json() + "\n")
        files: dict[str, Any] = {"plan": "plan.json", "layout": None}
        try:
            save_preview(self.plan, out / "layout.png")
            files["layout"] = "layout.png"
        except ImportError:
            pass
        files.update(_write_images(out, self.images, self.seeds))
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


def _write_images(folder: Path, images: list, seeds: list[int]) -> dict[str, Any]:
    """image.png, or image-1.png ... image-N.png and a contact sheet (the grid, captioned with the seeds)."""
    names = output.image_names(len(images)) if images else []
    for img, name in zip(images, names):
        output.atomic_save_image(img, folder / name)
    sheet = None
    if len(images) > 1:
        labels = [f"seed {seed}" for seed in seeds] if len(seeds) == len(images) else names
        output.atomic_save_image(output.contact_sheet(images, labels), folder / output.CONTACT_SHEET)
        sheet = output.CONTACT_SHEET
    return {"images": names, "contact_sheet": sheet}


def _image_records(images: list, seeds: list[int], scores: list[dict[str, float]]) -> list[dict[str, Any]]:
    """metadata.json's ``images``: each image's file, seed and attention-in-box scores."""
    names = output.image_names(len(images)) if images else []
    return [{"file": name, "seed": seeds[k] if k < len(seeds) else None,
             "scores": {o: round(float(v), 4) for o, v in (scores[k] if k < len(scores) else {}).items()}}
            for k, name in enumerate(names)]


class _RunFolder:
    """Writes one run's files as soon as each exists, and keeps metadata.json current. The folder is the
    run's own from the start: files an earlier run wrote there are removed (``output.claim_run_dir``)."""

    def __init__(self, out_dir: Path | None, metadata: dict[str, Any]):
        self.dir = output.claim_run_dir(out_dir) if out_dir is not None else None
        self.metadata = metadata

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

    def write_images(self, images: list, seeds: list[int]) -> None:
        if self.dir is None:
            return
        self.metadata["files"].update(_write_images(self.dir, images, seeds))


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
    the plan and preview.

    Every argument is checked first, and - unless ``dry_run`` - that the model exists and the device is
    there, so a typo fails in a second, before a language model or torch loads and before anything is
    written. ``out_dir`` becomes the run's own folder (files an earlier run wrote there are removed,
    ``output.claim_run_dir``); plan.json and layout.png are written before rendering starts, so they survive
    an error or Ctrl-C, and metadata.json records the status ("ok", "error", "interrupted", "terminated")
    and the settings used (``"settings"``, resolved once rendered), each image's seed and scores
    (``"images"``). Several images also get a contact sheet (``contact-sheet.png``).
    ``on_event(name, data)`` is called at each stage (planned, rendering, rendered) for progress displays.
    """
    t_start = time.perf_counter()
    prompt = _check_generate_args(prompt, plan, planner, dry_run, on_event, planner_options)
    out = check_path_arg(out_dir, "out_dir") if out_dir is not None else None
    fields = RenderSettings.model_fields
    settings = RenderSettings.build(settings, **{k: v for k, v in options.items() if k in fields})
    planner_options = {**(planner_options or {}), **{k: v for k, v in options.items() if k not in fields}}
    model = model_path(model) if dry_run else find_model(model)  # "not found" before a planner loads
    if settings.device is not None and not dry_run:
        renderer.check_device(settings.device)  # imports torch, which the render needs anyway

    run = _RunFolder(out, _first_metadata(prompt, plan, planner, planner_options, model, settings, dry_run))
    metadata, timings = run.metadata, {}
    try:
        # 1. the plan (made here, or given and checked), written with its preview before any rendering
        t0 = time.perf_counter()
        the_plan = _the_plan(prompt, plan, planner, model, settings, planner_options, metadata)
        timings["plan_s"] = time.perf_counter() - t0
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

        # 2. the image(s), saved as soon as they exist
        _render_into(result, run, model, settings, progress, on_event, t_start)
        return result
    except (Exception, KeyboardInterrupt) as e:  # KeyboardInterrupt: Ctrl-C, or SIGTERM through the CLI
        timings["total_s"] = time.perf_counter() - t_start
        run.update(**_stopped(e), timings=dict(timings))
        raise


def _check_generate_args(prompt, plan, planner, dry_run, on_event, planner_options) -> str | None:
    """``generate``'s arguments that need no model or planner (one UsageError line for the first bad one);
    the prompt as the planner will see it."""
    if (prompt is None) == (plan is None):
        raise UsageError("give either a prompt or a plan to render, not both" if prompt is not None
                         else "give a prompt (or a plan file) to render")
    if prompt is not None:
        prompt = check_prompt_arg(prompt)
        check_planner_arg(planner)
    elif not isinstance(plan, (ScenePlan, str, os.PathLike)):
        raise UsageError(f"plan must be a ScenePlan or the path of a plan JSON file, not {type(plan).__name__}")
    if not isinstance(dry_run, bool):
        raise UsageError(f"dry_run must be True or False, not {dry_run!r}")
    if on_event is not None and not callable(on_event):
        raise UsageError(f"on_event must be a function on_event(name, data), not {on_event!r}")
    if planner_options is not None and not isinstance(planner_options, dict):
        raise UsageError(f"planner_options must be a dict of planner options, not {type(planner_options).__name__}")
    return prompt


def _first_metadata(prompt, plan, planner, planner_options: dict, model, settings: RenderSettings,
                    dry_run: bool) -> dict[str, Any]:
    """metadata.json as it stands before planning: what was asked, every figure still empty."""
    spec = planner if isinstance(planner, str) else getattr(planner, "name", type(planner).__name__)
    return {
        "prompt": prompt, "status": "planning", "created": output.utc_now(),
        "planner": spec if plan is None else None,
        "planner_options": output.public_options(planner_options) if plan is None else {},
        "plan_source": (str(plan) if isinstance(plan, (str, os.PathLike)) else "given") if plan is not None else None,
        "model": model, **_top_level(settings), "settings": settings.model_dump(mode="json"),
        "dry_run": dry_run, "scores": {}, "images": [], "timings": {}, "warnings": [], "violations": [],
        "error": None, "files": {"plan": None, "layout": None, "images": [], "contact_sheet": None},
        "versions": output.package_versions(),
    }


def _the_plan(prompt, plan, planner, model, settings: RenderSettings, planner_options: dict,
              metadata: dict[str, Any]) -> ScenePlan:
    """The plan to render: made from ``prompt`` (a new canvas at the model's native size unless a size is
    given), or ``plan`` loaded and checked, its violations kept as warnings. ``metadata`` gets its prompt,
    warnings and size."""
    width, height = settings.width, settings.height
    if plan is None:
        side = native_size(model) or DEFAULT_SIZE
        the_plan = plan_prompt(prompt, planner, canvas=make_canvas(width, height, default=side), seed=settings.seed,
                               for_model=model, **planner_options)
    else:
        the_plan = load_plan(plan) if isinstance(plan, (str, os.PathLike)) else parse_plan(plan.model_dump())
        if width is not None or height is not None:
            the_plan.canvas = make_canvas(width, height, the_plan.canvas)
        metadata["violations"] = check(the_plan)
    metadata["prompt"] = the_plan.prompt
    metadata["warnings"] = [*the_plan.warnings, *metadata["violations"]]
    metadata["width"], metadata["height"] = the_plan.canvas.width, the_plan.canvas.height
    return the_plan


def _render_into(result: Result, run: _RunFolder, model, settings: RenderSettings, progress: bool,
                 on_event: Event | None, t_start: float) -> None:
    """Render ``result.plan``, write the images as they come, and fill ``result`` and metadata.json."""
    metadata, timings = run.metadata, result.timings
    _emit(on_event, "rendering", model=str(model), method=settings.method, steps=settings.steps)
    run.update(status="rendering")
    rendered = render(result.plan, model, settings, progress=progress)
    timings.update({k: float(v) for k, v in rendered.timings.items() if k != "total_s"})
    timings["render_s"] = float(rendered.timings.get("total_s", 0.0))
    _emit(on_event, "rendered", scores=dict(rendered.scores), warnings=list(rendered.warnings))

    t0 = time.perf_counter()
    run.write_images(rendered.images, rendered.seeds)
    timings["save_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    metadata["warnings"] += rendered.warnings
    run.update(status="ok", scores={k: round(float(v), 4) for k, v in rendered.scores.items()},
               images=_image_records(rendered.images, rendered.seeds, rendered.image_scores),
               timings=dict(timings), **_top_level(rendered.settings),
               settings=rendered.settings.model_dump(mode="json"), render_config=_jsonable(rendered.config))
    result.images, result.scores = list(rendered.images), dict(rendered.scores)
    result.seeds, result.image_scores = list(rendered.seeds), list(rendered.image_scores)
    result.warnings = list(metadata["warnings"])


def _stopped(e: BaseException) -> dict[str, Any]:
    """metadata.json's status (and error) for a run that ``e`` stopped."""
    if isinstance(e, PlanAndRenderError):
        return {"status": "error", "error": e.record()["error"]}
    if isinstance(e, KeyboardInterrupt):
        return {"status": "terminated" if isinstance(e, Terminated) else "interrupted"}
    return {"status": "error", "error": {"type": "unexpected", "message": f"{type(e).__name__}: {e}"}}


def _top_level(settings: RenderSettings) -> dict[str, Any]:
    """The settings metadata.json has always carried at its top level (readers of older runs rely on them)."""
    keys = ("method", "seed", "steps", "guidance_scale", "num_images", "width", "height", "device", "dtype")
    return {k: getattr(settings, k) for k in keys}


def _jsonable(obj: Any) -> Any:
    """Render configs hold dataclasses and tuples; keep what JSON can say."""
    return json.loads(json.dumps(obj, default=lambda o: getattr(o, "__dict__", str(o))))
