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

import typer
from rich.console import Console
from rich.table import Table

from plan_and_render.errors import PlanAndRenderError, UsageError
from plan_and_render.scene import ScenePlan

from .session import EditResult, Session
from .store import Store, default_path, iso

COMMANDS_HELP = """commands: /undo [N], /redo [N], /show, /plan (JSON), /history, /render, /export FILE, /id, /help,
/quit. Anything else is an edit, e.g.:
  add a dog behind the vase | move the cat a bit left | put the cat right of the dog | make the vase bigger
  make the cat black | turn the cat into a fox | swap the cat and the dog | remove the dog
  change the background to a beach | undo | redo"""


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def _err(message: str) -> None:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)


def _info(message: str) -> None:
    print(message, flush=True)


def plan_table(plan: ScenePlan, console: Console | None = None, title: str | None = None) -> None:
    """Objects (id, phrase, box) with their relations, then background: what each chat turn prints."""
    console = console or _console()
    table = Table(title=title or f"{plan.prompt or '(empty scene)'}", title_justify="left")
    for col in ("id", "phrase", "box x0,y0,x1,y1", "relations"):
        table.add_column(col)
    for o in plan.objects:
        rels = [f"{r.predicate} {r.object}" + (f" and {r.object2}" if r.object2 else "")
                for r in plan.relations if r.subject == o.id]
        table.add_row(o.id, o.phrase, ",".join(f"{v:.2f}" for v in o.box), "; ".join(rels))
    console.print(table)
    if plan.background:
        console.print(f"background: {plan.background}")
    if not plan.objects:
        console.print("(no objects yet: try 'add a cat')")


def _report(result: EditResult) -> None:
    if result.error:
        _err(result.error)
    elif result.question:
        _info(f"? {result.question}")
    else:
        for note in result.notes:
            _info(f"- {note}")


class _Chat:
    """The read-eval-print loop around one Session."""

    def __init__(self, session: Session, render: bool, render_kw: dict, store_path: Path | None):
        self.s, self.render_on, self.render_kw, self.store_path = session, render, render_kw, store_path
        self.console = _console()
        self.interactive = sys.stdin.isatty()

    def read(self) -> str | None:
        if self.interactive:
            try:
                return input("you> ")
            except EOFError:
                return None
        line = sys.stdin.readline()
        if not line:
            return None
        line = line.rstrip("\n")
        _info(f"you> {line}")
        return line

    def show(self) -> None:
        plan_table(self.s.plan, self.console, title=f"turn {self.s.turn}: {self.s.plan.prompt or '(empty scene)'}")

    def render(self) -> None:
        try:
            result = self.s.render(**self.render_kw)
        except PlanAndRenderError as exc:
            _err(f"render failed: {exc.message}")
            if exc.type == "model_unavailable":
                self.render_on = False
                _info("(rendering is off for this chat; the plan edits still work)")
            return
        paths = result.config.get("paths", [])
        scores = ", ".join(f"{k} {v:.2f}" for k, v in result.scores.items())
        _info(f"rendered {len(result.images)} image(s) with seed {self.s.seed}: {', '.join(paths) or '(not saved)'}"
              + (f"  [attention in box: {scores}]" if scores else ""))

    def command(self, line: str) -> bool:
        """Run a /command; False = leave the chat."""
        name, _, arg = line[1:].strip().partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("quit", "exit", "q"):
            return False
        if name in ("undo", "redo"):
            steps = int(arg) if arg.isdigit() else 1
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
                _err("/export needs a file name, e.g. /export session.json")
            else:
                _info(f"exported to {self.s.export(arg)}")
        elif name == "id":
            _info(self.s.id)
        elif name in ("help", "h", "?"):
            _info(COMMANDS_HELP)
        else:
            _err(f"unknown command /{name}; /help lists them")
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
        _info(f"session {self.s.id}{where} - type an edit, /help for commands, /quit to leave")
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
                try:
                    if line.startswith("/"):
                        if not self.command(line):
                            break
                        continue
                    self.turn(line)
                except PlanAndRenderError as exc:
                    _err(exc.message)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # a bug must not end the chat or print a traceback
                    _err(f"unexpected {type(exc).__name__}: {exc}")
        except KeyboardInterrupt:
            _err(f"interrupted; session {self.s.id} is saved up to turn {self.s.turn}"
                 + (f" (resume: plan-and-render chat --session {self.s.id})" if self.store_path else ""))
            return 130
        if self.store_path:
            _info(f"session {self.s.id} saved (resume: plan-and-render chat --session {self.s.id})")
        return 0


def _history(turns, console: Console) -> None:
    table = Table(title="history", title_justify="left")
    for col in ("turn", "time", "action", "instruction", "result", "images"):
        table.add_column(col)
    for t in turns:
        result = t.meta.get("question") or "; ".join(t.meta.get("notes", []))
        table.add_row(str(t.turn), iso(t.created), t.action, t.instruction or "", result, str(len(t.images)))
    console.print(table)


def _guard(fn):
    """One ``error:`` line and exit 2 (usage) / 1 (other) for any PlanAndRenderError, whatever app runs us."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PlanAndRenderError as exc:
            _err(exc.message)
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None

    return wrapper


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

StoreOpt = typer.Option(None, "--store", help="Session database file (default: $PLAN_AND_RENDER_HOME/sessions.db or "
                        "~/.local/share/plan-and-render/sessions.db).", show_default=False)


def _chat(prompt: Optional[str], planner: Optional[str], session_id: Optional[str], render: bool,
          model: Optional[str], method: Optional[str], store: Optional[Path], seed: int, steps: Optional[int],
          width: Optional[int], height: Optional[int], device: Optional[str], memory: bool,
          method_options: Optional[str] = None) -> int:
    from . import api

    from .cli import _quiet_libraries, parse_method_options  # lazy: cli registers this module's commands

    _quiet_libraries(rendering=True)
    options = parse_method_options(method_options) if method_options is not None else None
    if session_id and prompt:
        raise UsageError("give either a PROMPT (new session) or --session ID (resume), not both")
    if memory and session_id:
        raise UsageError("--no-store cannot resume a stored session")
    st = None if memory else _open_store(store, must_exist=bool(session_id))
    render_kw = {k: v for k, v in {"steps": steps, "device": device, "method_options": options}.items()
                 if v is not None}
    if session_id:
        s = Session.resume(session_id, store=st, planner=planner)
        if model:
            s.model = model
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


def chat(
    prompt: Optional[str] = typer.Argument(None, help="The scene to start from (omit to start empty).",
                                           show_default=False),
    planner: Optional[str] = typer.Option(None, "--planner", "-p", help="Planner for the first plan and the "
                                          "edits: local (default), rules, openai:MODEL, hf:PATH, gguf:FILE. A "
                                          "resumed session keeps its own unless given.", show_default=False),
    session_id: Optional[str] = typer.Option(None, "--session", "-s", help="Resume this session (id or unique "
                                             "prefix).", show_default=False),
    render: bool = typer.Option(True, "--render/--no-render", help="Render after every change (same seed)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Diffusion weights (hub id, folder, file). "
                                        "Offline demo: models/shapes-tiny with --width 64 --height 64.",
                                        show_default=False),
    method: Optional[str] = typer.Option(None, "--method", help="Guidance method (default refocus).",
                                         show_default=False),
    method_options: Optional[str] = typer.Option(
        None, "--method-options", help="Per-method hyperparameters as JSON, e.g. '{\"refocus\": {\"loss_scale\": 20}}' "
        "(kept with a stored session).", show_default=False),
    store: Optional[Path] = StoreOpt,
    no_store: bool = typer.Option(False, "--no-store", help="Keep this chat in memory only."),
    seed: int = typer.Option(0, "--seed", help="Seed for the layout and every render of this session."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampling steps per render (default 50).",
                                        show_default=False),
    width: Optional[int] = typer.Option(None, "--width", help="Canvas/image width in pixels (default: the model's "
                                        "native size for a local folder, else 512).", show_default=False),
    height: Optional[int] = typer.Option(None, "--height", help="Canvas/image height in pixels (default: as "
                                         "--width).", show_default=False),
    device: Optional[str] = typer.Option(None, "--device", help="Render device (default: cuda if available).",
                                         show_default=False),
) -> None:
    """Edit a layout in conversation: one instruction a line (stdin), /help for commands."""
    code = _chat(prompt, planner, session_id, render, model, method, store, seed, steps, width, height, device,
                 no_store, method_options)
    raise typer.Exit(code)


def sessions_list(store: Optional[Path] = StoreOpt,
                  as_json: bool = typer.Option(False, "--json", help="One JSON object a line.")) -> None:
    """Stored chat sessions, newest first."""
    path = Path(store).expanduser() if store else default_path()
    records = [] if not path.exists() else _open_store(store).list_sessions()
    if as_json:
        for r in records:
            print(json.dumps({"id": r.id, "created": iso(r.created), "updated": iso(r.updated), "turns": r.turns,
                              "planner": r.planner, "prompt": r.prompt}))
        return
    if not records:
        _info(f"no sessions yet in {path}")
        return
    table = Table(title=f"sessions in {path}", title_justify="left")
    for col in ("id", "updated", "turns", "planner", "prompt"):
        table.add_column(col)
    for r in records:
        table.add_row(r.id, iso(r.updated), str(r.turns), r.planner, (r.prompt or "")[:60])
    _console().print(table)


def sessions_show(session_id: str = typer.Argument(..., help="Session id or unique prefix."),
                  store: Optional[Path] = StoreOpt,
                  as_json: bool = typer.Option(False, "--json", help="Print the export JSON instead.")) -> None:
    """A session's turns and its current plan."""
    st = _open_store(store, must_exist=True)
    data = st.export(session_id)
    if as_json:
        print(json.dumps(data, indent=2))
        return
    console = _console()
    _info(f"session {data['id']}  planner {data['planner']}  seed {data['seed']}  created {data['created']}  "
          f"updated {data['updated']}")
    _history(st.turns(data["id"]), console)
    if data["plan"] is not None:
        plan_table(ScenePlan.model_validate(data["plan"]), console, title=f"current plan (turn {data['current_turn']})")


def sessions_export(session_id: str = typer.Argument(..., help="Session id or unique prefix."),
                    out: Path = typer.Argument(..., help="JSON file to write."),
                    store: Optional[Path] = StoreOpt) -> None:
    """Write a session (every turn, its operations and plans, image paths) as JSON."""
    from .store import write_atomic

    st = _open_store(store, must_exist=True)
    data = st.export(session_id)
    if out.exists() and out.is_dir():
        raise UsageError(f"{str(out)!r} is a folder; give a file name such as session.json")
    try:
        write_atomic(out, json.dumps(data, indent=2).encode())
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    _info(f"exported session {data['id']} ({len(data['turns'])} turns) to {out}")


def sessions_resume(
    session_id: str = typer.Argument(..., help="Session id or unique prefix."),
    planner: Optional[str] = typer.Option(None, "--planner", "-p", help="Planner for the edits (default: the "
                                          "session's own).", show_default=False),
    render: bool = typer.Option(True, "--render/--no-render", help="Render after every change (same seed)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Diffusion weights.", show_default=False),
    store: Optional[Path] = StoreOpt,
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Sampling steps per render.",
                                        show_default=False),
    device: Optional[str] = typer.Option(None, "--device", help="Render device.", show_default=False),
) -> None:
    """Continue a stored session in the chat (the same as chat --session ID)."""
    code = _chat(None, planner, session_id, render, model, None, store, 0, steps, None, None, device, False)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``chat`` and the ``sessions`` group to the main command."""
    app.command("chat", help="Edit a layout in conversation (reads one instruction a line; /help inside).")(
        _guard(chat))
    group = typer.Typer(help="List, show, export and resume chat sessions.", no_args_is_help=True,
                        add_completion=False)
    group.command("list")(_guard(sessions_list))
    group.command("show")(_guard(sessions_show))
    group.command("export")(_guard(sessions_export))
    group.command("resume")(_guard(sessions_resume))
    app.add_typer(group, name="sessions")
