"""The web UI's server: one static page (``ui_static/``) and a JSON API over chat sessions and renders.

    app = create_app(UIConfig(store="sessions.db", model="models/shapes-tiny", planner="rules"))
    uvicorn.run(app)        # what ``plan-and-render ui`` does

Routes (JSON unless said; every failure is ``{"error": {"type", "message"}}`` with one line):

    GET  /                                       the page (no asset comes from the internet)
    GET  /api/config                             model, planner, methods, schedulers, form defaults
    GET  /api/health                             {"ok": true, "queue": {queued, running, peak_running}}
    GET  /api/sessions                           stored sessions, newest first (the terminal's too)
    POST /api/sessions                           {"prompt", "seed", "width", "height"} or {"plan": JSON text}
    GET  /api/sessions/{id}                      plan, table rows with colours, violations, history
    POST /api/sessions/{id}/layout               mouse edits: {"boxes": {id: box}, "remove": [id],
                                                 "add": [{"text": "a red ball", "box": box}]}
    POST /api/sessions/{id}/edit                 {"instruction"}: the edit language of ``plan-and-render chat``
    POST /api/sessions/{id}/undo, .../redo
    POST /api/sessions/{id}/render               render settings -> a queued job
    GET  /api/jobs/{job}                         state, place in the queue, step/steps, result or error
    GET  /api/sessions/{id}/plan.json            the current plan (download)
    GET  /api/sessions/{id}/session.json         every turn, as ``plan-and-render sessions export`` writes it
    GET  /api/sessions/{id}/turns/{t}/images/{i} one stored image (PNG)
    GET  /api/sessions/{id}/turns/{t}/sheet.png  a contact sheet of a turn's images (?first=&count=)
    GET  /api/sessions/{id}/run.zip              plan.json, layout.png, images, contact sheet, metadata.json

Sessions live in the CLI's SQLite store, so ``sessions list`` sees the page's and the page opens the
terminal's. Each request opens the session from the store on its own thread (a Store connection
belongs to one thread); requests on one session are serialised by a lock, planning and chat parsing
share one lock (a language model is not asked two things at once), and renders go through the
``RenderQueue``: one worker, so a pipeline never serves two requests at once, while every other
route keeps answering.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import threading
import time
import zipfile
from collections import Counter, OrderedDict
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field

from ..errors import InvalidPromptError, PlanAndRenderError, UsageError
from ..geometry.preview import colours
from ..planner import parse_instruction
from ..planner.edit_ops import AddOp, RemoveOp, apply, edit_context
from ..renderer import available_methods
from ..renderer.settings import DEFAULT_METHOD, MAX_IMAGES, SCHEDULERS, RenderSettings
from ..scene import ScenePlan
from . import api, output
from .render_queue import RenderQueue
from .session import EditResult, Session
from .store import Store, TurnRecord, iso
from .terminal import debug_enabled, one_line

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("ui_static")
STATUS = {"usage": 400, "invalid_prompt": 400, "conflict": 409, "invalid_edit": 400, "llm": 502,
          "model_unavailable": 503, "store": 500}
SHOWN_IMAGES = 8  # the newest images of a turn the page shows
SESSIONS_PER_THREAD = 32  # open sessions each server thread keeps


@dataclass
class UIConfig:
    """What ``plan-and-render ui`` was started with. ``planner`` None: new sessions use the default planner
    and resumed ones their own; given, it plans and reads edits for every session."""

    store: Path
    model: str = api.DEFAULT_MODEL
    planner: str | None = None
    steps: int | None = None
    planner_options: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------
# request bodies (pydantic checks the types; the project's models check the values)
# --------------------------------------------------------------------------


class NewSession(BaseModel):
    prompt: str | None = None
    plan: str | None = Field(None, description="an uploaded plan file's text (plan-format.md)")
    seed: int = Field(0, ge=0)
    width: int | None = None
    height: int | None = None


class AddBox(BaseModel):
    text: str = Field(description="what the new box holds, as after 'add': 'a red ball'")
    box: tuple[float, float, float, float]


class LayoutChange(BaseModel):
    boxes: dict[str, tuple[float, float, float, float]] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    add: list[AddBox] = Field(default_factory=list)


class Instruction(BaseModel):
    instruction: str


class RenderRequest(BaseModel):
    """The page's render form; unset fields are the model's defaults (``RenderSettings``)."""

    method: str | None = None
    scheduler: str | None = None
    seed: int | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    num_images: int | None = None


# --------------------------------------------------------------------------
# what the page is sent
# --------------------------------------------------------------------------


def image_url(sid: str, turn: int, index: int) -> str:
    return f"/api/sessions/{sid}/turns/{turn}/images/{index}"


def turn_view(rec: TurnRecord) -> dict[str, Any]:
    first = max(0, len(rec.images) - SHOWN_IMAGES)
    return {"turn": rec.turn, "action": rec.action, "instruction": rec.instruction, "state": rec.state,
            "notes": rec.meta.get("notes", []), "question": rec.meta.get("question"), "created": iso(rec.created),
            "images": [image_url(rec.session_id, rec.turn, i) for i in range(first, len(rec.images))]}


def shown_turn(history: list[TurnRecord]) -> TurnRecord:
    """The turn whose images show the current plan: the newest if it has images, else the one it returned to
    (after an undo the plan is an older turn's, and so are its images)."""
    newest = history[-1]
    if newest.images:
        return newest
    return next((t for t in history if t.turn == newest.state), newest)


def session_view(s: Session) -> dict[str, Any]:
    """The session as the page draws it: the plan, a table row and a preview colour per object, the relations
    the boxes break (the geometry checker), the history and the images of the current plan."""
    plan, history = s.plan, s.history
    groups = Counter(o.group or o.id for o in plan.objects)
    palette = ["#%02x%02x%02x" % c for c in colours(len(plan.objects))]
    objects = [{"id": o.id, "name": o.name, "phrase": o.phrase, "attributes": list(o.attributes),
                "box": list(o.box), "group": o.group or o.id, "count": groups[o.group or o.id],
                "region": o.region, "depth": o.depth, "size": o.size, "colour": colour}
               for o, colour in zip(plan.objects, palette)]
    shown = shown_turn(history)
    return {"id": s.id, "prompt": plan.prompt, "planner": s.planner, "seed": s.seed, "turn": s.turn,
            "current": history[-1].state, "canvas": plan.canvas.model_dump(), "plan": plan.model_dump(mode="json"),
            "objects": objects, "relations": [str(r) for r in plan.relations], "background": plan.background,
            "negative_prompt": plan.negative_prompt, "warnings": list(plan.warnings), "violations": api.check(plan),
            "can_undo": s.can_undo, "can_redo": s.can_redo, "history": [turn_view(t) for t in history],
            "shown": turn_view(shown)}


def result_view(result: EditResult) -> dict[str, Any]:
    return {"ok": result.ok, "notes": result.notes, "question": result.question, "error": result.error,
            "turn": result.turn}


# --------------------------------------------------------------------------
# mouse edits
# --------------------------------------------------------------------------


def _clamped(box: tuple[float, ...]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (round(min(1.0, max(0.0, float(v))), 4) for v in box)
    return x0, y0, x1, y1


def _adds(plan: ScenePlan, text: str) -> AddOp:
    """``text`` ("a red ball") as the edit language's add operation, read by the rules parser."""
    script, _ = parse_instruction(f"add {text.strip()}", edit_context(plan), "rules") if text.strip() else (None, "")
    if script is not None and script.clarification:
        raise UsageError(script.clarification)
    op = next((o for o in script.ops if isinstance(o, AddOp)), None) if script is not None else None
    if op is None:
        raise UsageError(f"cannot read {text!r} as something to add; name it, e.g. 'a red ball'")
    return op


def change_layout(plan: ScenePlan, change: LayoutChange, seed: int = 0) -> tuple[ScenePlan, list[str], list[str]]:
    """The plan after mouse edits, with notes and the objects changed.

    Removals and additions are the edit language's operations (a removed object's relations go with it; a
    new one gets an id, a group, a phrase and the relation its text names), then every box is set as drawn. Relations are left alone:
    the ones the new boxes break are the geometry checker's to report, not silently rewritten."""
    before = {o.id for o in plan.objects}
    for oid in [*change.remove, *change.boxes]:
        if oid not in before:
            raise UsageError(f"no object {oid!r} in the plan (it has {', '.join(sorted(before)) or 'none'})")
    adds = [_adds(plan, item.text) for item in change.add]
    notes: list[str] = []
    if change.remove:
        applied = apply(plan, [RemoveOp(target=oid) for oid in change.remove], seed=seed)
        plan, notes = applied.plan, list(applied.notes)
    if adds:  # placed without the relations (the mouse gives the box; broken relations must not block it)
        applied = apply(plan.model_copy(update={"relations": []}), adds, seed=seed)
        plan = applied.plan.model_copy(update={"relations": [*plan.relations, *applied.plan.relations]})
        notes += applied.notes
    new_ids = iter([o.id for o in plan.objects if o.id not in before])
    boxes = {oid: _clamped(b) for oid, b in change.boxes.items() if oid not in change.remove}
    added: list[str] = []
    for op, item in zip(adds, change.add):  # an add of N instances shares its drawn box in N columns
        x0, y0, x1, y1 = _clamped(item.box)
        w = (x1 - x0) / op.count
        for k in range(op.count):
            oid = next(new_ids)
            boxes[oid] = _clamped((x0 + k * w, y0, x0 + (k + 1) * w, y1))
            added.append(oid)
    body = plan.model_dump(mode="json")
    for obj in body["objects"]:
        if obj["id"] in boxes:
            old, obj["box"] = obj["box"], list(boxes[obj["id"]])
            if obj["id"] not in added:
                same_size = abs((old[2] - old[0]) - (obj["box"][2] - obj["box"][0])) < 1e-3 and \
                    abs((old[3] - old[1]) - (obj["box"][3] - obj["box"][1])) < 1e-3
                box = ",".join(f"{v:.2f}" for v in obj["box"])
                notes.append(f"{'moved' if same_size else 'resized'} {obj['id']} to {box}")
    new_plan = api.parse_plan(body, source="the edited layout")
    return new_plan, notes, [*boxes]


# --------------------------------------------------------------------------
# the app
# --------------------------------------------------------------------------


class UI:
    """The server's state: config, the render queue, locks, one store connection per thread."""

    def __init__(self, config: UIConfig):
        self.config = config
        self.queue = RenderQueue()
        self.planner_lock = threading.Lock()
        self.renders: dict[tuple[str, int], dict] = {}  # (session, turn) -> the last render's settings, scores
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._local = threading.local()

    def store(self) -> Store:
        """This thread's connection to the session store (sqlite3 connections stay on their thread)."""
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self.config.store)
        return store

    def lock(self, sid: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(sid, threading.Lock())

    def resume(self, sid: str) -> Session:
        """The session, up to date. Each thread keeps the sessions it opened and reads only the turns added
        since (turns are append-only), instead of replaying a long history on every drag."""
        cache = self._local.__dict__.setdefault("sessions", OrderedDict())
        s = cache.pop(sid, None)
        if s is None:
            s = Session.resume(sid, store=self.store(), planner=self.config.planner, **self.config.planner_options)
        cache[sid] = s
        while len(cache) > SESSIONS_PER_THREAD:
            cache.popitem(last=False)
        return s.refresh()

    @contextmanager
    def session(self, sid: str) -> Iterator[Session]:
        """The session, with every other request on it waiting until this one is done."""
        with self.lock(sid):
            yield self.resume(sid)

    def native_size(self) -> int:
        return api.native_size(self.config.model) or api.DEFAULT_SIZE

    # -- actions -------------------------------------------------------------------

    def new_session(self, body: NewSession) -> Session:
        planner = self.config.planner or api.DEFAULT_PLANNER
        common = dict(planner=planner, store=self.store(), seed=body.seed, model=self.config.model,
                      method=DEFAULT_METHOD, **self.config.planner_options)
        if body.plan is not None:
            return Session(plan=api.parse_plan(body.plan, source="the uploaded plan"), **common)
        prompt = " ".join((body.prompt or "").split())
        if not prompt:
            raise InvalidPromptError("the prompt is empty: describe a scene, e.g. 'a red circle above a blue square'")
        canvas = api.make_canvas(body.width, body.height, default=self.native_size())
        with self.planner_lock:
            return Session(prompt, canvas=canvas, **common)

    def render_job(self, sid: str, settings: RenderSettings) -> dict:
        given = {k: v for k, v in settings.model_dump().items() if k in settings.model_fields_set}

        def work(progress) -> dict:
            s = self.resume(sid)  # on the worker's thread, with its own store connection
            pipe = api.get_pipeline(self.config.model, settings.device, settings.dtype)
            steps = pipe.resolve(s.plan, settings).steps  # the model's default when the page left it unset
            progress(0, steps)
            result = s.render(model=self.config.model, callback=lambda i, _t, _x: progress(i + 1, steps), **given)
            paths = result.config["paths"]
            rec = next(t for t in s.history if paths and paths[0] in t.images)
            first = rec.images.index(paths[0])
            view = {"session": sid, "turn": rec.turn, "first": first, "count": len(paths),
                    "images": [image_url(sid, rec.turn, first + k) for k in range(len(paths))],
                    "scores": {k: round(float(v), 4) for k, v in result.scores.items()},
                    "sheet": (f"/api/sessions/{sid}/turns/{rec.turn}/sheet.png?first={first}&count={len(paths)}"
                              if len(paths) > 1 else None),
                    "settings": result.settings.model_dump(mode="json") if result.settings else given,
                    "timings": {k: round(float(v), 3) for k, v in result.timings.items()},
                    "warnings": list(result.warnings)}
            self.renders[(sid, rec.turn)] = view
            return view

        job = self.queue.submit(work, label=sid)
        return self.queue.snapshot(job.id)


def _error(exc_type: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"type": exc_type, "message": one_line(message)}}, status_code=status)


def _png(image) -> Response:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")


def create_app(config: UIConfig) -> FastAPI:
    """The FastAPI app for ``config`` (``app.state.ui`` holds the server's state, for tests): the page, its
    static files, and the JSON API's routers (config, sessions, rendering, downloads)."""
    ui = UI(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await run_in_threadpool(ui.queue.shutdown)  # a running render stops at its next step

    app = FastAPI(title="plan-and-render", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  lifespan=lifespan)
    app.state.ui = ui
    _answer_errors(app)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for routes in (_config_routes, _session_routes, _render_routes, _download_routes):
        app.include_router(routes(ui))
    return app


def _answer_errors(app: FastAPI) -> None:
    """Every error is one JSON line: the project's own with their status, malformed bodies as usage errors,
    and anything else as "unexpected" (500) without taking the server down."""

    @app.exception_handler(PlanAndRenderError)
    async def _known(_request: Request, exc: PlanAndRenderError) -> JSONResponse:
        return _error(exc.type, exc.message, STATUS.get(exc.type, 400))

    @app.exception_handler(RequestValidationError)
    async def _malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        return _error("usage", f"{where}: {err.get('msg')}" if where else str(err.get("msg")), 400)

    @app.middleware("http")
    async def _timed(request: Request, call_next):
        """A Server-Timing header on every answer (the browser shows it; the benchmark splits a drag's time with
        it); a bug answers one line (the traceback goes to the server's log with PLAN_AND_RENDER_DEBUG=1)."""
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
            return response
        except Exception as exc:  # noqa: BLE001 - the server must survive anything one request does
            if debug_enabled():
                log.exception("%s %s failed", request.method, request.url.path)
            else:
                log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
            return _error("unexpected", f"unexpected {type(exc).__name__}: {exc}", 500)


def _config_routes(ui: UI) -> APIRouter:
    """What the page needs to start: the server's configuration and health."""
    router, config = APIRouter(), ui.config

    @router.get("/api/config")
    def get_config() -> dict:
        return {"model": str(config.model), "planner": config.planner or api.DEFAULT_PLANNER,
                "store": str(config.store), "methods": list(available_methods()), "schedulers": list(SCHEDULERS),
                "max_images": MAX_IMAGES,
                "defaults": {"method": DEFAULT_METHOD, "steps": config.steps, "size": ui.native_size(),
                             "num_images": 1, "seed": 0}}

    @router.get("/api/health")
    def health() -> dict:
        return {"ok": True, "queue": ui.queue.status()}

    return router


def _session_routes(ui: UI) -> APIRouter:
    """Sessions: list, create, resume; each change of the plan (mouse, chat, undo / redo) is a turn."""
    router = APIRouter()

    @router.get("/api/sessions")
    def list_sessions(limit: int = 50) -> list[dict]:
        return [{"id": r.id, "prompt": r.prompt, "planner": r.planner, "turns": r.turns, "updated": iso(r.updated)}
                for r in ui.store().list_sessions(limit=limit)]

    @router.post("/api/sessions")
    def create_session(body: NewSession) -> dict:
        return session_view(ui.new_session(body))

    @router.get("/api/sessions/{sid}")
    def get_session(sid: str) -> dict:
        return session_view(ui.resume(sid))

    @router.post("/api/sessions/{sid}/layout")
    def layout(sid: str, change: LayoutChange) -> dict:
        with ui.session(sid) as s:
            plan, notes, targets = change_layout(s.plan, change, seed=s.seed)
            notes += api.check(plan)  # the relations the drawn boxes break, recorded with the turn
            what = "; ".join(n for n in notes if not n.startswith("relation ")) or "layout unchanged"
            result = s.set_plan(plan, f"(mouse) {what}", notes=notes, targets=targets)
            return {"result": result_view(result), "session": session_view(s)}

    @router.post("/api/sessions/{sid}/edit")
    def edit(sid: str, body: Instruction) -> dict:
        text = body.instruction.strip()
        with ui.session(sid) as s:
            name, _, arg = text[1:].partition(" ")
            if text.startswith("/") and name.lower() in ("undo", "redo"):  # as the terminal chat's /undo [N]
                steps = int(arg) if arg.strip().isdigit() else 1
                result = s.undo(steps) if name.lower() == "undo" else s.redo(steps)
            else:
                with ui.planner_lock:
                    result = s.edit(text)
            return {"result": result_view(result), "session": session_view(s)}

    @router.post("/api/sessions/{sid}/undo")
    def undo(sid: str) -> dict:
        with ui.session(sid) as s:
            return {"result": result_view(s.undo()), "session": session_view(s)}

    @router.post("/api/sessions/{sid}/redo")
    def redo(sid: str) -> dict:
        with ui.session(sid) as s:
            return {"result": result_view(s.redo()), "session": session_view(s)}

    return router


def _render_routes(ui: UI) -> APIRouter:
    """Rendering: a job on the queue, polled until its images are there."""
    router = APIRouter()

    @router.post("/api/sessions/{sid}/render")
    def render(sid: str, body: RenderRequest) -> dict:
        given = {k: v for k, v in body.model_dump().items() if v is not None and v != ""}
        settings = RenderSettings(**given)  # bad values are one UsageError line, before anything is queued
        s = ui.resume(sid)
        if not s.plan.objects:
            raise UsageError("the scene is empty: add an object before rendering")
        return ui.render_job(s.id, settings)

    @router.get("/api/jobs/{job_id}")
    def job(job_id: str) -> dict:
        return ui.queue.snapshot(job_id)

    return router


def _download_routes(ui: UI) -> APIRouter:
    """Downloads: the plan, the session, each image, a contact sheet and the run folder as a zip."""
    router = APIRouter()

    def turn_images(s: Session, turn: int) -> list[str]:
        rec = next((t for t in s.history if t.turn == turn), None)
        if rec is None:
            raise UsageError(f"session {s.id} has no turn {turn}")
        return rec.images

    @router.get("/api/sessions/{sid}/plan.json")
    def plan_json(sid: str) -> Response:
        s = ui.resume(sid)
        return Response(s.plan.to_json() + "\n", media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="plan-{s.id}.json"'})

    @router.get("/api/sessions/{sid}/session.json")
    def session_json(sid: str) -> Response:
        s = ui.resume(sid)
        return Response(json.dumps(s.to_dict(), indent=2) + "\n", media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="session-{s.id}.json"'})

    @router.get("/api/sessions/{sid}/turns/{turn}/images/{index}")
    def image(sid: str, turn: int, index: int) -> FileResponse:
        images = turn_images(ui.resume(sid), turn)
        if not 0 <= index < len(images):
            raise UsageError(f"turn {turn} has {len(images)} image(s); there is no image {index}")
        path = Path(images[index])
        if not path.is_file():
            raise UsageError(f"image {path.name} of turn {turn} is no longer on disk")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "max-age=86400, immutable"})

    @router.get("/api/sessions/{sid}/turns/{turn}/sheet.png")
    def sheet(sid: str, turn: int, first: int = 0, count: int = MAX_IMAGES) -> Response:
        paths = turn_images(ui.resume(sid), turn)[first:first + count]
        if not paths:
            raise UsageError(f"turn {turn} has no images from {first} on")
        images = [Image.open(p) for p in paths]
        return _png(output.contact_sheet(images, labels=[f"#{first + k + 1}" for k in range(len(images))]))

    @router.get("/api/sessions/{sid}/run.zip")
    def run_zip(sid: str) -> Response:
        return Response(run_folder_zip(ui, ui.resume(sid)), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="run-{sid}.zip"'})

    return router


def run_folder_zip(ui: UI, s: Session) -> bytes:
    """The current plan as a run folder, zipped: plan.json, layout.png, the images shown for it (named as
    ``generate`` names them), a contact sheet when there are several, and metadata.json."""
    shown = shown_turn(s.history)
    render = ui.renders.get((s.id, shown.turn))
    paths = shown.images[render["first"]:render["first"] + render["count"]] if render else shown.images
    names = output.image_names(len(paths)) if paths else []
    plan = s.plan
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, tempfile.TemporaryDirectory() as tmp:
        z.writestr("plan.json", plan.to_json() + "\n")
        if plan.objects:
            z.write(api.save_preview(plan, Path(tmp) / "layout.png"), "layout.png")
        for path, name in zip(paths, names):
            z.write(path, name)
        if len(paths) > 1:
            sheet = output.contact_sheet([Image.open(p) for p in paths], labels=names)
            z.writestr("contact-sheet.png", _png(sheet).body)
        metadata = {"session": s.id, "turn": shown.turn, "prompt": plan.prompt, "planner": s.planner,
                    "model": str(ui.config.model), "seed": s.seed, "created": output.utc_now(),
                    "violations": api.check(plan), "warnings": list(plan.warnings),
                    "settings": render["settings"] if render else None,
                    "scores": render["scores"] if render else {},
                    "files": {"plan": "plan.json", "layout": "layout.png" if plan.objects else None, "images": names},
                    "versions": output.package_versions()}
        z.writestr("metadata.json", json.dumps(metadata, indent=2, default=str) + "\n")
    return buf.getvalue()
