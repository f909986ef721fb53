"""Chat-style layout editing with history, undo/redo and optional persistence.

    from plan_and_render import Session
    s = Session("a gray cat to the left of a blue vase", planner="rules", store="sessions.db")
    s.edit("add a dog behind the vase")      # EditResult: ops applied, new plan, or a question
    s.edit("make it bigger")                 # "it" = the dog
    s.undo(); s.redo()
    s.render(model="models/shapes-tiny", steps=10)   # same seed every time
    Session.resume(s.id, store="sessions.db").plan == s.plan

Every state the user can return to is a turn: turn 0 is the first plan, each
edit / undo / redo adds one (a clarifying question is a turn too, so history
reads like the conversation); a plan made outside the edit language (boxes
drawn with the mouse in the web UI, an uploaded file) is a ``layout`` turn. A turn stores its resulting plan and ``state``,
the turn whose plan is current afterwards; replaying the turn log rebuilds the
undo and redo stacks exactly, which is how ``resume`` works.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import ValidationError

from plan_and_render.errors import PlanAndRenderError, UsageError
from plan_and_render.planner import make_plan, parse_instruction
from plan_and_render.planner.edit_ops import PLAN_OPS, Applied, ClarifyOp, EditError, EditScript, apply, edit_context
from plan_and_render.scene import Canvas, ScenePlan, clean_text, first_error

from . import api
from .output import atomic_save_image, atomic_write
from .store import StaleSession, Store, TurnRecord, default_path

# An instruction is one or a few edits; its length is checked before it is parsed, so a pasted page cannot
# hang the chat (the rules parser is not linear in the length of what it cannot read).
MAX_EDIT_CHARS = 500
MAX_HISTORY_STEPS = 100  # undo/redo steps in one go (the edit operations' own bound)


@dataclass
class EditResult:
    """What one instruction did. Exactly one of: applied (``ops``), ``question``, ``error``."""

    instruction: str
    plan: ScenePlan
    ops: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    question: str | None = None
    error: str | None = None
    turn: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.question is None

    def __str__(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if self.question:
            return self.question
        return "; ".join(self.notes) or "done"


def _store(store: Store | str | Path | bool | None) -> Store | None:
    """None/False: memory only; True or "default": the default database; a path; or a Store."""
    if store is None or store is False:
        return None
    if isinstance(store, Store):
        return store
    if store is True or store == "default":
        return Store(default_path())
    if not isinstance(store, (str, os.PathLike)):
        raise UsageError(f"store must be a database path, a Store, True (the default database) or None, not {store!r}")
    return Store(store)


def _instruction_problem(instruction: str) -> str | None:
    """Why an instruction cannot be read (None if it can): not text a person typed, or far too long."""
    if any("\udc80" <= c <= "\udcff" for c in instruction):
        return "the line is not valid UTF-8 text (undecodable bytes); type the instruction again"
    if len(instruction) > MAX_EDIT_CHARS:
        return f"the instruction has {len(instruction)} characters; the limit is {MAX_EDIT_CHARS}"
    return None


def _steps(steps: object, what: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_HISTORY_STEPS:
        raise UsageError(f"{what} takes a number of steps from 1 to {MAX_HISTORY_STEPS}, not {steps!r}")
    return steps


def _render_key(plan: ScenePlan, model: object, method: object, opts: dict) -> str:
    """What decides a render's pixels (plan, model, method, settings), as one hash."""
    what = {"plan": plan.model_dump(mode="json"), "model": str(model), "method": str(method),
            "settings": {k: v for k, v in opts.items() if k not in ("progress", "callback")}}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _empty_plan(canvas: Canvas) -> ScenePlan:
    return ScenePlan(prompt="", canvas=canvas)


def _check_args(prompt, planner, session_id, plan, render_options) -> None:
    """A session's arguments that need no store or planner: one UsageError line for the first bad one."""
    if prompt is not None and not isinstance(prompt, str):
        raise UsageError(f"the prompt must be text (a str) or None, not {type(prompt).__name__}")
    if planner is not None:
        api.check_planner_arg(planner)
    if session_id is not None and (not isinstance(session_id, str) or not session_id.strip()):
        raise UsageError(f"give a session id (a str; see 'plan-and-render sessions list'), not {session_id!r}")
    if plan is not None:
        api.check_plan_arg(plan)
    if render_options is not None and not isinstance(render_options, dict):
        raise UsageError(f"render_options must be a dict of render settings, not {type(render_options).__name__}")


class Session:
    """A layout being edited by instructions. Not thread-safe; one Session per thread."""

    def __init__(self, prompt: str | None = None, planner: str | Any | None = None, store: Store | str | Path | bool |
                 None = None, session_id: str | None = None, canvas: Canvas | dict | None = None, seed: int = 0,
                 model: str | None = None, method: str = "refocus", plan: ScenePlan | None = None,
                 render_options: dict | None = None, pipeline: Any = None, **planner_options: Any):
        _check_args(prompt, planner, session_id, plan, render_options)
        self.store = _store(store)
        self.pipeline = pipeline  # an already-loaded renderer pipeline, used instead of ``model``
        self._given_backend = planner if planner is not None and not isinstance(planner, str) else None
        self._backend = self._given_backend
        self.planner = planner if isinstance(planner, str) else getattr(planner, "name", None)
        self.planner_options = planner_options
        self._turns: list[TurnRecord] = []
        self._plans: dict[int, ScenePlan] = {}
        self._undo: list[int] = []
        self._redo: list[int] = []
        self._current = 0
        self.last_render = None
        self.last_parser: str | None = None
        if session_id is not None:
            self._resume(session_id, model, method, render_options)
        else:
            self._start(prompt, canvas, seed, model, method, plan, render_options)

    def _resume(self, session_id: str, model, method: str, render_options: dict | None) -> None:
        """The stored session ``session_id``, as it was left; ``model`` and ``render_options`` given now win."""
        if self.store is None:
            raise UsageError("resuming a session needs a store (a database path)")
        rec = self.store.get_session(session_id)
        self.id, self.seed, self.model, self.method = rec.id, rec.seed, rec.model, rec.method or method
        if model is not None:
            self.model = api.model_path(model)
        self.canvas = Canvas.model_validate(rec.canvas)
        self.prompt = rec.prompt
        self.render_options = {**rec.meta.get("render_options", {}), **(render_options or {})}
        self.planner = self.planner or rec.planner
        self._sync()
        if not self._turns:
            raise UsageError(f"session {rec.id} has no turns (it was never completed)")

    def _start(self, prompt, canvas, seed: int, model, method: str, plan: ScenePlan | None,
               render_options: dict | None) -> None:
        """A new session whose first turn is ``plan``, the prompt's plan, or an empty scene; stored at once."""
        self.planner = self.planner or api.DEFAULT_PLANNER
        native = api.native_size(model) if isinstance(model, (str, os.PathLike)) else None  # 64 for shapes-tiny
        self.canvas = api.make_canvas(canvas=canvas, default=native or Canvas().width)
        # a model folder is stored as its absolute path, so the session renders when resumed from anywhere
        self.seed, self.model, self.method = api.check_seed(seed), model and api.model_path(model), method
        self.render_options = dict(render_options or {})
        self.prompt = api.check_prompt_arg(prompt) if prompt and prompt.strip() else None
        if plan is not None:
            first, action = plan.model_copy(deep=True), "plan"
            self.canvas = first.canvas
        elif self.prompt:
            first = make_plan(self.prompt, self.backend, self.canvas, self.seed, size_prior=self.size_prior)
            action = "plan"
        else:
            first, action = _empty_plan(self.canvas), "start"
        meta = {"notes": list(first.warnings)}
        if self.store is not None:
            self.id = self.store.create_session(
                prompt=self.prompt, planner=self.planner, model=self.model, method=self.method, seed=self.seed,
                canvas=self.canvas.model_dump(), meta={"render_options": self.render_options},
                first={"action": action, "instruction": self.prompt, "plan": first.model_dump(mode="json"),
                       "meta": meta})
            self._sync()
        else:
            self.id = uuid.uuid4().hex[:12]
            self._commit(action, self.prompt, [], first, meta)

    # -- construction helpers ---------------------------------------------

    @classmethod
    def resume(cls, session_id: str, store: Store | str | Path | bool | None = True, planner: str | None = None,
               **options: Any) -> "Session":
        """Reopen a stored session (id or unique prefix); the planner defaults to the one it was made with."""
        if not isinstance(session_id, str) or not session_id.strip():
            raise UsageError(f"give the id of the session to resume (see 'plan-and-render sessions list'), "
                             f"not {session_id!r}")
        return cls(store=store, session_id=session_id, planner=planner, **options)

    @classmethod
    def list(cls, store: Store | str | Path | bool | None = True):
        """Stored sessions, newest first (``SessionRecord`` objects)."""
        st = _store(store)
        return [] if st is None else st.list_sessions()

    @property
    def size_prior(self):
        """The model folder's size prior (guidance.json), which the first plan and every edit size objects by,
        as ``generate`` does; None without a local model folder (real-world sizes)."""
        return api.folder_size_prior(self.model)

    @property
    def backend(self):
        """The planner backend, built on first use and shared across sessions (models load once)."""
        if self._backend is None:
            self._backend = api.get_planner(self.planner, **self.planner_options)
        return self._backend

    # -- state -------------------------------------------------------------

    @property
    def plan(self) -> ScenePlan:
        """The current plan (a copy: edit it through ``edit``)."""
        return self._plans[self._current].model_copy(deep=True)

    @property
    def turn(self) -> int:
        """The newest turn number."""
        return self._turns[-1].turn

    @property
    def history(self) -> list[TurnRecord]:
        return list(self._turns)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _advance(self, rec: TurnRecord) -> None:
        """Replay one turn on the undo/redo stacks (used live and on resume)."""
        self._turns.append(rec)
        self._plans[rec.turn] = ScenePlan.model_validate(rec.plan)
        kinds = [o.get("op") for o in rec.ops]
        if rec.action in ("plan", "start") and not self._undo and rec.turn == 0:
            self._current = rec.turn
            return
        for op in rec.ops:
            for _ in range(int(op.get("steps", 1))):
                if op.get("op") == "undo" and self._undo:
                    self._redo.append(self._current)
                    self._current = self._undo.pop()
                elif op.get("op") == "redo" and self._redo:
                    self._undo.append(self._current)
                    self._current = self._redo.pop()
        if any(k in PLAN_OPS for k in kinds) or rec.action in ("plan", "layout"):
            self._undo.append(self._current)
            self._redo.clear()
            self._current = rec.turn
        if self._current != rec.state:  # the log is the truth; should never differ
            self._current = rec.state

    def refresh(self) -> "Session":
        """Pick up turns another process (or Session object) committed to the same store, and the images
        recorded on turns since this object read them."""
        self._sync()
        if self.store is not None:
            images = self.store.images(self.id)
            for rec in self._turns:
                rec.images = images.get(rec.turn, rec.images)
        return self

    def _sync(self) -> None:
        """Pick up turns another process committed."""
        if self.store is None:
            return
        after = self._turns[-1].turn if self._turns else -1
        for rec in self.store.turns(self.id, after=after):
            self._advance(rec)

    def _commit(self, action: str, instruction: str | None, ops: list[dict], plan: ScenePlan, meta: dict,
                state: int | None = None) -> int:
        expected = self._turns[-1].turn + 1 if self._turns else 0
        body = plan.model_dump(mode="json")
        if self.store is not None:
            turn = self.store.append_turn(self.id, action=action, instruction=instruction, ops=ops, plan=body,
                                          state=state, meta=meta, expected=expected)
        else:
            turn = expected
        self._advance(TurnRecord(self.id, turn, time.time(), action, instruction, ops, body,
                                 turn if state is None else state, [], meta))
        return turn

    # -- editing -----------------------------------------------------------

    def _last_targets(self) -> list[str]:
        for rec in reversed(self._turns):
            if rec.action in ("edit", "layout"):
                return list(rec.meta.get("targets", []))
            if rec.action in ("plan", "start"):
                break
        return []

    def parse(self, instruction: str) -> EditScript:
        """The operations an instruction means for the current plan (nothing is applied).

        The planner layer decides who reads it (``plan_and_render.planner.edits``: the rules parser, the
        model, or the rules after the model failed); ``self.last_parser`` says who answered. A session
        made from a spec loads its model only when the model is asked.
        """
        context = edit_context(self.plan, self._last_targets(), self.can_undo, self.can_redo)
        planner = self.planner if self._given_backend is None else self._given_backend
        script, self.last_parser = parse_instruction(instruction, context, planner, load=lambda: self.backend)
        return script

    def edit(self, instruction: str, ops: EditScript | list | None = None) -> EditResult:
        """Apply one instruction (or given ``ops``); returns what happened, never raises for bad edits.

        The instruction is checked before it is parsed: undecodable bytes and more than ``MAX_EDIT_CHARS``
        characters are an error result; terminal escape sequences and control characters are dropped."""
        if instruction is not None and not isinstance(instruction, str):
            raise UsageError(f"the instruction must be text (a str), not {type(instruction).__name__}")
        problem = _instruction_problem(instruction or "")
        if problem:
            return EditResult("", self.plan, error=problem)
        instruction = " ".join(clean_text(instruction or "").split())
        if not instruction and ops is None:
            return EditResult(instruction, self.plan, error="the instruction is empty: say what to change")
        for _attempt in range(8):
            self._sync()
            try:
                script = self._script(instruction, ops)
                return self._run(instruction, script)
            except StaleSession:
                continue  # another process edited this session meanwhile: redo on top of its turn
            except PlanAndRenderError as exc:
                return EditResult(instruction, self.plan, error=exc.message)
            except ValidationError as exc:  # an operation out of bounds ("add forty cats": count 40 > 30)
                return EditResult(instruction, self.plan, error=f"cannot do that: {first_error(exc)}")
        return EditResult(instruction, self.plan, error="the session is being edited elsewhere; try again")

    def _script(self, instruction: str, ops: EditScript | list | None) -> EditScript:
        self.last_parser = None
        if ops is None:
            return self.parse(instruction)
        if isinstance(ops, EditScript):
            return ops
        try:
            return EditScript.model_validate({"ops": list(ops)})
        except (ValidationError, TypeError) as exc:  # say which op is wrong, in one line
            why = first_error(exc) if isinstance(exc, ValidationError) else str(exc)
            raise EditError(f"invalid edit operations: {why}") from None

    def _run(self, instruction: str, script: EditScript) -> EditResult:
        dumped = [o.model_dump(mode="json") for o in script.ops]
        question = script.clarification
        if question is None and not script.ops:
            question = "I did not understand that. Say what to change, e.g. 'move the cat a bit left'."
        if question is not None:
            turn = self._commit("clarify", instruction, [ClarifyOp(question=question).model_dump()], self.plan,
                                {"question": question}, state=self._current)
            return EditResult(instruction, self.plan, question=question, turn=turn)
        history = [o for o in script.ops if o.op in ("undo", "redo")]
        changes = [o for o in script.ops if o.op in PLAN_OPS]
        notes: list[str] = []
        # undo / redo first, on a scratch copy of the stacks
        undo, redo, current = list(self._undo), list(self._redo), self._current
        for o in history:
            for _ in range(o.steps):
                src, dst = (undo, redo) if o.op == "undo" else (redo, undo)
                if not src:
                    raise EditError(f"nothing to {o.op}" + (" (already at the first plan)" if o.op == "undo" else ""))
                dst.append(current)
                current = src.pop()
                step = dst[-1] if o.op == "undo" else current
                notes.append(f"{o.op}: turn {step} ({self._label(step)})")
        base = self._plans[current]
        applied = apply(base, changes, seed=self.seed, size_prior=self.size_prior) if changes else \
            Applied(base.model_copy(deep=True))
        notes += applied.notes
        action = "edit" if changes else history[-1].op
        state = None if changes else current
        meta = {"notes": notes, "targets": applied.touched}
        if self.last_parser:
            meta["parser"] = self.last_parser
        turn = self._commit(action, instruction, dumped, applied.plan, meta, state=state)
        return EditResult(instruction, self.plan, ops=dumped, notes=notes, turn=turn)

    def set_plan(self, plan: ScenePlan, instruction: str, notes: list[str] | None = None,
                 targets: list[str] | None = None) -> EditResult:
        """Make ``plan`` current as one ``layout`` turn: a plan made outside the edit language (boxes dragged
        in the web UI, an uploaded file). Undo returns to the plan before it; ``targets`` are what "it" means
        in the next instruction. Relations the new boxes break are kept: the caller reports them."""
        body = plan.model_dump(mode="json")
        try:
            plan = ScenePlan.model_validate(body)  # a plan changed in place was never checked
        except ValidationError as exc:
            return EditResult(instruction, self.plan, error=f"invalid plan: {first_error(exc)}")
        meta = {"notes": list(notes or []), "targets": list(targets or [])}
        for _attempt in range(8):
            self._sync()
            try:
                turn = self._commit("layout", instruction, [], plan, meta)
                return EditResult(instruction, self.plan, notes=meta["notes"], turn=turn)
            except StaleSession:
                continue  # another process added a turn first: this plan still replaces the newest
        return EditResult(instruction, self.plan, error="the session is being edited elsewhere; try again")

    def _label(self, turn: int) -> str:
        rec = next((t for t in self._turns if t.turn == turn), None)
        return repr(rec.instruction) if rec and rec.instruction else "the start"

    def undo(self, steps: int = 1) -> EditResult:
        steps = _steps(steps, "undo")
        return self.edit(f"/undo {steps}" if steps > 1 else "/undo", ops=[{"op": "undo", "steps": steps}])

    def redo(self, steps: int = 1) -> EditResult:
        steps = _steps(steps, "redo")
        return self.edit(f"/redo {steps}" if steps > 1 else "/redo", ops=[{"op": "redo", "steps": steps}])

    # -- rendering and export ----------------------------------------------

    def render(self, out_dir: str | Path | None = None, **kw: Any):
        """Render the current plan with the session seed (unchanged regions stay similar across edits).

        Keyword arguments go to ``plan_and_render.api.render`` (steps, width, height, num_images, ...); the
        session's model (or ``pipeline``), method and render options are the defaults. Images are written
        atomically to the store's image folder (and recorded on the turn whose plan was rendered) or to ``out_dir``.

        A layout already rendered with the same settings - the state an undo returns to - is not rendered
        again: its stored images are returned (``result.config["reused_from"]`` is the turn that made them).
        """
        opts = {**self.render_options, **kw}
        opts.setdefault("seed", self.seed)
        opts.setdefault("progress", False)
        model = opts.pop("model", None) or self.model or api.DEFAULT_MODEL
        method = opts.pop("method", None) or self.method or api.DEFAULT_METHOD
        self._sync()
        plan, turn = self.plan, self.turn  # the images belong to the turn whose plan is rendered
        if not plan.objects:
            raise UsageError("the scene is empty: add an object before rendering")
        key = _render_key(plan, model if self.pipeline is None else getattr(self.pipeline, "name", "pipeline"),
                          method, opts)
        stored = self._stored_render(key) if out_dir is None else None
        if stored is not None:
            return self._record_render(stored, key, [str(p) for p in stored.config["paths"]], turn)
        if self.pipeline is not None:
            for name in ("device", "dtype"):
                opts.pop(name, None)
            result = self.pipeline(plan, method=method, **opts)
        else:
            result = api.render(plan, model=model, method=method, **opts)
        paths: list[str] = []
        seeds = getattr(result, "seeds", None) or [opts["seed"]] * len(result.images)
        for i, image in enumerate(result.images):
            if out_dir is not None:
                paths.append(str(atomic_save_image(image, Path(out_dir) / f"turn{turn:04d}-{i}.png")))
            elif self.store is not None:
                paths.append(str(self.store.save_image(self.id, turn, i, image, seed=seeds[i])))
        result.config = {**getattr(result, "config", {}), "paths": paths}
        return self._record_render(result, key, paths, turn)

    def _record_render(self, result, key: str, paths: list[str], turn: int):
        """Note the images (and what made them) on the turn whose plan was rendered, so that layout is not
        rendered twice."""
        if paths:
            config = {k: v for k, v in result.config.items() if k not in ("paths", "reused_from")}
            rec = next(t for t in self._turns if t.turn == turn)
            entry = {"key": key, "turn": result.config.get("reused_from", turn), "images": paths,
                     "scores": dict(result.scores),
                     "seeds": list(getattr(result, "seeds", [])),
                     "image_scores": list(getattr(result, "image_scores", [])),
                     "config": json.loads(json.dumps(config, default=str))}
            if self.store is not None:
                self.store.add_images(self.id, turn, paths, render=entry)
            rec.images.extend(paths)
            rec.meta.setdefault("renders", []).append(entry)
        self.last_render = result
        return result

    def _stored_render(self, key: str):
        """The newest render of this layout with these settings whose image files still exist, else None."""
        for rec in reversed(self._turns):
            for entry in reversed(rec.meta.get("renders", [])):
                if entry.get("key") == key and entry["images"] and all(Path(p).is_file() for p in entry["images"]):
                    from plan_and_render.renderer import RenderResult  # torch: loaded by the first render anyway

                    images = []
                    for p in entry["images"]:
                        with Image.open(p) as im:
                            images.append(im.convert("RGB"))
                    return RenderResult(images, dict(entry["scores"]), seeds=list(entry.get("seeds", [])),
                                        image_scores=list(entry.get("image_scores", [])),
                                        config={**entry.get("config", {}), "paths": list(entry["images"]),
                                                "reused_from": entry.get("turn", rec.turn)})
        return None

    def to_dict(self) -> dict:
        """The whole session as JSON-able data (what ``export`` writes)."""
        return {
            "id": self.id, "prompt": self.prompt, "planner": self.planner, "model": self.model,
            "method": self.method, "seed": self.seed, "canvas": self.canvas.model_dump(),
            "current_turn": self._current, "plan": self.plan.model_dump(mode="json"),
            "turns": [t.to_dict() for t in self._turns],
        }

    def export(self, path: str | Path) -> Path:
        """Write the session (every turn and the current plan) as JSON, atomically."""
        self._sync()
        data = json.dumps(self.to_dict(), indent=2)
        try:
            return atomic_write(Path(path), data)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
