"""The ``plan-and-render`` command.

    plan-and-render "PROMPT" [options]        plan -> preview -> render -> output folder (the default command)
    plan-and-render plan "PROMPT" [--json]    print a plan
    plan-and-render plan --from-file P.txt --out P.jsonl
    plan-and-render chat | sessions ...       chat-style layout edits (plan_and_render.chat_cli)

Typer cannot put a positional default command beside subcommands, so ``main``
routes: an argument list that does not start with a known subcommand or a
top-level option is the default ``generate`` command's.

Every failure ends as one ``error: ...`` line on stderr and a non-zero exit
(2 for bad usage, 1 for everything else, 130 for Ctrl-C), never a traceback;
``PLAN_AND_RENDER_DEBUG=1`` prints the traceback of unexpected errors.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from plan_and_render.errors import PlanAndRenderError, UsageError
from plan_and_render.renderer.settings import RenderSettings

from . import api

DEBUG_ENV = "PLAN_AND_RENDER_DEBUG"
PROG = "plan-and-render"

HELP = f"""Plan a scene from a prompt, then render it with attention-guided Stable Diffusion.

[bold]Default command[/bold] (the same as [cyan]{PROG} generate[/cyan]):

  [cyan]{PROG} "PROMPT" [OPTIONS][/cyan]  plan -> layout preview -> render -> one output folder
  (./outputs/<timestamp>-<slug>/ or --out DIR) with image.png, plan.json, layout.png, metadata.json.
  Key options: --planner (local | rules | openai:MODEL | hf:PATH | gguf:FILE), --model, --method
  (refocus, zest, excite, rca, backward, none; combine with +), --seed, --steps, --width/--height,
  --num-images, --guidance-scale, --device, --out, --dry-run (plan + preview only), --plan FILE
  (render a given plan JSON). See [cyan]{PROG} generate --help[/cyan] for all of them.

  Offline demo: [cyan]{PROG} "a red circle above a blue square" --planner rules
  --model models/shapes-tiny --steps 20[/cyan]

[bold]Subcommands[/bold] (listed below): [cyan]plan[/cyan] prints a plan (a table, or --json; --from-file
for a batch), [cyan]chat[/cyan] edits a layout in conversation, [cyan]sessions[/cyan] lists, shows, exports
and resumes chat sessions. Each has --help.

Errors are one line on stderr with a non-zero exit (2: bad usage, 1: other errors, 130: interrupted);
set {DEBUG_ENV}=1 to see the traceback of an unexpected error.
"""

app = typer.Typer(
    name=PROG,
    help=HELP,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

out_console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# --------------------------------------------------------------------------
# one-line messages
# --------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_line(message: str) -> None:
    """The single line every failure prints (plain print: rich would wrap it at the terminal width)."""
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)


def warn_line(message: str) -> None:
    print(f"warning: {_one_line(message)}", file=sys.stderr, flush=True)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _exit_code(e: PlanAndRenderError) -> int:
    return 2 if isinstance(e, UsageError) else 1


def _unexpected(e: BaseException) -> int:
    if _debug():
        traceback.print_exception(e, file=sys.stderr)
    error_line(f"unexpected {type(e).__name__}: {e} (rerun with {DEBUG_ENV}=1 for the traceback)")
    return 1


def _quiet_libraries(rendering: bool = False) -> None:
    """Library chatter (weight-loading bars, dtype notes, autograd warnings) is noise in a CLI.

    Environment variables cover libraries imported later; the logging calls import transformers and
    diffusers, so they run only when rendering will import them anyway.
    """
    if _debug():
        return
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    if not sys.stderr.isatty():  # loading bars are useful on a terminal, noise in a log
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not rendering:
        return
    for mod in ("transformers", "diffusers"):
        try:
            logging = __import__(f"{mod}.utils.logging", fromlist=["set_verbosity_error"])
            logging.set_verbosity_error()
            logging.disable_progress_bar()
        except Exception:  # pragma: no cover - optional quieting only
            pass


def parse_method_options(text: str) -> dict[str, dict]:
    """``--method-options`` JSON -> {method: {field: value}}, checked against the method dataclasses
    so that a typo fails before anything is planned or written."""
    import json

    from plan_and_render.renderer import check_options

    try:
        return check_options(json.loads(text))
    except json.JSONDecodeError as e:
        raise UsageError(f"--method-options is not valid JSON ({e.msg} at character {e.pos})") from None
    except UsageError as e:
        raise UsageError(f"--method-options: {e.message}") from None


def _planner_options(base_url: str | None, retries: int | None, timeout: float | None,
                     device: str | None) -> dict[str, Any]:
    opts = {"base_url": base_url, "retries": retries, "timeout": timeout, "device": device}
    return {k: v for k, v in opts.items() if v is not None}


# --------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------

PLANNER_HELP = "Planner backend: local (Gemma 3 270M, offline), rules (no model), openai:MODEL, hf:PATH, gguf:FILE."
PlannerOpt = typer.Option(api.DEFAULT_PLANNER, "--planner", "-p", help=PLANNER_HELP, rich_help_panel="Planner")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (else OPENAI_BASE_URL). "
                          "The API key is read from the environment only.", rich_help_panel="Planner")
RetriesOpt = typer.Option(None, "--retries", min=0, help="Retries after invalid model output.",
                          rich_help_panel="Planner")
TimeoutOpt = typer.Option(None, "--timeout", min=0.0, help="Seconds to wait for the language model per call.",
                          rich_help_panel="Planner")


def _size_help(what: str) -> str:
    return f"{what} in pixels (multiple of 8 to render). Default: the model's native size for a local folder, else 512."


# --------------------------------------------------------------------------
# the default command: generate
# --------------------------------------------------------------------------


@app.command("generate", help="Plan, preview and render one prompt into an output folder "
             f"(the default command: [cyan]{PROG} \"PROMPT\"[/cyan] is the same).")
def generate_cmd(
    prompt: Optional[str] = typer.Argument(None, help="The scene, e.g. 'a gray cat to the left of a blue vase'.",
                                           show_default=False),
    plan_file: Optional[Path] = typer.Option(None, "--plan", help="Render this plan JSON (e.g. from `plan --json`, "
                                             "edited by hand) instead of planning a prompt.", show_default=False),
    planner: str = PlannerOpt,
    model: str = typer.Option(api.DEFAULT_MODEL, "--model", "-m", help="Diffusion weights: hub id (HF cache), local "
                              "diffusers folder, or one .safetensors/.ckpt file. Offline demo: models/shapes-tiny.",
                              rich_help_panel="Renderer"),
    method: str = typer.Option(api.DEFAULT_METHOD, "--method", help="Guidance: refocus, zest, excite, rca, backward, "
                               "none; combine with +, e.g. refocus+rca.", rich_help_panel="Renderer"),
    seed: int = typer.Option(0, "--seed", help="Seed for the layout and the initial noise."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampling steps. Default: the model's (50).",
                                        rich_help_panel="Renderer", show_default=False),
    width: Optional[int] = typer.Option(None, "--width", help=_size_help("Image width"), show_default=False),
    height: Optional[int] = typer.Option(None, "--height", help=_size_help("Image height"), show_default=False),
    num_images: int = typer.Option(1, "--num-images", "-n", min=1, help="Images per run (one seed, one batch).",
                                   rich_help_panel="Renderer"),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="Classifier-free guidance scale. "
                                                   "Default: the model's (7.5 for SD, 5.0 for SDXL).",
                                                   rich_help_panel="Renderer", show_default=False),
    method_options: Optional[str] = typer.Option(
        None, "--method-options", help="Per-method hyperparameters as JSON, e.g. '{\"refocus\": {\"loss_scale\": 20}}' "
        "(field names: the config classes in renderer/methods/; applied on top of the model folder's guidance.json).",
        rich_help_panel="Renderer", show_default=False),
    device: Optional[str] = typer.Option(None, "--device", help="cuda, cpu, cuda:1... (default: cuda if available).",
                                         rich_help_panel="Renderer", show_default=False),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16, bf16 or fp32 (default: fp16 on GPU, fp32 on CPU).",
                                        rich_help_panel="Renderer", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write this run into DIR "
                                       "(default: ./outputs/<timestamp>-<slug>/).", show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Plan and write the preview only; no rendering."),
    base_url: Optional[str] = BaseUrlOpt,
    retries: Optional[int] = RetriesOpt,
    timeout: Optional[float] = TimeoutOpt,
    planner_device: Optional[str] = typer.Option(None, "--planner-device", help="Device for local/hf planners.",
                                                 rich_help_panel="Planner", show_default=False),
) -> None:
    if plan_file is not None and prompt is not None:
        raise UsageError("give either a PROMPT or --plan FILE, not both (the plan carries its prompt)")
    if plan_file is None and prompt is None:
        raise UsageError(f"missing PROMPT: {PROG} \"a cat to the left of a vase\" (or --plan FILE)")
    if plan_file is not None and plan_file.is_dir():
        raise UsageError(f"--plan {str(plan_file)!r} is a folder; give a plan JSON file")
    options = parse_method_options(method_options) if method_options is not None else None
    # fail on bad options before writing anything
    settings = RenderSettings(method=method, seed=seed, steps=steps, width=width, height=height, num_images=num_images,
                              guidance_scale=guidance_scale, method_options=options or {}, device=device, dtype=dtype)
    _quiet_libraries(rendering=not dry_run)

    from . import output

    label = prompt if prompt is not None else (plan_file.stem if plan_file else "plan")
    run_dir = out if out is not None else output.new_run_dir(label)

    def on_event(name: str, data: dict) -> None:
        if name == "planned":
            plan = data["plan"]
            files = ", ".join(f for f in (data["files"].get("plan"), data["files"].get("layout")) if f)
            err_console.print(f"planned {len(plan.objects)} object(s), {len(plan.relations)} relation(s) "
                              f"on {plan.canvas.width}x{plan.canvas.height}: {files} in {run_dir}")
            for w in data["warnings"]:
                warn_line(w)
        elif name == "rendering":
            steps = f"{data['steps']} steps" if data["steps"] else "the model's steps"
            err_console.print(f"rendering with {data['model']} ({data['method']}, {steps})...")

    opts = _planner_options(base_url, retries, timeout, planner_device) if plan_file is None else {}
    try:
        result = api.generate(
            prompt, plan=plan_file, planner=planner, model=model, settings=settings, out_dir=run_dir, dry_run=dry_run,
            progress=sys.stderr.isatty(), on_event=on_event, planner_options=opts)
    except KeyboardInterrupt:
        kept = [n for n in ("plan.json", "layout.png", "metadata.json") if (Path(run_dir) / n).exists()]
        error_line(f"interrupted; kept {', '.join(kept) or 'nothing'} in {run_dir}")
        raise typer.Exit(130)
    except PlanAndRenderError as e:
        where = [n for n in ("plan.json", "layout.png") if (Path(run_dir) / n).exists()]
        suffix = f" ({' and '.join(where)} written to {run_dir})" if where else ""
        error_line(f"{e.message}{suffix}")
        if not where:  # no plan was made: leave no folder behind that holds only the error
            _discard(Path(run_dir), parent_too=out is None)
        raise typer.Exit(_exit_code(e))
    except Exception as e:
        code = _unexpected(e)
        raise typer.Exit(code)

    if result.scores:
        table = Table(title="attention in box (share of each object's attention inside its box)", title_justify="left")
        table.add_column("object")
        table.add_column("score", justify="right")
        for oid, s in result.scores.items():
            table.add_row(oid, f"{s:.2f}")
        err_console.print(table)
    t = result.timings
    if result.images:
        err_console.print(f"rendered {len(result.images)} image(s) in {t.get('render_s', 0):.1f} s "
                          f"(load {t.get('load_s', 0):.1f} s); metadata.json has the settings and timings")
    print(run_dir)  # stdout: the folder, for scripts


def _discard(folder: Path, parent_too: bool = False) -> None:
    """Remove this run's metadata.json and the folder if that leaves it empty (other files stay);
    with ``parent_too``, also an ./outputs that this leaves empty."""
    try:
        (folder / "metadata.json").unlink(missing_ok=True)
        folder.rmdir()
        if parent_too:
            folder.parent.rmdir()
    except OSError:
        pass


# --------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------


def _plan_table(plan) -> None:
    c = plan.canvas
    table = Table(title=f"{plan.prompt}  ({c.width}x{c.height})", title_justify="left")
    for col, kw in (("id", {}), ("name", {}), ("phrase", {}), ("box x0,y0,x1,y1", {}), ("pixels", {"justify": "right"})):
        table.add_column(col, **kw)
    for o in plan.objects:
        x0, y0, x1, y1 = o.box
        px = f"{round(x0 * c.width)},{round(y0 * c.height)} {round((x1 - x0) * c.width)}x{round((y1 - y0) * c.height)}"
        table.add_row(o.id, o.name, o.phrase, f"{x0:.2f},{y0:.2f},{x1:.2f},{y1:.2f}", px)
    out_console.print(table)
    if plan.relations:
        out_console.print("relations: " + "; ".join(str(r) for r in plan.relations))
    if plan.background:
        out_console.print(f"background: {plan.background}")
    if plan.negative_prompt:
        out_console.print(f"negative prompt: {plan.negative_prompt}")
    if not plan.objects:
        out_console.print("(no objects: background only)")


@app.command("plan", help="Plan a prompt and print it: a table, or the plan JSON of plan-format.md with --json. "
             "With --from-file P.txt --out P.jsonl, plan one prompt a line into JSONL (resumable).")
def plan_cmd(
    prompt: Optional[str] = typer.Argument(None, help="The scene to plan.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the plan JSON (errors: the error record JSON)."),
    planner: str = PlannerOpt,
    preview: Optional[Path] = typer.Option(None, "--preview", help="Also write the layout preview PNG here.",
                                           show_default=False),
    width: Optional[int] = typer.Option(None, "--width", help="Canvas width in pixels (default 512).",
                                        show_default=False),
    height: Optional[int] = typer.Option(None, "--height", help="Canvas height in pixels (default 512).",
                                         show_default=False),
    seed: int = typer.Option(0, "--seed", help="Layout seed (relations hold for every seed)."),
    from_file: Optional[Path] = typer.Option(None, "--from-file", help="Plan every line of this file (batch).",
                                             rich_help_panel="Batch", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Batch output .jsonl (one plan or error record "
                                       "a line, input order; rerunning resumes).", rich_help_panel="Batch",
                                       show_default=False),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Batch: plan prompts whose line is an error "
                                      "record again.", rich_help_panel="Batch"),
    base_url: Optional[str] = BaseUrlOpt,
    retries: Optional[int] = RetriesOpt,
    timeout: Optional[float] = TimeoutOpt,
    device: Optional[str] = typer.Option(None, "--device", help="Device for local/hf planners.",
                                         rich_help_panel="Planner", show_default=False),
) -> None:
    opts = _planner_options(base_url, retries, timeout, device)
    if from_file is not None:
        if prompt is not None or as_json or preview is not None:
            raise UsageError("--from-file plans a file into --out; do not also give a PROMPT, --json or --preview")
        if out is None:
            raise UsageError("--from-file needs --out PLANS.jsonl")
        _quiet_libraries()
        _plan_batch(from_file, out, planner, api.make_canvas(width, height), seed, retry_errors, opts)
        return
    if out is not None or retry_errors:
        raise UsageError("--out and --retry-errors belong to batch planning (--from-file)")
    if prompt is None:
        raise UsageError(f"missing PROMPT: {PROG} plan \"a cat to the left of a vase\" (or --from-file FILE)")
    _quiet_libraries()
    try:
        plan = api.plan(prompt, planner, width=width, height=height, seed=seed, **opts)
        if preview is not None:
            api.save_preview(plan, preview)
    except (PlanAndRenderError, KeyboardInterrupt, Exception) as e:
        if isinstance(e, KeyboardInterrupt):
            error_line("interrupted")
            raise typer.Exit(130)
        if as_json:
            record = e.record(prompt) if isinstance(e, PlanAndRenderError) else \
                {"prompt": prompt, "error": {"type": "unexpected", "message": f"{type(e).__name__}: {e}"}}
            print(json.dumps(record, ensure_ascii=False))
        if isinstance(e, PlanAndRenderError):
            error_line(e.message)
            raise typer.Exit(_exit_code(e))
        raise typer.Exit(_unexpected(e))
    for w in plan.warnings:
        warn_line(w)
    if as_json:
        print(plan.to_json())
    else:
        _plan_table(plan)
    if preview is not None:
        err_console.print(f"preview: {preview}")


def _plan_batch(from_file: Path, out: Path, planner: str, canvas, seed: int, retry_errors: bool,
                opts: dict) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .batch import plan_batch

    progress = Progress(TextColumn("planning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err_console, transient=not err_console.is_terminal)
    task = progress.add_task("plan", total=None)
    state = {"done": 0, "total": 0}

    def on_start(total: int, skipped: int) -> None:
        state["total"], state["done"] = total, skipped
        progress.update(task, total=total, completed=skipped)
        if skipped:
            err_console.print(f"resuming: {skipped} of {total} prompts already in {out}")

    def on_progress(_i: int, _p: str, _rec: dict) -> None:
        state["done"] += 1
        progress.update(task, completed=state["done"])

    try:
        with progress:
            stats = plan_batch(from_file, out, planner, canvas=canvas, seed=seed, retry_errors=retry_errors,
                               on_start=on_start, on_progress=on_progress, **opts)
    except KeyboardInterrupt:
        error_line(f"interrupted after {state['done']} of {state['total']} prompts; {out} holds whole lines only; "
                   "rerun the same command to resume")
        raise typer.Exit(130)
    if stats.repaired:
        warn_line(f"removed a partial last line from {out} (left by an earlier crash) and planned it again")
    if stats.extra:
        warn_line(f"{stats.extra} line(s) of {out} are for prompts no longer in {from_file}; kept at the end")
    err_console.print(f"{out}: {stats.file_lines} line(s), {stats.file_errors} error record(s); "
                      f"this run planned {stats.planned}, {stats.errors} error(s), skipped {stats.skipped}")


# --------------------------------------------------------------------------
# chat and sessions come from H-chat's module when it is there
# --------------------------------------------------------------------------


def _register_chat() -> str | None:
    try:
        from . import chat_cli
    except ModuleNotFoundError as e:
        if e.name == f"{__package__}.chat_cli":
            return "chat is not installed"
        return f"chat unavailable: {e}"
    except Exception as e:  # a broken optional module must not take the whole CLI down
        return f"chat unavailable: {type(e).__name__}: {e}"
    chat_cli.register(app)
    return None


CHAT_PROBLEM = _register_chat()


# --------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------

TOP_OPTIONS = {"-h", "--help", "--version"}
# Typer ships its own copy of click; its usage errors share one base class that has no public name.
CLICK_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def commands() -> set[str]:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    names |= {g.name for g in app.registered_groups if g.name}
    return names


def route(argv: list[str]) -> list[str]:
    """Prepend ``generate`` unless the arguments start with a subcommand or a top-level option."""
    if not argv:
        return ["--help"]
    if argv[0] in commands() or argv[0] in TOP_OPTIONS:
        return argv
    return ["generate", *argv]


def _version_callback(value: bool) -> None:
    if value:
        from .output import package_versions

        print(f"{PROG} {package_versions().get('plan-and-render') or 'unknown'}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_version_callback, is_eager=True)) -> None:
    """Top-level options (the help text is the app's)."""


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: sys.argv[1:]) and return the exit code."""
    argv = route(list(sys.argv[1:] if argv is None else argv))
    try:
        rv = app(args=argv, prog_name=PROG, standalone_mode=False)
    except typer.Abort as e:
        if isinstance(e.__context__, KeyboardInterrupt) or isinstance(e.__cause__, KeyboardInterrupt):
            error_line("interrupted")
            return 130
        error_line("aborted")
        return 1
    except CLICK_ERRORS as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a group called bare: its help is already printed
            return 0
        cmd = argv[0] if argv and argv[0] in commands() else ""
        error_line(f"{e.format_message()} (see {PROG} {cmd + ' ' if cmd else ''}--help)")
        return e.exit_code
    except PlanAndRenderError as e:
        error_line(e.message)
        return _exit_code(e)
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    except OSError as e:
        if e.filename is None:
            return _unexpected(e)
        error_line(f"cannot write or read {e.filename}: {e.strerror or e}")
        return 1
    except Exception as e:
        return _unexpected(e)
    return rv if isinstance(rv, int) else 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: ``plan-and-render``."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
