"""The web UI's server (plan_and_render.app.web) through FastAPI's TestClient, and its render queue.

Real sessions in a temporary SQLite store, the rules planner, real renders on models/shapes-tiny (2 steps).
The browser drives the same routes in tests/test_ui_browser.py.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from plan_and_render.app.render_queue import RenderQueue
from plan_and_render.app.session import Session
from plan_and_render.app.store import Store
from plan_and_render.app.web import STATIC, UIConfig, create_app
from plan_and_render.errors import ConflictError, PlanAndRenderError
from plan_and_render.geometry.preview import colours

ROOT = Path(__file__).resolve().parents[1]
SHAPES = str(ROOT / "models" / "shapes-tiny")
PROMPT = "a red circle above a blue square"

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def client(tmp_path: Path, **config) -> TestClient:
    options = {"model": SHAPES, "planner": "rules", "steps": 2, **config}
    return TestClient(create_app(UIConfig(store=tmp_path / "s.db", **options)))


@pytest.fixture
def ui(tmp_path) -> TestClient:
    return client(tmp_path)


def new_session(ui: TestClient, prompt: str = PROMPT, **body) -> dict:
    r = ui.post("/api/sessions", json={"prompt": prompt, **body})
    assert r.status_code == 200, r.text
    return r.json()


def box_of(view: dict, oid: str) -> list[float]:
    return next(o["box"] for o in view["objects"] if o["id"] == oid)


def wait(ui: TestClient, job: dict, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    seen = []
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"render job still {job['state']}"
        time.sleep(0.05)
        job = ui.get(f"/api/jobs/{job['id']}").json()
        seen.append((job["state"], job["step"], job["steps"]))
    job["seen"] = seen
    return job


def error_of(r) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    message = body["error"]["message"]
    assert "\n" not in message and "Traceback" not in message
    return message


# --------------------------------------------------------------------------
# the page and its configuration
# --------------------------------------------------------------------------


def test_page_has_the_stable_ids_and_nothing_from_the_internet(ui):
    page = ui.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ("prompt", "plan-button", "layout", "render-button", "image", "chat-input"):
        assert f'id="{element}"' in page.text
    for path in sorted(STATIC.iterdir()):
        text = path.read_text()
        assert not re.search(r"https?://|//cdn|@import", text), f"{path.name} refers to something online"
        assert ui.get(f"/static/{path.name}").status_code == 200 or path.name == "index.html"


def test_config_names_the_model_and_its_native_size(ui):
    config = ui.get("/api/config").json()
    assert config["model"] == SHAPES and config["planner"] == "rules"
    assert config["defaults"] == {"method": "refocus", "steps": 2, "size": 64, "num_images": 1, "seed": 0}
    assert {"refocus", "rca", "none"} <= set(config["methods"]) and "ddim" in config["schedulers"]


# --------------------------------------------------------------------------
# planning and the layout
# --------------------------------------------------------------------------


def test_plan_view_has_objects_colours_counts_and_no_violations(ui):
    view = new_session(ui, "two red circles above a blue square")
    assert view["canvas"] == {"width": 64, "height": 64}  # the model's native size
    ids = [o["id"] for o in view["objects"]]
    assert ids == ["circle-1", "circle-2", "square-1"]
    assert [o["colour"] for o in view["objects"]] == ["#%02x%02x%02x" % c for c in colours(3)]  # the preview's
    assert [o["count"] for o in view["objects"]] == [2, 2, 1]
    assert view["objects"][0]["attributes"] == ["red"]
    assert view["violations"] == [] and view["relations"]
    assert [t["action"] for t in view["history"]] == ["plan"]


def test_drag_commits_a_layout_turn_lists_broken_relations_and_undoes(ui, tmp_path):
    view = new_session(ui)
    sid, square = view["id"], box_of(view, "square-1")
    moved = [0.05, 0.85, 0.25, 0.99]  # below the square, and smaller
    r = ui.post(f"/api/sessions/{sid}/layout", json={"boxes": {"circle-1": moved}})
    assert r.status_code == 200, r.text
    result, view = r.json()["result"], r.json()["session"]
    assert result["ok"] and box_of(view, "circle-1") == moved and box_of(view, "square-1") == square
    assert len(view["violations"]) == 1 and "circle-1 above square-1" in view["violations"][0]
    assert view["relations"] == ["circle-1 above square-1"]  # kept, and reported: not silently rewritten
    turn = view["history"][-1]
    assert turn["action"] == "layout" and turn["instruction"].startswith("(mouse) resized circle-1")
    assert any("does not hold" in n for n in turn["notes"])

    # the store has it: a resumed session replays the layout turn and can undo it
    s = Session.resume(sid, store=Store(tmp_path / "s.db"), planner="rules")
    assert list(s.plan.object_by_id("circle-1").box) == moved and s.can_undo
    view = ui.post(f"/api/sessions/{sid}/undo").json()["session"]
    assert box_of(view, "circle-1") != moved and view["violations"] == [] and view["can_redo"]
    view = ui.post(f"/api/sessions/{sid}/redo").json()["session"]
    assert box_of(view, "circle-1") == moved


def test_move_keeps_size_and_says_so(ui):
    view = new_session(ui)
    x0, y0, x1, y1 = box_of(view, "circle-1")
    r = ui.post(f"/api/sessions/{view['id']}/layout", json={"boxes": {"circle-1": [x0 - 0.1, y0, x1 - 0.1, y1]}})
    assert r.json()["result"]["notes"][0] == f"moved circle-1 to {x0 - 0.1:.2f},{y0:.2f},{x1 - 0.1:.2f},{y1:.2f}"


def test_mouse_adds_and_removes_boxes_through_the_edit_operations(ui):
    view = new_session(ui)
    sid = view["id"]
    r = ui.post(f"/api/sessions/{sid}/layout", json={"add": [{"text": "a green triangle", "box": [0.6, 0.1, 0.9, 0.3]}]})
    view = r.json()["session"]
    tri = next(o for o in view["objects"] if o["id"] == "triangle-1")
    assert tri["box"] == [0.6, 0.1, 0.9, 0.3] and tri["attributes"] == ["green"] and tri["phrase"] == "a green triangle"
    assert "triangle" in view["prompt"]  # the prompt describes the new scene

    # two instances share the drawn box in two columns
    r = ui.post(f"/api/sessions/{sid}/layout", json={"add": [{"text": "two stars", "box": [0.0, 0.0, 0.4, 0.2]}]})
    view = r.json()["session"]
    assert [box_of(view, "star-1"), box_of(view, "star-2")] == [[0.0, 0.0, 0.2, 0.2], [0.2, 0.0, 0.4, 0.2]]

    # removing an object takes its relations with it
    view = ui.post(f"/api/sessions/{sid}/layout", json={"remove": ["square-1"]}).json()["session"]
    assert "square-1" not in [o["id"] for o in view["objects"]] and view["relations"] == []

    # a box drawn over an already broken layout is still accepted (no solver in the way)
    view = ui.post(f"/api/sessions/{sid}/layout", json={"boxes": {"circle-1": [0.1, 0.8, 0.3, 1.0]}}).json()["session"]
    r = ui.post(f"/api/sessions/{sid}/layout", json={"add": [{"text": "a dog", "box": [0.5, 0.5, 0.7, 0.7]}]})
    assert r.status_code == 200 and box_of(r.json()["session"], "dog-1") == [0.5, 0.5, 0.7, 0.7]


@pytest.mark.parametrize("change,needle", [
    ({"boxes": {"cat-9": [0, 0, 1, 1]}}, "no object 'cat-9' in the plan (it has circle-1, square-1)"),
    ({"boxes": {"circle-1": [0.5, 0.5, 0.5, 0.9]}}, "box [0.5, 0.5, 0.5, 0.9] must satisfy"),
    ({"add": [{"text": "", "box": [0, 0, 0.2, 0.2]}]}, "cannot read '' as something to add"),
    ({"boxes": "nope"}, "boxes: Input should be a valid dictionary"),
])
def test_bad_layout_changes_are_one_line_and_change_nothing(ui, change, needle):
    view = new_session(ui)
    r = ui.post(f"/api/sessions/{view['id']}/layout", json=change)
    assert r.status_code == 400 and needle in error_of(r)
    assert ui.get(f"/api/sessions/{view['id']}").json()["turn"] == 0


# --------------------------------------------------------------------------
# chat edits, undo/redo, upload and download
# --------------------------------------------------------------------------


def test_chat_uses_the_edit_language_with_undo_redo(ui):
    sid = new_session(ui)["id"]
    out = ui.post(f"/api/sessions/{sid}/edit", json={"instruction": "make the square green"}).json()
    assert out["result"]["ok"] and out["result"]["notes"] == ["changed square-1: now 'a green square'"]
    out = ui.post(f"/api/sessions/{sid}/edit", json={"instruction": "move it left"}).json()  # "it" = the square
    assert out["result"]["ok"] and "square-1" in out["result"]["notes"][0]
    out = ui.post(f"/api/sessions/{sid}/edit", json={"instruction": "/undo 2"}).json()
    assert out["session"]["objects"][1]["attributes"] == ["blue"]
    out = ui.post(f"/api/sessions/{sid}/edit", json={"instruction": "redo"}).json()  # the parser's redo
    assert out["session"]["objects"][1]["attributes"] == ["green"]
    out = ui.post(f"/api/sessions/{sid}/edit", json={"instruction": "remove the giraffe"}).json()
    assert out["result"]["error"].startswith("there is no 'giraffe' in the scene")
    assert [t["action"] for t in out["session"]["history"]] == ["plan", "edit", "edit", "undo", "redo"]


def test_upload_starts_a_session_from_the_plan_and_download_gives_it_back(ui):
    view = new_session(ui)
    plan = ui.get(f"/api/sessions/{view['id']}/plan.json")
    assert plan.headers["content-disposition"].startswith("attachment")
    uploaded = ui.post("/api/sessions", json={"plan": plan.text}).json()
    assert uploaded["id"] != view["id"] and uploaded["plan"] == json.loads(plan.text)
    r = ui.post("/api/sessions", json={"plan": '{"prompt": "x", "objects": [{"id": "a"}]}'})
    assert r.status_code == 400 and error_of(r).startswith("the uploaded plan is not a valid scene plan: objects.0")
    exported = ui.get(f"/api/sessions/{view['id']}/session.json").json()
    assert exported["id"] == view["id"] and len(exported["turns"]) == 1


# --------------------------------------------------------------------------
# errors: one line, and the server goes on
# --------------------------------------------------------------------------


def test_errors_are_one_line_and_the_server_survives_them(ui):
    cases = [
        (ui.post("/api/sessions", json={"prompt": "   "}), 400, "the prompt is empty"),
        (ui.post("/api/sessions", json={"prompt": "a cat left of a dog and the dog left of the cat"}), 409,
         "conflicting relations"),
        (ui.post("/api/sessions", json={"prompt": PROMPT, "width": 8}), 400, "width 8 is out of range"),
        (ui.post("/api/sessions", json={"plan": "{"}), 400, "the uploaded plan is not valid JSON"),
        (ui.get("/api/sessions/nope"), 400, "no session 'nope'"),
        (ui.get("/api/jobs/nope"), 400, "no render job 'nope'"),
    ]
    for r, status, needle in cases:
        assert r.status_code == status and needle in error_of(r), r.text
    sid = new_session(ui)["id"]
    for body, needle in [({"steps": 0}, "steps 0 is out of range"), ({"width": 63}, "width 63 is not divisible by 8"),
                         ({"method": "magic"}, "magic"), ({"steps": "many"}, "steps: Input should be a valid integer")]:
        r = ui.post(f"/api/sessions/{sid}/render", json=body)
        assert r.status_code == 400 and needle in error_of(r)
    assert ui.get("/api/health").json()["ok"]


def test_an_unexpected_bug_is_one_line_too(ui, monkeypatch):
    from plan_and_render.app import web

    monkeypatch.setattr(web, "session_view", lambda s: 1 / 0)
    r = ui.post("/api/sessions", json={"prompt": PROMPT})
    assert r.status_code == 500 and error_of(r) == "unexpected ZeroDivisionError: division by zero"


def test_a_failing_language_model_is_one_message(tmp_path, monkeypatch):
    from tools.fake_openai import FakeOpenAI, http_error

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAI() as fake:
        fake.script = [http_error(500, "the model is overloaded")]
        ui = client(tmp_path, planner="openai:fake", planner_options={"base_url": fake.url, "retries": 0})
        r = ui.post("/api/sessions", json={"prompt": PROMPT})
        assert r.status_code == 502 and r.json()["error"]["type"] == "llm", r.text
        assert "overloaded" in error_of(r)
    assert ui.get("/api/health").json()["ok"]


# --------------------------------------------------------------------------
# rendering through the queue
# --------------------------------------------------------------------------


def test_render_reports_steps_and_serves_images_scores_sheet_and_run_folder(ui):
    sid = new_session(ui)["id"]
    job = ui.post(f"/api/sessions/{sid}/render", json={"steps": 2, "num_images": 2, "method": "refocus"}).json()
    assert job["state"] in ("queued", "running")
    job = wait(ui, job)
    assert job["state"] == "done", job["error"]
    assert job["step"] == job["steps"] == 2
    result = job["result"]
    assert result["settings"]["steps"] == 2 and result["settings"]["num_images"] == 2
    assert set(result["scores"]) == {"circle-1", "square-1"} and all(0 <= v <= 1 for v in result["scores"].values())
    images = [Image.open(io.BytesIO(ui.get(url).content)) for url in result["images"]]
    assert [im.size for im in images] == [(64, 64), (64, 64)]
    sheet = Image.open(io.BytesIO(ui.get(result["sheet"]).content))
    assert sheet.width > 2 * 64 and sheet.height > 64
    view = ui.get(f"/api/sessions/{sid}").json()
    assert view["shown"]["images"] == result["images"]  # recorded on the turn that was rendered

    z = zipfile.ZipFile(io.BytesIO(ui.get(f"/api/sessions/{sid}/run.zip").content))
    assert sorted(z.namelist()) == ["contact-sheet.png", "image-1.png", "image-2.png", "layout.png", "metadata.json",
                                    "plan.json"]
    meta = json.loads(z.read("metadata.json"))
    assert meta["scores"] == result["scores"] and meta["settings"]["steps"] == 2 and meta["session"] == sid
    assert json.loads(z.read("plan.json")) == view["plan"]
    assert Image.open(io.BytesIO(z.read("image-1.png"))).tobytes() == images[0].tobytes()


def test_missing_model_is_a_job_error_and_the_server_goes_on(tmp_path):
    ui = client(tmp_path, model=str(tmp_path / "no-such-model"))
    sid = new_session(ui)["id"]
    job = wait(ui, ui.post(f"/api/sessions/{sid}/render", json={}).json())
    assert job["state"] == "error" and job["error"]["type"] == "model_unavailable"
    assert "\n" not in job["error"]["message"] and "models/shapes-tiny" in job["error"]["message"]
    assert ui.post(f"/api/sessions/{sid}/edit", json={"instruction": "make the square red"}).json()["result"]["ok"]


def test_renders_of_two_sessions_are_queued_and_never_overlap(ui):
    a, b = new_session(ui)["id"], new_session(ui, "a green star left of a yellow circle")["id"]
    jobs = [ui.post(f"/api/sessions/{sid}/render", json={"steps": 2}).json() for sid in (a, b)]
    second = ui.get(f"/api/jobs/{jobs[1]['id']}").json()
    assert second["state"] == "queued" and second["position"] >= 1  # waits behind the first
    done = [wait(ui, job) for job in jobs]
    assert [j["state"] for j in done] == ["done", "done"]
    assert done[0]["finished"] <= done[1]["started"]  # one after the other
    assert ui.get("/api/health").json()["queue"]["peak_running"] == 1
    assert {j["result"]["session"] for j in done} == {a, b}


def test_the_server_answers_while_a_render_runs(ui):
    sid = new_session(ui)["id"]
    job = ui.post(f"/api/sessions/{sid}/render", json={"steps": 40}).json()
    while job["state"] != "running" or job["step"] < 1:
        time.sleep(0.05)
        job = ui.get(f"/api/jobs/{job['id']}").json()
    t0 = time.perf_counter()
    r = ui.post(f"/api/sessions/{sid}/layout", json={"boxes": {"circle-1": [0.0, 0.0, 0.3, 0.3]}})
    answered = time.perf_counter() - t0
    job = ui.get(f"/api/jobs/{job['id']}").json()
    assert r.status_code == 200 and job["state"] == "running", "the render should still be going"
    assert answered < 2.0, f"a layout change took {answered:.2f} s during a render"
    wait(ui, job)


# --------------------------------------------------------------------------
# one store with the terminal
# --------------------------------------------------------------------------


def test_sessions_are_shared_with_the_terminal(ui, tmp_path, monkeypatch, capsys):
    from plan_and_render.app.cli import run

    db = tmp_path / "s.db"
    monkeypatch.setattr(sys, "stdin", io.StringIO("make the square green\n/quit\n"))
    assert run(["chat", PROMPT, "--planner", "rules", "--no-render", "--store", str(db)]) == 0
    terminal = Store(db).list_sessions()[0].id
    listed = ui.get("/api/sessions").json()
    assert [s["id"] for s in listed] == [terminal] and listed[0]["turns"] == 2
    view = ui.get(f"/api/sessions/{terminal}").json()
    assert view["objects"][1]["attributes"] == ["green"] and view["can_undo"]

    capsys.readouterr()
    page = new_session(ui)["id"]
    assert run(["sessions", "list", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert page in out and terminal in out


# --------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------


def test_ui_command_help_and_a_busy_port(tmp_path, capsys):
    from plan_and_render.app.cli import run

    assert run(["ui", "--help"]) == 0
    assert "--port" in capsys.readouterr().out
    with __import__("socket").create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = run(["ui", "--port", str(port), "--store", str(tmp_path / "s.db"), "--planner", "rules"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and len(err.splitlines()) == 1


# --------------------------------------------------------------------------
# the queue on its own
# --------------------------------------------------------------------------


def test_queue_runs_jobs_one_at_a_time_in_order_and_survives_failures():
    q = RenderQueue()
    inside, order, lock = [], [], threading.Lock()
    gate = threading.Event()

    def work(name):
        def run(progress):
            with lock:
                inside.append(name)
                overlap = len(inside)
            try:
                if name == "first":
                    gate.wait(5)
                for i in range(3):
                    progress(i + 1, 3)
                if name == "bad":
                    raise ConflictError("boxes cannot all fit")
                if name == "bug":
                    raise KeyError("oops")
                return {"name": name}
            finally:
                with lock:
                    inside.remove(name)
                    order.append((name, overlap))
        return run

    jobs = [q.submit(work(n)) for n in ("first", "bad", "bug", "last")]
    time.sleep(0.1)
    assert [q.snapshot(j.id)["position"] for j in jobs] == [0, 1, 2, 3]
    assert q.snapshot(jobs[0].id)["state"] == "running"
    gate.set()
    deadline = time.monotonic() + 10
    while q.snapshot(jobs[-1].id)["state"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    snaps = [q.snapshot(j.id) for j in jobs]
    assert [s["state"] for s in snaps] == ["done", "error", "error", "done"]
    assert snaps[1]["error"] == {"type": "conflict", "message": "boxes cannot all fit"}
    assert snaps[2]["error"] == {"type": "unexpected", "message": "unexpected KeyError: 'oops'"}
    assert snaps[3]["result"] == {"name": "last"} and snaps[3]["step"] == snaps[3]["steps"] == 3
    assert order == [("first", 1), ("bad", 1), ("bug", 1), ("last", 1)] and q.peak_running == 1
    starts = sorted((s["started"], s["finished"]) for s in snaps)
    assert all(a[1] <= b[0] for a, b in zip(starts, starts[1:]))


def test_shutdown_stops_the_running_job_at_its_next_step_and_cancels_the_queue():
    q = RenderQueue()
    stepping = threading.Event()

    def endless(progress):
        for i in range(10_000):
            progress(i, 10_000)
            stepping.set()
            time.sleep(0.01)
        return {}

    running, waiting = q.submit(endless), q.submit(endless)
    assert stepping.wait(5)
    t0 = time.monotonic()
    q.shutdown(timeout=5)
    assert time.monotonic() - t0 < 1
    assert q.snapshot(running.id)["error"] == {"type": "cancelled", "message": "cancelled: the server stopped"}
    assert q.snapshot(waiting.id)["state"] == "error" and q.snapshot(waiting.id)["started"] is None
    with pytest.raises(PlanAndRenderError, match="stopping"):
        q.submit(endless)
