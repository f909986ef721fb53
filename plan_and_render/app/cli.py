"""The ``plan-and-render`` command: a thin click layer over ``plan_and_render.app.api``.

    plan-and-render "PROMPT" [options]        plan -> preview -> render -> output folder (the default command)
    plan-and-render plan "PROMPT" [--json]    print a plan
    plan-and-render plan --from-file P.txt --out P.jsonl
    plan-and-render chat | sessions ...       chat-style layout edits (``chat_cli``)

``generate`` is the group's default command (click-default-group, as simonw/llm does it), so a bare
prompt runs it. ``exit_code`` is the one place that turns an exception into an exit: one ``error: ...``
line on stderr and 2 for bad usage, 1 for everything else, 130 for Ctrl-C, 143 for SIGTERM, never a
traceback (``PLAN_AND_RENDER_DEBUG=1`` prints the traceback of an unexpected error).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import NoReturn

import click
from click_default_group import DefaultGroup
from rich.table import Table

from ..errors import PlanAndRenderError, Terminated, UsageError
from ..renderer.settings import MAX_SEED
from ..scene import clean_text
from . import api, batch_cli, chat_cli, ui
from .options import backend_options, planner_options, render_options, render_settings
from .terminal import (DEBUG_ENV, PROG, debug_enabled, error_line, plan_table, quiet_libraries, stderr_console,
                       warn_line)

HELP = f"""Plan a scene from a prompt, then render it with attention-guided diffusion.

\b
Default command (the same as `{PROG} generate`):
  {PROG} "PROMPT" [OPTIONS]   plan -> layout preview -> render -> one output folder
  (./outputs/<timestamp>-<slug>/ or --out DIR) with image.png, plan.json, layout.png, metadata.json.
  --dry-run plans and previews only; --plan FILE renders a given plan JSON.
  See `{PROG} generate --help` for every option.

\b
Commands (each has --help):
  plan      prints a plan: a table, or the plan JSON (--json); --from-file plans a file of prompts
  chat      edits a layout in conversation; sessions lists, shows, exports and resumes chat sessions
  ui        the web UI: plan, drag the layout, render and edit by chat in the browser

\b
Offline demo:
  {PROG} "a red circle above a blue square" --planner rules --model models/shapes-tiny --steps 20

\b
Errors are one line on stderr with a non-zero exit (2: bad usage, 1: other errors, 130: interrupted,
143: terminated); set {DEBUG_ENV}=1 to see the traceback of an unexpected error.
"""

# --------------------------------------------------------------------------
# the group
# --------------------------------------------------------------------------


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .output import package_versions

        click.echo(f"{PROG} {package_versions().get('plan-and-render') or 'unknown'}")
        ctx.exit(0)


@click.group(cls=DefaultGroup, default="generate", help=HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and exit.")
def cli() -> None:
    """The command group; ``generate`` runs when the first argument names no command."""


# --------------------------------------------------------------------------
# generate (the default command)
# --------------------------------------------------------------------------


@cli.command("generate", help=f"Plan, preview and render one prompt into an output folder (the default command: "
             f"`{PROG} \"PROMPT\"` is the same).")
@click.argument("prompt", required=False)
@click.option("--plan", "plan_file", type=click.Path(path_type=Path), help="Render this plan JSON (e.g. from "
              "`plan --json`, edited by hand) instead of planning a prompt.")
@planner_options
@click.option("--model", "-m", default=api.DEFAULT_MODEL, show_default=True, help="Diffusion weights: hub id "
              "(HF cache), local diffusers folder, or one .safetensors/.ckpt file. Offline demo: models/shapes-tiny.")
@render_options()
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Write this run into DIR (default: "
              "./outputs/<timestamp>-<slug>/). The run owns it: files an earlier run wrote there are removed first.")
@click.option("--dry-run", is_flag=True, help="Plan and write the preview only; no rendering.")
def generate_cmd(prompt, plan_file, planner, base_url, retries, timeout, planner_device, model, out, dry_run,
                 **render) -> None:
    if plan_file is not None and prompt is not None:
        raise UsageError("give either a PROMPT or --plan FILE, not both (the plan carries its prompt)")
    if plan_file is None and prompt is None:
        raise UsageError(f"missing PROMPT: {PROG} \"a cat to the left of a vase\" (or --plan FILE)")
    if plan_file is not None and plan_file.is_dir():
        raise UsageError(f"--plan {str(plan_file)!r} is a folder; give a plan JSON file")
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder (a run writes several files into it)")
    settings = render_settings(render)  # every render option checked before anything is written
    quiet_libraries(rendering=not dry_run)

    from . import output

    name = clean_text(prompt) if prompt is not None else plan_file.stem
    run_dir = out if out is not None else output.new_run_dir(name)
    err = stderr_console()

    def on_event(name: str, data: dict) -> None:
        if name == "planned":
            plan = data["plan"]
            files = ", ".join(f for f in (data["files"].get("plan"), data["files"].get("layout")) if f)
            err.print(f"planned {len(plan.objects)} object(s), {len(plan.relations)} relation(s) "
                      f"on {plan.canvas.width}x{plan.canvas.height}: {files} in {run_dir}")
            for w in data["warnings"]:
                warn_line(w)
        elif name == "rendering":
            steps = f"{data['steps']} steps" if data["steps"] else "the model's steps"
            err.print(f"rendering with {data['model']} ({data['method']}, {steps})...")
        elif name == "rendered":
            for w in data["warnings"]:
                warn_line(w)

    opts = backend_options(base_url, retries, timeout, planner_device) if plan_file is None else {}
    try:
        result = api.generate(
            prompt, plan=plan_file, planner=planner, model=model, settings=settings, out_dir=run_dir, dry_run=dry_run,
            progress=sys.stderr.isatty(), on_event=on_event, planner_options=opts)
    except KeyboardInterrupt as e:
        kept = [n for n in ("plan.json", "layout.png", "metadata.json") if (Path(run_dir) / n).exists()]
        if not kept:
            _discard(Path(run_dir), parent_too=out is None)
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        raise _Interrupted(f"{what}; kept {', '.join(kept) or 'nothing'} in {run_dir}",
                           143 if isinstance(e, Terminated) else 130) from None
    except PlanAndRenderError as e:
        where = [n for n in ("plan.json", "layout.png") if (Path(run_dir) / n).exists()]
        if not where:  # no plan was made: leave no folder behind that holds only the error
            _discard(Path(run_dir), parent_too=out is None)
        e.message += f" ({' and '.join(where)} written to {run_dir})" if where else ""
        raise

    if result.scores:
        _scores_table(result, err)
    t = result.timings
    if result.images:
        sheet = " and contact-sheet.png" if len(result.images) > 1 else ""
        err.print(f"rendered {len(result.images)} image(s){sheet} in {t.get('render_s', 0):.1f} s "
                  f"(load {t.get('load_s', 0):.1f} s); metadata.json has the settings, seeds and timings")
    click.echo(str(run_dir))  # stdout: the folder, for scripts


def _scores_table(result: api.Result, err) -> None:
    """Each object's attention-in-box share: one column, or one per image (headed by its seed)."""
    table = Table(title="attention in box (share of each object's attention inside its box)", title_justify="left")
    table.add_column("object")
    per_image = result.image_scores if len(result.image_scores) > 1 else []
    seeds = result.seeds if len(result.seeds) == len(per_image) else [None] * len(per_image)
    for k, seed in enumerate(seeds):
        table.add_column(f"seed {seed}" if seed is not None else f"image {k + 1}", justify="right")
    table.add_column("score" if not per_image else "mean", justify="right")
    for oid, s in result.scores.items():
        table.add_row(oid, *(f"{scores.get(oid, 0.0):.2f}" for scores in per_image), f"{s:.2f}")
    err.print(table)


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


@cli.command("plan", help="Plan a prompt and print it: a table, or the plan JSON of plan-format.md with --json. "
             "With --from-file P.txt --out P.jsonl, plan one prompt a line into JSONL (resumable).")
@click.argument("prompt", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the plan JSON (errors: the error record JSON).")
@planner_options
@click.option("--preview", type=click.Path(path_type=Path), help="Also write the layout preview PNG here.")
@click.option("--width", type=int, help="Canvas width in pixels (default 512).")
@click.option("--height", type=int, help="Canvas height in pixels (default 512).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Layout seed (relations hold for every seed).")
@click.option("--from-file", type=click.Path(path_type=Path), help="Batch: plan every line of this file.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Batch output .jsonl (one plan or error record "
              "a line, input order; rerunning resumes).")
@click.option("--retry-errors", is_flag=True, help="Batch: plan prompts whose line is an error record again.")
def plan_cmd(prompt, as_json, planner, base_url, retries, timeout, planner_device, preview, width, height, seed,
             from_file, out, retry_errors) -> None:
    opts = backend_options(base_url, retries, timeout, planner_device)
    if from_file is not None:
        if prompt is not None or as_json or preview is not None:
            raise UsageError("--from-file plans a file into --out; do not also give a PROMPT, --json or --preview")
        if out is None:
            raise UsageError("--from-file needs --out PLANS.jsonl")
        quiet_libraries()
        _plan_batch(from_file, out, planner, api.make_canvas(width, height), seed, retry_errors, opts)
        return
    if out is not None or retry_errors:
        raise UsageError("--out and --retry-errors belong to batch planning (--from-file)")
    if prompt is None:
        raise UsageError(f"missing PROMPT: {PROG} plan \"a cat to the left of a vase\" (or --from-file FILE)")
    if preview is not None and preview.is_dir():
        raise UsageError(f"--preview {str(preview)!r} is a folder; give a file name such as layout.png")
    quiet_libraries()
    try:
        plan = api.plan(prompt, planner, width=width, height=height, seed=seed, **opts)
        if preview is not None:
            api.save_preview(plan, preview)
    except Exception as e:
        if as_json:  # the error record on stdout, the one line on stderr (main)
            record = e.record(prompt) if isinstance(e, PlanAndRenderError) else \
                {"prompt": prompt, "error": {"type": "unexpected", "message": f"{type(e).__name__}: {e}"}}
            click.echo(json.dumps(record, ensure_ascii=False))
        raise
    for w in plan.warnings:
        warn_line(w)
    if as_json:
        click.echo(plan.to_json())
    else:
        plan_table(plan)
    if preview is not None:
        stderr_console().print(f"preview: {preview}")


def _plan_batch(from_file: Path, out: Path, planner: str, canvas, seed: int, retry_errors: bool,
                opts: dict) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .batch import plan_batch

    err = stderr_console()
    progress = Progress(TextColumn("planning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, transient=not err.is_terminal)
    task = progress.add_task("plan", total=None)
    state = {"done": 0, "total": 0}

    def on_start(total: int, skipped: int) -> None:
        state["total"], state["done"] = total, skipped
        progress.update(task, total=total, completed=skipped)
        if skipped:
            err.print(f"resuming: {skipped} of {total} prompts already in {out}")

    def on_progress(_i: int, _p: str, _rec: dict) -> None:
        state["done"] += 1
        progress.update(task, completed=state["done"])

    try:
        with progress:
            stats = plan_batch(from_file, out, planner, canvas=canvas, seed=seed, retry_errors=retry_errors,
                               on_start=on_start, on_progress=on_progress, **opts)
    except KeyboardInterrupt:
        raise _Interrupted(f"interrupted after {state['done']} of {state['total']} prompts; {out} holds whole "
                           "lines only; rerun the same command to resume") from None
    if stats.repaired:
        warn_line(f"removed a partial last line from {out} (left by an earlier crash) and planned it again")
    if stats.extra:
        warn_line(f"{stats.extra} line(s) of {out} are for prompts no longer in {from_file}; kept at the end")
    err.print(f"{out}: {stats.file_lines} line(s), {stats.file_errors} error record(s); "
              f"this run planned {stats.planned}, {stats.errors} error(s), skipped {stats.skipped}")


chat_cli.register(cli)
ui.register(cli)
batch_cli.register(cli)


# --------------------------------------------------------------------------
# the one place where exceptions become exits
# --------------------------------------------------------------------------


class _Interrupted(Exception):
    """Ctrl-C (exit 130) or SIGTERM (143), with the message that says what was kept."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code


def exit_code(e: BaseException) -> int:
    """Print the one line an exception deserves and return the process exit code."""
    if isinstance(e, click.exceptions.NoArgsIsHelpError):  # a bare group asks for its help
        click.echo(e.ctx.get_help())
        return 0
    if isinstance(e, click.ClickException):  # bad options, missing arguments
        error_line(f"{e.format_message()} (see {_command_path(e)} --help)")
        return e.exit_code
    if isinstance(e, PlanAndRenderError):
        error_line(e.message)
        return 2 if isinstance(e, UsageError) else 1
    if isinstance(e, _Interrupted):
        error_line(str(e))
        return e.code
    if isinstance(e, Terminated):
        error_line("terminated")
        return 143
    if isinstance(e, (KeyboardInterrupt, click.Abort)):
        error_line("interrupted")
        return 130
    if isinstance(e, OSError) and e.filename is not None:
        error_line(f"cannot write or read {e.filename}: {e.strerror or e}")
        return 1
    if debug_enabled():
        traceback.print_exception(e, file=sys.stderr)
    error_line(f"unexpected {type(e).__name__}: {e} (rerun with {DEBUG_ENV}=1 for the traceback)")
    return 1


def _command_path(e: click.ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    return ctx.command_path if ctx is not None else PROG


def _terminate(_signum, _frame) -> None:
    raise Terminated("terminated")


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]) and return the exit code.

    SIGTERM (``kill``, a job scheduler, a container stopping) raises ``Terminated`` in the command, so it
    stops the way Ctrl-C does - files kept, metadata.json saying "terminated", a chat turn never half-written.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        rv = cli.main(args=list(sys.argv[1:] if argv is None else argv), prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except BaseException as e:  # noqa: BLE001 - every failure becomes one line and an exit code
        if isinstance(e, SystemExit):
            raise
        return exit_code(e)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return rv if isinstance(rv, int) else 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line and exit with its code (raises SystemExit; usable in-process)."""
    sys.exit(run(argv))


def entry() -> NoReturn:
    """Console-script entry point (``plan-and-render``, ``python -m plan_and_render``).

    A command stopped by Ctrl-C or SIGTERM has already said what it kept and closed its files when
    ``run`` returns; it then leaves with ``os._exit`` so that its status is exactly 130 or 143. Through the
    normal interpreter exit, CPython was seen to end such a process by SIGINT instead (about half the runs
    on a loaded machine, after ``run`` had returned 130: docs/cli.md), which scripts read as -2, not 130.
    """
    code = run()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
