"""``plan-and-render chat`` and ``plan-and-render sessions ...`` (registered on the main app).

    plan-and-render chat "a cat left of a vase" --planner rules --no-render
    you> add a dog behind the vase
    you> make it bigger
    you> /undo
    you> /quit
    plan-and-render sessions list | show ID | export ID OUT.json | resume ID

The chat reads one instruction a line from stdin (a terminal or a pipe), so a
script can drive it: ``printf 'move the cat left\\n/quit\\n' | plan-and-render chat ...``.
Each turn is committed before the next line is read, so Ctrl-C or a closed
pipe never loses or half-writes a turn. Per-turn problems (an unknown object,
an impossible layout, a failed render) are one ``error:`` line and the chat
goes on; a session that cannot be opened is one line and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from ..errors import PlanAndRenderError, Terminated, UsageError
from ..renderer.settings import MAX_SEED
from ..scene import ScenePlan
from .options import render_options, render_settings, size_help
from .output import atomic_write
from .session import EditResult, Session
from .store import Store, default_path, iso
from .terminal import error_line, info_line, plan_table, quiet_libraries, stdout_console

COMMANDS_HELP = """commands: /undo [N], /redo [N], /show, /plan (JSON), /history, /render, /export FILE, /id, /help,
/quit (or quit, exit). Anything else is an edit, e.g.:
  add a dog behind the vase | move the cat a bit left | put the cat right of the dog | make the vase bigger
  make the cat black | turn the cat into a fox | swap the cat and the dog | remove the dog
  change the background to a beach | undo | redo"""


def _report(result: EditResult) -> None:
    if result.error:
        error_line(result.error)
    elif result.question:
        info_line(f"? {result.question}")
    else:
        for note in result.notes:
            info_line(f"- {note}")


LEAVE_WORDS = ("quit", "exit", "/quit", "/exit", "/q")


class _Chat:
    """The read-eval-print loop around one Session."""

    def __init__(self, session: Session, render: bool, render_kw: dict, store_path: Path | None):
        self.s, self.render_on, self.render_kw, self.store_path = session, render, render_kw, store_path
        self.console = stdout_console()
        self.interactive = sys.stdin.isatty()

    def read(self) -> str | None:
        """One line of input (None at the end). Bytes that are not UTF-8 stay as surrogate escapes, so the
        session refuses the line in one error line instead of storing garbage."""
        if self.interactive:
            try:
                return input("you> ")
            except EOFError:
                return None
            except UnicodeDecodeError:
                return "\udcff"  # the terminal sent bytes that are not UTF-8: the session says so
        pipe = getattr(sys.stdin, "buffer", None)
        raw = pipe.readline() if pipe is not None else sys.stdin.readline()
        if not raw:
            return None
        line = (raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw).rstrip("\r\n")
        info_line(f"you> {line.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')}")
        return line

    def show(self) -> None:
        plan_table(self.s.plan, self.console, title=f"turn {self.s.turn}: {self.s.plan.prompt or '(empty scene)'}")

    def render(self) -> None:
        try:
            result = self.s.render(**self.render_kw)
        except PlanAndRenderError as exc:
            error_line(f"render failed: {exc.message}")
            if exc.type == "model_unavailable":
                self.render_on = False
                info_line("(rendering is off for this chat; the plan edits still work)")
            return
        paths = result.config.get("paths", [])
        scores = ", ".join(f"{k} {v:.2f}" for k, v in result.scores.items())
        done = (f"rendered {len(result.images)} image(s) with seed {self.s.seed}"
                if result.config.get("reused_from") is None else
                f"this layout was rendered at turn {result.config['reused_from']} (same settings); its image(s)")
        info_line(f"{done}: {', '.join(paths) or '(not saved)'}"
                  + (f"  [attention in box: {scores}]" if scores else ""))

    def command(self, line: str) -> bool:
        """Run a /command; False = leave the chat."""
        name, _, arg = line[1:].strip().partition(" ")
        name, arg = name.lower(), arg.strip()
        if f"/{name}" in LEAVE_WORDS:
            return False
        if name in ("undo", "redo"):
            if arg and not (arg.isdigit() and 1 <= int(arg) <= 100):
                error_line(f"/{name} takes a number of steps from 1 to 100, e.g. /{name} 2 (not {arg!r})")
                return True
            steps = int(arg) if arg else 1
            result = self.s.undo(steps) if name == "undo" else self.s.redo(steps)
            _report(result)
            if result.ok:
                self.show()
                if self.render_on:
                    self.render()
        elif name == "show":
            self.show()
        elif name == "plan":
            print(self.s.plan.to_json())
        elif name == "history":
            _history(self.s.history, self.console)
        elif name == "render":
            self.render()
        elif name == "export":
            if not arg:
                error_line("/export needs a file name, e.g. /export session.json")
            else:
                info_line(f"exported to {self.s.export(arg)}")
        elif name == "id":
            info_line(self.s.id)
        elif name in ("help", "h", "?"):
            info_line(COMMANDS_HELP)
        else:
            error_line(f"unknown command /{name}; /help lists them")
        return True

    def turn(self, line: str) -> None:
        result = self.s.edit(line)
        _report(result)
        if result.ok:
            self.show()
            if self.render_on:
                self.render()

    def loop(self) -> int:
        where = f" in {self.store_path}" if self.store_path else ""
        info_line(f"session {self.s.id}{where} - type an edit, /help for commands, /quit to leave")
        self.show()
        if self.render_on and self.s.plan.objects:
            self.render()
        try:
            while True:
                line = self.read()
                if line is None:
                    break
                line = line.strip()
                if not line:
                    continue
                if line.lower() in LEAVE_WORDS:  # not an edit: never recorded as a turn
                    break
                try:
                    if line.startswith("/"):
                        if not self.command(line):
                            break
                        continue
                    self.turn(line)
                except PlanAndRenderError as exc:
                    error_line(exc.message)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # a bug must not end the chat or print a traceback
                    error_line(f"unexpected {type(exc).__name__}: {exc}")
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (``Terminated``, from the CLI's handler)
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            error_line(f"{what}; session {self.s.id} is saved up to turn {self.s.turn}"
                       + (f" (resume: plan-and-render chat --session {self.s.id})" if self.store_path else ""))
            return 143 if isinstance(e, Terminated) else 130
        if self.store_path:
            info_line(f"session {self.s.id} saved (resume: plan-and-render chat --session {self.s.id})")
        return 0


def _model_found(model: str) -> bool:
    """Whether the model's weights can be found; if not, one error line and the chat goes on without rendering."""
    from . import api

    try:
        api.find_model(model)
        return True
    except PlanAndRenderError as exc:
        error_line(f"render failed: {exc.message}")
        info_line("(rendering is off for this chat; the plan edits still work)")
        return False


def _history(turns, console: Console) -> None:
    table = Table(title="history", title_justify="left")
    for col in ("turn", "time", "action", "instruction", "result", "images"):
        table.add_column(col)
    for t in turns:
        result = t.meta.get("question") or "; ".join(t.meta.get("notes", []))
        table.add_row(str(t.turn), iso(t.created), t.action, t.instruction or "", result, str(len(t.images)))
    console.print(table)


def _open_store(store: Optional[Path], must_exist: bool = False) -> Store:
    path = Path(store).expanduser() if store else default_path()
    if must_exist and not path.exists():
        raise UsageError(f"no session store at {path} (start one with: plan-and-render chat \"PROMPT\")")
    if path.exists() and path.is_dir():
        raise UsageError(f"--store {str(path)!r} is a folder; give a database file path")
    return Store(path)


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------

def store_option(f):
    return click.option("--store", type=click.Path(path_type=Path), help="Session database file (default: "
                        "$PLAN_AND_RENDER_HOME/sessions.db or ~/.local/share/plan-and-render/sessions.db).")(f)


CHAT_RENDER = ("method", "method_options", "steps", "guidance_scale", "scheduler", "dtype", "device", "threads")


def _chat(prompt: Optional[str], planner: Optional[str], session_id: Optional[str], render: bool,
          model: Optional[str], store: Optional[Path], seed: int, width: Optional[int], height: Optional[int],
          memory: bool, render_values: dict) -> int:
    """Open (or resume) a session and run the chat loop; ``render_values`` are the render options given."""
    from . import api

    quiet_libraries(rendering=render)
    settings = render_settings(render_values)  # bad values fail before a session is opened
    given = {k: getattr(settings, k) for k, v in render_values.items() if v is not None}
    method = given.pop("method", None)
    if session_id and prompt:
        raise UsageError("give either a PROMPT (new session) or --session ID (resume), not both")
    if memory and session_id:
        raise UsageError("--no-store cannot resume a stored session")
    st = None if memory else _open_store(store, must_exist=bool(session_id))
    render_kw = given
    if render and not session_id:  # a missing model is said once, before a planner loads
        render = _model_found(model or api.DEFAULT_MODEL)
    if session_id:
        s = Session.resume(session_id, store=st, planner=planner)
        if model:
            s.model = api.model_path(model)  # absolute for a folder: the session renders from anywhere
        if method:
            s.method = method
        if width or height:
            render_kw.update(width=width or s.canvas.width, height=height or s.canvas.height)
    else:
        native = api.native_size(model) if model else None  # e.g. 64 for models/shapes-tiny
        canvas = api.make_canvas(width, height, default=native or api.DEFAULT_SIZE)
        if render:
            api.check_render_size(canvas.width, canvas.height)
        s = Session(prompt, planner=planner or api.DEFAULT_PLANNER, store=st if st is not None else None,
                    canvas=canvas, seed=seed, model=model, method=method or api.DEFAULT_METHOD,
                    render_options=render_kw)
        render_kw = {}
    return _Chat(s, render, render_kw, st.path if st else None).loop()


@click.command("chat", help="Edit a layout in conversation: one instruction a line (stdin), /help for commands.")
@click.argument("prompt", required=False)
@click.option("--planner", "-p", help="Planner for the first plan and the edits: local (default), rules, "
              "openai:MODEL, hf:PATH, gguf:FILE. A resumed session keeps its own unless given.")
@click.option("--session", "-s", "session_id", help="Resume this session (id or unique prefix).")
@click.option("--render/--no-render", default=True, show_default=True, help="Render after every change (same seed).")
@click.option("--model", "-m", help="Diffusion weights (hub id, folder, file). Offline demo: models/shapes-tiny.")
@store_option
@click.option("--no-store", is_flag=True, help="Keep this chat in memory only.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Seed for the layout and every render.")
@click.option("--width", type=int, help=size_help("Canvas/image width"))
@click.option("--height", type=int, help=size_help("Canvas/image height"))
@render_options(*CHAT_RENDER)
@click.pass_context
def chat(ctx, prompt, planner, session_id, render, model, store, no_store, seed, width, height, **render_values) -> None:
    ctx.exit(_chat(prompt, planner, session_id, render, model, store, seed, width, height, no_store, render_values))


@click.group("sessions", help="List, show, export and resume chat sessions.")
def sessions() -> None:
    """The ``sessions`` subcommands."""


@sessions.command("list", help="Stored chat sessions, newest first.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
def sessions_list(store, as_json) -> None:
    path = Path(store).expanduser() if store else default_path()
    records = [] if not path.exists() else _open_store(store).list_sessions()
    if as_json:
        for r in records:
            print(json.dumps({"id": r.id, "created": iso(r.created), "updated": iso(r.updated), "turns": r.turns,
                              "planner": r.planner, "prompt": r.prompt}))
        return
    if not records:
        info_line(f"no sessions yet in {path}")
        return
    table = Table(title=f"sessions in {path}", title_justify="left")
    for col in ("id", "updated", "turns", "planner", "prompt"):
        table.add_column(col)
    for r in records:
        table.add_row(r.id, iso(r.updated), str(r.turns), r.planner, (r.prompt or "")[:60])
    stdout_console().print(table)


@sessions.command("show", help="A session's turns and its current plan.")
@click.argument("session_id")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the export JSON instead.")
def sessions_show(session_id, store, as_json) -> None:
    st = _open_store(store, must_exist=True)
    data = st.export(session_id)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = stdout_console()
    info_line(f"session {data['id']}  planner {data['planner']}  seed {data['seed']}  created {data['created']}  "
              f"updated {data['updated']}")
    _history(st.turns(data["id"]), console)
    if data["plan"] is not None:
        plan_table(ScenePlan.model_validate(data["plan"]), console, title=f"current plan (turn {data['current_turn']})")


@sessions.command("export", help="Write a session (every turn, its operations and plans, image paths) as JSON.")
@click.argument("session_id")
@click.argument("out", type=click.Path(path_type=Path))
@store_option
def sessions_export(session_id, out, store) -> None:
    st = _open_store(store, must_exist=True)
    data = st.export(session_id)
    if out.exists() and out.is_dir():
        raise UsageError(f"{str(out)!r} is a folder; give a file name such as session.json")
    try:
        atomic_write(out, json.dumps(data, indent=2))
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    info_line(f"exported session {data['id']} ({len(data['turns'])} turns) to {out}")


@sessions.command("resume", help="Continue a stored session in the chat (the same as chat --session ID).")
@click.argument("session_id")
@click.option("--planner", "-p", help="Planner for the edits (default: the session's own).")
@click.option("--render/--no-render", default=True, show_default=True, help="Render after every change (same seed).")
@click.option("--model", "-m", help="Diffusion weights.")
@store_option
@render_options(*CHAT_RENDER)
@click.pass_context
def sessions_resume(ctx, session_id, planner, render, model, store, **render_values) -> None:
    ctx.exit(_chat(None, planner, session_id, render, model, store, 0, None, None, False, render_values))


def register(group: click.Group) -> None:
    """Add ``chat`` and the ``sessions`` group to the main command."""
    group.add_command(chat)
    group.add_command(sessions)
