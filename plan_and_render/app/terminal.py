"""What the commands print: one-line errors and warnings, the plan table, quiet libraries.

Shared by the main command (``cli``) and the chat commands (``chat_cli``), so both speak alike and
neither imports the other's internals. Errors and warnings are plain one-line prints (rich would wrap
them at the terminal width, and scripts grep them); tables go through rich.
"""

from __future__ import annotations

import os
import sys
import warnings

from rich.console import Console
from rich.table import Table

from ..scene import ScenePlan, clean_text

PROG = "plan-and-render"
DEBUG_ENV = "PLAN_AND_RENDER_DEBUG"


def one_line(text: object) -> str:
    """One printable line: escape sequences a message may echo from input are dropped, whitespace collapsed."""
    return " ".join(clean_text(str(text)).split())


def error_line(message: object) -> None:
    """The single line every failure prints."""
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def warn_line(message: object) -> None:
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


def info_line(message: object) -> None:
    """Progress a user reads (stdout in the chat, whose transcript is its output)."""
    print(message, flush=True)


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def stdout_console() -> Console:
    """Tables on stdout: the terminal's width, or 120 columns in a pipe (so transcripts stay readable)."""
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def plan_table(plan: ScenePlan, console: Console | None = None, title: str | None = None) -> None:
    """Objects (id, name, phrase, box, pixels, region/depth), then relations, background and negative prompt:
    what ``plan`` prints and what each chat turn shows."""
    console = console or stdout_console()
    c = plan.canvas
    title = one_line(title or f"{plan.prompt or '(empty scene)'}  ({c.width}x{c.height})")
    table = Table(title=title, title_justify="left")
    for col in ("id", "name", "phrase", "box x0,y0,x1,y1", "pixels", "where"):
        table.add_column(col, justify="right" if col == "pixels" else "left")
    for o in plan.objects:
        x0, y0, x1, y1 = o.box
        px = f"{round(x0 * c.width)},{round(y0 * c.height)} {round((x1 - x0) * c.width)}x{round((y1 - y0) * c.height)}"
        where = " ".join(str(v) for v in (getattr(o, "region", None), getattr(o, "depth", None)) if v)
        table.add_row(*(one_line(v) for v in (o.id, o.name, o.phrase)), f"{x0:.2f},{y0:.2f},{x1:.2f},{y1:.2f}", px,
                      where)
    console.print(table)
    if plan.relations:
        console.print(one_line("relations: " + "; ".join(str(r) for r in plan.relations)))
    if plan.background:
        console.print(one_line(f"background: {plan.background}"))
    if plan.negative_prompt:
        console.print(one_line(f"negative prompt: {plan.negative_prompt}"))
    if not plan.objects:
        console.print("(no objects: background only)")


def quiet_libraries(rendering: bool = False) -> None:
    """Library chatter (weight-loading bars, dtype notes, autograd warnings) is noise in a CLI.

    Environment variables cover libraries imported later; the logging calls import transformers and
    diffusers, so they run only when rendering will import them anyway.
    """
    if debug_enabled():
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
        except ImportError:  # pragma: no cover - quieting is optional
            pass
